"""`approx_median` in Python: the median of a window's inputs from a bounded sketch.

The same function as the Rust example (examples/transforms/approx_median),
written with the Python SDK: values are counted in log-linear buckets (64 per
power of two, taken from the float's bits, no logarithm), merging adds counts,
and the median is the middle of its bucket. So the values are the same bits as
the Rust version's, though the state is JSON here and postcard there.
"""

import struct

from skewless_sdk import Float64, aggregator, export_aggregator

SUB_BITS = 6  # 64 buckets per power of two
MIN_EXPONENT = -20  # magnitudes below 2^-20 count as zero
MAX_EXPONENT = 40  # magnitudes above 2^40 share its bucket
MAX_MAGNITUDE = struct.unpack("<d", struct.pack("<Q", (MAX_EXPONENT + 1023) << 52))[0]


def bits(x: float) -> int:
    return struct.unpack("<Q", struct.pack("<d", x))[0]


def from_bits(b: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", b))[0]


def bucket(magnitude: float) -> int | None:
    clamped = min(magnitude, MAX_MAGNITUDE)
    if ((bits(clamped) >> 52) & 0x7FF) - 1023 < MIN_EXPONENT:
        return None
    return bits(clamped) >> (52 - SUB_BITS)


def representative(b: int) -> float:
    low = from_bits(b << (52 - SUB_BITS))
    high = from_bits((b + 1) << (52 - SUB_BITS))
    return low + (high - low) / 2.0


@aggregator(name="approx_median", version="1.0.0", input=Float64, output=Float64)
class ApproxMedian:
    # State: {"z": zeros, "p": {bucket: count}, "n": {bucket: count}}; JSON keys are strings.
    def initial(self):
        return {"z": 0, "p": {}, "n": {}}

    def update(self, state, value):
        if value != value:  # NaN
            return state
        b = bucket(abs(value))
        if b is None:
            state["z"] += 1
        else:
            side = state["n"] if value < 0 else state["p"]
            side[str(b)] = side.get(str(b), 0) + 1
        return state

    def merge(self, state, later):
        state["z"] += later["z"]
        for sign in ("p", "n"):
            for b, count in later[sign].items():
                state[sign][b] = state[sign].get(b, 0) + count
        return state

    def finalize(self, state):
        """The lower median: the value of rank (n - 1) // 2 in ascending order."""
        n = state["z"] + sum(state["p"].values()) + sum(state["n"].values())
        if n == 0:
            return None
        rank = (n - 1) // 2
        for b in sorted(map(int, state["n"]), reverse=True):
            count = state["n"][str(b)]
            if rank < count:
                return -representative(b)
            rank -= count
        if rank < state["z"]:
            return 0.0
        rank -= state["z"]
        for b in sorted(map(int, state["p"])):
            count = state["p"][str(b)]
            if rank < count:
                return representative(b)
            rank -= count
        raise AssertionError("the rank is below the count")


Aggregator = export_aggregator(ApproxMedian)
