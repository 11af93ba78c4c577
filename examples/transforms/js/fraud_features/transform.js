/**
 * `fraud_features` in JavaScript: card-transaction features with strings and timestamps.
 *
 * From `amount`, `merchant_category` and the transaction's `event_timestamp`:
 * a log amount, an amount bucket, a normalized merchant category and whether
 * it is high risk, the hour of day and day of week (UTC, Monday = 0) and a
 * night flag. A negative or NaN amount, or an unknown category, fails that row
 * alone. Written as a row function; the Rust, Python and C versions give the
 * same bits and the same row errors.
 */
import { Bool, Float64, Int64, RowError, Timestamp, Utf8, rowTransform } from "./skewless_sdk.js";

const MICROS_PER_HOUR = 3_600_000_000n;
const MICROS_PER_DAY = 24n * MICROS_PER_HOUR;

/** Merchant categories we know, and whether each is high risk. */
const CATEGORIES = new Map([
  ["grocery", false],
  ["fuel", false],
  ["restaurant", false],
  ["travel", false],
  ["electronics", true],
  ["jewelry", true],
  ["gift_cards", true],
  ["online_gambling", true],
]);

function amountBucket(amount) {
  if (amount < 5) return "micro";
  if (amount < 50) return "small";
  if (amount < 500) return "medium";
  return "large";
}

/** Floored division and remainder, as Rust's div_euclid/rem_euclid for a positive divisor. */
const floorDiv = (a, b) => (a % b < 0n ? a / b - 1n : a / b);
const floorMod = (a, b) => ((a % b) + b) % b;

export const transform = rowTransform({
  name: "fraud_features",
  version: "1.0.0",
  inputs: { amount: Float64, merchant_category: Utf8, event_timestamp: Timestamp },
  outputs: {
    amount_log: Float64,
    amount_bucket: Utf8,
    merchant_category_norm: Utf8,
    is_high_risk_merchant: Bool,
    hour_of_day: Int64,
    day_of_week: Int64,
    is_night: Bool,
  },
  row({ amount, merchant_category, event_timestamp }) {
    const problems = [];
    const out = {};
    if (amount !== null) {
      if (Number.isNaN(amount) || amount < 0) {
        problems.push("amount must be a number >= 0");
      } else {
        out.amount_log = Math.log1p(amount);
        out.amount_bucket = amountBucket(amount);
      }
    }
    if (merchant_category !== null) {
      // ASCII rules only, so that every language agrees on what matches.
      const category = merchant_category.replace(/^[ \t\n\r]+|[ \t\n\r]+$/g, "");
      const lower = /^[\x00-\x7f]*$/.test(category) ? category.toLowerCase() : null;
      if (CATEGORIES.has(lower)) {
        out.merchant_category_norm = lower;
        out.is_high_risk_merchant = CATEGORIES.get(lower);
      } else {
        problems.push(`unknown merchant category "${merchant_category}"`);
      }
    }
    if (problems.length > 0) throw new RowError(problems.join("; "));
    if (event_timestamp !== null) {
      const hour = floorMod(event_timestamp, MICROS_PER_DAY) / MICROS_PER_HOUR;
      out.hour_of_day = hour;
      // 1970-01-01 was a Thursday (3 with Monday = 0).
      out.day_of_week = floorMod(floorDiv(event_timestamp, MICROS_PER_DAY) + 3n, 7n);
      out.is_night = hour < 6n || hour >= 22n;
    }
    return out;
  },
});
