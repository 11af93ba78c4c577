//! HyperLogLog for `approx_count_distinct`: registers are the maximum of
//! a hash per value, so the state is the same whatever order the values
//! arrive in or are merged in (max is commutative and associative).
//!
//! 2^14 registers (standard error about 0.8%). Small states are kept
//! sparse (the non-zero registers, sorted); large ones dense, with a count
//! of registers per rank kept up to date so the estimate does not walk
//! them all. The form never shows: equality, the estimate and the stored
//! bytes depend on the registers alone.

use crate::format::value::Value;

/// log2 of the number of registers.
const PRECISION: u32 = 14;
const REGISTERS: usize = 1 << PRECISION;
/// Ranks run from 0 (empty) to 64 - PRECISION + 1.
const RANKS: usize = 66;
/// Above this many non-zero registers the dense form is smaller: the
/// stored form is sparse up to here, dense above, whatever the history.
const SPARSE_MAX: usize = REGISTERS / 3;
/// A merge whose sides hold more registers than this works on the dense
/// form: in place, linear in the smaller side (a 30-day fold merges up to
/// a hundred tiles into one accumulator).
const DENSE_MERGE: usize = 512;

/// Every register, and how many registers hold each rank.
#[derive(Debug, Clone)]
struct Dense {
    registers: [u8; REGISTERS],
    by_rank: [u32; RANKS],
}

impl Dense {
    fn new() -> Box<Dense> {
        let mut by_rank = [0; RANKS];
        by_rank[0] = REGISTERS as u32;
        Box::new(Dense {
            registers: [0; REGISTERS],
            by_rank,
        })
    }

    #[inline]
    fn raise(&mut self, register: u16, rank: u8) {
        let slot = &mut self.registers[register as usize];
        if rank > *slot {
            self.by_rank[*slot as usize] -= 1;
            self.by_rank[rank as usize] += 1;
            *slot = rank;
        }
    }
}

/// A HyperLogLog sketch.
#[derive(Debug, Clone, Default)]
pub struct Hll {
    /// Sorted `(register, rank)` of the non-zero registers, or (dense) empty.
    sparse: Vec<(u16, u8)>,
    /// All registers, once dense.
    dense: Option<Box<Dense>>,
}

/// Sketches are equal when their registers are, whichever form holds them.
impl PartialEq for Hll {
    fn eq(&self, other: &Hll) -> bool {
        self.registers().eq(other.registers())
    }
}

impl Eq for Hll {}

