/*
 * `{{name}}`: average speed of a trip, in km/h.
 *
 * Build with `skewless build .` (needs clang with a wasm32 target and
 * wasi-libc: on Debian or Ubuntu, `apt install clang-19 lld-19
 * libclang-rt-19-dev-wasm32 wasi-libc`); the component lands in
 * `target/{{name}}.wasm`, which `skewless.toml` names. `skewless.h` comes
 * with skewless: the build puts it on the include path.
 */
#include "skewless.h"

static const sk_field INPUTS[] = {{"distance_km", SK_FLOAT64}, {"duration_s", SK_INT64}};
static const sk_field OUTPUTS[] = {{"speed_kmh", SK_FLOAT64}};
enum { DISTANCE_KM, DURATION_S }; /* input positions */
enum { SPEED_KMH };               /* output positions */

static void trip_speed(const sk_input *in, size_t row, sk_output *out) {
    if (sk_is_null(in, DISTANCE_KM, row) || sk_is_null(in, DURATION_S, row)) return; /* outputs stay null */
    int64_t duration_s = sk_i64(in, DURATION_S, row);
    if (duration_s <= 0) {
        sk_row_error(out, row, "duration_s must be > 0, got %lld", (long long)duration_s); /* this row becomes null */
        return;
    }
    sk_set_f64(out, SPEED_KMH, row, sk_f64(in, DISTANCE_KM, row) / ((double)duration_s / 3600.0));
}

SK_ROW_TRANSFORM("{{name}}", "1.0.0", INPUTS, OUTPUTS, trip_speed)
