//! Columns as flat buffers, with typed read views and typed builders.
//!
//! The layout is the WIT contract's (and Arrow's): one values buffer per
//! column, strings as offsets plus one byte buffer, booleans and validity as
//! LSB-first bitmaps. Views borrow these buffers; builders produce them.

use crate::bitmap::{Bitmap, bitmap_get, bitmap_set, clear_tail};
use crate::{DataType, Error};

/// The values buffer of a column.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    /// Bit-packed booleans.
    Boolean(Vec<u8>),
    /// 64-bit integers.
    Int64(Vec<i64>),
    /// Single-precision floats.
    Float32(Vec<f32>),
    /// Double-precision floats.
    Float64(Vec<f64>),
    /// Strings: `offsets` (rows + 1 entries) into `bytes`.
    Utf8 {
        /// Start of each row in `bytes`, plus the end of the last row.
        offsets: Vec<i32>,
        /// All string bytes, back to back.
        bytes: Vec<u8>,
    },
    /// Microseconds since the Unix epoch, UTC.
    Timestamp(Vec<i64>),
    /// Lists: row `i` is elements `offsets[i]..offsets[i + 1]`.
    List {
        /// Start of each row in `elements`, plus the end of the last row.
        offsets: Vec<i32>,
        /// Every row's elements, back to back: scalar values, none null.
        elements: Box<Values>,
    },
    /// Vectors: row `i` is `components[i * dimension..(i + 1) * dimension]`.
    Vector {
        /// Components per row.
        dimension: u32,
        /// Every row's components, back to back (zeros under a null row).
        components: Vec<f32>,
    },
}

impl Values {
    /// The logical type of these values.
    pub fn data_type(&self) -> DataType {
        match self {
            Values::Boolean(_) => DataType::Boolean,
            Values::Int64(_) => DataType::Int64,
            Values::Float32(_) => DataType::Float32,
            Values::Float64(_) => DataType::Float64,
            Values::Utf8 { .. } => DataType::Utf8,
            Values::Timestamp(_) => DataType::Timestamp,
            Values::List { elements, .. } => DataType::List(
                (elements.data_type().scalar())
                    .expect("a list's elements are scalar values (checked when the column is made)"),
            ),
            Values::Vector { dimension, .. } => DataType::Vector(*dimension),
        }
    }
}

/// One named column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub(crate) name: String,
    pub(crate) values: Values,
    pub(crate) validity: Option<Bitmap>,
    pub(crate) len: usize,
}

impl Column {
    /// A column from its parts. For booleans the row count cannot be told
    /// from the buffer, so use [`Column::boolean`] for those.
    pub fn from_parts(name: &str, values: Values, validity: Option<Bitmap>) -> Self {
        Column::from_owned(name.to_string(), values, validity)
    }

    /// As [`Column::from_parts`], taking the name without a copy.
    ///
    /// Panics (the call fails with the message) on a list whose elements
    /// are not scalar values: the contract has no lists of lists.
    pub(crate) fn from_owned(name: String, values: Values, validity: Option<Bitmap>) -> Self {
        if let Values::List { elements, .. } = &values {
            assert!(
                !matches!(**elements, Values::List { .. } | Values::Vector { .. }),
                "column `{name}`: a list's elements must be scalar values, not lists or vectors"
            );
        }
        let len = match &values {
            Values::Boolean(bits) => bits.len() * 8,
            Values::Int64(v) | Values::Timestamp(v) => v.len(),
            Values::Float32(v) => v.len(),
            Values::Float64(v) => v.len(),
            Values::Utf8 { offsets, .. } | Values::List { offsets, .. } => offsets.len().saturating_sub(1),
            Values::Vector { dimension, components } => components.len() / (*dimension).max(1) as usize,
        };
        Column {
            name,
            values,
            validity,
            len,
        }
    }

    /// A column named `name` from a builder (or another column).
    pub fn named(name: &str, column: impl IntoColumn) -> Self {
        let (values, validity, len) = column.into_column();
        Column {
            name: name.to_string(),
            values,
            validity,
            len,
        }
    }

    /// A boolean column of `len` rows from its bit-packed values.
    pub fn boolean(name: &str, bits: Vec<u8>, len: usize, validity: Option<Bitmap>) -> Self {
        Column {
            name: name.to_string(),
            values: Values::Boolean(bits),
            validity,
            len,
        }
    }

    /// An int64 column.
    pub fn int64(name: &str, values: Vec<i64>, validity: Option<Bitmap>) -> Self {
        Column::from_parts(name, Values::Int64(values), validity)
    }

