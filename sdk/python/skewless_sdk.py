"""Skewless transforms in Python.

A transform is a pure function from input columns to output columns, built
into a WebAssembly component with componentize-py (`skewless build`) and run
by the same host that runs Rust, JavaScript and C transforms. This module does
the work of the WIT contract (`wit/transform.wit`, 0.2.0): it turns the
host's flat column buffers and validity bitmaps into Python values (None for
null; a list for `List(...)` and `Vector(n)`; a UTC `datetime` for
`Timestamp`), checks the batch against the declared schema, and turns the
results back.

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

import datetime as _dt
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
    "List",
    "Vector",
    "DataType",
    "RowError",
    "row_transform",
    "column_transform",
    "export",
    "aggregator",
    "export_aggregator",
]


@dataclass(frozen=True)
class DataType:
    """A column type: one of the six scalars, `List(scalar)` or `Vector(n)`."""

    #: The scalar type (of the list's elements for a list); None for a vector.
    scalar: wit.ScalarType | None
    #: Whether each row is a list of `scalar`.
    is_list: bool = False
    #: A vector's dimension; None for the other types.
    dimension: int | None = None

    def __str__(self) -> str:
        if self.dimension is not None:
            return f"vector<{self.dimension}>"
        name = _SCALAR_NAMES[self.scalar]
        return f"list<{name}>" if self.is_list else name

    def to_wit(self) -> wit.DataType:
        if self.dimension is not None:
            return wit.DataType_Vector(self.dimension)
        return wit.DataType_List(self.scalar) if self.is_list else wit.DataType_Scalar(self.scalar)


_SCALAR_NAMES = {
    wit.ScalarType.BOOLEAN: "boolean",
    wit.ScalarType.INT64: "int64",
    wit.ScalarType.FLOAT32: "float32",
    wit.ScalarType.FLOAT64: "float64",
    wit.ScalarType.UTF8: "utf8",
    wit.ScalarType.TIMESTAMP: "timestamp",
}

Boolean = DataType(wit.ScalarType.BOOLEAN)
"""bool"""
Int64 = DataType(wit.ScalarType.INT64)
"""int (signed 64-bit)"""
Float32 = DataType(wit.ScalarType.FLOAT32)
"""float, stored in single precision"""
Float64 = DataType(wit.ScalarType.FLOAT64)
"""float"""
Utf8 = DataType(wit.ScalarType.UTF8)
"""str"""
Timestamp = DataType(wit.ScalarType.TIMESTAMP)
"""datetime.datetime, UTC (an output may also be int microseconds since the epoch)"""


def List(item: DataType) -> DataType:
    """A list of any length of one scalar type per row, as a Python list;
    its elements are never None (a whole row may be)."""
    if item.is_list or item.dimension is not None:
        raise TypeError(f"List({item}): a list holds one of the six scalar types")
    return DataType(item.scalar, is_list=True)


def Vector(dimension: int) -> DataType:
    """Exactly `dimension` finite float32 per row (an embedding), as a list of floats."""
    if not isinstance(dimension, int) or not 1 <= dimension <= 65_536:
        raise TypeError(f"Vector({dimension!r}): the dimension is a whole number from 1 to 65536")
    return DataType(None, dimension=dimension)


_SCALAR_OF_VALUES = {
    wit.ScalarValues_Boolean: wit.ScalarType.BOOLEAN,
    wit.ScalarValues_Int64: wit.ScalarType.INT64,
    wit.ScalarValues_Float32: wit.ScalarType.FLOAT32,
    wit.ScalarValues_Float64: wit.ScalarType.FLOAT64,
    wit.ScalarValues_Utf8: wit.ScalarType.UTF8,
    wit.ScalarValues_Timestamp: wit.ScalarType.TIMESTAMP,
}

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MICROSECOND = _dt.timedelta(microseconds=1)


def _micros(value: Any) -> int:
    """A timestamp output as microseconds: a datetime (naive means UTC) or an int."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        return (value - _EPOCH) // _MICROSECOND
    return int(value)


class RowError(Exception):
    """Fails one row: its outputs are null and the host records the message."""


@dataclass(frozen=True)
class _Schema:
    name: str
    version: str
    inputs: dict[str, DataType]
    outputs: dict[str, DataType]


def _bits(bitmap: bytes, rows: int) -> list[bool]:
    return [bool(bitmap[i >> 3] >> (i & 7) & 1) for i in range(rows)]


