"""Skewless transforms in Python.

A transform is a pure function from input columns to output columns, built
into a WebAssembly component with componentize-py (`skewless build`) and run
by the same host that runs Rust, JavaScript and C transforms. This module does
the work of the WIT contract (`wit/0.1.0/transform.wit`, which the host
still runs; lists and vectors need 0.2.0 and come to this SDK later): it turns the host's flat
column buffers and validity bitmaps into Python values (None for null), checks
the batch against the declared schema, and turns the results back.

Declare the fields once and write a row function::

    from skewless_sdk import Float32, Float64, Int64, RowError, export, row_transform

    @row_transform(
        name="my_transform", version="1.0.0",
        inputs={"conv_rate": Float32, "val_to_add": Int64},
        outputs={"plus_val": Float64},
    )
    def my_transform(conv_rate: float | None, val_to_add: int | None) -> dict | None:
        if conv_rate is None or val_to_add is None:
            return None                      # every output null
        return {"plus_val": conv_rate + val_to_add}

    Transform = export(my_transform)         # what componentize-py exports

or a column function (`@column_transform`) that takes one list per input and
returns one list per output. Raise `RowError` to fail one row: its outputs
become null, the host records the message, and the other rows go on. Any
other exception fails the whole batch with its message.

A user-defined aggregation function (`wit/aggregator.wit`, in an
`aggregator.py`) is a class with a typed state: any JSON value (dicts, lists,
numbers, strings), stored with sorted keys so that equal states are equal
bytes::

    from skewless_sdk import Float64, aggregator, export_aggregator

    @aggregator(name="max_abs", version="1.0.0", input=Float64, output=Float64)
    class MaxAbs:
        def initial(self):                 # the state of no events
            return None
        def update(self, state, value):    # value is never None
            return abs(value) if state is None else max(state, abs(value))
        def merge(self, state, later):     # later's events come after state's
            return later if state is None else state if later is None else max(state, later)
        def finalize(self, state):         # the feature value, None for null
            return state

    Aggregator = export_aggregator(MaxAbs)  # what componentize-py exports

`skewless apply` checks that merging with `initial()` changes nothing and
that folding events at once or in two parts gives the same state.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from componentize_py_types import Err
from wit_world.imports import types as wit

__all__ = [
    "Boolean",
    "Int64",
    "Float32",
    "Float64",
    "Utf8",
    "Timestamp",
    "RowError",
    "row_transform",
    "column_transform",
    "export",
    "aggregator",
    "export_aggregator",
]

Boolean = wit.DataType.BOOLEAN
"""bool"""
Int64 = wit.DataType.INT64
"""int (signed 64-bit)"""
Float32 = wit.DataType.FLOAT32
"""float, stored in single precision"""
Float64 = wit.DataType.FLOAT64
"""float"""
Utf8 = wit.DataType.UTF8
"""str"""
Timestamp = wit.DataType.TIMESTAMP
"""int: microseconds since the Unix epoch, UTC"""

_TYPE_NAMES = {
    Boolean: "boolean",
    Int64: "int64",
    Float32: "float32",
    Float64: "float64",
    Utf8: "utf8",
    Timestamp: "timestamp",
}

_VALUES_BY_TYPE = {
    wit.Values_Boolean: Boolean,
    wit.Values_Int64: Int64,
    wit.Values_Float32: Float32,
    wit.Values_Float64: Float64,
    wit.Values_Utf8: Utf8,
    wit.Values_Timestamp: Timestamp,
}


class RowError(Exception):
    """Fails one row: its outputs are null and the host records the message."""


@dataclass(frozen=True)
class _Schema:
    name: str
    version: str
    inputs: dict[str, wit.DataType]
    outputs: dict[str, wit.DataType]


def _bits(bitmap: bytes, rows: int) -> list[bool]:
    return [bool(bitmap[i >> 3] >> (i & 7) & 1) for i in range(rows)]


def _decode(column: wit.Column, rows: int) -> list[Any]:
    """One input column as Python values, None where the row is null."""
    values = column.values
    if isinstance(values, wit.Values_Boolean):
        decoded: list[Any] = _bits(values.value, rows)
    elif isinstance(values, wit.Values_Utf8):
        offsets, data = values.value.offsets, values.value.bytes
        decoded = [data[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(rows)]
    else:
        decoded = list(values.value)
    if column.validity is not None:
        valid = _bits(column.validity, rows)
        decoded = [v if ok else None for v, ok in zip(decoded, valid)]
    return decoded


def _pack(flags: Sequence[bool]) -> bytes:
    packed = bytearray((len(flags) + 7) // 8)
    for i, flag in enumerate(flags):
        if flag:
            packed[i >> 3] |= 1 << (i & 7)
    return bytes(packed)


def _encode(name: str, data_type: wit.DataType, values: Sequence[Any], failed: set[int]) -> wit.Column:
    """One output column from Python values; None and failed rows are null."""
    valid = [v is not None and i not in failed for i, v in enumerate(values)]
    validity = None if all(valid) else _pack(valid)
    try:
        if data_type is Boolean:
            encoded: wit.Values = wit.Values_Boolean(_pack([bool(v) and ok for v, ok in zip(values, valid)]))
        elif data_type is Utf8:
            offsets, chunks, end = [0], [], 0
            for v, ok in zip(values, valid):
                if ok:
                    chunk = v.encode("utf-8")
                    chunks.append(chunk)
                    end += len(chunk)
                offsets.append(end)
            encoded = wit.Values_Utf8(wit.Utf8Values(offsets, b"".join(chunks)))
        elif data_type is Float32 or data_type is Float64:
            floats = [float(v) if ok else 0.0 for v, ok in zip(values, valid)]
            encoded = wit.Values_Float32(floats) if data_type is Float32 else wit.Values_Float64(floats)
        else:
            ints = [int(v) if ok else 0 for v, ok in zip(values, valid)]
            encoded = wit.Values_Int64(ints) if data_type is Int64 else wit.Values_Timestamp(ints)
    except (TypeError, ValueError, AttributeError) as e:
        raise Err(f"transform bug: output `{name}` is declared {_TYPE_NAMES[data_type]}: {e}") from None
    return wit.Column(name, encoded, validity)


def _columns(schema: _Schema, batch: wit.Batch) -> dict[str, list[Any]]:
    """The declared input columns, checked against the batch."""
    by_name = {c.name: c for c in batch.columns}
    columns = {}
    for name, data_type in schema.inputs.items():
        column = by_name.get(name)
        if column is None:
            raise Err(f"input column `{name}` ({_TYPE_NAMES[data_type]}) is missing from the batch")
        actual = _VALUES_BY_TYPE[type(column.values)]
        if actual is not data_type:
            raise Err(
                f"input column `{name}` is {_TYPE_NAMES[actual]}, but the transform declares {_TYPE_NAMES[data_type]}"
            )
        columns[name] = _decode(column, batch.num_rows)
    return columns


def _output(schema: _Schema, rows: int, outputs: Mapping[str, Sequence[Any]], errors: dict[int, str]) -> wit.Output:
    extra = [name for name in outputs if name not in schema.outputs]
    if extra:
        raise Err(f"transform bug: output `{extra[0]}` is not declared in the schema")
    columns = []
    failed = set(errors)
    for name, data_type in schema.outputs.items():
        if name not in outputs:
            raise Err(f"transform bug: declared output `{name}` was not produced")
        values = outputs[name]
        if len(values) != rows:
            raise Err(f"transform bug: output `{name}` has {len(values)} rows, the input has {rows}")
        columns.append(_encode(name, data_type, values, failed))
    row_errors = [wit.RowError(row, message) for row, message in sorted(errors.items())]
    return wit.Output(wit.Batch(rows, columns), row_errors)


class _Transform:
    """A declared transform; `export` turns it into the component's export."""

    def __init__(self, schema: _Schema, compute: Callable[[dict[str, list[Any]], int], wit.Output]):
        self.schema = schema
        self._compute = compute

    def describe(self) -> wit.Description:
        def fields(declared: dict[str, wit.DataType]) -> list[wit.Field]:
            return [wit.Field(name, data_type, True) for name, data_type in declared.items()]

        s = self.schema
        return wit.Description(s.name, s.version, fields(s.inputs), fields(s.outputs))

    def run(self, batch: wit.Batch) -> wit.Output:
        try:
            return self._compute(_columns(self.schema, batch), batch.num_rows)
        except Err:
            raise
        except Exception as e:  # a bug in the transform fails the batch, with where it happened
            where = traceback.extract_tb(e.__traceback__)[-1]
            raise Err(f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno})") from None