impl Hll {
    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        self.sparse.is_empty() && self.dense.is_none()
    }

    /// Adds one value.
    pub fn add(&mut self, value: &Value) {
        let hash = hash_value(value);
        let register = (hash >> (64 - PRECISION)) as u16;
        let rank = ((hash << PRECISION) | (1 << (PRECISION - 1))).leading_zeros() as u8 + 1;
        self.raise(register, rank);
    }

    fn raise(&mut self, register: u16, rank: u8) {
        if let Some(dense) = &mut self.dense {
            dense.raise(register, rank);
            return;
        }
        match self.sparse.binary_search_by_key(&register, |(r, _)| *r) {
            Ok(i) => self.sparse[i].1 = self.sparse[i].1.max(rank),
            Err(i) => {
                self.sparse.insert(i, (register, rank));
                if self.sparse.len() > SPARSE_MAX {
                    self.go_dense(&[]);
                }
            }
        }
    }

    /// Moves to the dense form, adding `more` registers.
    fn go_dense(&mut self, more: &[(u16, u8)]) {
        let mut dense = Dense::new();
        for &(r, rank) in self.sparse.iter().chain(more) {
            dense.raise(r, rank);
        }
        self.sparse = Vec::new();
        self.dense = Some(dense);
    }

    /// Adds every value of `other`: a linear merge of the sorted sparse
    /// lists, or register by register once either side is dense.
    pub fn merge(&mut self, other: &Hll) {
        match (&mut self.dense, &other.dense) {
            (Some(mine), Some(theirs)) => {
                for (r, rank) in theirs.registers.iter().enumerate() {
                    if *rank > 0 {
                        mine.raise(r as u16, *rank);
                    }
                }
            }
            (Some(mine), None) => other.sparse.iter().for_each(|&(r, rank)| mine.raise(r, rank)),
            (None, Some(theirs)) => {
                let mut dense = theirs.clone();
                self.sparse.drain(..).for_each(|(r, rank)| dense.raise(r, rank));
                self.dense = Some(dense);
            }
            (None, None) => {
                if other.sparse.is_empty() {
                    return;
                }
                if self.sparse.len() + other.sparse.len() > DENSE_MERGE {
                    self.go_dense(&other.sparse);
                    return;
                }
                let (a, b) = (std::mem::take(&mut self.sparse), &other.sparse);
                let mut merged = Vec::with_capacity(a.len() + b.len());
                let (mut i, mut j) = (0, 0);
                while i < a.len() || j < b.len() {
                    match (a.get(i), b.get(j)) {
                        (Some(x), Some(y)) if x.0 == y.0 => {
                            merged.push((x.0, x.1.max(y.1)));
                            i += 1;
                            j += 1;
                        }
                        (Some(x), Some(y)) if x.0 < y.0 => {
                            merged.push(*x);
                            i += 1;
                        }
                        (Some(_), Some(y)) | (None, Some(y)) => {
                            merged.push(*y);
                            j += 1;
                        }
                        (Some(x), None) => {
                            merged.push(*x);
                            i += 1;
                        }
                        (None, None) => unreachable!("loop condition"),
                    }
                }
                self.sparse = merged;
                if self.sparse.len() > SPARSE_MAX {
                    self.go_dense(&[]);
                }
            }
        }
    }

    /// The non-zero registers in register order.
    fn registers(&self) -> Box<dyn Iterator<Item = (u16, u8)> + '_> {
        match &self.dense {
            Some(dense) => Box::new(
                dense
                    .registers
                    .iter()
                    .enumerate()
                    .filter(|(_, rank)| **rank > 0)
                    .map(|(r, rank)| (r as u16, *rank)),
            ),
            None => Box::new(self.sparse.iter().copied()),
        }
    }

    /// The estimated number of distinct values (HyperLogLog with linear
    /// counting for small sets). Registers are counted by rank, then
    /// `sum(count * 2^-rank)` is added in rank order: exact products in one
    /// fixed order, whichever form holds the registers.
    pub fn estimate(&self) -> i64 {
        let m = REGISTERS as f64;
        let by_rank = match &self.dense {
            Some(dense) => dense.by_rank,
            None => {
                let mut by_rank = [0u32; RANKS];
                self.sparse.iter().for_each(|(_, r)| by_rank[*r as usize] += 1);
                by_rank[0] = (REGISTERS - self.sparse.len()) as u32;
                by_rank
            }
        };
        let zeros = by_rank[0] as usize;
        let sum: f64 = by_rank.iter().enumerate().fold(0.0, |sum, (rank, n)| {
            sum + *n as f64 * f64::from_bits((1023 - rank as u64) << 52)
        });
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as i64
    }

    /// Appends the state: `0 | count u16 | (register u16, rank u8)*` with
    /// up to [`SPARSE_MAX`] registers, else `1 | registers`: the form
    /// follows the registers alone, so equal sets give equal bytes.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let nonzero = match &self.dense {
            Some(dense) => REGISTERS - dense.by_rank[0] as usize,
            None => self.sparse.len(),
        };
        if nonzero > SPARSE_MAX {
            out.push(1);
            match &self.dense {
                Some(dense) => out.extend_from_slice(&dense.registers),
                None => unreachable!("a sparse form holds at most SPARSE_MAX registers"),
            }
            return;
        }
        out.push(0);
        out.extend_from_slice(&(nonzero as u16).to_le_bytes());
        for (r, rank) in self.registers() {
            out.extend_from_slice(&r.to_le_bytes());
            out.push(rank);
        }
    }

    /// Reads a state written by [`Hll::encode`].
    pub fn decode(bytes: &mut &[u8]) -> Option<Hll> {
        let (&form, rest) = bytes.split_first()?;
        *bytes = rest;
        if form == 1 {
            let registers = bytes.get(..REGISTERS)?;
            *bytes = &bytes[REGISTERS..];
            let mut dense = Dense::new();
            for (r, rank) in registers.iter().enumerate() {
                if *rank as usize >= RANKS {
                    return None;
                }
                dense.raise(r as u16, *rank);
            }
            return Some(Hll {
                sparse: Vec::new(),
                dense: Some(dense),
            });
        }
        let count = u16::from_le_bytes(bytes.get(..2)?.try_into().ok()?) as usize;
        *bytes = &bytes[2..];
        let body = bytes.get(..count * 3)?;
        *bytes = &bytes[count * 3..];
        let sparse: Vec<(u16, u8)> = body
            .chunks_exact(3)
            .map(|c| (u16::from_le_bytes([c[0], c[1]]), c[2]))
            .collect();
        if sparse
            .iter()
            .any(|(r, rank)| *r as usize >= REGISTERS || *rank as usize >= RANKS)
        {
            return None;
        }
        Some(Hll { sparse, dense: None })
    }
}

