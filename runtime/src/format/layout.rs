//! The on-disk layout of feature values: one comment, one module, one
//! encode/decode pair for each thing stored.
//!
//! ```text
//! history key := view_id u32 BE | entity key | bucket u64 BE
//! latest key  := view_id u32 BE | entity key
//! entity key  := for each join key, in declared order:
//!                  int64: 0x01 | value as u64 BE with the sign bit flipped
//!                  utf8:  0x02 | length u32 BE | bytes
//! bucket      := floor(event_time / bucket_micros) as u64 BE, sign bit flipped
//!
//! row         := event_time i64 LE | created i64 LE | digest_id u32 LE
//!                | validity: ceil(features / 8) bytes, bit i set = feature i present
//!                | each present feature, in the view's stored schema order:
//!                    scalar | list | vector
//! scalar      := bool 1 byte | int64, timestamp 8 LE | float32 4 LE
//!                | float64 8 LE (raw IEEE bits) | utf8 length u32 LE + bytes
//! list        := element count u32 LE | each element as a scalar (no nulls)
//! vector      := dimension (from the schema) float32 4 LE, finite
//! block       := row count u32 LE | rows
//! ```
//!
//! Invariants (enforced by [`merge_block`] and the writer in `store`):
//! 1. A history block holds exactly the offline rows of one (view, entity)
//!    whose event time falls in its bucket.
//! 2. Rows in a block are sorted by (event_time, created) and no two share
//!    that pair: writing a row with an existing pair replaces it, which is
//!    what makes a backfill idempotent.
//! 3. `latest[view, entity]` is the row with the greatest
//!    (event_time, created) of every row written online. Backfill writes
//!    both sides, so after backfills alone it is the newest history row;
//!    a push `to` only one side (Feast's `online` / `offline`) writes only
//!    that table, as it does in Feast.
//!
//! Flipping the sign bit makes byte order equal numeric order, so a reverse
//! range scan from `bucket(t)` finds the newest block at or before `t` in one
//! B-tree seek. Blocks of rows (one entry per entity per bucket rather than
//! one per row) keep the number of B-tree entries, and so backfill cost, low.

use crate::types::{FeatureType, FieldSpec, Scalar};

/// Where each row header field sits: `event_time i64 LE | created i64 LE |
/// digest_id u32 LE`, then the validity bitmap at [`ROW_HEADER`].
const EVENT_TIME_AT: usize = 0;
const CREATED_AT: usize = EVENT_TIME_AT + size_of::<i64>();
const DIGEST_ID_AT: usize = CREATED_AT + size_of::<i64>();
/// Bytes of a row before its validity bitmap.
pub(crate) const ROW_HEADER: usize = DIGEST_ID_AT + size_of::<u32>();
// The layout comment above is the format: these offsets must agree with it.
const _: () = assert!(CREATED_AT == 8 && DIGEST_ID_AT == 16 && ROW_HEADER == 20);

/// The tag before each join-key value in an entity key.
const INT_KEY_TAG: u8 = 0x01;
const STR_KEY_TAG: u8 = 0x02;
/// Bytes of an entity-key part: a tag, then the value (`push_int_key`,
/// `push_str_key`).
const INT_KEY_LEN: usize = 1 + size_of::<u64>();
const STR_KEY_HEADER: usize = 1 + size_of::<u32>();
/// `view_id` before the entity key; `bucket` after it in history keys.
const VIEW_ID_LEN: usize = size_of::<u32>();
const BUCKET_LEN: usize = size_of::<u64>();
const _: () = assert!(INT_KEY_LEN == 9 && STR_KEY_HEADER == 5 && VIEW_ID_LEN + BUCKET_LEN == 12);

/// The default history bucket: one day of event time.
pub const DEFAULT_BUCKET_MICROS: i64 = 86_400 * 1_000_000;

/// A join-key value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyValue {
    /// An int64 join key.
    Int64(i64),
    /// A utf8 join key.
    Utf8(String),
}

impl std::fmt::Display for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyValue::Int64(v) => write!(f, "{v}"),
            KeyValue::Utf8(v) => write!(f, "{v:?}"),
        }
    }
}

