//! Entry points for the fuzz targets in `fuzz/` (and the replay of their
//! corpus as unit tests): each takes arbitrary bytes and drives one decoder
//! that untrusted bytes reach. None may panic, hang or allocate without
//! bound; each checks what must hold of what it accepts.
//!
//! - [`stored_row`]: a row and a block of the store's layout, under a schema
//!   taken from the first bytes (a damaged store file).
//! - [`entity_key`]: an entity key (a damaged store file, `verify`).
//! - [`guest_output`]: a WIT batch as a guest returns it, lifted to Arrow
//!   (a buggy or hostile component).
//! - [`config`]: `skewless.toml` text.

use std::path::Path;

use crate::codec::wit as wit_codec;
use crate::format::layout;
use crate::format::value as row;
use crate::types::{FeatureType, FieldSpec, Scalar, arrow_schema};
use crate::wit;

/// A byte reader that yields zeros once the input runs out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }

    fn feature_type(&mut self) -> FeatureType {
        FeatureType::ALL[usize::from(self.u8()) % FeatureType::ALL.len()]
    }

    fn schema(&mut self, max: u8) -> Vec<FieldSpec> {
        (0..self.u8() % (max + 1))
            .map(|i| FieldSpec {
                name: format!("f{i}"),
                data_type: self.feature_type(),
                nullable: true,
            })
            .collect()
    }
}

/// A row, then the same bytes as a block, decoded under a schema from the
/// first bytes; a block that decodes merges with itself into a block that
/// decodes to the same rows (merging is idempotent).
pub fn stored_row(data: &[u8]) {
    let mut bytes = Bytes(data);
    let schema = bytes.schema(8);
    let rest = bytes.0;
    if let Ok(values) = row::decode_values(rest, &schema) {
        assert_eq!(values.len(), schema.len());
        assert_eq!(layout::row_len(rest, &schema), Ok(rest.len()));
        layout::row_header(rest).expect("a decoded row has a header");
    }
    let _ = layout::newest_row_at(rest, &schema, i64::MAX);
    if let Ok(rows) = layout::block_rows(rest, &schema) {
        let mut sorted = Vec::new();
        if layout::merge_block(None, &rows, &schema, &mut sorted, |_| {}).is_ok() {
            let mut again = Vec::new();
            layout::merge_block(Some(&sorted), &rows, &schema, &mut again, |_| {}).expect("a merged block merges");
            assert_eq!(sorted, again, "merging the same rows again changed the block");
        }
    }
}

/// An entity key: what decodes re-encodes to the same bytes (the encoding
/// is canonical, so a key found in the store names one entity).
pub fn entity_key(data: &[u8]) {
    if let Some(values) = layout::decode_entity_key(data) {
        assert_eq!(layout::entity_key(&values), data);
    }
}

/// A WIT batch built from the bytes (row count, columns of any type with
/// any buffers, validity or none) lifted against a schema from the bytes:
/// it is refused with an error or becomes a batch of exactly that schema.
pub fn guest_output(data: &[u8]) {
    let mut bytes = Bytes(data);
    let fields = bytes.schema(4);
    let rows = usize::from(bytes.u8() % 17);
    let num_rows = if bytes.u8() % 8 == 0 {
        u32::from(bytes.u8())
    } else {
        rows as u32
    };
    let columns = (0..fields.len() + usize::from(bytes.u8() % 4 == 0))
        .map(|i| {
            let len = usize::from(bytes.u8() % 20);
            let values = match bytes.feature_type() {
                FeatureType::List(item) => {
                    let offsets = bytes.take(len).iter().map(|b| i32::from(*b as i8)).collect();
                    let count = usize::from(bytes.u8() % 20);
                    wit::Values::List(wit::ListValues {
                        offsets,
                        elements: scalar_values(&mut bytes, item, count),
                    })
                }
                FeatureType::Vector(_) => wit::Values::Vector(
                    bytes
                        .take(len * 4)
                        .chunks(4)
                        .map(|c| f32::from_le_bytes(pad(c)))
                        .collect(),
                ),
                scalar @ (FeatureType::Bool
                | FeatureType::Int64
                | FeatureType::Float32
                | FeatureType::Float64
                | FeatureType::Utf8
                | FeatureType::Timestamp) => wit::Values::Scalar(scalar_values(
                    &mut bytes,
                    scalar.scalar().expect("lists and vectors are above"),
                    len,
                )),
            };
            let validity = match bytes.u8() % 2 {
                0 => {
                    let validity_len = usize::from(bytes.u8() % 4);
                    Some(bytes.take(validity_len).to_vec())
                }
                _ => None,
            };
            let name = match fields.get(i) {
                Some(f) if bytes.u8() % 8 != 0 => f.name.clone(),
                _ => "other".to_string(),
            };
            wit::Column { name, values, validity }
        })
        .collect();
    let schema = arrow_schema(&fields);
    if let Ok(batch) = wit_codec::from_wit(wit::Batch { num_rows, columns }, &fields, &schema, rows) {
        assert_eq!(batch.schema(), schema);
        assert_eq!(batch.num_rows(), rows);
    }
}