def _decode_scalars(values: wit.ScalarValues, count: int) -> list[Any]:
    """`count` scalar values as Python values (timestamps as UTC datetimes)."""
    if isinstance(values, wit.ScalarValues_Boolean):
        return _bits(values.value, count)
    if isinstance(values, wit.ScalarValues_Utf8):
        offsets, data = values.value.offsets, values.value.bytes
        return [data[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(count)]
    if isinstance(values, wit.ScalarValues_Timestamp):
        return [_EPOCH + v * _MICROSECOND for v in values.value[:count]]
    return list(values.value[:count])


def _type_of(values: wit.Values, rows: int) -> DataType:
    """The type a column's values have (a vector's dimension from its length)."""
    if isinstance(values, wit.Values_Scalar):
        return DataType(_SCALAR_OF_VALUES[type(values.value)])
    if isinstance(values, wit.Values_List):
        return DataType(_SCALAR_OF_VALUES[type(values.value.elements)], is_list=True)
    return DataType(None, dimension=len(values.value) // rows if rows else None)


def _decode(column: wit.Column, rows: int, data_type: DataType) -> list[Any]:
    """One input column as Python values, None where the row is null."""
    values = column.values
    if isinstance(values, wit.Values_Scalar):
        decoded = _decode_scalars(values.value, rows)
    elif isinstance(values, wit.Values_List):
        offsets = values.value.offsets
        elements = _decode_scalars(values.value.elements, offsets[rows] if rows else 0)
        decoded = [elements[offsets[i] : offsets[i + 1]] for i in range(rows)]
    else:
        n, flat = data_type.dimension, values.value
        decoded = [flat[i * n : (i + 1) * n] for i in range(rows)]
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


def _encode_scalars(scalar: wit.ScalarType, values: Sequence[Any], valid: Sequence[bool]) -> wit.ScalarValues:
    """Scalar values, zeros where not valid."""
    if scalar == wit.ScalarType.BOOLEAN:
        return wit.ScalarValues_Boolean(_pack([bool(v) and ok for v, ok in zip(values, valid)]))
    if scalar == wit.ScalarType.UTF8:
        offsets, chunks, end = [0], [], 0
        for v, ok in zip(values, valid):
            if ok:
                chunk = v.encode("utf-8")
                chunks.append(chunk)
                end += len(chunk)
            offsets.append(end)
        return wit.ScalarValues_Utf8(wit.Utf8Values(offsets, b"".join(chunks)))
    if scalar == wit.ScalarType.FLOAT32 or scalar == wit.ScalarType.FLOAT64:
        floats = [float(v) if ok else 0.0 for v, ok in zip(values, valid)]
        return wit.ScalarValues_Float32(floats) if scalar == wit.ScalarType.FLOAT32 else wit.ScalarValues_Float64(floats)
    if scalar == wit.ScalarType.TIMESTAMP:
        return wit.ScalarValues_Timestamp([_micros(v) if ok else 0 for v, ok in zip(values, valid)])
    return wit.ScalarValues_Int64([int(v) if ok else 0 for v, ok in zip(values, valid)])


def _encode(name: str, data_type: DataType, values: Sequence[Any], failed: set[int]) -> wit.Column:
    """One output column from Python values; None and failed rows are null."""
    valid = [v is not None and i not in failed for i, v in enumerate(values)]
    validity = None if all(valid) else _pack(valid)
    try:
        if data_type.dimension is not None:
            n, flat = data_type.dimension, []
            for row, (v, ok) in enumerate(zip(values, valid)):
                components = [float(c) for c in v] if ok else [0.0] * n
                if len(components) != n:
                    raise ValueError(f"row {row} has {len(components)} components, not {n}")
                flat.extend(components)
            encoded: wit.Values = wit.Values_Vector(flat)
        elif data_type.is_list:
            offsets, elements = [0], []
            for row, (v, ok) in enumerate(zip(values, valid)):
                if ok:
                    items = list(v)
                    if any(item is None for item in items):
                        raise ValueError(f"row {row} holds None: list elements are never null")
                    elements.extend(items)
                offsets.append(len(elements))
            scalars = _encode_scalars(data_type.scalar, elements, [True] * len(elements))
            encoded = wit.Values_List(wit.ListValues(offsets, scalars))
        else:
            encoded = wit.Values_Scalar(_encode_scalars(data_type.scalar, values, valid))
    except (TypeError, ValueError, AttributeError, OverflowError) as e:
        raise Err(f"transform bug: output `{name}` is declared {data_type}: {e}") from None
    return wit.Column(name, encoded, validity)


def _columns(schema: _Schema, batch: wit.Batch) -> dict[str, list[Any]]:
    """The declared input columns, checked against the batch."""
    by_name = {c.name: c for c in batch.columns}
    columns = {}
    for name, data_type in schema.inputs.items():
        column = by_name.get(name)
        if column is None:
            raise Err(f"input column `{name}` ({data_type}) is missing from the batch")
        actual = _type_of(column.values, batch.num_rows)
        if actual != data_type and not (batch.num_rows == 0 and actual.dimension is None and data_type.dimension):
            raise Err(f"input column `{name}` is {actual}, but the transform declares {data_type}")
        columns[name] = _decode(column, batch.num_rows, data_type)
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
        def fields(declared: dict[str, DataType]) -> list[wit.Field]:
            return [wit.Field(name, data_type.to_wit(), True) for name, data_type in declared.items()]

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


def _schema(name: str, version: str, inputs: Mapping[str, DataType], outputs: Mapping[str, DataType]) -> _Schema:
    for kind, fields in (("input", inputs), ("output", outputs)):
        for field, data_type in fields.items():
            if not isinstance(data_type, DataType):
                raise TypeError(f"{kind} `{field}` of `{name}`: {data_type!r} is not a skewless_sdk type")
    return _Schema(name, version, dict(inputs), dict(outputs))


def row_transform(
    *, name: str, version: str, inputs: Mapping[str, DataType], outputs: Mapping[str, DataType]
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
    *, name: str, version: str, inputs: Mapping[str, DataType], outputs: Mapping[str, DataType]
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

    def __init__(self, impl: Any, name: str, version: str, input: DataType, output: DataType):
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
        values = _decode(batch.columns[0], batch.num_rows, self.input)
        return self._fold(states, groups, values, self.impl.update)

    def merge(self, states: list[bytes], groups: list[int], parts: list[bytes]) -> list[bytes]:
        return self._fold(states, groups, [self._decode(p) for p in parts], self.impl.merge)

    def finalize(self, states: list[bytes]) -> wit.Column:
        values = [self.impl.finalize(self._decode(s)) for s in states]
        return _encode("value", self.output, values, set())


def aggregator(*, name: str, version: str, input: DataType, output: DataType) -> Callable[[type], _Aggregator]:
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
                wit.Field("input", declared.input.to_wit(), True),
                wit.Field("value", declared.output.to_wit(), True),
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