#[inline]
fn flip(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

#[inline]
fn unflip(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// Appends an int64 join key to an entity key.
#[inline]
pub fn push_int_key(out: &mut Vec<u8>, value: i64) {
    out.push(INT_KEY_TAG);
    out.extend_from_slice(&flip(value));
}

/// Appends a utf8 join key to an entity key.
#[inline]
pub fn push_str_key(out: &mut Vec<u8>, value: &str) {
    out.push(STR_KEY_TAG);
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// Encodes an entity key from its join-key values.
pub fn entity_key(values: &[KeyValue]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * INT_KEY_LEN);
    for value in values {
        match value {
            KeyValue::Int64(v) => push_int_key(&mut out, *v),
            KeyValue::Utf8(s) => push_str_key(&mut out, s),
        }
    }
    out
}

/// Decodes an entity key; `None` if the bytes are not one.
pub fn decode_entity_key(mut bytes: &[u8]) -> Option<Vec<KeyValue>> {
    let mut out = Vec::new();
    while let Some((&tag, rest)) = bytes.split_first() {
        match tag {
            INT_KEY_TAG => {
                let value = INT_KEY_LEN - 1;
                out.push(KeyValue::Int64(unflip(rest.get(..value)?.try_into().ok()?)));
                bytes = &rest[value..];
            }
            STR_KEY_TAG => {
                let header = STR_KEY_HEADER - 1;
                let len = u32::from_be_bytes(rest.get(..header)?.try_into().ok()?) as usize;
                let end = header.checked_add(len)?;
                let text = std::str::from_utf8(rest.get(header..end)?).ok()?;
                out.push(KeyValue::Utf8(text.to_string()));
                bytes = &rest[end..];
            }
            _ => return None,
        }
    }
    Some(out)
}

/// `view_id | entity key`: the latest-value key, and the history key prefix.
pub fn latest_key(view_id: u32, entity_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VIEW_ID_LEN + entity_key.len() + BUCKET_LEN);
    out.extend_from_slice(&view_id.to_be_bytes());
    out.extend_from_slice(entity_key);
    out
}

/// `view_id | entity key | bucket`.
pub fn history_key(view_id: u32, entity_key: &[u8], bucket: i64) -> Vec<u8> {
    let mut out = latest_key(view_id, entity_key);
    out.extend_from_slice(&flip(bucket));
    out
}

/// Splits a history key into (view id, entity key, bucket).
pub fn split_history_key(key: &[u8]) -> Option<(u32, &[u8], i64)> {
    if key.len() < VIEW_ID_LEN + BUCKET_LEN {
        return None;
    }
    let view_id = u32::from_be_bytes(key[..VIEW_ID_LEN].try_into().ok()?);
    let bucket_at = key.len() - BUCKET_LEN;
    let bucket = unflip(key[bucket_at..].try_into().ok()?);
    Some((view_id, &key[VIEW_ID_LEN..bucket_at], bucket))
}

/// The bucket an event time falls in.
#[inline]
pub fn bucket_of(event_time: i64, bucket_micros: i64) -> i64 {
    event_time.div_euclid(bucket_micros)
}

/// Writes one row. `values` yields each feature's value in schema order.
pub struct RowWriter<'a> {
    out: &'a mut Vec<u8>,
    validity_at: usize,
    index: usize,
}

impl<'a> RowWriter<'a> {
    /// Starts a row of `features` features.
    pub fn start(out: &'a mut Vec<u8>, event_time: i64, created: i64, digest_id: u32, features: usize) -> Self {
        out.extend_from_slice(&event_time.to_le_bytes());
        out.extend_from_slice(&created.to_le_bytes());
        out.extend_from_slice(&digest_id.to_le_bytes());
        let validity_at = out.len();
        out.resize(validity_at + features.div_ceil(8), 0);
        RowWriter {
            out,
            validity_at,
            index: 0,
        }
    }

    /// Starts the values of a row without its header (an aggregation
    /// event or state: [`crate::aggregate`]'s layout).
    pub fn values_only(out: &'a mut Vec<u8>, features: usize) -> Self {
        let validity_at = out.len();
        out.resize(validity_at + features.div_ceil(8), 0);
        RowWriter {
            out,
            validity_at,
            index: 0,
        }
    }

