"""Skewless in Python: feature transforms compiled once to WebAssembly, run
with the same host code as the `skewless` CLI and server, so a notebook, a
Spark executor or a Ray actor computes the same bits as the server.

    import pyarrow as pa, skewless

    t = skewless.Transform.load("examples/transforms/target/wasm32-wasip2/release/transformed_conv_rate.wasm")
    t.describe()                       # name, version, inputs, outputs
    t.run(pa.table({"conv_rate": pa.array([0.5], pa.float32()), "val_to_add": [1]}))

    repo = skewless.Repo("examples/repos/driver_stats")
    repo.apply(); repo.backfill()
    repo.get_online_features(features=["driver_hourly_stats:conv_rate"],
                             entities={"driver_id": [1001, 1002]}).to_dict()
    repo.get_historical_features(spine_df, features=["driver_hourly_stats:conv_rate"])

Scale-out: `skewless.spark.transform(df, path)` and `skewless.ray.Transform`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from . import _values
from ._skewless import Error, LoadError, Transform, TransformError
from ._skewless import Repo as _Repo
from ._values import OnlineResponse
from .client import Client

__all__ = ["Client", "Error", "LoadError", "OnlineResponse", "Repo", "Transform", "TransformError"]


class Repo(_Repo):
    """A feature repo (a folder with `skewless.toml`), run in-process: each
    method is the CLI command of the same name, through the same library.
    The repo stays open (its store locked to this process) until `close()`
    or the end of a `with` block."""

    def get_online_features(
        self,
        features: Sequence[str],
        entities: Mapping[str, Sequence[Any]],
        as_of: Any = None,
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        """The server's read: each entity's newest values, or as of an
        instant (a datetime, an RFC 3339 string or microseconds UTC).
        `entities` maps join keys and request fields to lists of values."""
        answer = self._get_online_features(
            list(features),
            _values.columns_json(dict(entities)),
            None if as_of is None else _values.micros(as_of),
            full_feature_names,
        )
        return _values.response_from_runtime(answer)

    def search(
        self,
        view: str,
        query: Any = None,
        *,
        like: Mapping[str, Any] | None = None,
        k: int = 10,
        metric: str = "cosine",
        features: Sequence[str] | None = None,
        vector: str | None = None,
    ) -> OnlineResponse:
        """`skewless search` in-process, the server's `POST /search`: the `k`
        entities of `view` nearest to `query` (a list or a numpy array of
        floats), or to the stored vector of the entity `like` names
        (`like={"product_id": 42}`). Exact, nearest first, equal distances in
        entity-key order. `metric`: "cosine", "inner_product" or "L2".
        Answers the join keys, `features` of the view (default: all but
        vectors) and a last column `distance`."""
        if query is not None:
            query = [float(c) for c in (query.tolist() if hasattr(query, "tolist") else query)]
        answer = self._search(
            view,
            query,
            None if like is None else _values.columns_json({n: [v] for n, v in like.items()}),
            k,
            metric,
            None if features is None else list(features),
            vector,
        )
        return _values.response_from_runtime(answer)

    def push(self, source: str, rows: Any, to: str = "online") -> dict[str, Any]:
        """`POST /push` in-process: `rows` (a dict of lists, a list of dicts,
        or a pyarrow/polars/pandas table) go through the push source's views
        and are committed. `to`: "online" (as Feast), "offline" or
        "online_and_offline"."""
        return self._push(source, _values.columns_json(rows), to)
