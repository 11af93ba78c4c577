//! PostgreSQL tables and queries as sources: the rows stream out of the
//! database by binary `COPY (SELECT ...) TO STDOUT`, on a thread of their
//! own, into Arrow batches of the needed columns, each typed as the view
//! declares it.
//!
//! The connection URL comes from the environment variable the source
//! names, never from the repo file. An incremental load reads the rows
//! whose watermark column is greater than the greatest value loaded
//! before ([`open`] reports the greatest it read).

use std::path::Path;
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::{DataType as ArrowType, Field, Schema, TimeUnit};
use futures_util::{StreamExt, pin_mut};
use tokio_postgres::binary_copy::{BinaryCopyOutRow, BinaryCopyOutStream};
use tokio_postgres::types::Type;

use super::error::{SourceError, fail};
use super::read::{OpenedFile, READ_BATCH_ROWS, check_columns, received};
use crate::file_format::PostgresTable;
use crate::format::value::{Value, ValueBuilder};
use crate::types::{FeatureType, FieldSpec};

/// The greatest watermark an open source has read so far, as the bits of
/// an i64 (microseconds for a timestamp column); `None` before a row.
pub type Watermark = Arc<Mutex<Option<i64>>>;

/// The source's columns and their Arrow types (integers of every width as
/// int64, which is how they are read); a type no feature type takes keeps
/// a stand-in no needed column accepts.
pub fn columns(label: &Path, table: &PostgresTable) -> Result<Vec<(String, ArrowType)>, SourceError> {
    let runtime = runtime(label)?;
    let columns = runtime.block_on(async {
        let client = connect(label, table).await?;
        described(label, table, &client).await
    })?;
    Ok(columns.into_iter().map(|(name, pg)| (name, arrow_type(&pg))).collect())
}

/// Streams the `needed` columns of the source's rows (only those whose
/// watermark is greater than `after`, when given) as batches; the
/// returned [`Watermark`] holds the greatest watermark read once the
/// batches are consumed.
pub fn open(
    label: &Path,
    table: &PostgresTable,
    after: Option<i64>,
    needed: &[FieldSpec],
) -> Result<(OpenedFile, Watermark), SourceError> {
    let runtime = runtime(label)?;
    let (client, columns) = runtime.block_on(async {
        let client = connect(label, table).await?;
        let columns = described(label, table, &client).await?;
        Ok::<_, SourceError>((client, columns))
    })?;
    let schema = Schema::new(
        (columns.iter())
            .map(|(name, pg)| Field::new(name, arrow_type(pg), true))
            .collect::<Vec<_>>(),
    );
    check_columns(label, &schema, needed)?;
    let pg_type = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
    let watermark = match &table.watermark_column {
        Some(name) => {
            let found =
                pg_type(name).ok_or_else(|| fail(label, format!("has no column `{name}` (its `watermark_column`)")))?;
            if ![Type::TIMESTAMPTZ, Type::TIMESTAMP, Type::INT2, Type::INT4, Type::INT8].contains(&found) {
                return Err(fail(
                    label,
                    format!("watermark column `{name}` is {found}: use a timestamp or an integer column"),
                ));
            }
            Some((name.clone(), found))
        }
        None => None,
    };
    let mut read: Vec<(String, Type)> = (needed.iter())
        .map(|f| (f.name.clone(), pg_type(&f.name).expect("checked above")))
        .collect();
    if let Some(mark) = &watermark {
        read.push(mark.clone());
    }
    let select: Vec<String> = read.iter().map(|(name, _)| quoted(name)).collect();
    let mut sql = format!("SELECT {} FROM {}", select.join(", "), table.relation.sql_from());
    match (&watermark, after) {
        (Some((name, pg)), Some(after)) => sql.push_str(&format!(" WHERE {} > {}", quoted(name), literal(pg, after))),
        (None, Some(_)) => {
            return Err(fail(
                label,
                "an incremental load needs the source's `watermark_column` (an increasing timestamp or integer)",
            ));
        }
        (_, None) => {}
    }
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
    let greatest: Watermark = Arc::new(Mutex::new(after));
    let (send, receive) = std::sync::mpsc::sync_channel(2);
    let (label_owned, needed, seen) = (label.to_path_buf(), needed.to_vec(), greatest.clone());
    let types: Vec<Type> = read.iter().map(|(_, t)| t.clone()).collect();
    let spawned = std::thread::Builder::new()
        .name("skewless-postgres".into())
        .spawn(move || {
            let label = label_owned;
            let streamed = runtime.block_on(async {
                let stream = (client.copy_out(copy.as_str()).await)
                    .map_err(|e| fail(&label, format!("cannot read: {}", reason(&e))))?;
                let rows = BinaryCopyOutStream::new(stream, &types);
                pin_mut!(rows);
                let mut batch = Rows::new(&needed);
                while let Some(row) = rows.next().await {
                    let row = row.map_err(|e| fail(&label, format!("reading stopped: {}", reason(&e))))?;
                    batch.push(&label, &row, &types)?;
                    if let Some(index) = watermark.as_ref().map(|_| needed.len()) {
                        let mark = watermark_of(&row, index, &types[index]).map_err(|e| fail(&label, e))?;
                        let mut greatest = seen.lock().expect("watermark lock");
                        *greatest = (*greatest).max(mark);
                    }
                    if batch.len == READ_BATCH_ROWS {
                        let full = std::mem::replace(&mut batch, Rows::new(&needed));
                        if send.send(Some(full.finish(&label))).is_err() {
                            return Ok(());
                        }
                    }
                }
                if batch.len > 0 {
                    let _ = send.send(Some(batch.finish(&label)));
                }
                Ok::<(), SourceError>(())
            });
            let _ = match streamed {
                Ok(()) => send.send(None),
                Err(error) => send.send(Some(Err(error))),
            };
        });
    spawned.map_err(|e| fail(label, format!("cannot start a thread to read it: {e}")))?;
    let batches = received(label, receive);
    let opened = OpenedFile {
        total_rows: None,
        batches,
    };
    Ok((opened, greatest))
}