    #[inline]
    fn present(&mut self) {
        self.out[self.validity_at + self.index / 8] |= 1 << (self.index % 8);
        self.index += 1;
    }

    /// The next feature is null.
    #[inline]
    pub fn null(&mut self) {
        self.index += 1;
    }

    /// The next feature is a scalar: write it with the returned writer.
    #[inline]
    pub fn scalar(&mut self) -> ItemWriter<'_> {
        self.present();
        ItemWriter { out: self.out }
    }

    /// The next feature is a list of `count` elements: write each with the
    /// returned writer.
    #[inline]
    pub fn list(&mut self, count: usize) -> ItemWriter<'_> {
        self.present();
        self.out.extend_from_slice(&(count as u32).to_le_bytes());
        ItemWriter { out: self.out }
    }

    /// The next feature is a vector (its dimension is the schema's).
    #[inline]
    pub fn vector(&mut self, components: &[f32]) {
        self.present();
        for v in components {
            self.out.extend_from_slice(&v.to_bits().to_le_bytes());
        }
    }

    /// The next feature is a bool.
    #[inline]
    pub fn bool(&mut self, v: bool) {
        self.scalar().bool(v)
    }

    /// The next feature is an int64 or a timestamp.
    #[inline]
    pub fn i64(&mut self, v: i64) {
        self.scalar().i64(v)
    }

    /// The next feature is a float32.
    #[inline]
    pub fn f32(&mut self, v: f32) {
        self.scalar().f32(v)
    }

    /// The next feature is a float64.
    #[inline]
    pub fn f64(&mut self, v: f64) {
        self.scalar().f64(v)
    }

    /// The next feature is a string.
    #[inline]
    pub fn str(&mut self, v: &str) {
        self.scalar().str(v)
    }
}

/// Writes scalars in their encoding: a scalar feature, or a list's elements.
pub struct ItemWriter<'a> {
    out: &'a mut Vec<u8>,
}

impl ItemWriter<'_> {
    /// A bool.
    #[inline]
    pub fn bool(&mut self, v: bool) {
        self.out.push(v as u8);
    }

    /// An int64 or a timestamp.
    #[inline]
    pub fn i64(&mut self, v: i64) {
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// A float32, by its bits.
    #[inline]
    pub fn f32(&mut self, v: f32) {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    /// A float64, by its bits.
    #[inline]
    pub fn f64(&mut self, v: f64) {
        self.out.extend_from_slice(&v.to_bits().to_le_bytes());
    }

    /// A string.
    #[inline]
    pub fn str(&mut self, v: &str) {
        self.out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        self.out.extend_from_slice(v.as_bytes());
    }
}

/// A row's header fields, read without decoding its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowHeader {
    /// Event time, microseconds UTC.
    pub event_time: i64,
    /// Created time, microseconds UTC (0 when the source has none).
    pub created: i64,
    /// Id of the digest of the transform that produced the row.
    pub digest_id: u32,
}

/// A stored row that does not fit its schema: the store is damaged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored row is malformed ({0}); the store file is damaged: restore it or rebuild with `skewless backfill`")]
pub struct CorruptRow(pub &'static str);

pub(crate) fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Result<&'b [u8], CorruptRow> {
    if bytes.len() < n {
        return Err(CorruptRow("truncated"));
    }
    let (head, rest) = bytes.split_at(n);
    *bytes = rest;
    Ok(head)
}

/// Reads a row's header.
pub fn row_header(row: &[u8]) -> Result<RowHeader, CorruptRow> {
    if row.len() < ROW_HEADER {
        return Err(CorruptRow("row header truncated"));
    }
    Ok(RowHeader {
        event_time: i64::from_le_bytes(row[EVENT_TIME_AT..CREATED_AT].try_into().expect("8 bytes")),
        created: i64::from_le_bytes(row[CREATED_AT..DIGEST_ID_AT].try_into().expect("8 bytes")),
        digest_id: u32::from_le_bytes(row[DIGEST_ID_AT..ROW_HEADER].try_into().expect("4 bytes")),
    })
}

