//! Arbitrary bytes through `next_frame`, `FrameReader` (split at arbitrary points) and
//! `decode_request`, checked against the headers and against prost.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| corecast_fuzz::frames::check(data));
