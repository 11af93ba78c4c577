"""Backfill the driver_stats example with Ray Data on this machine, then load
the result into the repo's store with `skewless import`.

    python python/examples/ray_backfill.py examples/repos/driver_stats /tmp/driver_stats_features
    skewless --repo examples/repos/driver_stats import --view driver_hourly_stats --from /tmp/driver_stats_features

`skewless.ray.Transform` is a callable class: one component load per
actor. Actors ask for half a CPU so that on a small machine they cannot
starve the tasks that read their input.
"""

from __future__ import annotations

import pathlib
import sys
import tomllib

import pyarrow as pa
import pyarrow.compute as pc

import skewless.ray

VIEW = "driver_hourly_stats"


def with_date(batch: pa.Table) -> pa.Table:
    """The partition column: the event's UTC date."""
    return batch.append_column("date", pc.strftime(batch.column("event_timestamp"), "%Y-%m-%d"))


def backfill(repo: pathlib.Path, out: str, actors: int = 2) -> None:
    import ray

    config = tomllib.loads((repo / "skewless.toml").read_text())
    view = config["views"][VIEW]
    source = config["sources"][config["sources"][view["source"]].get("batch_source", view["source"])]
    component = (repo / view["transform"]).resolve()
    keep = ["driver_id", source["timestamp_column"], source["created_column"]]
    ds = ray.data.read_parquet(str(repo / source["path"]))
    features = ds.map_batches(
        skewless.ray.Transform,
        fn_constructor_args=(str(component),),
        fn_constructor_kwargs={"keep": keep},
        batch_format="pyarrow",
        concurrency=actors,
        num_cpus=0.5,
    )
    features.map_batches(with_date, batch_format="pyarrow").write_parquet(out, partition_cols=["date"])


if __name__ == "__main__":
    import ray

    repo, out = pathlib.Path(sys.argv[1]), sys.argv[2]
    ray.init(num_cpus=2, include_dashboard=False)
    backfill(repo, out)
    ray.shutdown()
    print(f"wrote {out}; now: skewless --repo {repo} import --view {VIEW} --from {out}")