/// The length of the row at the start of `bytes`.
pub fn row_len(bytes: &[u8], schema: &[FieldSpec]) -> Result<usize, CorruptRow> {
    let mut rest = bytes;
    take(&mut rest, ROW_HEADER)?;
    let validity = take(&mut rest, schema.len().div_ceil(8))?;
    for (i, field) in schema.iter().enumerate() {
        if validity[i / 8] & (1 << (i % 8)) == 0 {
            continue;
        }
        match field.data_type.scalar() {
            Some(scalar) => skip_scalar(&mut rest, scalar)?,
            None => match field.data_type {
                FeatureType::List(item) => {
                    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes"));
                    for _ in 0..count {
                        skip_scalar(&mut rest, item)?;
                    }
                }
                FeatureType::Vector(dimension) => {
                    take(&mut rest, dimension as usize * 4)?;
                }
                FeatureType::Bool
                | FeatureType::Int64
                | FeatureType::Float32
                | FeatureType::Float64
                | FeatureType::Utf8
                | FeatureType::Timestamp => unreachable!("scalars are skipped above"),
            },
        }
    }
    Ok(bytes.len() - rest.len())
}

/// Advances `rest` past one scalar in its encoding.
fn skip_scalar(rest: &mut &[u8], scalar: Scalar) -> Result<(), CorruptRow> {
    match scalar {
        Scalar::Bool => take(rest, 1)?,
        Scalar::Float32 => take(rest, 4)?,
        Scalar::Int64 | Scalar::Float64 | Scalar::Timestamp => take(rest, 8)?,
        Scalar::Utf8 => {
            let len = u32::from_le_bytes(take(rest, 4)?.try_into().expect("4 bytes")) as usize;
            take(rest, len)?
        }
    };
    Ok(())
}

/// The newest row of a block with event time `<= at` (rows are sorted by
/// (event_time, created): invariant 2), found by one forward scan without
/// collecting the rows.
pub fn newest_row_at<'b>(block: &'b [u8], schema: &[FieldSpec], at: i64) -> Result<Option<&'b [u8]>, CorruptRow> {
    let mut rest = block;
    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
    let mut newest = None;
    for _ in 0..count {
        let len = row_len(rest, schema)?;
        let row = take(&mut rest, len)?;
        if row_header(row)?.event_time > at {
            break;
        }
        newest = Some(row);
    }
    Ok(newest)
}

/// Splits a block into its rows.
pub fn block_rows<'b>(block: &'b [u8], schema: &[FieldSpec]) -> Result<Vec<&'b [u8]>, CorruptRow> {
    let mut rest = block;
    let count = u32::from_le_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
    // The count is read from the file: a damaged one must not reserve
    // gigabytes (found by fuzzing). No row is shorter than its header.
    let mut rows = Vec::with_capacity(count.min(rest.len() / ROW_HEADER));
    for _ in 0..count {
        let len = row_len(rest, schema)?;
        rows.push(take(&mut rest, len)?);
    }
    if !rest.is_empty() {
        return Err(CorruptRow("trailing bytes after the last row of a block"));
    }
    Ok(rows)
}