/// `len` values of `scalar` from the bytes, any of them malformed.
fn scalar_values(bytes: &mut Bytes<'_>, scalar: Scalar, len: usize) -> wit::ScalarValues {
    match scalar {
        Scalar::Bool => wit::ScalarValues::Boolean(bytes.take(len).to_vec()),
        Scalar::Int64 => wit::ScalarValues::Int64(bytes.take(len).iter().map(|b| i64::from(*b)).collect()),
        Scalar::Float32 => wit::ScalarValues::Float32(
            bytes
                .take(len * 4)
                .chunks(4)
                .map(|c| f32::from_le_bytes(pad(c)))
                .collect(),
        ),
        Scalar::Float64 => wit::ScalarValues::Float64(
            bytes
                .take(len * 8)
                .chunks(8)
                .map(|c| f64::from_le_bytes(pad(c)))
                .collect(),
        ),
        Scalar::Utf8 => {
            let offsets = bytes.take(len).iter().map(|b| i32::from(*b as i8)).collect();
            let text_len = usize::from(bytes.u8() % 32);
            wit::ScalarValues::Utf8(wit::Utf8Values {
                offsets,
                bytes: bytes.take(text_len).to_vec(),
            })
        }
        Scalar::Timestamp => {
            wit::ScalarValues::Timestamp(bytes.take(len).iter().map(|b| i64::from(*b) << 40).collect())
        }
    }
}

fn pad<const N: usize>(chunk: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out[..chunk.len()].copy_from_slice(chunk);
    out
}

/// `skewless.toml` text: parsed or refused with a located error.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(error) = crate::repo::Repo::parse(Path::new("/repo"), Path::new("/repo/skewless.toml"), text) {
        assert!(error.to_string().starts_with("/repo/skewless.toml"), "{error}");
    }
}

#[cfg(test)]
mod replay {
    //! Every input checked in under `fuzz/corpus/TARGET/` and
    //! `fuzz/crashes/TARGET/` (found crashes, kept as regressions), run
    //! through its target as an ordinary test.

    use std::path::PathBuf;

    fn replay(target: &str, run: fn(&[u8])) {
        let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
        let mut count = 0;
        for folder in ["corpus", "crashes"] {
            let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let data = std::fs::read(&path).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(outcome.is_ok(), "{target}: {} fails", path.display());
                count += 1;
            }
        }
        assert!(count > 0, "no corpus checked in for {target} under {}", fuzz.display());
    }

    #[test]
    fn stored_row() {
        replay("stored_row", super::stored_row);
    }

    #[test]
    fn entity_key() {
        replay("entity_key", super::entity_key);
    }

    #[test]
    fn guest_output() {
        replay("guest_output", super::guest_output);
    }

    #[test]
    fn config() {
        replay("config", super::config);
    }
}
