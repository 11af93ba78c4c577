/**
 * Skewless transforms in JavaScript.
 *
 * A transform is a pure function from input columns to output columns, built
 * into a WebAssembly component with ComponentizeJS (`skewless build`) and run
 * by the same host that runs Rust, Python and C transforms. This module does
 * the work of the WIT contract (`wit/transform.wit`, 0.2.0): it turns the
 * host's flat column buffers and validity bitmaps into plain values (null for
 * null), checks the batch against the declared schema, and turns the results
 * back.
 *
 * Declare the fields once and write a row function:
 *
 *     import { Float32, Float64, Int64, RowError, rowTransform } from "./skewless_sdk.js";
 *
 *     export const transform = rowTransform({
 *       name: "my_transform",
 *       version: "1.0.0",
 *       inputs: { conv_rate: Float32, val_to_add: Int64 },
 *       outputs: { plus_val: Float64 },
 *       row({ conv_rate, val_to_add }) {
 *         if (conv_rate === null || val_to_add === null) return null; // every output null
 *         return { plus_val: conv_rate + Number(val_to_add) };
 *       },
 *     });
 *
 * or a column function (`columnTransform`, `columns(inputs)`) that takes one
 * array per input and returns one array per output. Values are numbers,
 * strings and booleans; int64 and timestamp (microseconds since the Unix
 * epoch, UTC) are BigInts, so no digit is lost. `List(Utf8)` values are
 * arrays of the element's values; `Vector(128)` values are Float32Arrays in
 * and any array of numbers out (rounded to float32). Throw `RowError` to fail one
 * row: its outputs become null and the host records the message. Any other
 * exception fails the whole batch with its message.
 *
 * `skewless build` puts this file beside your transform.js; export the
 * transform as `transform`, the name of the WIT interface.
 */

export const Bool = "boolean"; // not `Boolean`: that would shadow the global
export const Int64 = "int64";
export const Float32 = "float32";
export const Float64 = "float64";
export const Utf8 = "utf8";
export const Timestamp = "timestamp";

const SCALARS = [Bool, Int64, Float32, Float64, Utf8, Timestamp];

/** A list of any length of one scalar type per row; its elements are never null. */
export function List(item) {
  if (!SCALARS.includes(item)) throw new TypeError(`List(${item}): a list holds one of the six scalar types`);
  return `list<${item}>`;
}

/** Exactly `dimension` finite float32 per row: an embedding. */
export function Vector(dimension) {
  if (!Number.isInteger(dimension) || dimension < 1 || dimension > 65536) {
    throw new TypeError(`Vector(${dimension}): the dimension is a whole number from 1 to 65536`);
  }
  return `vector<${dimension}>`;
}

/** A type's parts: { scalar, list } or { dimension }; undefined if it is not a type. */
function parts(type) {
  if (SCALARS.includes(type)) return { scalar: type, list: false };
  const list = /^list<(\w+)>$/.exec(type);
  if (list && SCALARS.includes(list[1])) return { scalar: list[1], list: true };
  const vector = /^vector<(\d+)>$/.exec(type);
  if (vector) return { dimension: Number(vector[1]) };
  return undefined;
}

/** The WIT `data-type` of a type. */
function witType(type) {
  const p = parts(type);
  if (p.dimension !== undefined) return { tag: "vector", val: p.dimension };
  return { tag: p.list ? "list" : "scalar", val: p.scalar };
}

/** The type of a column's WIT values (a vector's dimension from its length). */
function typeOf(values, rows) {
  if (values.tag === "scalar") return values.val.tag;
  if (values.tag === "list") return `list<${values.val.elements.tag}>`;
  return rows > 0 ? `vector<${values.val.length / rows}>` : "vector";
}

/** Fails one row: its outputs are null and the host records the message. */
export class RowError extends Error {}

/** An error that fails the whole batch with `message`. */
class BatchError extends Error {}

const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
const utf8Encoder = new TextEncoder();

function bit(bitmap, row) {
  return (bitmap[row >> 3] >> (row & 7)) & 1;
}

function pack(flags) {
  const packed = new Uint8Array((flags.length + 7) >> 3);
  for (let i = 0; i < flags.length; i++) {
    if (flags[i]) packed[i >> 3] |= 1 << (i & 7);
  }
  return packed;
}

/** `count` scalar values (WIT `scalar-values`) as plain values. */
function decodeScalars({ tag, val }, count) {
  const values = new Array(count);
  if (tag === Bool) {
    for (let i = 0; i < count; i++) values[i] = bit(val, i) === 1;
  } else if (tag === Utf8) {
    const { offsets, bytes } = val;
    for (let i = 0; i < count; i++) values[i] = utf8Decoder.decode(bytes.subarray(offsets[i], offsets[i + 1]));
  } else {
    for (let i = 0; i < count; i++) values[i] = val[i];
  }
  return values;
}

