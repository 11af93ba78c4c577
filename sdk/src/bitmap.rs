//! Validity bitmaps in Arrow's layout: bit `i % 8` of byte `i / 8` is row `i`,
//! a set bit means "valid". The same layout crosses the WIT boundary, so a
//! bitmap is copied, never re-encoded.

/// An owned validity bitmap (`None` in a column means "no nulls").
pub type Bitmap = Vec<u8>;

/// Whether row `i` is set in `bitmap`.
#[inline]
pub fn bitmap_get(bitmap: &[u8], i: usize) -> bool {
    bitmap[i / 8] & (1 << (i % 8)) != 0
}

/// The bitwise AND of two optional validity bitmaps: a row is valid in the
/// result when it is valid in both. `None` stands for all-valid.
pub fn bitmap_and(a: Option<&[u8]>, b: Option<&[u8]>) -> Option<Bitmap> {
    match (a, b) {
        (None, None) => None,
        (Some(x), None) | (None, Some(x)) => Some(x.to_vec()),
        (Some(x), Some(y)) => Some(x.iter().zip(y).map(|(p, q)| p & q).collect()),
    }
}

/// A bitmap of `len` rows, all valid.
pub(crate) fn all_valid(len: usize) -> Bitmap {
    let mut bits = vec![0xFFu8; len.div_ceil(8)];
    clear_tail(&mut bits, len);
    bits
}

/// Clears the padding bits past `len`, so equal bitmaps compare equal.
pub(crate) fn clear_tail(bits: &mut [u8], len: usize) {
    if !len.is_multiple_of(8)
        && let Some(last) = bits.last_mut()
    {
        *last &= (1u8 << (len % 8)) - 1;
    }
}

/// Sets row `i` of `bits` to `valid`.
#[inline]
pub(crate) fn bitmap_set(bits: &mut [u8], i: usize, valid: bool) {
    if valid {
        bits[i / 8] |= 1 << (i % 8);
    } else {
        bits[i / 8] &= !(1 << (i % 8));
    }
}