/// Merges `new` rows (sorted by (event_time, created); on equal pairs the
/// last one wins) into an existing block, enforcing invariant 2, and
/// writes the merged block to `out`. `added` sees each new row the block
/// did not already hold byte for byte (what the statistics count).
pub fn merge_block<'n>(
    existing: Option<&[u8]>,
    new: &[&'n [u8]],
    schema: &[FieldSpec],
    out: &mut Vec<u8>,
    mut added: impl FnMut(&'n [u8]),
) -> Result<(), CorruptRow> {
    let old = match existing {
        Some(block) => block_rows(block, schema)?,
        None => Vec::new(),
    };
    let pair = |row: &[u8]| -> Result<(i64, i64), CorruptRow> {
        let h = row_header(row)?;
        Ok((h.event_time, h.created))
    };
    out.clear();
    out.extend_from_slice(&0u32.to_le_bytes());
    let mut count = 0u32;
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        // Among new rows with the same pair, keep the last.
        while j + 1 < new.len() && pair(new[j])? == pair(new[j + 1])? {
            j += 1;
        }
        let take_new = match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) => {
                let (po, pn) = (pair(o)?, pair(n)?);
                if po == pn {
                    i += 1; // replaced by the new row
                    if o != n {
                        added(n);
                    }
                } else if pn < po {
                    added(n);
                }
                pn <= po
            }
            (None, Some(n)) => {
                added(n);
                true
            }
            (Some(_), None) => false,
            (None, None) => unreachable!("loop condition"),
        };
        if take_new {
            out.extend_from_slice(new[j]);
            j += 1;
        } else {
            out.extend_from_slice(old[i]);
            i += 1;
        }
        count += 1;
    }
    out[..4].copy_from_slice(&count.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::value::{Value, decode_values};

    fn schema() -> Vec<FieldSpec> {
        vec![
            FieldSpec {
                name: "a".into(),
                data_type: FeatureType::Float64,
                nullable: true,
            },
            FieldSpec {
                name: "b".into(),
                data_type: FeatureType::Utf8,
                nullable: true,
            },
        ]
    }

    fn row(et: i64, created: i64, a: Option<f64>, b: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = RowWriter::start(&mut out, et, created, 1, 2);
        match a {
            Some(v) => w.f64(v),
            None => w.null(),
        }
        w.str(b);
        out
    }

    #[test]
    fn keys_sort_numerically() {
        let keys: Vec<_> = [-5i64, -1, 0, 1, 1 << 40]
            .iter()
            .map(|v| history_key(1, &entity_key(&[KeyValue::Int64(7)]), *v))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        let (view, entity, bucket) = split_history_key(&keys[0]).unwrap();
        assert_eq!((view, bucket), (1, -5));
        assert_eq!(decode_entity_key(entity), Some(vec![KeyValue::Int64(7)]));
    }

    #[test]
    fn entity_keys_round_trip() {
        let key = vec![KeyValue::Utf8("card-ü".into()), KeyValue::Int64(-3)];
        assert_eq!(decode_entity_key(&entity_key(&key)), Some(key));
        assert_eq!(decode_entity_key(&[0x09]), None);
    }

    #[test]
    fn rows_round_trip_with_nulls() {
        let r = row(10, 20, None, "héllo");
        assert_eq!(row_len(&r, &schema()).unwrap(), r.len());
        assert_eq!(
            decode_values(&r, &schema()).unwrap(),
            vec![Value::Null, Value::Utf8("héllo".into())]
        );
        assert_eq!(
            row_header(&r).unwrap(),
            RowHeader {
                event_time: 10,
                created: 20,
                digest_id: 1
            }
        );
        assert!(decode_values(&r[..r.len() - 1], &schema()).is_err());
    }

    /// Regression (fuzz/crashes/stored_row): a block whose row count says
    /// billions reserved memory for them all and aborted the process.
    #[test]
    fn a_damaged_row_count_is_an_error_not_an_allocation() {
        let block = [0xbb, 0xbb, 0xbb, 0xbb, 0xbb];
        assert!(block_rows(&block, &schema()).is_err());
        assert!(newest_row_at(&block, &schema(), i64::MAX).is_err());
        let mut out = Vec::new();
        assert!(merge_block(Some(&block), &[], &schema(), &mut out, |_| {}).is_err());
    }

    #[test]
    fn merge_replaces_equal_pairs_and_keeps_order() {
        let (r1, r2, r3) = (
            row(1, 0, Some(1.0), "a"),
            row(2, 0, Some(2.0), "b"),
            row(3, 0, Some(3.0), "c"),
        );
        let mut first = Vec::new();
        merge_block(None, &[&r1, &r3], &schema(), &mut first, |_| {}).unwrap();
        let r3b = row(3, 0, Some(33.0), "c2");
        let mut second = Vec::new();
        merge_block(Some(&first), &[&r2, &r3b], &schema(), &mut second, |_| {}).unwrap();
        let rows = block_rows(&second, &schema()).unwrap();
        assert_eq!(rows, vec![&r1[..], &r2[..], &r3b[..]]);
        // Idempotent: merging the same rows again changes nothing.
        let mut third = Vec::new();
        merge_block(Some(&second), &[&r2, &r3b], &schema(), &mut third, |_| {}).unwrap();
        assert_eq!(second, third);
    }
}