    /// A float32 column.
    pub fn float32(name: &str, values: Vec<f32>, validity: Option<Bitmap>) -> Self {
        Column::from_parts(name, Values::Float32(values), validity)
    }

    /// A float64 column.
    pub fn float64(name: &str, values: Vec<f64>, validity: Option<Bitmap>) -> Self {
        Column::from_parts(name, Values::Float64(values), validity)
    }

    /// A timestamp column (microseconds since the epoch, UTC).
    pub fn timestamp(name: &str, values: Vec<i64>, validity: Option<Bitmap>) -> Self {
        Column::from_parts(name, Values::Timestamp(values), validity)
    }

    /// A list column from its parts: row `i` is `elements[offsets[i]..offsets[i + 1]]`.
    pub fn list(name: &str, offsets: Vec<i32>, elements: Values, validity: Option<Bitmap>) -> Self {
        Column::from_parts(
            name,
            Values::List {
                offsets,
                elements: Box::new(elements),
            },
            validity,
        )
    }

    /// A utf8 column from optional strings.
    pub fn utf8<'a>(name: &str, values: impl IntoIterator<Item = Option<&'a str>>) -> Self {
        let mut builder = Utf8Builder::with_capacity(0, 0);
        for value in values {
            builder.push_option(value);
        }
        let (values, validity) = builder.finish();
        Column::from_parts(name, values, validity)
    }

    /// Column name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the column has no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The logical type.
    pub fn data_type(&self) -> DataType {
        self.values.data_type()
    }

    /// The values buffer.
    pub fn values(&self) -> &Values {
        &self.values
    }

    /// The validity bitmap (`None`: no nulls).
    pub fn validity(&self) -> Option<&[u8]> {
        self.validity.as_deref()
    }

    /// Splits the column into name, values and validity.
    pub fn into_parts(self) -> (String, Values, Option<Bitmap>) {
        (self.name, self.values, self.validity)
    }
}

/// A batch of input rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    num_rows: usize,
    columns: Vec<Column>,
}

impl Batch {
    /// A batch of `num_rows` rows.
    pub fn new(num_rows: usize, columns: Vec<Column>) -> Self {
        Batch { num_rows, columns }
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// All columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// A column by name.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    fn typed(&self, name: &str, expected: DataType) -> Result<&Column, Error> {
        let column = self
            .column(name)
            .ok_or_else(|| Error(format!("input column `{name}` is missing")))?;
        if column.data_type() != expected {
            return Err(Error(format!(
                "input column `{name}` is {}, not {}",
                column.data_type().name(),
                expected.name()
            )));
        }
        Ok(column)
    }

    /// A typed view of an int64 column.
    pub fn int64(&self, name: &str) -> Result<PrimitiveView<'_, i64>, Error> {
        let column = self.typed(name, DataType::Int64)?;
        let Values::Int64(values) = &column.values else {
            unreachable!("type checked above")
        };
        Ok(PrimitiveView {
            values,
            validity: column.validity(),
        })
    }

    /// A typed view of a timestamp column (microseconds since the epoch, UTC).
    pub fn timestamp(&self, name: &str) -> Result<PrimitiveView<'_, i64>, Error> {
        let column = self.typed(name, DataType::Timestamp)?;
        let Values::Timestamp(values) = &column.values else {
            unreachable!("type checked above")
        };
        Ok(PrimitiveView {
            values,
            validity: column.validity(),
        })
    }

    /// A typed view of a float32 column.
    pub fn float32(&self, name: &str) -> Result<PrimitiveView<'_, f32>, Error> {
        let column = self.typed(name, DataType::Float32)?;
        let Values::Float32(values) = &column.values else {
            unreachable!("type checked above")
        };
        Ok(PrimitiveView {
            values,
            validity: column.validity(),
        })
    }

    /// A typed view of a float64 column.
    pub fn float64(&self, name: &str) -> Result<PrimitiveView<'_, f64>, Error> {
        let column = self.typed(name, DataType::Float64)?;
        let Values::Float64(values) = &column.values else {
            unreachable!("type checked above")
        };
        Ok(PrimitiveView {
            values,
            validity: column.validity(),
        })
    }

    /// A typed view of a vector column.
    pub fn vector(&self, name: &str) -> Result<VectorView<'_>, Error> {
        let column = self
            .column(name)
            .ok_or_else(|| Error(format!("input column `{name}` is missing")))?;
        let Values::Vector { dimension, components } = &column.values else {
            return Err(Error(format!(
                "input column `{name}` is {}, not a vector",
                column.data_type().name()
            )));
        };
        Ok(VectorView {
            dimension: *dimension as usize,
            components,
            validity: column.validity(),
        })
    }

    /// A view of a list column: its offsets and elements.
    pub fn list(&self, name: &str) -> Result<ListView<'_>, Error> {
        let column = self
            .column(name)
            .ok_or_else(|| Error(format!("input column `{name}` is missing")))?;
        let Values::List { offsets, elements } = &column.values else {
            return Err(Error(format!(
                "input column `{name}` is {}, not a list",
                column.data_type().name()
            )));
        };
        Ok(ListView {
            offsets,
            elements,
            validity: column.validity(),
        })
    }

    /// A typed view of a boolean column.
    pub fn boolean(&self, name: &str) -> Result<BoolView<'_>, Error> {
        let column = self.typed(name, DataType::Boolean)?;
        let Values::Boolean(bits) = &column.values else {
            unreachable!("type checked above")
        };
        Ok(BoolView {
            bits,
            len: column.len,
            validity: column.validity(),
        })
    }

    /// A typed view of a utf8 column. Fails if the bytes are not UTF-8.
    pub fn utf8(&self, name: &str) -> Result<Utf8View<'_>, Error> {
        let column = self.typed(name, DataType::Utf8)?;
        let Values::Utf8 { offsets, bytes } = &column.values else {
            unreachable!("type checked above")
        };
        let text =
            std::str::from_utf8(bytes).map_err(|e| Error(format!("input column `{name}` is not valid UTF-8: {e}")))?;
        Ok(Utf8View {
            offsets,
            text,
            validity: column.validity(),
        })
    }
}

