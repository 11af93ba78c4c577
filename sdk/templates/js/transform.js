/**
 * `{{name}}`: average speed of a trip, in km/h.
 *
 * Build with `skewless build .` (it runs `npm install` for ComponentizeJS the
 * first time); the component lands in `target/{{name}}.wasm`, which
 * `skewless.toml` names. `./skewless_sdk.js` comes with skewless: the build
 * puts it beside this file. int64 values arrive as BigInt.
 */
import { Float64, Int64, RowError, rowTransform } from "./skewless_sdk.js";

export const transform = rowTransform({
  name: "{{name}}",
  version: "1.0.0",
  inputs: { distance_km: Float64, duration_s: Int64 },
  outputs: { speed_kmh: Float64 },
  row({ distance_km, duration_s }) {
    if (distance_km === null || duration_s === null) return null; // every output null
    if (duration_s <= 0n) throw new RowError(`duration_s must be > 0, got ${duration_s}`); // this row becomes null
    return { speed_kmh: distance_km / (Number(duration_s) / 3600) };
  },
});
