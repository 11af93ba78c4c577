"""`{{name}}`: average speed of a trip, in km/h.

Build with `skewless build .` (needs `pip install componentize-py==0.25.1`);
the component lands in `target/{{name}}.wasm`, which `skewless.toml` names.
`skewless_sdk` comes with skewless: the build puts it on the Python path.
"""

from skewless_sdk import Float64, Int64, RowError, export, row_transform


@row_transform(
    name="{{name}}",
    version="1.0.0",
    inputs={"distance_km": Float64, "duration_s": Int64},
    outputs={"speed_kmh": Float64},
)
def trip_speed(distance_km: float | None, duration_s: int | None) -> dict[str, float] | None:
    if distance_km is None or duration_s is None:
        return None  # every output null
    if duration_s <= 0:
        raise RowError(f"duration_s must be > 0, got {duration_s}")  # this row becomes null
    return {"speed_kmh": distance_km / (duration_s / 3600.0)}


# What componentize-py exports as the WIT interface `transform`.
Transform = export(trip_speed)
