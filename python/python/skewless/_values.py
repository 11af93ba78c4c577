"""Python values to and from the JSON the runtime's one JSON codec reads
(`codec::json`, shared with the HTTP API), and the Feast-like online result."""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any, Iterable, Mapping

import pyarrow as pa

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def _json_default(value: Any) -> Any:
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return value.isoformat()
    if isinstance(value, _dt.date):
        return value.isoformat()
    # numpy arrays (a vector, a list) and numpy and pandas scalars
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} as a feature value")


def columns_json(rows: Any) -> str:
    """Columns of values as JSON: `rows` is a dict of lists, a list of dicts,
    or anything with the Arrow PyCapsule interface (pyarrow, polars, pandas)."""
    if hasattr(rows, "__arrow_c_stream__") or hasattr(rows, "__arrow_c_array__"):
        rows = pa.table(rows).to_pydict()
    elif hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # older pandas
        rows = pa.Table.from_pandas(rows, preserve_index=False).to_pydict()
    elif isinstance(rows, list):
        names: list[str] = []
        for row in rows:
            names.extend(n for n in row if n not in names)
        rows = {n: [row.get(n) for row in rows] for n in names}
    if not isinstance(rows, Mapping):
        raise TypeError("rows: give a dict of lists, a list of dicts, or a pyarrow/polars/pandas table")
    return json.dumps({str(k): list(v) for k, v in rows.items()}, default=_json_default)


def micros(at: Any) -> int:
    """An instant as microseconds UTC: a datetime (naive means UTC), an RFC
    3339 string, or an int already in microseconds."""
    if isinstance(at, int):
        return at
    if isinstance(at, str):
        at = _dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    if hasattr(at, "to_pydatetime"):
        at = at.to_pydatetime()
    if isinstance(at, _dt.datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=_dt.timezone.utc)
        delta = at - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    raise TypeError(f"as_of: give a datetime, an RFC 3339 string or microseconds, not {type(at).__name__}")


def _time(value: int | None) -> _dt.datetime | None:
    return None if value is None else _EPOCH + _dt.timedelta(microseconds=value)


class OnlineResponse:
    """Features read online, as Feast's `OnlineResponse`: entity-key
    columns first, then the features in request order."""

    def __init__(
        self,
        table: pa.Table,
        statuses: Mapping[str, list[str]],
        event_timestamps: Mapping[str, list[_dt.datetime | None]],
        digests: Mapping[str, str] | None = None,
    ) -> None:
        self._table = table
        #: Per feature, one status per row: PRESENT, NULL_VALUE, NOT_FOUND or OUTSIDE_MAX_AGE.
        self.statuses = dict(statuses)
        #: Per feature, the event time of each value (None when there is none).
        self.event_timestamps = dict(event_timestamps)
        #: Per view read, the digest of its transform.
        self.digests = dict(digests or {})

    def to_dict(self, include_event_timestamps: bool = False) -> dict[str, list[Any]]:
        """Columns as lists; with `include_event_timestamps`, a
        `<feature>__ts` column after each feature."""
        out: dict[str, list[Any]] = {}
        for name, values in self._table.to_pydict().items():
            out[name] = values
            if include_event_timestamps and name in self.event_timestamps:
                out[f"{name}__ts"] = self.event_timestamps[name]
        return out

    def to_pyarrow(self) -> pa.Table:
        """The values as a pyarrow Table."""
        return self._table

    def to_pandas(self) -> Any:
        """The values as a pandas DataFrame."""
        return self._table.to_pandas()

    def __repr__(self) -> str:
        return f"<skewless.OnlineResponse {self._table.num_rows} rows x {self._table.num_columns} columns>"


def response_from_runtime(answer: tuple[pa.Table, dict, dict, dict]) -> OnlineResponse:
    table, statuses, timestamps, digests = answer
    times = {name: [_time(t) for t in values] for name, values in timestamps.items()}
    return OnlineResponse(table, statuses, times, digests)


def response_from_http(body: Mapping[str, Any], entity_names: Iterable[str]) -> OnlineResponse:
    """`POST /get-online-features`'s answer (Feast's JSON) as an
    OnlineResponse. Value types are JSON's: floats come back as float64."""
    entities = set(entity_names)
    columns: dict[str, list[Any]] = {}
    statuses: dict[str, list[str]] = {}
    times: dict[str, list[_dt.datetime | None]] = {}
    for name, result in zip(body["metadata"]["feature_names"], body["results"]):
        columns[name] = result["values"]
        if name in entities:
            continue
        statuses[name] = list(result["statuses"])
        times[name] = [
            # Feast's convention: the epoch stands for "no event time".
            None if ts == "1970-01-01T00:00:00Z" else _dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
            for ts in result["event_timestamps"]
        ]
    return OnlineResponse(pa.table(columns), statuses, times, body["metadata"].get("lineage") or {})
