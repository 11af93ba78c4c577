//! What makes a transform's output depend on its input rows alone, and the
//! one setting a view has over it.
//!
//! The guarantees, and where each is enforced:
//! - **No ambient input.** The guest's WASI grants nothing and answers the
//!   same on every call (`sandbox`).
//! - **No state across calls.** Every guest call gets a fresh instance, made
//!   from the component's initial (pre-initialized) memory image
//!   (`transform::Transform::run`), so output does not depend on call history.
//!   Instances are made ahead and dropped off the call's path, and none is
//!   ever called twice (`fresh`). A pool slot's memory is reset from the
//!   image when its instance is dropped, every page the instance wrote,
//!   swapped-out pages included (the patched wasmtime in `vendor/wasmtime`).
//! - **No CPU-dependent floats.** Wasm arithmetic is IEEE 754 and
//!   deterministic except for the bits of a NaN it produces, which differ
//!   between CPUs; and relaxed SIMD, which the engine pins to its
//!   deterministic lowering (`engine`). Under [`Determinism::Default`] every
//!   NaN in a float output column is replaced by the canonical quiet NaN at
//!   the boundary, in one pass over the column ([`canonicalize_f32`],
//!   [`canonicalize_f64`], called by the one lift in `codec::wit`). Outputs
//!   are then bit-identical on every CPU, unless the guest itself looks at a
//!   NaN's payload bits (reinterprets a NaN as an integer, `copysign` from
//!   a NaN) and branches on them. [`Determinism::Strict`] closes that too:
//!   Cranelift canonicalizes after every float operation, which costs
//!   float-heavy transforms up to 2x (BENCHMARKS.md).
//! - **No dependence on the batch.** Checked, not enforced: `apply` and
//!   `verify` run each transform on the same rows as one batch, one row at a
//!   time and split at random points, and compare (`invariance`).

use serde::{Deserialize, Serialize};

/// How a view's component is compiled (`determinism = "strict"` in
/// `skewless.toml`, for the repo or one view).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Determinism {
    /// NaNs canonicalized at the boundary, once per output value.
    #[default]
    Default,
    /// NaNs canonicalized after every float operation inside the guest too.
    Strict,
}

impl Determinism {
    /// The name used in `skewless.toml` and in compile-cache file names.
    pub fn name(self) -> &'static str {
        match self {
            Determinism::Default => "default",
            Determinism::Strict => "strict",
        }
    }
}

impl std::fmt::Display for Determinism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Replaces every NaN with the canonical quiet NaN (`0x7fc00000`, the one
/// Cranelift's canonicalization and `f32::NAN` use). Branch-free, so the
/// compiler vectorizes it.
pub(crate) fn canonicalize_f32(values: &mut [f32]) {
    for value in values {
        *value = if value.is_nan() { f32::NAN } else { *value };
    }
}

/// As [`canonicalize_f32`], for `0x7ff8000000000000`.
pub(crate) fn canonicalize_f64(values: &mut [f64]) {
    for value in values {
        *value = if value.is_nan() { f64::NAN } else { *value };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nan_becomes_the_canonical_one_and_nothing_else_changes() {
        let mut singles = [
            f32::from_bits(0x7fc0_0001),
            f32::from_bits(0xffc0_0000),
            f32::from_bits(0x7f80_0001), // signalling
            -0.0,
            f32::INFINITY,
            1.5,
            f32::from_bits(1), // subnormal
        ];
        canonicalize_f32(&mut singles);
        let bits: Vec<u32> = singles.iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            bits,
            [
                0x7fc0_0000,
                0x7fc0_0000,
                0x7fc0_0000,
                0x8000_0000,
                0x7f80_0000,
                0x3fc0_0000,
                1
            ]
        );

        let mut doubles = [
            f64::from_bits(0xfff8_0000_0000_0001),
            f64::from_bits(0x7ff0_0000_0000_0001),
            -0.0,
            2.0,
        ];
        canonicalize_f64(&mut doubles);
        let bits: Vec<u64> = doubles.iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            bits,
            [
                0x7ff8_0000_0000_0000,
                0x7ff8_0000_0000_0000,
                0x8000_0000_0000_0000,
                0x4000_0000_0000_0000
            ]
        );
        assert_eq!(f32::NAN.to_bits(), 0x7fc0_0000, "Rust's NaN is the canonical one");
        assert_eq!(f64::NAN.to_bits(), 0x7ff8_0000_0000_0000);
    }
}
