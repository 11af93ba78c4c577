//! No code: this crate's dependencies turn on, for the `skewless` binary's
//! own build, the features `cargo test --workspace` turns on anyway, so
//! `cargo run --release` after the tests reuses their build
//! (`Cargo.toml` says why).
