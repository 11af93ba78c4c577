"""Spark and Ray run the view's component through the same host code, and
`skewless import` of what they wrote equals `skewless backfill` bit for bit.
The jobs are the documented examples (python/examples), run here."""

import importlib.util
import os
import pathlib
import shutil

import pyarrow.parquet as pq
import pytest

import skewless
import skewless.ray
from conftest import BIN, TEMPLATE, cli, cli_backfilled, copy_repo

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def example(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def documented(module, repo, out):
    """The `skewless` lines of an example's docstring, as users copy them,
    for this test's repo and output folder: each as a command to run."""
    names = {"examples/repos/driver_stats": str(repo), "/tmp/driver_stats_features": str(out)}
    for line in module.__doc__.splitlines():
        line = line.split("#")[0].strip()
        if line.startswith("skewless "):
            yield [BIN] + [names.get(word, word) for word in line.split()[1:]]


def run_documented(command):
    import subprocess

    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 0, f"documented line {command[1:]} failed:\n{done.stderr}"


def store_digest(repo):
    with skewless.Repo(str(repo)) as r:
        return r.content_digest()


def test_spark_output_imported_equals_backfill_and_another_digest_is_refused(tmp_path):
    expected = store_digest(cli_backfilled(tmp_path))
    spark_backfill = example("spark_backfill")
    repo = copy_repo(tmp_path, "spark")
    out = tmp_path / "spark_out"
    # The docstring's lines: sample data first, then (after the job) apply and import.
    first, *after_the_job = documented(spark_backfill, repo, out)
    assert "sample-data" in first, first
    (repo / "data/driver_stats.parquet").unlink()
    run_documented(first)
    # Written now, it ends at another hour than the template's: the job reads the template's.
    shutil.copy(TEMPLATE / "data/driver_stats.parquet", repo / "data/driver_stats.parquet")
    spark = spark_backfill.session(2)
    try:
        spark_backfill.backfill(spark, repo, str(out))
        # Python workers are reused: a second job on the same workers finds
        # the component loaded once in each, however many batches it ran.
        def report(batches):
            import pyarrow as pa

            from skewless import _worker

            for _ in batches:
                pass
            yield pa.RecordBatch.from_pydict({"pid": [os.getpid()], "loads": [sum(_worker.LOADS.values())]})

        loads = spark.read.parquet(str(out)).repartition(4).mapInArrow(report, "pid long, loads long").collect()
    finally:
        spark.stop()
    assert loads and max(row.loads for row in loads) == 1, loads
    assert any(p.name.startswith("date=") for p in out.iterdir()), "partitioned by date"

    assert [c[1:4] for c in after_the_job] == [["--repo", str(repo), "apply"], ["--repo", str(repo), "import"]]
    for command in after_the_job:
        run_documented(command)
    assert store_digest(repo) == expected

    # A file computed by another component is refused, with what to run.
    other = tmp_path / "other"
    other.mkdir()
    part = next(out.rglob("*.parquet"))
    table = pq.read_table(part)
    pq.write_table(table.replace_schema_metadata({b"skewless.digest": b"sha256:" + b"0" * 64}), other / "part.parquet")
    fresh = copy_repo(tmp_path, "refusing")
    cli(fresh, "apply")
    with skewless.Repo(str(fresh)) as r:
        with pytest.raises(skewless.Error, match="was computed by component sha256:0000.*skewless apply"):
            r.import_materialized("driver_hourly_stats", str(other))
        with pytest.raises(skewless.Error, match="records no `skewless.digest`"):
            shutil.copy(TEMPLATE / "data/driver_stats.parquet", other / "part.parquet")
            r.import_materialized("driver_hourly_stats", str(other))


def template_component():
    import tomllib

    config = tomllib.loads((TEMPLATE / "skewless.toml").read_text())
    return TEMPLATE / config["views"]["driver_hourly_stats"]["transform"]


def test_ray_output_imported_equals_backfill(tmp_path):
    # Defined here, so that Ray pickles it by value.
    class CountingTransform(skewless.ray.Transform):
        """The example's callable, adding this actor's load count to each batch."""

        def __call__(self, batch):
            import pyarrow as pa

            from skewless import _worker

            out = super().__call__(batch)
            return out.append_column("loads", pa.array([sum(_worker.LOADS.values())] * out.num_rows, pa.int64()))

    import ray

    expected = store_digest(cli_backfilled(tmp_path))
    repo = copy_repo(tmp_path, "ray")
    out = tmp_path / "ray_out"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        ray_backfill = example("ray_backfill")
        ray_backfill.backfill(repo, str(out))
        # Each actor loaded the component once, however many batches it ran.
        component = str(template_component())
        loads = (
            ray.data.read_parquet(str(TEMPLATE / "data/driver_stats.parquet"))
            .map_batches(CountingTransform, fn_constructor_args=(component,), batch_format="pyarrow",
                         batch_size=10_000, concurrency=2, num_cpus=0.5)
            .unique("loads")
        )
    finally:
        ray.shutdown()
    assert loads == [1], loads
    assert any(p.name.startswith("date=") for p in out.iterdir()), "partitioned by date"
    with skewless.Repo(str(repo)) as r:
        r.apply()
        summary = r.import_materialized("driver_hourly_stats", str(out))
        assert summary["rows_written"] == 720_000
        assert r.content_digest() == expected
    # The docstring's line, as users copy it, on a fresh copy: the same store.
    again = copy_repo(tmp_path, "ray_documented")
    cli(again, "apply")
    [command] = documented(example("ray_backfill"), again, out)
    run_documented(command)
    assert store_digest(again) == expected
