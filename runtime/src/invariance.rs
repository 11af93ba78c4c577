//! Batch invariance, checked: a transform's output for a row must depend on
//! that row alone, not on the other rows of its batch. Online reads call a
//! transform with one row, backfill with 65,536: a guest that looks at its
//! batch (its size, a mean over it) gives one value in training and another
//! in serving, which is the skew this product exists to rule out.
//!
//! Wasm cannot stop a guest from reading its whole batch, so the host checks
//! it instead ([`probe`]): the same rows run as one batch, one row at a time,
//! split at random points, and as one batch again (a fresh instance every
//! call, so the last also shows state kept across calls). Every output value
//! (by its bits) must agree, and so must which rows fail. `apply` refuses a view whose
//! transform fails the probe unless told otherwise, and `verify` probes again.
//!
//! Rows come from the view's file source when it has one ([`sample`]),
//! else they are generated from the declared input types: edge values first
//! (nulls, zeros, extremes, NaN, infinities, subnormals, empty and non-ASCII
//! strings, pre-1970 times), then seeded random values.

use std::fmt;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BooleanArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::error::TransformErrorKind;
use crate::format::value::{Value, ValueBuilder};
use crate::repo::{Repo, View};
use crate::source::{self, SourceError};
pub use crate::store::registry::{Arrangement, Dependence};
use crate::transform::{Transform, TransformOutput};
use crate::types::{FeatureType, FieldSpec, Scalar, UTC};

/// Rows a probe runs (a transform is called once per row, plus a few batches).
pub const PROBE_ROWS: usize = 200;

/// Random split points per probe.
const SPLITS: usize = 3;

/// Time limit of a probe's one-row calls (or the view's, if shorter).
const PROBE_ROW_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(100);

/// One-row calls that may time out before the rest are left out.
const PROBE_MAX_TIMEOUTS: usize = 3;

/// How the probe's rows were obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SampleOrigin {
    /// Read from the view's file source.
    File(String),
    /// Generated from the transform's declared input types.
    Generated,
}

/// What a passed probe did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// Rows compared.
    pub rows: usize,
    /// Rows left out because they fail the whole batch on their own (such a
    /// row fails every batch it is in, so it proves nothing either way), or
    /// were not run after too many one-row calls timed out.
    pub failing_alone: usize,
    /// Where the split runs cut the rows.
    pub splits: Vec<usize>,
    /// Where the rows came from.
    pub origin: SampleOrigin,
}

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = match &self.origin {
            SampleOrigin::File(path) => format!("from {path}"),
            SampleOrigin::Generated => "generated".to_string(),
        };
        write!(
            f,
            "{} rows {origin}: one batch, one row at a time, split at {:?}, and the batch again agree",
            self.rows, self.splits
        )?;
        if self.failing_alone > 0 {
            write!(
                f,
                " ({} rows left out: they fail alone, or one-row calls timed out)",
                self.failing_alone
            )?;
        }
        Ok(())
    }
}

/// The rows to probe `transform` with: read from `view`'s file source (or
/// its push source's batch source) when there is one and it exists, else
/// generated.
pub fn sample(
    repo: &Repo,
    view: &View,
    transform: &Transform,
    seed: u64,
) -> Result<(RecordBatch, SampleOrigin), SourceError> {
    let inputs = &transform.description().inputs;
    // A source file not there yet (it may come later) is no reason to probe less.
    if let Some(file) = repo.file_source(view).filter(|f| f.present()) {
        let path = &file.path;
        let (mut opened, _) = source::open_source(file, inputs, None)?;
        if let Some(first) = opened.batches.next().transpose()?
            && first.num_rows() > 0
        {
            // An even spread over the first batch read.
            let step = first.num_rows().div_ceil(PROBE_ROWS).max(1);
            let rows = arrow_array::UInt32Array::from_iter_values((0..first.num_rows() as u32).step_by(step));
            let picked = arrow_select::take::take_record_batch(&first, &rows).expect("rows are in range");
            return Ok((picked, SampleOrigin::File(path.display().to_string())));
        }
    }
    Ok((generated(inputs, PROBE_ROWS, seed), SampleOrigin::Generated))
}

