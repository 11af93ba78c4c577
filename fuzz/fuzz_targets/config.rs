#![no_main]
//! See `skewless_runtime::fuzzing::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| skewless_runtime::fuzzing::config(data));
