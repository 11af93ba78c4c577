/*
 * Skewless transforms in C.
 *
 * A transform is a pure function from input columns to output columns, built
 * into a WebAssembly component by `skewless build` (clang for wasm32 plus
 * wasi-libc) and run by the same host that runs Rust, Python and JavaScript
 * transforms. This header hides the WIT contract (`wit/transform.wit`, 0.2.0):
 * the SDK checks the batch against the declared inputs, hands you typed accessors
 * by input position, collects outputs by output position, and builds the flat
 * buffers and validity bitmaps the host reads.
 *
 *     #include "skewless.h"
 *
 *     static const sk_field INPUTS[] = {{"distance_km", SK_FLOAT64}, {"duration_s", SK_INT64}};
 *     static const sk_field OUTPUTS[] = {{"speed_kmh", SK_FLOAT64}};
 *     enum { DISTANCE, DURATION };   // input positions
 *     enum { SPEED };                // output positions
 *
 *     static void speed(const sk_input *in, size_t row, sk_output *out) {
 *         if (sk_is_null(in, DISTANCE, row) || sk_is_null(in, DURATION, row)) return; // outputs stay null
 *         int64_t s = sk_i64(in, DURATION, row);
 *         if (s <= 0) { sk_row_error(out, row, "duration_s must be > 0, got %lld", (long long)s); return; }
 *         sk_set_f64(out, SPEED, row, sk_f64(in, DISTANCE, row) / ((double)s / 3600.0));
 *     }
 *
 *     SK_ROW_TRANSFORM("trip_speed", "1.0.0", INPUTS, OUTPUTS, speed)
 *
 * `SK_COLUMN_TRANSFORM` takes `void f(const sk_input *in, size_t rows, sk_output *out)`
 * instead, called once per batch; there `sk_f64_values` and `sk_f64_output`
 * (and the int64 and float32 ones) hand over whole arrays, for loops that run
 * at C's speed. Every output starts null; set a value to
 * make it valid. `sk_row_error` fails one row (all its outputs become null,
 * the host records the message); `sk_fail` fails the whole batch.
 * int64 and timestamp (microseconds since the Unix epoch, UTC) are int64_t;
 * strings are UTF-8 bytes with a length, not NUL-terminated.
 *
 * Lists and vectors: declare `{"words", SK_LIST_OF(SK_UTF8)}` or
 * `{"embedding", SK_VECTOR_OF(128)}`. Read a list with `sk_list_len` and
 * `sk_list_str` (and the other element types), a vector with `sk_vector`
 * (its `dimension` floats). Write a list row by row, in row order:
 * `sk_start_list(out, WORDS, row)` makes the row an empty list, then each
 * `sk_push_str(out, WORDS, ...)` appends to it; `sk_set_vector` hands you
 * the row's floats to fill.
 */
#ifndef SKEWLESS_H
#define SKEWLESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The scalar types, numbered as in the WIT `scalar-type` enum. */
typedef enum sk_type { SK_BOOLEAN = 0, SK_INT64, SK_FLOAT32, SK_FLOAT64, SK_UTF8, SK_TIMESTAMP } sk_type;

/* One value per row, a list of values per row, or a vector per row. */
typedef enum sk_shape { SK_SCALAR = 0, SK_LIST, SK_VECTOR } sk_shape;

/* A declared input or output: `{"amount", SK_FLOAT64}`, `{"words", SK_LIST_OF(SK_UTF8)}`,
 * `{"embedding", SK_VECTOR_OF(128)}`. */
typedef struct sk_field {
    const char *name;
    sk_type type; /* a list's element type; SK_FLOAT32 for a vector */
    sk_shape shape;
    uint32_t dimension; /* a vector's */
} sk_field;

#define SK_LIST_OF(type) type, SK_LIST, 0
#define SK_VECTOR_OF(dimension) SK_FLOAT32, SK_VECTOR, dimension

/* The inputs of one batch, in declared order. */
typedef struct sk_input sk_input;
/* The outputs being built, in declared order. */
typedef struct sk_output sk_output;

typedef void (*sk_row_fn)(const sk_input *in, size_t row, sk_output *out);
typedef void (*sk_column_fn)(const sk_input *in, size_t rows, sk_output *out);

/* A transform: what `describe` says, and the function that computes it. */
typedef struct sk_transform {
    const char *name;
    const char *version;
    const sk_field *inputs;
    size_t input_count;
    const sk_field *outputs;
    size_t output_count;
    sk_row_fn row;       /* one of `row` and `columns` */
    sk_column_fn columns;
} sk_transform;

