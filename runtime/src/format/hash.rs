//! The one hash whose values are stored (event ids, sketches): it must
//! give the same bits on every machine and in every release.

/// A stable 64-bit hash (the same on every machine and release: it ends up
/// in stored ids and sketches). FNV-1a, then SplitMix64's finalizer to
/// spread the bits.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut fnv = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        fnv = (fnv ^ *b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = fnv.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
