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
typedef skewless_transform_types_scalar_values_t wit_scalars;

/* The bindings were generated without their type-information object (`wit-bindgen c
 * --no-object-file`): `skewless build` embeds the WIT itself. This is the symbol
 * that object would have defined. */
void __component_type_object_force_link_transformer(void) {}

static const char *const TYPE_NAMES[] = {"boolean", "int64", "float32", "float64", "utf8", "timestamp"};

/* A field's type as `skewless.toml` writes it, into `buffer`. */
static const char *type_name(char buffer[32], sk_type type, sk_shape shape, uint32_t dimension) {
    switch (shape) {
    case SK_LIST: snprintf(buffer, 32, "list<%s>", TYPE_NAMES[type]); break;
    case SK_VECTOR: snprintf(buffer, 32, "vector<%u>", (unsigned)dimension); break;
    default: snprintf(buffer, 32, "%s", TYPE_NAMES[type]); break;
    }
    return buffer;
}

struct sk_input {
    size_t rows;
    const wit_column **columns; /* in declared order */
    sk_output *output;          /* where a misuse of an input is reported */
};

typedef struct {
    sk_field field;
    uint8_t *valid;  /* one byte per row */
    void *values;    /* scalars: rows elements of the type (bool: one byte per row; utf8: char * per
                        row); vectors: rows * dimension floats; lists: unused */
    size_t *lengths; /* utf8 scalars only */
    /* Lists: offsets[r] is row r's first element; rows are started in order. */
    int32_t *offsets;
    size_t next_row;          /* the first row whose offset is not set yet */
    bool started;             /* a row has been started */
    uint8_t *bytes;           /* the elements (utf8: their bytes; bool: one byte each) */
    size_t bytes_len, bytes_cap;
    int32_t *ends;            /* utf8 elements: where each ends in `bytes` */
    size_t count, ends_cap;   /* elements */
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

/* The scalars of a scalar input (checked against the declaration when the batch came). */
static const wit_scalars *scalars(const sk_input *in, size_t input) { return &in->columns[input]->values.val.scalar; }

static const char *str_at(const skewless_transform_types_utf8_values_t *s, size_t i, size_t *len) {
    *len = (size_t)(s->offsets.ptr[i + 1] - s->offsets.ptr[i]);
    return (const char *)s->bytes.ptr + s->offsets.ptr[i];
}

bool sk_bool(const sk_input *in, size_t input, size_t row) { return bit(scalars(in, input)->val.boolean.ptr, row); }

int64_t sk_i64(const sk_input *in, size_t input, size_t row) {
    return scalars(in, input)->val.int64.ptr[row]; /* timestamp shares the layout */
}

float sk_f32(const sk_input *in, size_t input, size_t row) { return scalars(in, input)->val.float32.ptr[row]; }

double sk_f64(const sk_input *in, size_t input, size_t row) { return scalars(in, input)->val.float64.ptr[row]; }

const char *sk_str(const sk_input *in, size_t input, size_t row, size_t *len) {
    return str_at(&scalars(in, input)->val.utf8, row, len);
}

static const void *input_values(const sk_input *in, size_t input, sk_type a, sk_type b) {
    const sk_field *field = &sk_exported_transform.inputs[input];
    if (field->shape == SK_SCALAR && (field->type == a || field->type == b)) return scalars(in, input)->val.int64.ptr;
    char declared[32];
    sk_fail(in->output, "transform bug: input `%s` is %s, not %s", field->name,
            type_name(declared, field->type, field->shape, field->dimension), TYPE_NAMES[a]);
    return NULL;
}

/* A list input's row: its first element's index (the elements are checked when the batch came). */
static const skewless_transform_types_list_values_t *list_at(const sk_input *in, size_t input, size_t row, size_t *first) {
    const skewless_transform_types_list_values_t *l = &in->columns[input]->values.val.list;
    *first = (size_t)l->offsets.ptr[row];
    return l;
}

size_t sk_list_len(const sk_input *in, size_t input, size_t row) {
    const skewless_transform_types_list_values_t *l = &in->columns[input]->values.val.list;
    return (size_t)(l->offsets.ptr[row + 1] - l->offsets.ptr[row]);
}

bool sk_list_bool(const sk_input *in, size_t input, size_t row, size_t i) {
    size_t first;
    return bit(list_at(in, input, row, &first)->elements.val.boolean.ptr, first + i);
}

int64_t sk_list_i64(const sk_input *in, size_t input, size_t row, size_t i) {
    size_t first;
    return list_at(in, input, row, &first)->elements.val.int64.ptr[first + i];
}

float sk_list_f32(const sk_input *in, size_t input, size_t row, size_t i) {
    size_t first;
    return list_at(in, input, row, &first)->elements.val.float32.ptr[first + i];
}

double sk_list_f64(const sk_input *in, size_t input, size_t row, size_t i) {
    size_t first;
    return list_at(in, input, row, &first)->elements.val.float64.ptr[first + i];
}

const char *sk_list_str(const sk_input *in, size_t input, size_t row, size_t i, size_t *len) {
    size_t first;
    return str_at(&list_at(in, input, row, &first)->elements.val.utf8, first + i, len);
}

const float *sk_vector(const sk_input *in, size_t input, size_t row) {
    return in->columns[input]->values.val.vector.ptr + row * sk_exported_transform.inputs[input].dimension;
}

/* Every list in the values union starts with its pointer, so any member reads it. */
const int64_t *sk_i64_values(const sk_input *in, size_t input) { return input_values(in, input, SK_INT64, SK_TIMESTAMP); }
const float *sk_f32_values(const sk_input *in, size_t input) { return input_values(in, input, SK_FLOAT32, SK_FLOAT32); }
const double *sk_f64_values(const sk_input *in, size_t input) { return input_values(in, input, SK_FLOAT64, SK_FLOAT64); }

/* ---- writing outputs ---- */

/* Output `output` if it is declared `shape` of `type` (or `also`), else NULL and the batch fails. */
static output_column *shaped(sk_output *out, size_t output, sk_shape shape, sk_type type, sk_type also) {
    if (output >= sk_exported_transform.output_count) {
        sk_fail(out, "transform bug: output %zu is out of range", output);
        return NULL;
    }
    output_column *c = &out->columns[output];
    if (c->field.shape != shape || (c->field.type != type && c->field.type != also)) {
        char declared[32], used[32];
        sk_fail(out, "transform bug: output `%s` is declared %s, not %s", c->field.name,
                type_name(declared, c->field.type, c->field.shape, c->field.dimension),
                type_name(used, type, shape, c->field.dimension));
        return NULL;
    }
    return c;
}

static output_column *typed(sk_output *out, size_t output, size_t row, sk_type type) {
    if (row >= out->rows) {
        sk_fail(out, "transform bug: output %zu row %zu is out of range", output, row);
        return NULL;
    }
    output_column *c = shaped(out, output, SK_SCALAR, type, type);
    if (c) c->valid[row] = 1;
    return c;
}

static void *output_values(sk_output *out, size_t output, sk_type a, sk_type b, uint8_t **valid) {
    output_column *c = shaped(out, output, SK_SCALAR, a, b);
    *valid = c ? c->valid : NULL;
    return c ? c->values : NULL;
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
    sk_type type = output < sk_exported_transform.output_count && out->columns[output].field.type == SK_TIMESTAMP
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

void sk_start_list(sk_output *out, size_t output, size_t row) {
    output_column *c = output < sk_exported_transform.output_count ? &out->columns[output] : NULL;
    c = shaped(out, output, SK_LIST, c ? c->field.type : SK_BOOLEAN, c ? c->field.type : SK_BOOLEAN);
    if (!c) return;
    if (row >= out->rows || row < c->next_row) {
        sk_fail(out, "transform bug: list output `%s`: row %zu started out of order (lists are built row by row, "
                     "in increasing row order, each row once)", c->field.name, row);
        return;
    }
    for (size_t r = c->next_row; r <= row; r++) c->offsets[r] = (int32_t)c->count;
    c->next_row = row + 1;
    c->started = true;
    c->valid[row] = 1;
}

/* Room for one more element of `size` bytes in list output `output`, or NULL (the batch fails). */
static output_column *element(sk_output *out, size_t output, sk_type type, sk_type also, size_t size) {
    output_column *c = shaped(out, output, SK_LIST, type, also);
    if (!c) return NULL;
    if (!c->started) {
        sk_fail(out, "transform bug: list output `%s`: sk_start_list before pushing to it", c->field.name);
        return NULL;
    }
    if (c->bytes_len + size > c->bytes_cap) {
        c->bytes_cap = (c->bytes_len + size) * 2;
        c->bytes = realloc(c->bytes, c->bytes_cap);
        if (!c->bytes) __builtin_trap();
    }
    c->count++;
    return c;
}

static void push(sk_output *out, size_t output, sk_type type, sk_type also, const void *value, size_t size) {
    output_column *c = element(out, output, type, also, size);
    if (!c) return;
    memcpy(c->bytes + c->bytes_len, value, size);
    c->bytes_len += size;
}

void sk_push_bool(sk_output *out, size_t output, bool value) {
    uint8_t byte = value;
    push(out, output, SK_BOOLEAN, SK_BOOLEAN, &byte, 1);
}
void sk_push_i64(sk_output *out, size_t output, int64_t value) { push(out, output, SK_INT64, SK_TIMESTAMP, &value, 8); }
void sk_push_f32(sk_output *out, size_t output, float value) { push(out, output, SK_FLOAT32, SK_FLOAT32, &value, 4); }
void sk_push_f64(sk_output *out, size_t output, double value) { push(out, output, SK_FLOAT64, SK_FLOAT64, &value, 8); }

void sk_push_str(sk_output *out, size_t output, const char *value, size_t len) {
    push(out, output, SK_UTF8, SK_UTF8, value, len);
    output_column *c = &out->columns[output];
    if (out->batch_error) return;
    if (c->count > c->ends_cap) {
        c->ends_cap = c->count * 2;
        c->ends = realloc(c->ends, c->ends_cap * sizeof(int32_t));
        if (!c->ends) __builtin_trap();
    }
    c->ends[c->count - 1] = (int32_t)c->bytes_len;
}

float *sk_set_vector(sk_output *out, size_t output, size_t row) {
    output_column *c = shaped(out, output, SK_VECTOR, SK_FLOAT32, SK_FLOAT32);
    if (!c) return NULL;
    if (row >= out->rows) {
        sk_fail(out, "transform bug: output %zu row %zu is out of range", output, row);
        return NULL;
    }
    c->valid[row] = 1;
    return (float *)c->values + row * c->field.dimension;
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
        skewless_transform_types_data_type_t *t = &list->ptr[i].data_type;
        switch (fields[i].shape) {
        case SK_LIST:
            t->tag = SKEWLESS_TRANSFORM_TYPES_DATA_TYPE_LIST;
            t->val.list = (skewless_transform_types_scalar_type_t)fields[i].type;
            break;
        case SK_VECTOR:
            t->tag = SKEWLESS_TRANSFORM_TYPES_DATA_TYPE_VECTOR;
            t->val.vector = fields[i].dimension;
            break;
        default:
            t->tag = SKEWLESS_TRANSFORM_TYPES_DATA_TYPE_SCALAR;
            t->val.scalar = (skewless_transform_types_scalar_type_t)fields[i].type;
            break;
        }
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

/* A column's type: shape, scalar type and (vectors) dimension, from its values. */
static void column_type(const wit_column *c, size_t rows, sk_shape *shape, sk_type *type, uint32_t *dimension) {
    *dimension = 0;
    switch (c->values.tag) {
    case SKEWLESS_TRANSFORM_TYPES_VALUES_LIST:
        *shape = SK_LIST;
        *type = (sk_type)c->values.val.list.elements.tag;
        break;
    case SKEWLESS_TRANSFORM_TYPES_VALUES_VECTOR:
        *shape = SK_VECTOR;
        *type = SK_FLOAT32;
        *dimension = rows ? (uint32_t)(c->values.val.vector.len / rows) : 0;
        break;
    default:
        *shape = SK_SCALAR;
        *type = (sk_type)c->values.val.scalar.tag;
        break;
    }
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
        char declared[32], found[32];
        type_name(declared, field->type, field->shape, field->dimension);
        if (!columns[i]) {
            *error = formatted("input column `%s` (%s) is missing from the batch", field->name, declared);
        } else {
            sk_shape shape;
            sk_type type;
            uint32_t dimension;
            column_type(columns[i], batch->num_rows, &shape, &type, &dimension);
            bool fits = shape == field->shape && type == field->type &&
                        (shape != SK_VECTOR || dimension == field->dimension || batch->num_rows == 0);
            if (!fits)
                *error = formatted("input column `%s` is %s, but the transform declares %s", field->name,
                                   type_name(found, type, shape, dimension), declared);
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

/* Fixed-size values (`count` of `type`, bool one byte each) as WIT scalars; takes `values`. */
static void fixed_scalars(wit_scalars *dst, sk_type type, void *values, size_t count) {
    dst->tag = (uint8_t)type;
    switch (type) {
    case SK_BOOLEAN:
        dst->val.boolean = (transformer_list_u8_t){pack(values, count), (count + 7) / 8};
        free(values);
        break;
    case SK_FLOAT32: dst->val.float32 = (transformer_list_f32_t){values, count}; break;
    case SK_FLOAT64: dst->val.float64 = (transformer_list_f64_t){values, count}; break;
    default: dst->val.int64 = (transformer_list_s64_t){values, count}; break; /* int64, timestamp */
    }
}

/* Moves one output column into its WIT form. */
static void finish_column(wit_column *dst, output_column *c, size_t rows) {
    transformer_string_dup(&dst->name, c->field.name);
    bool all_valid = true;
    for (size_t i = 0; i < rows; i++) all_valid &= c->valid[i];
    dst->validity.is_some = !all_valid;
    if (!all_valid) dst->validity.val = (transformer_list_u8_t){pack(c->valid, rows), (rows + 7) / 8};
    if (c->field.shape == SK_VECTOR) {
        size_t n = c->field.dimension;
        for (size_t i = 0; i < rows; i++)
            if (!c->valid[i]) memset((float *)c->values + i * n, 0, n * sizeof(float));
        dst->values.tag = SKEWLESS_TRANSFORM_TYPES_VALUES_VECTOR;
        dst->values.val.vector = (transformer_list_f32_t){c->values, rows * n};
        free(c->valid);
        return;
    }
    if (c->field.shape == SK_LIST) {
        for (size_t r = c->next_row; r <= rows; r++) c->offsets[r] = (int32_t)c->count;
        dst->values.tag = SKEWLESS_TRANSFORM_TYPES_VALUES_LIST;
        dst->values.val.list.offsets = (transformer_list_s32_t){c->offsets, rows + 1};
        wit_scalars *elements = &dst->values.val.list.elements;
        if (c->field.type == SK_UTF8) {
            int32_t *offsets = alloc_or_trap(c->count + 1, sizeof(int32_t));
            if (c->count) memcpy(offsets + 1, c->ends, c->count * sizeof(int32_t));
            elements->tag = SK_UTF8;
            elements->val.utf8.offsets = (transformer_list_s32_t){offsets, c->count + 1};
            elements->val.utf8.bytes = (transformer_list_u8_t){c->bytes ? c->bytes : alloc_or_trap(1, 1), c->bytes_len};
            free(c->ends);
        } else {
            fixed_scalars(elements, c->field.type, c->bytes ? c->bytes : alloc_or_trap(1, 1), c->count);
        }
        free(c->valid);
        return;
    }
    dst->values.tag = SKEWLESS_TRANSFORM_TYPES_VALUES_SCALAR;
    wit_scalars *scalars = &dst->values.val.scalar;
    switch (c->field.type) {
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
        scalars->tag = SK_UTF8;
        scalars->val.utf8.offsets = (transformer_list_s32_t){offsets, rows + 1};
        scalars->val.utf8.bytes = (transformer_list_u8_t){bytes, total};
        break;
    }
    case SK_BOOLEAN:
        for (size_t i = 0; i < rows; i++) ((uint8_t *)c->values)[i] &= c->valid[i];
        fixed_scalars(scalars, SK_BOOLEAN, c->values, rows);
        break;
    case SK_INT64:
    case SK_TIMESTAMP:
        for (size_t i = 0; i < rows; i++)
            if (!c->valid[i]) ((int64_t *)c->values)[i] = 0;
        fixed_scalars(scalars, c->field.type, c->values, rows);
        break;
    case SK_FLOAT32:
        for (size_t i = 0; i < rows; i++)
            if (!c->valid[i]) ((float *)c->values)[i] = 0;
        fixed_scalars(scalars, SK_FLOAT32, c->values, rows);
        break;
    case SK_FLOAT64:
        for (size_t i = 0; i < rows; i++)
            if (!c->valid[i]) ((double *)c->values)[i] = 0;
        fixed_scalars(scalars, SK_FLOAT64, c->values, rows);
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
        if (c->field.shape == SK_SCALAR && c->field.type == SK_UTF8 && c->values)
            for (size_t r = 0; r < out->rows; r++) free(((char **)c->values)[r]);
        free(c->values);
        free(c->valid);
        free(c->lengths);
        free(c->offsets);
        free(c->bytes);
        free(c->ends);
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
        c->field = t->outputs[i];
        c->valid = alloc_or_trap(rows, 1);
        switch (c->field.shape) {
        case SK_LIST: c->offsets = alloc_or_trap(rows + 1, sizeof(int32_t)); break;
        case SK_VECTOR: c->values = alloc_or_trap(rows * c->field.dimension, sizeof(float)); break;
        default:
            c->values = alloc_or_trap(rows, value_size(c->field.type));
            if (c->field.type == SK_UTF8) c->lengths = alloc_or_trap(rows, sizeof(size_t));
            break;
        }
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
    for (size_t i = 0; i < t->output_count; i++) finish_column(&ret->batch.columns.ptr[i], &out.columns[i], rows);
    free(out.columns);
    return true;
}