/** One input column as plain values, null where the row is null. */
function decode(column, rows, type) {
  const { tag, val } = column.values;
  let values;
  if (tag === "scalar") {
    values = decodeScalars(val, rows);
  } else if (tag === "list") {
    const { offsets, elements } = val;
    const items = decodeScalars(elements, rows > 0 ? offsets[rows] : 0);
    values = new Array(rows);
    for (let i = 0; i < rows; i++) values[i] = items.slice(offsets[i], offsets[i + 1]);
  } else {
    const n = parts(type).dimension;
    values = new Array(rows);
    for (let i = 0; i < rows; i++) values[i] = val.subarray(i * n, (i + 1) * n);
  }
  if (column.validity != null) {
    for (let i = 0; i < rows; i++) if (!bit(column.validity, i)) values[i] = null;
  }
  return values;
}

/** Scalar values as WIT `scalar-values`, zeros where not valid. */
function encodeScalars(scalar, values, valid) {
  const rows = values.length;
  if (scalar === Bool) return { tag: scalar, val: pack(values.map((v, i) => valid[i] && !!v)) };
  if (scalar === Utf8) {
    const chunks = [];
    const offsets = new Int32Array(rows + 1);
    let end = 0;
    for (let i = 0; i < rows; i++) {
      if (valid[i]) {
        if (typeof values[i] !== "string") throw new TypeError(`value ${i} is ${typeof values[i]}, not a string`);
        const chunk = utf8Encoder.encode(values[i]);
        chunks.push(chunk);
        end += chunk.length;
      }
      offsets[i + 1] = end;
    }
    const bytes = new Uint8Array(end);
    let at = 0;
    for (const chunk of chunks) {
      bytes.set(chunk, at);
      at += chunk.length;
    }
    return { tag: scalar, val: { offsets, bytes } };
  }
  if (scalar === Float32 || scalar === Float64) {
    const floats = scalar === Float32 ? new Float32Array(rows) : new Float64Array(rows);
    for (let i = 0; i < rows; i++) if (valid[i]) floats[i] = Number(values[i]);
    return { tag: scalar, val: floats };
  }
  const ints = new BigInt64Array(rows);
  for (let i = 0; i < rows; i++) if (valid[i]) ints[i] = BigInt(values[i]);
  return { tag: scalar, val: ints };
}

/** One output column from plain values; null and failed rows are null. */
function encode(name, type, values, failed) {
  const rows = values.length;
  const valid = new Array(rows);
  let allValid = true;
  for (let i = 0; i < rows; i++) {
    valid[i] = values[i] !== null && values[i] !== undefined && !failed.has(i);
    allValid &&= valid[i];
  }
  const { scalar, list, dimension } = parts(type);
  let encoded;
  try {
    if (dimension !== undefined) {
      const flat = new Float32Array(rows * dimension);
      for (let i = 0; i < rows; i++) {
        if (!valid[i]) continue;
        if (values[i].length !== dimension) throw new TypeError(`row ${i} has ${values[i].length} components, not ${dimension}`);
        for (let j = 0; j < dimension; j++) flat[i * dimension + j] = Number(values[i][j]);
      }
      encoded = { tag: "vector", val: flat };
    } else if (list) {
      const offsets = new Int32Array(rows + 1);
      const items = [];
      for (let i = 0; i < rows; i++) {
        if (valid[i]) {
          for (const item of values[i]) {
            if (item === null || item === undefined) throw new TypeError(`row ${i} holds null: list elements are never null`);
            items.push(item);
          }
        }
        offsets[i + 1] = items.length;
      }
      encoded = { tag: "list", val: { offsets, elements: encodeScalars(scalar, items, items.map(() => true)) } };
    } else {
      encoded = { tag: "scalar", val: encodeScalars(scalar, values, valid) };
    }
  } catch (e) {
    throw new BatchError(`transform bug: output \`${name}\` is declared ${type}: ${e.message}`);
  }
  return { name, values: encoded, validity: allValid ? undefined : pack(valid) };
}