fn runtime(label: &Path) -> Result<tokio::runtime::Runtime, SourceError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(label, format!("cannot start its reader: {e}")))
}

/// Connects with the URL in the source's environment variable; an error
/// names the variable, or the address that did not answer.
async fn connect(label: &Path, table: &PostgresTable) -> Result<tokio_postgres::Client, SourceError> {
    let env = &table.connection_env;
    let url = std::env::var(env).map_err(|_| {
        fail(
            label,
            format!(
                "its connection is read from the environment variable {env}, which is not set: \
                 export {env}=postgres://USER:PASSWORD@HOST:PORT/DATABASE"
            ),
        )
    })?;
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| fail(label, format!("${env} is not a PostgreSQL URL: {e}")))?;
    let address = {
        let hosts: Vec<String> = (config.get_hosts().iter())
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(host) => host.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("{}:{port}", hosts.join(","))
    };
    let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        fail(
            label,
            format!("cannot connect to {address} (from ${env}): {}", reason(&e)),
        )
    })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

/// The relation's columns and their PostgreSQL types; a missing table or a
/// query that does not run is refused with the database's reason.
async fn described(
    label: &Path,
    table: &PostgresTable,
    client: &tokio_postgres::Client,
) -> Result<Vec<(String, Type)>, SourceError> {
    let probe = format!("SELECT * FROM {} LIMIT 0", table.relation.sql_from());
    let statement = (client.prepare(&probe).await)
        .map_err(|e| fail(label, format!("cannot read {}: {}", table.relation, reason(&e))))?;
    Ok((statement.columns().iter())
        .map(|c| (c.name().to_string(), c.type_().clone()))
        .collect())
}

/// What went wrong: the database's own message, or the error with its
/// causes (tokio-postgres says only "db error" at the top).
fn reason(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        return db.message().to_string();
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(&format!(": {inner}"));
        cause = inner.source();
    }
    text
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A watermark value as SQL: an integer, or a timestamp literal.
fn literal(pg: &Type, value: i64) -> String {
    match *pg {
        Type::TIMESTAMPTZ => format!("'{}'::timestamptz", crate::time::format_timestamp(value)),
        Type::TIMESTAMP => format!(
            "'{}'::timestamp",
            crate::time::format_timestamp(value).trim_end_matches('Z')
        ),
        _ => value.to_string(),
    }
}

fn watermark_of(row: &BinaryCopyOutRow, index: usize, pg: &Type) -> Result<Option<i64>, String> {
    let value = match *pg {
        Type::TIMESTAMPTZ | Type::TIMESTAMP => {
            (row.try_get::<Option<std::time::SystemTime>>(index)).map(|t| t.map(crate::time::micros))
        }
        Type::INT2 => row.try_get::<Option<i16>>(index).map(|v| v.map(i64::from)),
        Type::INT4 => row.try_get::<Option<i32>>(index).map(|v| v.map(i64::from)),
        _ => row.try_get::<Option<i64>>(index),
    };
    value.map_err(|e| format!("its watermark column: {e}"))
}

fn arrow_type(pg: &Type) -> ArrowType {
    let list = |item: ArrowType| ArrowType::List(Arc::new(Field::new("item", item, true)));
    match *pg {
        Type::BOOL => ArrowType::Boolean,
        Type::INT2 | Type::INT4 | Type::INT8 => ArrowType::Int64,
        Type::FLOAT4 => ArrowType::Float32,
        Type::FLOAT8 => ArrowType::Float64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => ArrowType::Utf8,
        Type::TIMESTAMPTZ => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::TIMESTAMP => ArrowType::Timestamp(TimeUnit::Microsecond, None),
        Type::BOOL_ARRAY => list(ArrowType::Boolean),
        Type::INT8_ARRAY => list(ArrowType::Int64),
        Type::FLOAT4_ARRAY => list(ArrowType::Float32),
        Type::FLOAT8_ARRAY => list(ArrowType::Float64),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => list(ArrowType::Utf8),
        _ => ArrowType::Null,
    }
}

