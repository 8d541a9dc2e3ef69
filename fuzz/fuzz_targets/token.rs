//! Login tokens (JWT): arbitrary strings into the HS256 and Ed25519 verifiers (always
//! refused), and signed claims of every shape checked against the reference model.
//! `CORECAST_FUZZ_SKIP=deadline-overflow,ignored-claim-utf8` skips checks known to fail
//! (`Skip` in src/token.rs).

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

use corecast_fuzz::token::{self, Skip};

static SKIP: OnceLock<Skip> = OnceLock::new();

fuzz_target!(|data: &[u8]| token::check_with(data, *SKIP.get_or_init(Skip::from_env)));