/// A read view of a vector column.
#[derive(Debug, Clone, Copy)]
pub struct VectorView<'a> {
    dimension: usize,
    components: &'a [f32],
    validity: Option<&'a [u8]>,
}

impl<'a> VectorView<'a> {
    /// Row `i`'s components, or `None` if null.
    pub fn get(&self, i: usize) -> Option<&'a [f32]> {
        if self.validity.is_some_and(|v| !bitmap_get(v, i)) {
            return None;
        }
        self.components.get(i * self.dimension..(i + 1) * self.dimension)
    }

    /// Components per row.
    pub fn dimension(&self) -> usize {
        self.dimension
    }
}

/// A read view of a list column.
#[derive(Debug, Clone, Copy)]
pub struct ListView<'a> {
    offsets: &'a [i32],
    elements: &'a Values,
    validity: Option<&'a [u8]>,
}

impl<'a> ListView<'a> {
    /// The range of row `i`'s elements in [`ListView::elements`], or `None`
    /// if the row is null.
    pub fn range(&self, i: usize) -> Option<std::ops::Range<usize>> {
        if self.validity.is_some_and(|v| !bitmap_get(v, i)) {
            return None;
        }
        Some(self.offsets[i] as usize..self.offsets[i + 1] as usize)
    }

    /// Every row's elements, back to back.
    pub fn elements(&self) -> &'a Values {
        self.elements
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds a vector column of one dimension.
#[derive(Debug, Clone)]
pub struct VectorBuilder {
    dimension: usize,
    components: Vec<f32>,
    validity: Option<Bitmap>,
    len: usize,
}

impl VectorBuilder {
    /// A builder of vectors of `dimension` components, room for `rows` rows.
    pub fn with_capacity(dimension: u32, rows: usize) -> Self {
        VectorBuilder {
            dimension: dimension as usize,
            components: Vec::with_capacity(dimension as usize * rows),
            validity: None,
            len: 0,
        }
    }

    /// Appends a vector. Panics (the call fails with this message) if it
    /// has another number of components than the builder's dimension.
    pub fn push(&mut self, components: &[f32]) {
        assert_eq!(
            components.len(),
            self.dimension,
            "a vector of {} components pushed to a builder of vector<{}>",
            components.len(),
            self.dimension
        );
        self.components.extend_from_slice(components);
        self.grow(true);
    }

    /// Appends a null vector.
    pub fn push_null(&mut self) {
        self.components.resize(self.components.len() + self.dimension, 0.0);
        self.grow(false);
    }

    fn grow(&mut self, valid: bool) {
        self.len += 1;
        match (&mut self.validity, valid) {
            (Some(validity), valid) => grow_validity(validity, self.len, valid),
            (None, false) => {
                let mut validity = crate::bitmap::all_valid(self.len - 1);
                grow_validity(&mut validity, self.len, false);
                self.validity = Some(validity);
            }
            (None, true) => {}
        }
    }
}

impl IntoColumn for VectorBuilder {
    fn into_column(self) -> (Values, Option<Bitmap>, usize) {
        let values = Values::Vector {
            dimension: self.dimension as u32,
            components: self.components,
        };
        (values, self.validity, self.len)
    }
}

/// A read view of a fixed-width column.
#[derive(Debug, Clone, Copy)]
pub struct PrimitiveView<'a, T> {
    values: &'a [T],
    validity: Option<&'a [u8]>,
}