/// A stable hash of a value (sketches are stored, so it must not change).
fn hash_value(value: &Value) -> u64 {
    // The bytes hashed, on the stack (this runs for every value a sketch sees).
    let mut bytes = [0u8; 8];
    let len = match value {
        Value::Null => 1,
        Value::Bool(b) => {
            bytes[..2].copy_from_slice(&[1, *b as u8]);
            2
        }
        Value::Int64(v) | Value::Timestamp(v) => {
            bytes.copy_from_slice(&v.to_le_bytes());
            8
        }
        Value::Float32(v) => {
            bytes.copy_from_slice(&(*v as f64).to_bits().to_le_bytes());
            8
        }
        Value::Float64(v) => {
            bytes.copy_from_slice(&v.to_bits().to_le_bytes());
            8
        }
        Value::Utf8(s) => return crate::format::hash::stable_hash(s.as_bytes()),
        // Their stored encoding, tagged so that no scalar hashes alike.
        Value::List(_) | Value::Vector(_) => {
            let mut encoded = vec![0xff];
            let mut writer = crate::format::layout::RowWriter::values_only(&mut encoded, 1);
            crate::format::value::write_value(&mut writer, value);
            return crate::format::hash::stable_hash(&encoded);
        }
    };
    crate::format::hash::stable_hash(&bytes[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(values: impl Iterator<Item = i64>) -> Hll {
        let mut h = Hll::default();
        values.for_each(|v| h.add(&Value::Int64(v)));
        h
    }

    #[test]
    fn estimates_are_close_and_order_free() {
        for n in [1i64, 10, 1_000, 100_000] {
            let forward = sketch(0..n);
            let backward = sketch((0..n).rev());
            assert_eq!(forward, backward);
            let error = (forward.estimate() - n).abs() as f64 / n as f64;
            assert!(error < 0.05, "n = {n}: estimate {}", forward.estimate());
        }
        // Merging halves in either order gives the sketch of the whole.
        let (a, b) = (sketch(0..3000), sketch(3000..6000));
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(ab, sketch(0..6000));
    }

    #[test]
    fn the_form_does_not_change_the_estimate_or_the_bytes() {
        // Merging two large sparse sketches goes dense; adding the same
        // values one by one stays sparse.
        let (a, b) = (sketch(0..600), sketch(600..1200));
        let mut merged = a.clone();
        merged.merge(&b);
        let direct = sketch(0..1200);
        assert!(merged.dense.is_some() && direct.dense.is_none());
        assert_eq!(merged.estimate(), direct.estimate());
        let (mut x, mut y) = (Vec::new(), Vec::new());
        merged.encode(&mut x);
        direct.encode(&mut y);
        assert_eq!(x, y);
    }

    #[test]
    fn states_round_trip() {
        for h in [sketch(0..5), sketch(0..100_000), Hll::default()] {
            let mut bytes = Vec::new();
            h.encode(&mut bytes);
            let mut rest = bytes.as_slice();
            assert_eq!(Hll::decode(&mut rest), Some(h));
            assert!(rest.is_empty());
        }
    }
}
