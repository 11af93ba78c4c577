"""Run a transform over a Ray Dataset with the same host code as the CLI:
a callable class for `Dataset.map_batches`, one load per actor.

    import ray, skewless.ray

    ds = ray.data.read_parquet("data/driver_stats.parquet")
    out = ds.map_batches(skewless.ray.Transform,
                         fn_constructor_args=("driver_hourly_stats.wasm",),
                         batch_format="pyarrow", concurrency=2, num_cpus=0.5)
    out.write_parquet("materialized/")                     # then: skewless import

Ask for a fraction of a CPU per actor (`num_cpus=0.5`) on small machines:
actors holding whole CPUs can starve the tasks that read their input."""

from __future__ import annotations

from typing import Sequence

import pyarrow as pa

from . import _worker

__all__ = ["Transform"]


class Transform:
    """`map_batches` callable: the component at `component_path` (read on
    the actor, or pass `component=bytes` to ship it), loaded once per actor.
    Each batch comes back with the `keep` columns (by default every column
    that is not an output), then the outputs, the digest in the metadata."""

    def __init__(self, component_path: str | None = None, keep: Sequence[str] | None = None,
                 component: bytes | None = None) -> None:
        if component is None:
            if component_path is None:
                raise ValueError("give component_path or component")
            with open(component_path, "rb") as f:
                component = f.read()
        self._transform = _worker.load(component, _digest(component))
        self._keep = None if keep is None else list(keep)

    def __call__(self, batch: pa.Table) -> pa.Table:
        outputs = set(self._transform.output_schema.names)
        keep = [c for c in batch.column_names if c not in outputs] if self._keep is None else self._keep
        return _worker.output_columns(self._transform, batch, keep)


def _digest(component: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(component).hexdigest()
