/*
 * `fraud_features` in C: card-transaction features with strings and timestamps.
 *
 * From `amount`, `merchant_category` and the transaction's `event_timestamp`:
 * a log amount, an amount bucket, a normalized merchant category and whether
 * it is high risk, the hour of day and day of week (UTC, Monday = 0) and a
 * night flag. A negative or NaN amount, or an unknown category, fails that row
 * alone. Written as a row function; the Rust, Python and JavaScript versions
 * give the same bits and the same row errors.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "skewless.h"

static const sk_field INPUTS[] = {
    {"amount", SK_FLOAT64}, {"merchant_category", SK_UTF8}, {"event_timestamp", SK_TIMESTAMP}};
static const sk_field OUTPUTS[] = {
    {"amount_log", SK_FLOAT64},  {"amount_bucket", SK_UTF8}, {"merchant_category_norm", SK_UTF8},
    {"is_high_risk_merchant", SK_BOOLEAN}, {"hour_of_day", SK_INT64}, {"day_of_week", SK_INT64},
    {"is_night", SK_BOOLEAN}};
enum { AMOUNT, CATEGORY, TIME };
enum { AMOUNT_LOG, AMOUNT_BUCKET, CATEGORY_NORM, HIGH_RISK, HOUR, WEEKDAY, NIGHT };

static const int64_t MICROS_PER_HOUR = 3600000000LL;
static const int64_t MICROS_PER_DAY = 24 * 3600000000LL;

/* Merchant categories we know, and whether each is high risk. */
static const struct {
    const char *name;
    bool risky;
} CATEGORIES[] = {{"grocery", false},    {"fuel", false},    {"restaurant", false}, {"travel", false},
                  {"electronics", true}, {"jewelry", true},  {"gift_cards", true},  {"online_gambling", true}};

static const char *amount_bucket(double amount) {
    if (amount < 5.0) return "micro";
    if (amount < 50.0) return "small";
    if (amount < 500.0) return "medium";
    return "large";
}

static bool is_trimmed(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? (char)(c + 32) : c; }

/* The known category `raw` names, with ASCII rules only (so every language agrees), or -1. */
static int find_category(const char *raw, size_t len) {
    while (len > 0 && is_trimmed(raw[0])) raw++, len--;
    while (len > 0 && is_trimmed(raw[len - 1])) len--;
    for (int i = 0; i < (int)(sizeof(CATEGORIES) / sizeof(CATEGORIES[0])); i++) {
        const char *name = CATEGORIES[i].name;
        if (strlen(name) != len) continue;
        size_t j = 0;
        while (j < len && ascii_lower(raw[j]) == name[j]) j++;
        if (j == len) return i;
    }
    return -1;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b < 0); }
static int64_t floor_mod(int64_t a, int64_t b) { return (a % b + b) % b; }

static void fraud_features(const sk_input *in, size_t row, sk_output *out) {
    char problems[512] = "";
    if (!sk_is_null(in, AMOUNT, row)) {
        double amount = sk_f64(in, AMOUNT, row);
        if (isnan(amount) || amount < 0.0) {
            strcat(problems, "amount must be a number >= 0");
        } else {
            sk_set_f64(out, AMOUNT_LOG, row, log1p(amount));
            const char *bucket = amount_bucket(amount);
            sk_set_str(out, AMOUNT_BUCKET, row, bucket, strlen(bucket));
        }
    }
    if (!sk_is_null(in, CATEGORY, row)) {
        size_t len;
        const char *raw = sk_str(in, CATEGORY, row, &len);
        int known = find_category(raw, len);
        if (known >= 0) {
            sk_set_str(out, CATEGORY_NORM, row, CATEGORIES[known].name, strlen(CATEGORIES[known].name));
            sk_set_bool(out, HIGH_RISK, row, CATEGORIES[known].risky);
        } else {
            sk_row_error(out, row, "%s%sunknown merchant category \"%.*s\"", problems, problems[0] ? "; " : "",
                         (int)len, raw);
            return;
        }
    }
    if (problems[0]) {
        sk_row_error(out, row, "%s", problems);
        return;
    }
    if (!sk_is_null(in, TIME, row)) {
        int64_t t = sk_i64(in, TIME, row);
        int64_t hour = floor_mod(t, MICROS_PER_DAY) / MICROS_PER_HOUR;
        sk_set_i64(out, HOUR, row, hour);
        /* 1970-01-01 was a Thursday (3 with Monday = 0). */
        sk_set_i64(out, WEEKDAY, row, floor_mod(floor_div(t, MICROS_PER_DAY) + 3, 7));
        sk_set_bool(out, NIGHT, row, !(hour >= 6 && hour < 22));
    }
}

SK_ROW_TRANSFORM("fraud_features", "1.0.0", INPUTS, OUTPUTS, fraud_features)
