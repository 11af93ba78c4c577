/*
 * The SDK side of the WIT contract for C transforms: `describe` and `run`
 * exports (over the bindings wit-bindgen generated into bindings/), input
 * checks, and the assembly of output buffers. Everything handed to the host
 * is malloc'd: the generated post-return code frees it.
 */
#include "skewless.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transformer.h"

typedef skewless_transform_types_column_t wit_column;

/* The bindings were generated without their type-information object (`wit-bindgen c
 * --no-object-file`): `skewless build` embeds the WIT itself. This is the symbol
 * that object would have defined. */
void __component_type_object_force_link_transformer(void) {}

static const char *const TYPE_NAMES[] = {"boolean", "int64", "float32", "float64", "utf8", "timestamp"};

struct sk_input {
    size_t rows;
    const wit_column **columns; /* in declared order */
    sk_output *output;          /* where a misuse of an input is reported */
};

typedef struct {
    sk_type type;
    uint8_t *valid; /* one byte per row */
    void *values;   /* rows elements of the type; bool: one byte per row; utf8: char * per row */
    size_t *lengths; /* utf8 only */
} output_column;

typedef struct {
    uint32_t row;
    char *message;
} row_failure;

struct sk_output {
    size_t rows;
    output_column *columns;
    row_failure *failures;
    size_t failure_count, failure_capacity;
    char *batch_error;
};

static void *alloc_or_trap(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) __builtin_trap(); /* out of memory: the host reports the per-instance memory limit */
    return p;
}

static bool bit(const uint8_t *bitmap, size_t row) { return (bitmap[row >> 3] >> (row & 7)) & 1; }

/* ---- reading inputs ---- */

size_t sk_rows(const sk_input *in) { return in->rows; }

bool sk_is_null(const sk_input *in, size_t input, size_t row) {
    const wit_column *c = in->columns[input];
    return c->validity.is_some && !bit(c->validity.val.ptr, row);
}

bool sk_bool(const sk_input *in, size_t input, size_t row) {
    return bit(in->columns[input]->values.val.boolean.ptr, row);
}

int64_t sk_i64(const sk_input *in, size_t input, size_t row) {
    return in->columns[input]->values.val.int64.ptr[row]; /* timestamp shares the layout */
}

float sk_f32(const sk_input *in, size_t input, size_t row) { return in->columns[input]->values.val.float32.ptr[row]; }

double sk_f64(const sk_input *in, size_t input, size_t row) { return in->columns[input]->values.val.float64.ptr[row]; }

const char *sk_str(const sk_input *in, size_t input, size_t row, size_t *len) {
    const skewless_transform_types_utf8_values_t *s = &in->columns[input]->values.val.utf8;
    *len = (size_t)(s->offsets.ptr[row + 1] - s->offsets.ptr[row]);
    return (const char *)s->bytes.ptr + s->offsets.ptr[row];
}

static const void *input_values(const sk_input *in, size_t input, sk_type a, sk_type b) {
    const wit_column *c = in->columns[input];
    if (c->values.tag == (uint8_t)a || c->values.tag == (uint8_t)b) return c->values.val.int64.ptr;
    sk_fail(in->output, "transform bug: input `%s` is %s, not %s", sk_exported_transform.inputs[input].name,
            TYPE_NAMES[c->values.tag], TYPE_NAMES[a]);
    return NULL;
}

/* Every list in the values union starts with its pointer, so any member reads it. */
const int64_t *sk_i64_values(const sk_input *in, size_t input) { return input_values(in, input, SK_INT64, SK_TIMESTAMP); }
const float *sk_f32_values(const sk_input *in, size_t input) { return input_values(in, input, SK_FLOAT32, SK_FLOAT32); }
const double *sk_f64_values(const sk_input *in, size_t input) { return input_values(in, input, SK_FLOAT64, SK_FLOAT64); }

/* ---- writing outputs ---- */

static output_column *typed(sk_output *out, size_t output, size_t row, sk_type type) {
    if (output >= sk_exported_transform.output_count || row >= out->rows) {
        sk_fail(out, "transform bug: output %zu row %zu is out of range", output, row);
        return NULL;
    }
    output_column *c = &out->columns[output];
    if (c->type != type) {
        sk_fail(out, "transform bug: output `%s` is declared %s, not %s", sk_exported_transform.outputs[output].name,
                TYPE_NAMES[c->type], TYPE_NAMES[type]);
        return NULL;
    }
    c->valid[row] = 1;
    return c;
}

