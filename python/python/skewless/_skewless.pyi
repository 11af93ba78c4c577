"""Type stubs of the compiled module (python/src)."""

from os import PathLike
from typing import Any

import pyarrow as pa

class Error(RuntimeError):
    """A Skewless operation failed; the message is the CLI's."""

class TransformError(Error):
    """A transform call failed."""

class LoadError(Error):
    """A component could not be loaded."""

class Transform:
    """A transform component, loaded once per process."""

    @staticmethod
    def load(path: str | PathLike[str]) -> Transform: ...
    @property
    def digest(self) -> str: ...
    @property
    def output_schema(self) -> pa.Schema: ...
    def describe(self) -> dict[str, Any]: ...
    def run(self, data: Any, *, errors: bool = False) -> pa.Table | tuple[pa.Table, pa.Table]: ...

class Repo:
    """A feature repo, opened once and kept open."""

    def __init__(self, path: str | PathLike[str]) -> None: ...
    @property
    def path(self) -> str: ...
    def apply(self, *, dry_run: bool = False, allow_batch_dependent: list[str] | None = None) -> str: ...
    def backfill(
        self,
        views: list[str] | None = None,
        *,
        start: str | None = None,
        end: str | None = None,
        rows_per_commit: int = ...,
    ) -> list[dict[str, Any]]: ...
    def import_materialized(
        self, view: str, path: str | PathLike[str], *, rows_per_commit: int = ...
    ) -> dict[str, Any]: ...
    def get_historical_features(
        self,
        spine: Any,
        features: list[str],
        *,
        timestamp_column: str = "event_timestamp",
        full_feature_names: bool = False,
        allow_mixed_digests: bool = False,
        nearest: str | None = None,
        query_column: str = "query",
        k: int = 10,
        metric: str = "cosine",
    ) -> pa.Table: ...
    def verify(self, samples: int = 100, seed: int = 0) -> dict[str, Any]: ...
    def content_digest(self) -> str: ...
    def close(self) -> None: ...
    def __enter__(self) -> Repo: ...
    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None: ...
    def _get_online_features(
        self, features: list[str], entities_json: str, as_of: int | None = None, full_feature_names: bool = False
    ) -> tuple[pa.Table, dict[str, list[str]], dict[str, list[int | None]], dict[str, str]]: ...
    def _push(self, source: str, columns_json: str, to: str = "online") -> dict[str, Any]: ...
    def _search(
        self,
        view: str,
        query: list[float] | None = None,
        like_json: str | None = None,
        k: int = 10,
        metric: str = "cosine",
        features: list[str] | None = None,
        vector: str | None = None,
    ) -> tuple[pa.Table, dict[str, list[str]], dict[str, list[int | None]], dict[str, str]]: ...