/** The declared input columns, checked against the batch. */
function inputColumns(schema, batch) {
  const columns = {};
  for (const [name, type] of Object.entries(schema.inputs)) {
    const column = batch.columns.find((c) => c.name === name);
    if (column === undefined) throw new BatchError(`input column \`${name}\` (${type}) is missing from the batch`);
    const actual = typeOf(column.values, batch.numRows);
    if (actual !== type && !(batch.numRows === 0 && actual === "vector" && type.startsWith("vector<"))) {
      throw new BatchError(`input column \`${name}\` is ${actual}, but the transform declares ${type}`);
    }
    columns[name] = decode(column, batch.numRows, type);
  }
  return columns;
}

function output(schema, rows, outputs, errors) {
  for (const name of Object.keys(outputs)) {
    if (!(name in schema.outputs)) throw new BatchError(`transform bug: output \`${name}\` is not declared in the schema`);
  }
  const failed = new Set(errors.keys());
  const columns = Object.entries(schema.outputs).map(([name, type]) => {
    const values = outputs[name];
    if (values === undefined) throw new BatchError(`transform bug: declared output \`${name}\` was not produced`);
    if (values.length !== rows) {
      throw new BatchError(`transform bug: output \`${name}\` has ${values.length} rows, the input has ${rows}`);
    }
    return encode(name, type, Array.from(values), failed);
  });
  const rowErrors = [...errors.entries()].sort((a, b) => a[0] - b[0]).map(([row, message]) => ({ row, message }));
  return { batch: { numRows: rows, columns }, rowErrors };
}

function checkSchema({ name, version, inputs, outputs }) {
  for (const [kind, fields] of [["input", inputs], ["output", outputs]]) {
    for (const [field, type] of Object.entries(fields ?? {})) {
      if (parts(type) === undefined) throw new TypeError(`${kind} \`${field}\` of \`${name}\`: ${type} is not a skewless type`);
    }
  }
  return { name, version, inputs: { ...inputs }, outputs: { ...outputs } };
}

/** The object ComponentizeJS exports as `skewless:transform/transform`. */
function exported(schema, compute) {
  const fields = (declared) =>
    Object.entries(declared).map(([name, type]) => ({ name, dataType: witType(type), nullable: true }));
  return {
    describe() {
      return { name: schema.name, version: schema.version, inputs: fields(schema.inputs), outputs: fields(schema.outputs) };
    },
    run(batch) {
      try {
        return compute(inputColumns(schema, batch), batch.numRows);
      } catch (e) {
        // A thrown string becomes the `err` of `run`: the batch fails with this message.
        if (e instanceof BatchError) throw e.message;
        const where = (e?.stack ?? "").split("\n")[0];
        throw `${e?.name ?? "Error"}: ${e?.message ?? e}${where ? ` (at ${where})` : ""}`;
      }
    },
  };
}

/**
 * Declares a transform computed one row at a time. `row(inputs)` takes an
 * object with one property per input (null where null) and returns an object
 * of outputs (a missing property or null is a null output), or null for
 * all-null outputs. `throw new RowError(message)` fails that row alone.
 */
export function rowTransform({ name, version, inputs, outputs, row }) {
  const schema = checkSchema({ name, version, inputs, outputs });
  const outputNames = Object.keys(schema.outputs);
  return exported(schema, (columns, rows) => {
    const names = Object.keys(columns);
    const results = Object.fromEntries(outputNames.map((out) => [out, new Array(rows).fill(null)]));
    const errors = new Map();
    for (let i = 0; i < rows; i++) {
      const args = {};
      for (const input of names) args[input] = columns[input][i];
      let result;
      try {
        result = row(args);
      } catch (e) {
        if (!(e instanceof RowError)) throw e;
        errors.set(i, e.message);
        continue;
      }
      if (result === null || result === undefined) continue;
      for (const [out, value] of Object.entries(result)) {
        if (!(out in results)) throw new BatchError(`transform bug: output \`${out}\` is not declared in the schema`);
        results[out][i] = value;
      }
    }
    return output(schema, rows, results, errors);
  });
}

/**
 * Declares a transform computed a column at a time. `columns(inputs)` takes
 * an object with one array per input (null where null) and returns an object
 * of output arrays, or `{ outputs, rowErrors }` where rowErrors maps a row
 * index to its message (a Map or a plain object).
 */
export function columnTransform({ name, version, inputs, outputs, columns }) {
  const schema = checkSchema({ name, version, inputs, outputs });
  return exported(schema, (input, rows) => {
    const result = columns(input);
    const withErrors = result !== null && typeof result === "object" && "outputs" in result && "rowErrors" in result;
    const errors = new Map(
      withErrors
        ? [...(result.rowErrors instanceof Map ? result.rowErrors : Object.entries(result.rowErrors))].map(([r, m]) => [Number(r), String(m)])
        : [],
    );
    return output(schema, rows, withErrors ? result.outputs : result, errors);
  });
}
