"""Run a transform over a Spark DataFrame, on the executors, with the same
host code as the CLI: `DataFrame.mapInArrow`, the component shipped to the
executors as bytes and loaded once per Python worker process.

    from pyspark.sql import SparkSession
    import skewless.spark

    spark = (SparkSession.builder.master("local[2]")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    df = spark.read.parquet("data/driver_stats.parquet")
    out = skewless.spark.transform(df, "driver_hourly_stats.wasm")
    out.write.partitionBy("date").parquet("materialized/")   # then: skewless import

Set `spark.sql.session.timeZone` to UTC: Spark hands timestamps over in the
session's zone, and components take UTC."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import pyarrow as pa

from . import _worker
from ._skewless import Transform

__all__ = ["transform"]


def _spark_type(data_type: pa.DataType) -> Any:
    from pyspark.sql import types as T

    if pa.types.is_boolean(data_type):
        return T.BooleanType()
    if pa.types.is_int64(data_type):
        return T.LongType()
    if pa.types.is_float32(data_type):
        return T.FloatType()
    if pa.types.is_float64(data_type):
        return T.DoubleType()
    if pa.types.is_string(data_type):
        return T.StringType()
    if pa.types.is_timestamp(data_type):
        return T.TimestampType()
    raise TypeError(f"no Spark type for {data_type}")


def transform(df: Any, component_path: str, keep: Sequence[str] | None = None) -> Any:
    """`df` with the component's output columns computed by the component
    at `component_path`. The result holds the `keep` columns of `df` (by
    default every column that is not an output) and then the outputs; each
    output column's metadata records the component's digest, which Spark
    writes into Parquet and `skewless import` checks.

    Raises `skewless.LoadError` on the driver if the component does not
    load, and `skewless.TransformError` from the job if it fails a batch."""
    from pyspark.sql import types as T

    with open(component_path, "rb") as f:
        component = f.read()
    loaded = Transform.load(component_path)
    digest = loaded.digest
    outputs = loaded.output_schema
    output_names = set(outputs.names)
    kept = [c for c in df.columns if c not in output_names] if keep is None else list(keep)
    fields = [df.schema[c] for c in kept]
    fields += [T.StructField(f.name, _spark_type(f.type), True) for f in outputs]
    schema = T.StructType(fields)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        worker_transform = _worker.load(component, digest)
        for batch in batches:
            yield from _worker.output_columns(worker_transform, batch, kept).to_batches()

    result = df.mapInArrow(run, schema)
    for name in outputs.names:
        result = result.withMetadata(name, {"skewless.digest": digest})
    return result