static void *output_values(sk_output *out, size_t output, sk_type a, sk_type b, uint8_t **valid) {
    if (output < sk_exported_transform.output_count) {
        output_column *c = &out->columns[output];
        if (c->type == a || c->type == b) {
            *valid = c->valid;
            return c->values;
        }
        sk_fail(out, "transform bug: output `%s` is declared %s, not %s", sk_exported_transform.outputs[output].name,
                TYPE_NAMES[c->type], TYPE_NAMES[a]);
    } else {
        sk_fail(out, "transform bug: output %zu is out of range", output);
    }
    *valid = NULL;
    return NULL;
}

int64_t *sk_i64_output(sk_output *out, size_t output, uint8_t **valid) {
    return output_values(out, output, SK_INT64, SK_TIMESTAMP, valid);
}
float *sk_f32_output(sk_output *out, size_t output, uint8_t **valid) {
    return output_values(out, output, SK_FLOAT32, SK_FLOAT32, valid);
}
double *sk_f64_output(sk_output *out, size_t output, uint8_t **valid) {
    return output_values(out, output, SK_FLOAT64, SK_FLOAT64, valid);
}

void sk_set_bool(sk_output *out, size_t output, size_t row, bool value) {
    output_column *c = typed(out, output, row, SK_BOOLEAN);
    if (c) ((uint8_t *)c->values)[row] = value;
}

void sk_set_i64(sk_output *out, size_t output, size_t row, int64_t value) {
    sk_type type = output < sk_exported_transform.output_count && out->columns[output].type == SK_TIMESTAMP
                       ? SK_TIMESTAMP
                       : SK_INT64;
    output_column *c = typed(out, output, row, type);
    if (c) ((int64_t *)c->values)[row] = value;
}

void sk_set_f32(sk_output *out, size_t output, size_t row, float value) {
    output_column *c = typed(out, output, row, SK_FLOAT32);
    if (c) ((float *)c->values)[row] = value;
}

void sk_set_f64(sk_output *out, size_t output, size_t row, double value) {
    output_column *c = typed(out, output, row, SK_FLOAT64);
    if (c) ((double *)c->values)[row] = value;
}

void sk_set_str(sk_output *out, size_t output, size_t row, const char *value, size_t len) {
    output_column *c = typed(out, output, row, SK_UTF8);
    if (!c) return;
    char **strings = c->values;
    free(strings[row]);
    strings[row] = alloc_or_trap(len, 1);
    memcpy(strings[row], value, len);
    c->lengths[row] = len;
}

static char *vformat(const char *format, va_list args) {
    va_list copy;
    va_copy(copy, args);
    int len = vsnprintf(NULL, 0, format, copy);
    va_end(copy);
    char *message = alloc_or_trap((size_t)(len < 0 ? 0 : len) + 1, 1);
    vsnprintf(message, (size_t)len + 1, format, args);
    return message;
}

void sk_row_error(sk_output *out, size_t row, const char *format, ...) {
    if (out->failure_count == out->failure_capacity) {
        out->failure_capacity = out->failure_capacity ? out->failure_capacity * 2 : 16;
        out->failures = realloc(out->failures, out->failure_capacity * sizeof(row_failure));
        if (!out->failures) __builtin_trap();
    }
    va_list args;
    va_start(args, format);
    out->failures[out->failure_count++] = (row_failure){(uint32_t)row, vformat(format, args)};
    va_end(args);
}

void sk_fail(sk_output *out, const char *format, ...) {
    if (out->batch_error) return; /* the first error is the one that explains */
    va_list args;
    va_start(args, format);
    out->batch_error = vformat(format, args);
    va_end(args);
}

/* ---- the exports ---- */

static void set_string(transformer_string_t *s, char *owned) {
    s->ptr = (uint8_t *)owned;
    s->len = strlen(owned);
}

static void describe_fields(skewless_transform_types_list_field_t *list, const sk_field *fields, size_t count) {
    list->len = count;
    list->ptr = alloc_or_trap(count, sizeof(skewless_transform_types_field_t));
    for (size_t i = 0; i < count; i++) {
        transformer_string_dup(&list->ptr[i].name, fields[i].name);
        list->ptr[i].data_type = (skewless_transform_types_data_type_t)fields[i].type;
        list->ptr[i].nullable = true;
    }
}

