"""`fraud_features` in Python: card-transaction features with strings and timestamps.

From `amount`, `merchant_category` and the transaction's `event_timestamp`: a
log amount, an amount bucket, a normalized merchant category and whether it is
high risk, the hour of day and day of week (UTC, Monday = 0) and a night flag.
A negative or NaN amount, or an unknown category, fails that row alone.
Written as a row function; the Rust, JavaScript and C versions give the same
bits and the same row errors.
"""

import math
from datetime import datetime

from skewless_sdk import Boolean, Float64, Int64, RowError, Timestamp, Utf8, export, row_transform

# Merchant categories we know, and whether each is high risk.
CATEGORIES = {
    "grocery": False,
    "fuel": False,
    "restaurant": False,
    "travel": False,
    "electronics": True,
    "jewelry": True,
    "gift_cards": True,
    "online_gambling": True,
}


def amount_bucket(amount: float) -> str:
    if amount < 5.0:
        return "micro"
    if amount < 50.0:
        return "small"
    if amount < 500.0:
        return "medium"
    return "large"


@row_transform(
    name="fraud_features",
    version="1.0.0",
    inputs={"amount": Float64, "merchant_category": Utf8, "event_timestamp": Timestamp},
    outputs={
        "amount_log": Float64,
        "amount_bucket": Utf8,
        "merchant_category_norm": Utf8,
        "is_high_risk_merchant": Boolean,
        "hour_of_day": Int64,
        "day_of_week": Int64,
        "is_night": Boolean,
    },
)
def fraud_features(amount: float | None, merchant_category: str | None, event_timestamp: datetime | None) -> dict:
    problems = []
    out = {}
    if amount is not None:
        if math.isnan(amount) or amount < 0.0:
            problems.append("amount must be a number >= 0")
        else:
            out["amount_log"] = math.log1p(amount)
            out["amount_bucket"] = amount_bucket(amount)
    if merchant_category is not None:
        # ASCII rules only, so that every language agrees on what matches.
        category = merchant_category.strip(" \t\n\r")
        if category.isascii() and category.lower() in CATEGORIES:
            out["merchant_category_norm"] = category.lower()
            out["is_high_risk_merchant"] = CATEGORIES[category.lower()]
        else:
            problems.append(f'unknown merchant category "{merchant_category}"')
    if problems:
        raise RowError("; ".join(problems))
    if event_timestamp is not None:
        # A datetime in UTC.
        out["hour_of_day"] = event_timestamp.hour
        out["day_of_week"] = event_timestamp.weekday()
        out["is_night"] = not 6 <= event_timestamp.hour < 22
    return out


Transform = export(fraud_features)