/// Runs `transform` on `rows` in every arrangement and compares; `seed`
/// picks the split points. A call that fails where the same rows succeeded
/// in another arrangement is a difference too.
pub fn probe(
    transform: &Transform,
    rows: &RecordBatch,
    origin: SampleOrigin,
    seed: u64,
) -> Result<Probed, Box<Dependence>> {
    let n = rows.num_rows();
    // One row at a time; a row that fails its call alone fails any batch.
    // A row that runs past [`PROBE_ROW_TIMEOUT`] counts as failing (a guest
    // that loops on some input would otherwise hold `apply` for its whole
    // time limit per row), and after [`PROBE_MAX_TIMEOUTS`] of them the
    // rows not yet run are left out too.
    let row_limit = PROBE_ROW_TIMEOUT.min(transform.limits().timeout());
    let (mut alone, mut keep, mut timeouts) = (Vec::with_capacity(n), Vec::with_capacity(n), 0);
    for row in 0..n {
        match transform.run_within(&rows.slice(row, 1), row_limit) {
            Ok(output) => {
                alone.push(output);
                keep.push(row as u32);
            }
            Err(error) if matches!(error.kind, TransformErrorKind::Timeout { .. }) => {
                timeouts += 1;
                if timeouts == PROBE_MAX_TIMEOUTS {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let failing_alone = n - keep.len();
    let rows = if failing_alone == 0 {
        rows.clone()
    } else {
        arrow_select::take::take_record_batch(rows, &arrow_array::UInt32Array::from(keep)).expect("rows are in range")
    };
    let n = rows.num_rows();
    let input = |row: usize| describe_row(&rows, row);
    let dependence = |row: usize, output: String, together: String, apart: String, how: Arrangement| {
        Box::new(Dependence {
            view: transform.view().to_string(),
            row,
            input: input(row),
            output,
            together,
            apart,
            how,
        })
    };
    if n == 0 {
        return Ok(Probed {
            rows: 0,
            failing_alone,
            splits: vec![],
            origin,
        });
    }

    let together = match transform.run(&rows) {
        Ok(output) => output,
        Err(error) => {
            return Err(dependence(
                0,
                "the call".into(),
                format!("a failure ({})", error.kind),
                "a success for every row".into(),
                Arrangement::OneRowAtATime,
            ));
        }
    };
    for (row, one) in alone.iter().enumerate() {
        if let Some((output, a, b)) = first_difference(&together, row, one, 0) {
            return Err(dependence(row, output, a, b, Arrangement::OneRowAtATime));
        }
    }

    let mut rng = crate::sandbox::SplitMix64(seed);
    let mut splits: Vec<usize> = (0..SPLITS.min(n.saturating_sub(1)))
        .map(|_| 1 + (rng.next() % (n as u64 - 1)) as usize)
        .collect();
    splits.sort_unstable();
    splits.dedup();
    let how = Arrangement::Split(splits.clone());
    let mut start = 0;
    for end in splits.iter().copied().chain([n]) {
        let part = match transform.run(&rows.slice(start, end - start)) {
            Ok(part) => part,
            Err(error) => {
                return Err(dependence(
                    start,
                    "the call".into(),
                    "a success".into(),
                    format!("a failure ({})", error.kind),
                    how.clone(),
                ));
            }
        };
        for row in start..end {
            if let Some((output, a, b)) = first_difference(&together, row, &part, row - start) {
                return Err(dependence(row, output, a, b, how.clone()));
            }
        }
        start = end;
    }

    let again = transform.run(&rows).map_err(|error| {
        dependence(
            0,
            "the call".into(),
            "a success".into(),
            format!("a failure ({})", error.kind),
            Arrangement::Again,
        )
    })?;
    for row in 0..n {
        if let Some((output, a, b)) = first_difference(&together, row, &again, row) {
            return Err(dependence(row, output, a, b, Arrangement::Again));
        }
    }
    Ok(Probed {
        rows: n,
        failing_alone,
        splits,
        origin,
    })
}

/// The first output (column or row error) where row `a_row` of `a` and row
/// `b_row` of `b` differ, with both values as text. Of row errors, only
/// whether the row failed is compared: a message may rightly name the row's
/// place in its batch.
fn first_difference(
    a: &TransformOutput,
    a_row: usize,
    b: &TransformOutput,
    b_row: usize,
) -> Option<(String, String, String)> {
    let error = |output: &TransformOutput, row: usize| {
        output
            .row_errors
            .iter()
            .find(|e| e.row == row)
            .map(|e| e.message.clone())
    };
    let (ea, eb) = (error(a, a_row), error(b, b_row));
    if ea.is_some() != eb.is_some() {
        let show = |e: Option<String>| e.map_or("no error".to_string(), |m| format!("error {m:?}"));
        return Some(("the row error".into(), show(ea), show(eb)));
    }
    for (index, field) in a.batch.schema().fields().iter().enumerate() {
        let (x, y) = (a.batch.column(index), b.batch.column(index));
        if codec::value_bits(x.as_ref(), a_row) != codec::value_bits(y.as_ref(), b_row) {
            return Some((
                format!("`{}`", field.name()),
                codec::value_text(x.as_ref(), a_row),
                codec::value_text(y.as_ref(), b_row),
            ));
        }
    }
    None
}

fn describe_row(rows: &RecordBatch, row: usize) -> String {
    rows.schema()
        .fields()
        .iter()
        .zip(rows.columns())
        .map(|(field, column)| format!("{}={}", field.name(), codec::value_text(column.as_ref(), row)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `rows` rows of `inputs`: each column starts with its type's edge values
/// (at a different offset per column, so edges meet in different
/// combinations), then seeded random values, with some nulls throughout.
pub fn generated(inputs: &[FieldSpec], rows: usize, seed: u64) -> RecordBatch {
    let mut rng = crate::sandbox::SplitMix64(seed);
    let columns: Vec<(String, ArrayRef)> = inputs
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let array: ArrayRef = match field.data_type.scalar() {
                Some(scalar) => scalar_column(scalar, rows, index, &mut rng),
                None => match field.data_type {
                    FeatureType::List(item) => list_column(item, rows, index, &mut rng),
                    FeatureType::Vector(dimension) => vector_column(dimension, rows, index, &mut rng),
                    FeatureType::Bool
                    | FeatureType::Int64
                    | FeatureType::Float32
                    | FeatureType::Float64
                    | FeatureType::Utf8
                    | FeatureType::Timestamp => unreachable!("scalars are generated above"),
                },
            };
            (field.name.clone(), array)
        })
        .collect();
    if columns.is_empty() {
        return RecordBatch::try_new_with_options(
            Arc::new(arrow_schema::Schema::empty()),
            vec![],
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("an empty schema with a row count");
    }
    RecordBatch::try_from_iter(columns).expect("columns of one length")
}

/// One generated scalar column: see [`edge_column`].
fn scalar_column(scalar: Scalar, rows: usize, index: usize, rng: &mut crate::sandbox::SplitMix64) -> ArrayRef {
    match scalar {
        Scalar::Bool => Arc::new(BooleanArray::from(edge_column(rows, index, rng, &[true, false], |r| {
            r % 2 == 0
        }))),
        Scalar::Int64 => Arc::new(Int64Array::from(edge_column(
            rows,
            index,
            rng,
            &[0, 1, -1, 2, i64::MAX, i64::MIN, 1_000_000, -1_000_000],
            |r| (r % 20_001) as i64 - 10_000,
        ))),
        Scalar::Float64 => Arc::new(Float64Array::from(edge_column(
            rows,
            index,
            rng,
            &[
                0.0,
                -0.0,
                1.0,
                -1.5,
                f64::NAN,
                f64::from_bits(0xfff8_0000_0000_0001),
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::MIN_POSITIVE,
                f64::from_bits(1),
                f64::MAX,
                f64::MIN,
            ],
            |r| (r % 2_000_001) as f64 / 1000.0 - 1000.0,
        ))),
        Scalar::Float32 => Arc::new(Float32Array::from(edge_column(
            rows,
            index,
            rng,
            &[
                0.0,
                -0.0,
                1.0,
                -1.5,
                f32::NAN,
                f32::from_bits(0xffc0_0001),
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MIN_POSITIVE,
                f32::from_bits(1),
                f32::MAX,
                f32::MIN,
            ],
            |r| (r % 2_000_001) as f32 / 1000.0 - 1000.0,
        ))),
        Scalar::Utf8 => {
            let long = "x".repeat(300);
            let words: Vec<String> = (0..1000).map(|i| format!("value-{i}")).collect();
            let edges = ["", "a", "Zürich", "日本語", " leading space", long.as_str()];
            Arc::new(StringArray::from(edge_column(rows, index, rng, &edges, |r| {
                words[(r % 1000) as usize].as_str()
            })))
        }
        Scalar::Timestamp => Arc::new(
            TimestampMicrosecondArray::from(edge_column(
                rows,
                index,
                rng,
                &[
                    0,
                    -1,
                    1_767_225_600_000_000,
                    -62_135_596_800_000_000,
                    253_402_300_799_999_999,
                ],
                |r| 1_700_000_000_000_000 + (r % 100_000_000_000_000) as i64,
            ))
            .with_timezone(UTC),
        ),
    }
}

/// One generated list column: lists of 0 to 4 non-null elements drawn from a
/// generated column of the element type, and some null lists.
fn list_column(item: Scalar, rows: usize, index: usize, rng: &mut crate::sandbox::SplitMix64) -> ArrayRef {
    let drawn = scalar_column(item, rows * 3, index, rng);
    let element = FieldSpec {
        name: "element".into(),
        data_type: item.feature_type(),
        nullable: false,
    };
    let elements = crate::format::value::decode_columns(&[drawn], &[element]).expect("typed as generated");
    let mut present = elements
        .into_iter()
        .map(|mut row| row.swap_remove(0))
        .filter(|v| !v.is_null());
    let mut builder = ValueBuilder::new(FeatureType::List(item), rows);
    for row in 0..rows {
        let r = rng.next();
        if row % 17 == index % 17 {
            builder.push_null();
            continue;
        }
        builder.push(Value::List(present.by_ref().take((r % 5) as usize).collect()));
    }
    builder.finish()
}

/// One generated vector column: edge components (zeros, tiny, huge, signed
/// zeros) in the first rows, then seeded random ones, and some null rows.
/// Components are finite: the store refuses others.
fn vector_column(dimension: u32, rows: usize, index: usize, rng: &mut crate::sandbox::SplitMix64) -> ArrayRef {
    let edges = [0.0, -0.0, 1.0, f32::MIN_POSITIVE, f32::from_bits(1), f32::MAX, f32::MIN];
    let mut builder = ValueBuilder::new(FeatureType::Vector(dimension), rows);
    for row in 0..rows {
        if row % 17 == index % 17 {
            builder.push_null();
            continue;
        }
        let components = (0..dimension as usize)
            .map(|i| {
                let r = rng.next();
                if row < edges.len() {
                    edges[(row + i) % edges.len()]
                } else {
                    (r % 2_000_001) as f32 / 1000.0 - 1000.0
                }
            })
            .collect();
        builder.push(Value::Vector(components));
    }
    builder.finish()
}

/// One generated column: `edges` twice over (from an offset of the column's
/// own, so edges of different columns meet in different rows), then `random`
/// of a fresh draw per row; a null every 17 rows (offset by the column) and
/// on about one draw in 23.
fn edge_column<T: Copy>(
    rows: usize,
    index: usize,
    rng: &mut crate::sandbox::SplitMix64,
    edges: &[T],
    random: impl Fn(u64) -> T,
) -> Vec<Option<T>> {
    (0..rows)
        .map(|row| {
            let r = rng.next();
            let value = if row < edges.len() * 2 {
                edges[(row + index * 3) % edges.len()]
            } else {
                random(r)
            };
            let null = row % 17 == index % 17 || r.is_multiple_of(23);
            (!null).then_some(value)
        })
        .collect()
}