void exports_skewless_transform_transform_describe(exports_skewless_transform_transform_description_t *ret) {
    const sk_transform *t = &sk_exported_transform;
    transformer_string_dup(&ret->name, t->name);
    transformer_string_dup(&ret->version, t->version);
    describe_fields(&ret->inputs, t->inputs, t->input_count);
    describe_fields(&ret->outputs, t->outputs, t->output_count);
}

static char *formatted(const char *format, ...) {
    va_list args;
    va_start(args, format);
    char *message = vformat(format, args);
    va_end(args);
    return message;
}

/* The declared inputs, found by name and checked; NULL and `*error` set when one does not fit. */
static const wit_column **match_inputs(const skewless_transform_types_batch_t *batch, char **error) {
    const sk_transform *t = &sk_exported_transform;
    const wit_column **columns = alloc_or_trap(t->input_count, sizeof(wit_column *));
    for (size_t i = 0; i < t->input_count; i++) {
        const sk_field *field = &t->inputs[i];
        for (size_t j = 0; j < batch->columns.len && !columns[i]; j++) {
            const transformer_string_t *name = &batch->columns.ptr[j].name;
            if (name->len == strlen(field->name) && memcmp(name->ptr, field->name, name->len) == 0)
                columns[i] = &batch->columns.ptr[j];
        }
        if (!columns[i]) {
            *error = formatted("input column `%s` (%s) is missing from the batch", field->name, TYPE_NAMES[field->type]);
        } else if (columns[i]->values.tag != (uint8_t)field->type) {
            *error = formatted("input column `%s` is %s, but the transform declares %s", field->name,
                               TYPE_NAMES[columns[i]->values.tag], TYPE_NAMES[field->type]);
        }
        if (*error) {
            free(columns);
            return NULL;
        }
    }
    return columns;
}

static uint8_t *pack(const uint8_t *flags, size_t rows) {
    uint8_t *bits = alloc_or_trap((rows + 7) / 8, 1);
    for (size_t i = 0; i < rows; i++)
        if (flags[i]) bits[i >> 3] |= (uint8_t)(1u << (i & 7));
    return bits;
}

/* Moves one output column into its WIT form. */
static void finish_column(wit_column *dst, const sk_field *field, output_column *c, size_t rows) {
    transformer_string_dup(&dst->name, field->name);
    bool all_valid = true;
    for (size_t i = 0; i < rows; i++) all_valid &= c->valid[i];
    dst->validity.is_some = !all_valid;
    if (!all_valid) dst->validity.val = (transformer_list_u8_t){pack(c->valid, rows), (rows + 7) / 8};
    dst->values.tag = (uint8_t)c->type;
    switch (c->type) {
    case SK_BOOLEAN: {
        for (size_t i = 0; i < rows; i++) ((uint8_t *)c->values)[i] &= c->valid[i];
        dst->values.val.boolean = (transformer_list_u8_t){pack(c->values, rows), (rows + 7) / 8};
        free(c->values);
        break;
    }
    case SK_UTF8: {
        char **strings = c->values;
        size_t total = 0;
        for (size_t i = 0; i < rows; i++) total += c->valid[i] ? c->lengths[i] : 0;
        int32_t *offsets = alloc_or_trap(rows + 1, sizeof(int32_t));
        uint8_t *bytes = alloc_or_trap(total, 1);
        size_t end = 0;
        for (size_t i = 0; i < rows; i++) {
            if (c->valid[i]) {
                memcpy(bytes + end, strings[i], c->lengths[i]);
                end += c->lengths[i];
            }
            free(strings[i]);
            offsets[i + 1] = (int32_t)end;
        }
        free(strings);
        free(c->lengths);
        dst->values.val.utf8.offsets = (transformer_list_s32_t){offsets, rows + 1};
        dst->values.val.utf8.bytes = (transformer_list_u8_t){bytes, total};
        break;
    }
    case SK_INT64:
    case SK_TIMESTAMP:
        for (size_t i = 0; i < rows; i++)
            if (!c->valid[i]) ((int64_t *)c->values)[i] = 0;
        dst->values.val.int64 = (transformer_list_s64_t){c->values, rows};
        break;
    case SK_FLOAT32:
        for (size_t i = 0; i < rows; i++)
            if (!c->valid[i]) ((float *)c->values)[i] = 0;
        dst->values.val.float32 = (transformer_list_f32_t){c->values, rows};
        break;
    case SK_FLOAT64:
        for (size_t i = 0; i < rows; i++)
            if (!c->valid[i]) ((double *)c->values)[i] = 0;
        dst->values.val.float64 = (transformer_list_f64_t){c->values, rows};
        break;
    }
    free(c->valid);
}

