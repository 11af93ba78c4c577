#![no_main]
//! See `skewless_runtime::fuzzing::guest_output`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| skewless_runtime::fuzzing::guest_output(data));
