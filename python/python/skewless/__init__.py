"""Skewless in Python: run feature transforms (WebAssembly components) with the
same host code as the `skewless` CLI and server, so values are the same bits.

    import pyarrow as pa, skewless
    t = skewless.Transform.load("examples/transforms/target/wasm32-wasip2/release/transformed_conv_rate.wasm")
    t.describe()          # name, version, inputs, outputs
    t.run(pa.table({"conv_rate": pa.array([0.5], pa.float32()), "val_to_add": [1]}))
"""

from ._skewless import LoadError, Transform, TransformError

__all__ = ["Transform", "TransformError", "LoadError"]