static size_t value_size(sk_type type) {
    switch (type) {
    case SK_BOOLEAN: return 1;
    case SK_FLOAT32: return sizeof(float);
    case SK_UTF8: return sizeof(char *);
    default: return 8;
    }
}

static void free_output(sk_output *out) {
    for (size_t i = 0; out->columns && i < sk_exported_transform.output_count; i++) {
        output_column *c = &out->columns[i];
        if (c->type == SK_UTF8 && c->values)
            for (size_t r = 0; r < out->rows; r++) free(((char **)c->values)[r]);
        free(c->values);
        free(c->valid);
        free(c->lengths);
    }
    free(out->columns);
    for (size_t i = 0; i < out->failure_count; i++) free(out->failures[i].message);
    free(out->failures);
}

static int by_row(const void *a, const void *b) {
    uint32_t x = ((const row_failure *)a)->row, y = ((const row_failure *)b)->row;
    return (x > y) - (x < y);
}

bool exports_skewless_transform_transform_run(exports_skewless_transform_transform_batch_t *input,
                                              exports_skewless_transform_transform_output_t *ret,
                                              transformer_string_t *err) {
    const sk_transform *t = &sk_exported_transform;
    size_t rows = input->num_rows;
    char *error = NULL;
    const wit_column **columns = match_inputs(input, &error);
    if (!columns) {
        exports_skewless_transform_transform_batch_free(input);
        set_string(err, error);
        return false;
    }
    sk_output out = {rows, alloc_or_trap(t->output_count, sizeof(output_column)), NULL, 0, 0, NULL};
    sk_input in = {rows, columns, &out};
    for (size_t i = 0; i < t->output_count; i++) {
        output_column *c = &out.columns[i];
        c->type = t->outputs[i].type;
        c->valid = alloc_or_trap(rows, 1);
        c->values = alloc_or_trap(rows, value_size(c->type));
        if (c->type == SK_UTF8) c->lengths = alloc_or_trap(rows, sizeof(size_t));
    }

    if (t->row) {
        for (size_t row = 0; row < rows && !out.batch_error; row++) t->row(&in, row, &out);
    } else {
        t->columns(&in, rows, &out);
    }
    free(columns);
    exports_skewless_transform_transform_batch_free(input);
    if (out.batch_error) {
        set_string(err, out.batch_error);
        free_output(&out);
        return false;
    }

    /* A failed row's outputs are null; one message per row, the first given. */
    qsort(out.failures, out.failure_count, sizeof(row_failure), by_row);
    size_t kept = 0;
    for (size_t i = 0; i < out.failure_count; i++) {
        row_failure *f = &out.failures[i];
        if (f->row >= rows || (kept > 0 && out.failures[kept - 1].row == f->row)) {
            free(f->message);
            continue;
        }
        for (size_t c = 0; c < t->output_count; c++) out.columns[c].valid[f->row] = 0;
        out.failures[kept++] = *f;
    }
    ret->row_errors.len = kept;
    ret->row_errors.ptr = alloc_or_trap(kept, sizeof(skewless_transform_types_row_error_t));
    for (size_t i = 0; i < kept; i++) {
        ret->row_errors.ptr[i].row = out.failures[i].row;
        set_string(&ret->row_errors.ptr[i].message, out.failures[i].message);
    }
    free(out.failures);

    ret->batch.num_rows = (uint32_t)rows;
    ret->batch.columns.len = t->output_count;
    ret->batch.columns.ptr = alloc_or_trap(t->output_count, sizeof(wit_column));
    for (size_t i = 0; i < t->output_count; i++) finish_column(&ret->batch.columns.ptr[i], &t->outputs[i], &out.columns[i], rows);
    free(out.columns);
    return true;
}
