"""`transformed_conv_rate` in Python: Feast's classic on-demand feature view.

`conv_rate_plus_val1 = conv_rate + val_to_add` and
`conv_rate_plus_val2 = conv_rate + val_to_add * 2`, in float64; null where
either input is null. Written as a column function; the Rust, JavaScript and C
versions give the same bits.
"""

from skewless_sdk import Float32, Float64, Int64, column_transform, export


@column_transform(
    name="transformed_conv_rate",
    version="1.0.0",
    inputs={"conv_rate": Float32, "val_to_add": Int64},
    outputs={"conv_rate_plus_val1": Float64, "conv_rate_plus_val2": Float64},
)
def transformed_conv_rate(
    conv_rate: list[float | None], val_to_add: list[int | None]
) -> dict[str, list[float | None]]:
    rows = list(zip(conv_rate, val_to_add))
    return {
        "conv_rate_plus_val1": [None if c is None or v is None else c + float(v) for c, v in rows],
        "conv_rate_plus_val2": [None if c is None or v is None else c + float(v) * 2.0 for c, v in rows],
    }


Transform = export(transformed_conv_rate)
