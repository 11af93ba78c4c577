#![no_main]
//! See `skewless_runtime::fuzzing::stored_row`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| skewless_runtime::fuzzing::stored_row(data));