impl<'a, T: Copy> PrimitiveView<'a, T> {
    /// Row `i`, or `None` when it is null.
    #[inline]
    pub fn get(&self, i: usize) -> Option<T> {
        if self.is_valid(i) { Some(self.values[i]) } else { None }
    }

    /// Whether row `i` is not null.
    #[inline]
    pub fn is_valid(&self, i: usize) -> bool {
        self.validity.is_none_or(|bits| bitmap_get(bits, i))
    }

    /// All value slots, nulls included (their slots hold unspecified values):
    /// the fast path for vectorized code, paired with [`Self::validity`].
    pub fn values(&self) -> &'a [T] {
        self.values
    }

    /// The validity bitmap, `None` when no row is null.
    pub fn validity(&self) -> Option<&'a [u8]> {
        self.validity
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Iterates rows as options.
    pub fn iter(&self) -> impl Iterator<Item = Option<T>> + '_ {
        (0..self.values.len()).map(|i| self.get(i))
    }
}

/// A read view of a boolean column.
#[derive(Debug, Clone, Copy)]
pub struct BoolView<'a> {
    bits: &'a [u8],
    len: usize,
    validity: Option<&'a [u8]>,
}

impl BoolView<'_> {
    /// Row `i`, or `None` when it is null.
    pub fn get(&self, i: usize) -> Option<bool> {
        if self.validity.is_none_or(|v| bitmap_get(v, i)) {
            Some(bitmap_get(self.bits, i))
        } else {
            None
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A read view of a utf8 column.
#[derive(Debug, Clone, Copy)]
pub struct Utf8View<'a> {
    offsets: &'a [i32],
    text: &'a str,
    validity: Option<&'a [u8]>,
}

impl<'a> Utf8View<'a> {
    /// Row `i`, or `None` when it is null. Offsets that do not fall on
    /// character boundaries read as null rather than panicking.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        if !self.validity.is_none_or(|v| bitmap_get(v, i)) {
            return None;
        }
        let (start, end) = (self.offsets[i] as usize, self.offsets[i + 1] as usize);
        self.text.get(start..end)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Builds a fixed-width output column row by row.
#[derive(Debug, Clone)]
pub struct PrimitiveBuilder<T> {
    values: Vec<T>,
    validity: Option<Bitmap>,
}

/// Builds an int64 column.
pub type Int64Builder = PrimitiveBuilder<i64>;
/// Builds a float32 column.
pub type Float32Builder = PrimitiveBuilder<f32>;
/// Builds a float64 column.
pub type Float64Builder = PrimitiveBuilder<f64>;

impl<T: Copy + Default> PrimitiveBuilder<T> {
    /// An empty builder with room for `capacity` rows.
    pub fn with_capacity(capacity: usize) -> Self {
        PrimitiveBuilder {
            values: Vec::with_capacity(capacity),
            validity: None,
        }
    }

    /// A finished column from values and an optional validity bitmap: the
    /// vectorized path, no per-row work.
    pub fn from_values(values: Vec<T>, validity: Option<Bitmap>) -> Self {
        PrimitiveBuilder { values, validity }
    }

    /// Appends a valid value.
    #[inline]
    pub fn push(&mut self, value: T) {
        self.values.push(value);
        if let Some(validity) = &mut self.validity {
            grow_validity(validity, self.values.len(), true);
        }
    }

    /// Appends a null.
    #[inline]
    pub fn push_null(&mut self) {
        let len = self.values.len();
        let validity = self.validity.get_or_insert_with(|| crate::bitmap::all_valid(len));
        self.values.push(T::default());
        grow_validity(validity, len + 1, false);
    }

    /// Appends a value or a null.
    #[inline]
    pub fn push_option(&mut self, value: Option<T>) {
        match value {
            Some(v) => self.push(v),
            None => self.push_null(),
        }
    }
}

/// Builds a timestamp column (microseconds since the epoch, UTC).
#[derive(Debug, Clone)]
pub struct TimestampBuilder(pub PrimitiveBuilder<i64>);

impl TimestampBuilder {
    /// An empty builder with room for `capacity` rows.
    pub fn with_capacity(capacity: usize) -> Self {
        TimestampBuilder(PrimitiveBuilder::with_capacity(capacity))
    }

    /// Appends a value or a null.
    pub fn push_option(&mut self, value: Option<i64>) {
        self.0.push_option(value)
    }
}

/// Builds a boolean column.
#[derive(Debug, Clone, Default)]
pub struct BoolBuilder {
    bits: Vec<u8>,
    validity: Option<Bitmap>,
    len: usize,
}

impl BoolBuilder {
    /// An empty builder with room for `capacity` rows.
    pub fn with_capacity(capacity: usize) -> Self {
        BoolBuilder {
            bits: Vec::with_capacity(capacity.div_ceil(8)),
            validity: None,
            len: 0,
        }
    }

    /// Appends a value or a null.
    pub fn push_option(&mut self, value: Option<bool>) {
        let i = self.len;
        self.len += 1;
        if self.bits.len() * 8 < self.len {
            self.bits.push(0);
        }
        bitmap_set(&mut self.bits, i, value.unwrap_or(false));
        match (&mut self.validity, value.is_some()) {
            (Some(validity), valid) => grow_validity(validity, self.len, valid),
            (None, false) => {
                let mut validity = crate::bitmap::all_valid(i);
                grow_validity(&mut validity, self.len, false);
                self.validity = Some(validity);
            }
            (None, true) => {}
        }
    }

    /// Appends a valid value.
    pub fn push(&mut self, value: bool) {
        self.push_option(Some(value))
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        self.push_option(None)
    }
}

/// Builds a utf8 column.
#[derive(Debug, Clone)]
pub struct Utf8Builder {
    offsets: Vec<i32>,
    bytes: Vec<u8>,
    validity: Option<Bitmap>,
}

impl Utf8Builder {
    /// An empty builder with room for `rows` strings of `bytes` bytes in all.
    pub fn with_capacity(rows: usize, bytes: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Utf8Builder {
            offsets,
            bytes: Vec::with_capacity(bytes),
            validity: None,
        }
    }

    /// Appends a valid string.
    pub fn push(&mut self, value: &str) {
        self.push_option(Some(value))
    }

    /// Appends a null.
    pub fn push_null(&mut self) {
        self.push_option(None)
    }

    /// Appends a string or a null.
    pub fn push_option(&mut self, value: Option<&str>) {
        let row = self.offsets.len() - 1;
        if let Some(text) = value {
            self.bytes.extend_from_slice(text.as_bytes());
        }
        self.offsets.push(self.bytes.len() as i32);
        match (&mut self.validity, value.is_some()) {
            (Some(validity), valid) => grow_validity(validity, row + 1, valid),
            (None, false) => {
                let mut validity = crate::bitmap::all_valid(row);
                grow_validity(&mut validity, row + 1, false);
                self.validity = Some(validity);
            }
            (None, true) => {}
        }
    }

    pub(crate) fn finish(self) -> (Values, Option<Bitmap>) {
        (
            Values::Utf8 {
                offsets: self.offsets,
                bytes: self.bytes,
            },
            self.validity,
        )
    }
}

/// Makes `validity` cover `len` rows, the last one set to `valid`.
#[inline]
fn grow_validity(validity: &mut Bitmap, len: usize, valid: bool) {
    if validity.len() * 8 < len {
        validity.push(0);
    }
    bitmap_set(validity, len - 1, valid);
}

/// Anything that can become an output column: builders and raw values.
pub trait IntoColumn {
    /// Values, validity and row count.
    fn into_column(self) -> (Values, Option<Bitmap>, usize);
}

macro_rules! primitive_into {
    ($t:ty, $variant:ident) => {
        impl IntoColumn for PrimitiveBuilder<$t> {
            fn into_column(self) -> (Values, Option<Bitmap>, usize) {
                let len = self.values.len();
                (Values::$variant(self.values), self.validity, len)
            }
        }
    };
}
primitive_into!(i64, Int64);
primitive_into!(f32, Float32);
primitive_into!(f64, Float64);

impl IntoColumn for TimestampBuilder {
    fn into_column(self) -> (Values, Option<Bitmap>, usize) {
        let len = self.0.values.len();
        (Values::Timestamp(self.0.values), self.0.validity, len)
    }
}

impl IntoColumn for BoolBuilder {
    fn into_column(self) -> (Values, Option<Bitmap>, usize) {
        let mut bits = self.bits;
        clear_tail(&mut bits, self.len);
        (Values::Boolean(bits), self.validity, self.len)
    }
}

impl IntoColumn for Utf8Builder {
    fn into_column(self) -> (Values, Option<Bitmap>, usize) {
        let len = self.offsets.len() - 1;
        let (values, validity) = self.finish();
        (values, validity, len)
    }
}

impl IntoColumn for Column {
    fn into_column(self) -> (Values, Option<Bitmap>, usize) {
        (self.values, self.validity, self.len)
    }
}
