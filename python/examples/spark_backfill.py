"""Backfill the driver_stats example on a local Spark cluster, then load the
result into the repo's store with `skewless import`.

    skewless sample-data --repo examples/repos/driver_stats   # data/driver_stats.parquet
    python python/examples/spark_backfill.py examples/repos/driver_stats /tmp/driver_stats_features
    skewless --repo examples/repos/driver_stats apply
    skewless --repo examples/repos/driver_stats import --view driver_hourly_stats --from /tmp/driver_stats_features

The view's component runs on the executors through the same host code as
`skewless backfill` (the wheel links the runtime), so the imported store
equals a local backfill bit for bit. The output is Parquet partitioned by
date, with the component's digest in its metadata.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tomllib

import skewless.spark

VIEW = "driver_hourly_stats"


def session(cores: int = 2):
    """A local Spark session set up for Skewless: Python workers on this
    interpreter (the one with `skewless` installed), UTC (components take UTC
    timestamps) and microsecond timestamps in Parquet."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("skewless-backfill")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .getOrCreate()
    )


def backfill(spark, repo: pathlib.Path, out: str) -> None:
    """Computes the view's features over its source file and writes them to
    `out`, partitioned by date: the join keys and times `skewless import`
    needs, then the features."""
    from pyspark.sql import functions as F

    config = tomllib.loads((repo / "skewless.toml").read_text())
    view = config["views"][VIEW]
    source = config["sources"][config["sources"][view["source"]].get("batch_source", view["source"])]
    component = (repo / view["transform"]).resolve()
    keep = ["driver_id", source["timestamp_column"], source["created_column"]]
    df = spark.read.parquet(str(repo / source["path"]))
    features = skewless.spark.transform(df, str(component), keep=keep)
    (
        features.withColumn("date", F.to_date(source["timestamp_column"]))
        .write.mode("overwrite")
        .partitionBy("date")
        .parquet(out)
    )


if __name__ == "__main__":
    repo, out = pathlib.Path(sys.argv[1]), sys.argv[2]
    spark = session()
    backfill(spark, repo, out)
    spark.stop()
    print(f"wrote {out}; now: skewless --repo {repo} import --view {VIEW} --from {out}")
