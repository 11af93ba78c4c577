//! An exact sum of `f64`s: every finite double is an integer multiple of
//! 2^-1074, so the sum is kept as one wide integer in 32-bit limbs and
//! rounded to a double only when read. Integer addition commutes, so the
//! sum (and its stored bytes, once carried) does not depend on the order
//! the values came in or the order partial sums are merged in: floating
//! point addition cannot promise that.

use serde::{Deserialize, Serialize};

/// 2045 bit positions of a double's mantissa (2^-1074 .. 2^971), plus
/// 84 bits of one shifted mantissa, plus room for carries.
const LIMBS: usize = 68;
/// Limbs take at most this many additions between carries: each adds
/// less than 2^32 in magnitude, and an `i64` holds 2^63.
const ADDS_BEFORE_CARRY: u32 = 1 << 30;

/// An exact sum of finite `f64`s.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExactSum {
    /// Limb `k` weighs 2^(32k - 1074). Carried: every limb but the last
    /// in `0..2^32`, the last signed, so equal sums have equal limbs.
    limbs: Vec<i64>,
    #[serde(skip)]
    adds: u32,
}

impl Default for ExactSum {
    fn default() -> Self {
        ExactSum {
            limbs: vec![0; LIMBS],
            adds: 0,
        }
    }
}

impl PartialEq for ExactSum {
    fn eq(&self, other: &Self) -> bool {
        let (mut a, mut b) = (self.clone(), other.clone());
        a.carry();
        b.carry();
        a.limbs == b.limbs
    }
}

impl ExactSum {
    /// Adds `x`; infinities and NaN are the caller's to count apart.
    pub fn add(&mut self, x: f64) {
        debug_assert!(x.is_finite());
        if x == 0.0 {
            return;
        }
        let bits = x.to_bits();
        let biased = ((bits >> 52) & 0x7ff) as i64;
        let fraction = bits & ((1 << 52) - 1);
        // x = mantissa * 2^(position - 1074)
        let (mantissa, position) = if biased == 0 {
            (fraction, 0)
        } else {
            (fraction | (1 << 52), biased - 1)
        };
        let (limb, shift) = ((position / 32) as usize, position % 32);
        let shifted = (mantissa as u128) << shift;
        let sign = if x < 0.0 { -1 } else { 1 };
        for k in 0..3 {
            let part = ((shifted >> (32 * k)) & 0xffff_ffff) as i64;
            self.limbs[limb + k] += sign * part;
        }
        self.adds += 1;
        if self.adds >= ADDS_BEFORE_CARRY {
            self.carry();
        }
    }

    /// Adds another sum.
    pub fn merge(&mut self, other: &ExactSum) {
        self.carry();
        let mut other = other.clone();
        other.carry();
        for (a, b) in self.limbs.iter_mut().zip(&other.limbs) {
            *a += b;
        }
        self.carry();
    }

    /// Moves every limb's excess into the next, leaving the canonical form.
    pub fn carry(&mut self) {
        for k in 0..LIMBS - 1 {
            let over = self.limbs[k] >> 32;
            self.limbs[k] -= over << 32;
            self.limbs[k + 1] += over;
        }
        self.adds = 0;
    }

    /// The sum, rounded to a double (to within a few units in the last
    /// place; the same bits for the same sum, since it reads carried limbs).
    pub fn value(&self) -> f64 {
        let mut sum = self.clone();
        sum.carry();
        // Carried, a negative sum has a negative top limb and positive limbs
        // below: read its magnitude instead, so no two terms cancel.
        let negative = sum.limbs[LIMBS - 1] < 0;
        if negative {
            sum.limbs.iter_mut().for_each(|l| *l = -*l);
            sum.carry();
        }
        let mut out = 0.0f64;
        for k in (0..LIMBS).rev() {
            if sum.limbs[k] != 0 {
                out += sum.limbs[k] as f64 * pow2(32 * k as i32 - 1074);
            }
        }
        if negative { -out } else { out }
    }
}

/// 2^n, exactly (two steps below the normal range).
fn pow2(n: i32) -> f64 {
    if n < -1022 {
        return pow2(n + 600) * pow2(-600);
    }
    if n > 1023 {
        return f64::INFINITY;
    }
    f64::from_bits(((n + 1023) as u64) << 52)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_exactly_in_any_order() {
        let values = [1e308, -1e308, 0.1, 0.2, 0.3, 5e-324, -3.5, 1e-20, 2.0f64.powi(60)];
        let mut forward = ExactSum::default();
        values.iter().for_each(|&v| forward.add(v));
        let mut backward = ExactSum::default();
        values.iter().rev().for_each(|&v| backward.add(v));
        assert_eq!(forward, backward);
        assert_eq!(forward.value(), backward.value());
        // 0.1 + 0.2 + 0.3 + 2^60 - 3.5 + tiny: the huge pair cancels exactly.
        assert_eq!(forward.value(), (0.1f64 + 0.2 + 0.3 - 3.5) + 2.0f64.powi(60));
        let mut halves = ExactSum::default();
        values[..4].iter().for_each(|&v| halves.add(v));
        let mut rest = ExactSum::default();
        values[4..].iter().for_each(|&v| rest.add(v));
        rest.merge(&halves);
        assert_eq!(rest.limbs, {
            forward.carry();
            forward.limbs.clone()
        });
    }

    #[test]
    fn negative_sums_and_integers() {
        let mut sum = ExactSum::default();
        for i in 0..1000 {
            sum.add(-(i as f64));
        }
        assert_eq!(sum.value(), -499_500.0);
        assert_eq!(pow2(-1074), 5e-324);
    }
}
