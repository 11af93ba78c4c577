/*
 * `transformed_conv_rate` in C: Feast's classic on-demand feature view.
 *
 * conv_rate_plus_val1 = conv_rate + val_to_add and
 * conv_rate_plus_val2 = conv_rate + val_to_add * 2, in double; null where
 * either input is null. Written as a column function over whole arrays; the
 * Rust, Python and JavaScript versions give the same bits.
 */
#include "skewless.h"

static const sk_field INPUTS[] = {{"conv_rate", SK_FLOAT32}, {"val_to_add", SK_INT64}};
static const sk_field OUTPUTS[] = {{"conv_rate_plus_val1", SK_FLOAT64}, {"conv_rate_plus_val2", SK_FLOAT64}};
enum { CONV_RATE, VAL_TO_ADD };
enum { PLUS_VAL1, PLUS_VAL2 };

static void transformed_conv_rate(const sk_input *in, size_t rows, sk_output *out) {
    const float *conv_rate = sk_f32_values(in, CONV_RATE);
    const int64_t *val_to_add = sk_i64_values(in, VAL_TO_ADD);
    uint8_t *valid1, *valid2;
    double *plus1 = sk_f64_output(out, PLUS_VAL1, &valid1);
    double *plus2 = sk_f64_output(out, PLUS_VAL2, &valid2);
    for (size_t row = 0; row < rows; row++) {
        plus1[row] = (double)conv_rate[row] + (double)val_to_add[row];
        plus2[row] = (double)conv_rate[row] + (double)val_to_add[row] * 2.0;
        valid1[row] = valid2[row] = !sk_is_null(in, CONV_RATE, row) && !sk_is_null(in, VAL_TO_ADD, row);
    }
}

SK_COLUMN_TRANSFORM("transformed_conv_rate", "1.0.0", INPUTS, OUTPUTS, transformed_conv_rate)