def _schema(name: str, version: str, inputs: Mapping[str, wit.DataType], outputs: Mapping[str, wit.DataType]) -> _Schema:
    for kind, fields in (("input", inputs), ("output", outputs)):
        for field, data_type in fields.items():
            if data_type not in _TYPE_NAMES:
                raise TypeError(f"{kind} `{field}` of `{name}`: {data_type!r} is not a skewless_sdk type")
    return _Schema(name, version, dict(inputs), dict(outputs))


def row_transform(
    *, name: str, version: str, inputs: Mapping[str, wit.DataType], outputs: Mapping[str, wit.DataType]
) -> Callable[[Callable[..., Mapping[str, Any] | None]], _Transform]:
    """Declares a transform computed one row at a time.

    The function takes one keyword argument per input (None where null) and
    returns a dict of outputs (a missing key or None is a null output), or None
    for all-null outputs. `raise RowError(message)` fails that row alone.
    """
    schema = _schema(name, version, inputs, outputs)

    def wrap(function: Callable[..., Mapping[str, Any] | None]) -> _Transform:
        def compute(columns: dict[str, list[Any]], rows: int) -> wit.Output:
            names = list(columns)
            results: dict[str, list[Any]] = {out: [None] * rows for out in schema.outputs}
            errors: dict[int, str] = {}
            for row, values in enumerate(zip(*columns.values()) if names else ((),) * rows):
                try:
                    result = function(**dict(zip(names, values)))
                except RowError as e:
                    errors[row] = str(e)
                    continue
                if result is None:
                    continue
                for out, value in result.items():
                    if out not in results:
                        raise Err(f"transform bug: output `{out}` is not declared in the schema")
                    results[out][row] = value
            return _output(schema, rows, results, errors)

        return _Transform(schema, compute)

    return wrap


