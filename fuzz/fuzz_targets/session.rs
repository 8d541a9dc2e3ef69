//! Arbitrary op sequences (connect, disconnect, reads of framed requests, shutdown)
//! against the whole simulated server, driven through the real protocol driver, checked against the reference model.

#![no_main]

use libfuzzer_sys::fuzz_target;

use corecast_fuzz::{script, session_model::Sim};

fuzz_target!(|data: &[u8]| {
    let (settings, ops) = script::parse(data);
    Sim::new(settings).run(&ops);
});
