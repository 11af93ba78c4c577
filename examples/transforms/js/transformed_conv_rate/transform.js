/**
 * `transformed_conv_rate` in JavaScript: Feast's classic on-demand feature view.
 *
 * `conv_rate_plus_val1 = conv_rate + val_to_add` and
 * `conv_rate_plus_val2 = conv_rate + val_to_add * 2`, in float64; null where
 * either input is null. Written as a column function; the Rust, Python and C
 * versions give the same bits.
 */
import { Float32, Float64, Int64, columnTransform } from "./skewless_sdk.js";

export const transform = columnTransform({
  name: "transformed_conv_rate",
  version: "1.0.0",
  inputs: { conv_rate: Float32, val_to_add: Int64 },
  outputs: { conv_rate_plus_val1: Float64, conv_rate_plus_val2: Float64 },
  columns({ conv_rate, val_to_add }) {
    const plus = (times) =>
      conv_rate.map((c, i) => (c === null || val_to_add[i] === null ? null : c + Number(val_to_add[i]) * times));
    return { conv_rate_plus_val1: plus(1), conv_rate_plus_val2: plus(2) };
  },
});