/* The transform this component exports (set by SK_ROW_TRANSFORM / SK_COLUMN_TRANSFORM). */
extern const sk_transform sk_exported_transform;

#define SK_COUNT(array) (sizeof(array) / sizeof((array)[0]))
#define SK_ROW_TRANSFORM(name, version, inputs, outputs, function) \
    const sk_transform sk_exported_transform = {name, version, inputs, SK_COUNT(inputs), outputs, SK_COUNT(outputs), function, 0};
#define SK_COLUMN_TRANSFORM(name, version, inputs, outputs, function) \
    const sk_transform sk_exported_transform = {name, version, inputs, SK_COUNT(inputs), outputs, SK_COUNT(outputs), 0, function};

/* Reading input `input` (its position in the declared inputs) at `row`. */
size_t sk_rows(const sk_input *in);
bool sk_is_null(const sk_input *in, size_t input, size_t row);
bool sk_bool(const sk_input *in, size_t input, size_t row);
int64_t sk_i64(const sk_input *in, size_t input, size_t row); /* int64 and timestamp */
float sk_f32(const sk_input *in, size_t input, size_t row);
double sk_f64(const sk_input *in, size_t input, size_t row);
/* The row's UTF-8 bytes (not NUL-terminated); their count goes to `*len`. */
const char *sk_str(const sk_input *in, size_t input, size_t row, size_t *len);

/* A whole input column, for column functions: row i at [i] (meaningless where
 * sk_is_null). NULL, and the batch fails, if the input is of another type. */
const int64_t *sk_i64_values(const sk_input *in, size_t input); /* int64 and timestamp */
const float *sk_f32_values(const sk_input *in, size_t input);
const double *sk_f64_values(const sk_input *in, size_t input);

/* Setting output `output` (its position in the declared outputs) at `row`. */
void sk_set_bool(sk_output *out, size_t output, size_t row, bool value);
void sk_set_i64(sk_output *out, size_t output, size_t row, int64_t value); /* int64 and timestamp */
void sk_set_f32(sk_output *out, size_t output, size_t row, float value);
void sk_set_f64(sk_output *out, size_t output, size_t row, double value);
/* Copies `len` bytes of UTF-8. */
void sk_set_str(sk_output *out, size_t output, size_t row, const char *value, size_t len);

/* A whole output column to fill, for column functions: write row i at [i] and
 * set `valid[i] = 1` (every row starts null, zeroed). NULL, and the batch fails,
 * if the output is of another type. */
int64_t *sk_i64_output(sk_output *out, size_t output, uint8_t **valid); /* int64 and timestamp */
float *sk_f32_output(sk_output *out, size_t output, uint8_t **valid);
double *sk_f64_output(sk_output *out, size_t output, uint8_t **valid);

/* Lists and vectors of input `input` at `row`: the list's length and its
 * element `i`; a vector's `dimension` floats. */
size_t sk_list_len(const sk_input *in, size_t input, size_t row);
bool sk_list_bool(const sk_input *in, size_t input, size_t row, size_t i);
int64_t sk_list_i64(const sk_input *in, size_t input, size_t row, size_t i); /* int64 and timestamp */
float sk_list_f32(const sk_input *in, size_t input, size_t row, size_t i);
double sk_list_f64(const sk_input *in, size_t input, size_t row, size_t i);
const char *sk_list_str(const sk_input *in, size_t input, size_t row, size_t i, size_t *len);
const float *sk_vector(const sk_input *in, size_t input, size_t row);

/* Makes `row` of list output `output` an empty list; the sk_push_* calls
 * that follow append to it. Rows are started in increasing order. */
void sk_start_list(sk_output *out, size_t output, size_t row);
void sk_push_bool(sk_output *out, size_t output, bool value);
void sk_push_i64(sk_output *out, size_t output, int64_t value); /* int64 and timestamp */
void sk_push_f32(sk_output *out, size_t output, float value);
void sk_push_f64(sk_output *out, size_t output, double value);
void sk_push_str(sk_output *out, size_t output, const char *value, size_t len);
/* The `dimension` floats of `row` of vector output `output`, zeroed, to fill
 * (finite values only); the row becomes valid. */
float *sk_set_vector(sk_output *out, size_t output, size_t row);

/* Fails `row` alone, with a printf-style message: its outputs become null. */
void sk_row_error(sk_output *out, size_t row, const char *format, ...) __attribute__((format(printf, 3, 4)));
/* Fails the whole batch, with a printf-style message. */
void sk_fail(sk_output *out, const char *format, ...) __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