def column_transform(
    *, name: str, version: str, inputs: Mapping[str, wit.DataType], outputs: Mapping[str, wit.DataType]
) -> Callable[[Callable[..., Any]], _Transform]:
    """Declares a transform computed a column at a time.

    The function takes one keyword argument per input, a list with None where
    null, and returns a dict of output lists, or a pair (outputs, row_errors)
    where row_errors maps a row index to its message.
    """
    schema = _schema(name, version, inputs, outputs)

    def wrap(function: Callable[..., Any]) -> _Transform:
        def compute(columns: dict[str, list[Any]], rows: int) -> wit.Output:
            result = function(**columns)
            outputs, errors = result if isinstance(result, tuple) else (result, {})
            return _output(schema, rows, outputs, dict(errors))

        return _Transform(schema, compute)

    return wrap


def export(transform: _Transform) -> type:
    """The class componentize-py exports as `skewless:transform/transform`.

    Bind it to the name `Transform` at the top level of the app module.
    """
    if not isinstance(transform, _Transform):
        raise TypeError("export() takes a function decorated with @row_transform or @column_transform")

    class Transform:
        def describe(self) -> wit.Description:
            return transform.describe()

        def run(self, input: wit.Batch) -> wit.Output:
            return transform.run(input)

    return Transform


class _Aggregator:
    """A declared aggregation function; `export_aggregator` exports it."""

    def __init__(self, impl: Any, name: str, version: str, input: wit.DataType, output: wit.DataType):
        self.impl, self.name, self.version, self.input, self.output = impl, name, version, input, output

    def _decode(self, state: bytes) -> Any:
        return self.impl.initial() if len(state) == 0 else json.loads(bytes(state))

    def _encode(self, state: Any) -> bytes:
        return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()

    def _fold(self, states: list[bytes], groups: list[int], items: list[Any], step: Callable[[Any, Any], Any]) -> list[bytes]:
        if len(groups) != len(items):
            raise Err(f"{self.name}: {len(groups)} groups for {len(items)} items")
        decoded: dict[int, Any] = {}
        for group, item in zip(groups, items):
            if group >= len(states):
                raise Err(f"{self.name}: group {group} of {len(states)}")
            state = decoded[group] if group in decoded else self._decode(states[group])
            decoded[group] = step(state, item)
        return [self._encode(decoded[g]) if g in decoded else bytes(s) for g, s in enumerate(states)]

    def update(self, states: list[bytes], groups: list[int], batch: wit.Batch) -> list[bytes]:
        if not batch.columns:
            raise Err(f"{self.name}: the input batch has no column")
        values = _decode(batch.columns[0], batch.num_rows)
        return self._fold(states, groups, values, self.impl.update)

    def merge(self, states: list[bytes], groups: list[int], parts: list[bytes]) -> list[bytes]:
        return self._fold(states, groups, [self._decode(p) for p in parts], self.impl.merge)

    def finalize(self, states: list[bytes]) -> wit.Column:
        values = [self.impl.finalize(self._decode(s)) for s in states]
        return _encode("value", self.output, values, set())


def aggregator(*, name: str, version: str, input: wit.DataType, output: wit.DataType) -> Callable[[type], _Aggregator]:
    """Declares a user-defined aggregation function: a class with `initial()`,
    `update(state, value)`, `merge(state, later)` and `finalize(state)`, each
    returning the new state (or the value, for `finalize`)."""

    def wrap(cls: type) -> _Aggregator:
        return _Aggregator(cls(), name, version, input, output)

    return wrap


def export_aggregator(declared: _Aggregator) -> type:
    """The class componentize-py exports as `skewless:transform/aggregator`.

    Bind it to the name `Aggregator` at the top level of `aggregator.py`.
    """
    if not isinstance(declared, _Aggregator):
        raise TypeError("export_aggregator() takes a class decorated with @aggregator")
    from wit_world.exports.aggregator import AggregatorDescription

    class Aggregator:
        def describe(self) -> Any:
            return AggregatorDescription(
                declared.name,
                declared.version,
                wit.Field("input", declared.input, True),
                wit.Field("value", declared.output, True),
            )

        def update(self, states: list[bytes], groups: list[int], input: wit.Batch) -> list[bytes]:
            return _guarded(lambda: declared.update(states, groups, input))

        def merge(self, states: list[bytes], groups: list[int], parts: list[bytes]) -> list[bytes]:
            return _guarded(lambda: declared.merge(states, groups, parts))

        def finalize(self, states: list[bytes]) -> wit.Column:
            return _guarded(lambda: declared.finalize(states))

    return Aggregator


def _guarded(call: Callable[[], Any]) -> Any:
    """Runs an aggregator step; an exception fails the call with its message."""
    try:
        return call()
    except Err:
        raise
    except Exception as e:
        raise Err(f"{type(e).__name__}: {e}") from None
