//! `text_embedding`: an embedding of a text column without a model to
//! download, for the search examples and tests. Each lower-cased word of
//! `title` is hashed three times (64-bit FNV-1a, three seeds) to three of
//! 128 dimensions, each with a sign; the signed counts are summed, and the
//! sum is scaled to unit length: the "hashing trick" of Weinberger et al.
//! Titles that share words point the same way, so cosine similarity ranks
//! them together; three hashes make two words' collision on all of them
//! vanishingly rare.
//!
//! It also outputs the title's words as a `list<utf8>`, in order, and the
//! title itself, to be served beside them.
//!
//! Only integer hashing, additions and one square root: the same bits from
//! Rust, Python, JavaScript and C, compiled to Wasm or natively.

use skewless_sdk::{Batch, Column, DataType, Error, Output, ScalarType, Schema, Transform, Values, VectorBuilder};

/// The embedding's dimension (`vector<128>` in the repo).
pub const DIMENSION: u32 = 128;
/// The first hash seed: part of the model, like a model's weights.
pub const SEED: u64 = 0x5eed_1e55;
/// Hashes per word (seeds `SEED`, `SEED + 1`, ...).
pub const HASHES: u64 = 3;

/// Hashes text into a unit vector.
pub struct TextEmbedding;

/// 64-bit FNV-1a of `bytes`, starting from the offset basis xor `seed`.
pub fn fnv1a(bytes: &[u8], seed: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The words of a title: split on anything but ASCII letters and digits,
/// lower-cased.
pub fn words(title: &str) -> impl Iterator<Item = String> + '_ {
    title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
}

/// The embedding of `title`: `None` when it has no words (no direction).
pub fn embed(title: &str) -> Option<Vec<f32>> {
    let mut counts = [0i32; DIMENSION as usize];
    let mut any = false;
    for word in words(title) {
        for seed in SEED..SEED + HASHES {
            let hash = fnv1a(word.as_bytes(), seed);
            let slot = (hash % u64::from(DIMENSION)) as usize;
            counts[slot] += if hash >> 63 == 0 { 1 } else { -1 };
        }
        any = true;
    }
    let squares: i64 = counts.iter().map(|c| i64::from(*c) * i64::from(*c)).sum();
    if !any || squares == 0 {
        return None;
    }
    // The norm in f64 from an exact integer, then one division per
    // component: correctly rounded operations, so every language agrees.
    let norm = (squares as f64).sqrt();
    Some(counts.iter().map(|c| (f64::from(*c) / norm) as f32).collect())
}

impl Transform for TextEmbedding {
    fn schema() -> Schema {
        Schema::new("text_embedding", "1.0.0")
            .input("title", DataType::Utf8)
            .output("title", DataType::Utf8)
            .output("embedding", DataType::Vector(DIMENSION))
            .output("words", DataType::List(ScalarType::Utf8))
    }

    fn run(input: &Batch) -> Result<Output, Error> {
        let titles = input.utf8("title")?;
        let rows = input.num_rows();
        let mut embedding = VectorBuilder::with_capacity(DIMENSION, rows);
        let (mut offsets, mut word_offsets, mut text) = (vec![0i32], vec![0i32], Vec::new());
        let mut validity = vec![0u8; rows.div_ceil(8)];
        for row in 0..rows {
            let Some(title) = titles.get(row) else {
                embedding.push_null();
                offsets.push(*offsets.last().expect("starts with 0"));
                continue;
            };
            validity[row / 8] |= 1 << (row % 8);
            match embed(title) {
                Some(vector) => embedding.push(&vector),
                None => embedding.push_null(),
            }
            let mut count = 0;
            for word in words(title) {
                text.extend_from_slice(word.as_bytes());
                word_offsets.push(text.len() as i32);
                count += 1;
            }
            offsets.push(offsets.last().expect("starts with 0") + count);
        }
        let elements = Values::Utf8 {
            offsets: word_offsets,
            bytes: text,
        };
        let title = input.column("title").ok_or("the title column is missing")?.clone();
        Ok(Output::new(rows)
            .column("title", title)
            .column("embedding", embedding)
            .column("words", Column::list("words", offsets, elements, Some(validity))))
    }
}

#[cfg(target_arch = "wasm32")]
skewless_sdk::export!(TextEmbedding);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_sharing_words_are_closer_than_unrelated_ones() {
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let a = embed("Red wool sweater").unwrap();
        let b = embed("red WOOL scarf").unwrap();
        let c = embed("steel chef knife").unwrap();
        assert!((dot(&a, &a) - 1.0).abs() < 1e-6);
        assert!(dot(&a, &b) > dot(&a, &c));
        assert_eq!(embed("  --  "), None);
    }
}