/// Rows of one batch, a builder per needed column.
struct Rows {
    fields: Vec<FieldSpec>,
    builders: Vec<ValueBuilder>,
    len: usize,
}

impl Rows {
    fn new(needed: &[FieldSpec]) -> Rows {
        Rows {
            fields: needed.to_vec(),
            builders: (needed.iter())
                .map(|f| ValueBuilder::new(f.data_type, READ_BATCH_ROWS))
                .collect(),
            len: 0,
        }
    }

    fn push(&mut self, label: &Path, row: &BinaryCopyOutRow, types: &[Type]) -> Result<(), SourceError> {
        for (index, (field, builder)) in self.fields.iter().zip(&mut self.builders).enumerate() {
            let value = cell(row, index, &types[index], field.data_type)
                .map_err(|e| fail(label, format!("column `{}`, row {}: {e}", field.name, self.len)))?;
            builder.push(value);
        }
        self.len += 1;
        Ok(())
    }

    fn finish(self, label: &Path) -> Result<RecordBatch, SourceError> {
        let fields: Vec<Field> = (self.fields.iter())
            .map(|f| Field::new(&f.name, f.data_type.arrow(), true))
            .collect();
        let columns = self.builders.into_iter().map(ValueBuilder::finish).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| fail(label, e.to_string()))
    }
}

/// One cell as a value of the view's type; [`arrow_type`] and the column
/// check allowed only the pairs handled here.
fn cell(row: &BinaryCopyOutRow, index: usize, pg: &Type, want: FeatureType) -> Result<Value, String> {
    fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a BinaryCopyOutRow,
        index: usize,
    ) -> Result<Option<T>, String> {
        row.try_get::<Option<T>>(index).map_err(|e| e.to_string())
    }
    fn list<'a, T: tokio_postgres::types::FromSql<'a>>(
        row: &'a BinaryCopyOutRow,
        index: usize,
        value: impl Fn(T) -> Value,
    ) -> Result<Option<Vec<Value>>, String> {
        let Some(items) = get::<Vec<Option<T>>>(row, index)? else {
            return Ok(None);
        };
        let values = (items.into_iter().enumerate())
            .map(|(i, item)| {
                item.map(&value)
                    .ok_or(format!("element {i} is null; lists hold no nulls"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(values))
    }
    let or_null = |value: Option<Value>| value.unwrap_or(Value::Null);
    Ok(match want {
        FeatureType::Bool => or_null(get::<bool>(row, index)?.map(Value::Bool)),
        FeatureType::Int64 => or_null(match *pg {
            Type::INT2 => get::<i16>(row, index)?.map(|v| Value::Int64(v.into())),
            Type::INT4 => get::<i32>(row, index)?.map(|v| Value::Int64(v.into())),
            _ => get::<i64>(row, index)?.map(Value::Int64),
        }),
        FeatureType::Float32 => or_null(get::<f32>(row, index)?.map(Value::Float32)),
        FeatureType::Float64 => or_null(get::<f64>(row, index)?.map(Value::Float64)),
        FeatureType::Utf8 => or_null(get::<String>(row, index)?.map(Value::Utf8)),
        FeatureType::Timestamp => {
            or_null(get::<std::time::SystemTime>(row, index)?.map(|t| Value::Timestamp(crate::time::micros(t))))
        }
        FeatureType::List(item) => or_null(
            match item.feature_type() {
                FeatureType::Bool => list::<bool>(row, index, Value::Bool)?,
                FeatureType::Int64 => list::<i64>(row, index, Value::Int64)?,
                FeatureType::Float32 => list::<f32>(row, index, Value::Float32)?,
                FeatureType::Float64 => list::<f64>(row, index, Value::Float64)?,
                FeatureType::Utf8 => list::<String>(row, index, Value::Utf8)?,
                other @ (FeatureType::Timestamp | FeatureType::List(_) | FeatureType::Vector(_)) => {
                    return Err(format!("list<{other}> is not read from PostgreSQL"));
                }
            }
            .map(Value::List),
        ),
        FeatureType::Vector(dimension) => {
            let Some(components) = get::<Vec<Option<f32>>>(row, index)? else {
                return Ok(Value::Null);
            };
            if components.len() != dimension as usize {
                return Err(format!(
                    "{} components, but vector<{dimension}> needs {dimension}",
                    components.len()
                ));
            }
            let finite = |c: Option<f32>| c.filter(|f| f.is_finite()).ok_or("a vector holds finite numbers only");
            Value::Vector(components.into_iter().map(finite).collect::<Result<_, _>>()?)
        }
    })
}
