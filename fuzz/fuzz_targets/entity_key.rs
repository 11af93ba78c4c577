#![no_main]
//! See `skewless_runtime::fuzzing::entity_key`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| skewless_runtime::fuzzing::entity_key(data));
