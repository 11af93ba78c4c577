"""A component shipped to a worker process as bytes and loaded there once.

Spark and Ray run our code in worker processes on other machines, where
the component's path may not exist: the driver sends its bytes, and each
worker process writes them once to a private file named by digest and
loads them once (`Transform.load` caches per process and digest, and loads
again in a forked child)."""

from __future__ import annotations

import os
import tempfile

import pyarrow as pa

from ._skewless import Transform

#: Loads per digest in this process (tests read it to check "once per worker").
LOADS: dict[str, int] = {}
_LOADED: dict[tuple[int, str], Transform] = {}


def load(component: bytes, digest: str) -> Transform:
    """The component, loaded once in this process."""
    key = (os.getpid(), digest)
    transform = _LOADED.get(key)
    if transform is None:
        folder = os.path.join(tempfile.gettempdir(), f"skewless-{os.getuid()}")
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, digest.replace(":", "-") + ".wasm")
        if not os.path.exists(path):
            partial = f"{path}.{os.getpid()}.partial"
            with open(partial, "wb") as f:
                f.write(component)
            os.replace(partial, path)
        transform = Transform.load(path)
        if transform.digest != digest:
            raise RuntimeError(f"{path}: holds {transform.digest}, not {digest}")
        _LOADED[key] = transform
        LOADS[digest] = LOADS.get(digest, 0) + 1
    return transform


def output_columns(transform: Transform, data: pa.RecordBatch | pa.Table, keep: list[str]) -> pa.Table:
    """`keep` columns of `data`, then the transform's outputs over it, with
    the digest recorded in the schema and in each output field's metadata
    (what `skewless import` checks)."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_batches([data])
    outputs = transform.run(table)
    digest = transform.digest.encode()
    fields = [table.schema.field(name) for name in keep]
    columns = [table.column(name) for name in keep]
    for field in outputs.schema:
        fields.append(field.with_metadata({b"skewless.digest": digest}))
        columns.append(outputs.column(field.name))
    schema = pa.schema(fields, metadata={b"skewless.digest": digest})
    return pa.Table.from_arrays(columns, schema=schema)
