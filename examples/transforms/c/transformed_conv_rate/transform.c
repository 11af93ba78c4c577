/*
 * `transformed_conv_rate` in C: Feast's classic on-demand feature view.
 *
 * conv_rate_plus_val1 = conv_rate + val_to_add and
 * conv_rate_plus_val2 = conv_rate + val_to_add * 2, in double; null where
 * either input is null. Written as a column function; the Rust, Python and
 * JavaScript versions give the same bits.
 */
#include "skewless.h"

static const sk_field INPUTS[] = {{"conv_rate", SK_FLOAT32}, {"val_to_add", SK_INT64}};
static const sk_field OUTPUTS[] = {{"conv_rate_plus_val1", SK_FLOAT64}, {"conv_rate_plus_val2", SK_FLOAT64}};
enum { CONV_RATE, VAL_TO_ADD };
enum { PLUS_VAL1, PLUS_VAL2 };

static void transformed_conv_rate(const sk_input *in, size_t rows, sk_output *out) {
    for (size_t row = 0; row < rows; row++) {
        if (sk_is_null(in, CONV_RATE, row) || sk_is_null(in, VAL_TO_ADD, row)) continue;
        double conv_rate = (double)sk_f32(in, CONV_RATE, row);
        double val_to_add = (double)sk_i64(in, VAL_TO_ADD, row);
        sk_set_f64(out, PLUS_VAL1, row, conv_rate + val_to_add);
        sk_set_f64(out, PLUS_VAL2, row, conv_rate + val_to_add * 2.0);
    }
}

SK_COLUMN_TRANSFORM("transformed_conv_rate", "1.0.0", INPUTS, OUTPUTS, transformed_conv_rate)
