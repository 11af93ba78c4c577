"""`text_embedding` in Python: the hashing embedding of a title.

Each lower-cased word of `title` (split on anything but ASCII letters and
digits) is hashed three times with 64-bit FNV-1a (three seeds) into three of
128 slots, each with a sign; the signed counts are summed and scaled to unit
length. Also the title's words as a list, and the title. Integer hashing, an
exact integer sum of squares, one square root and one division per
component: the Rust, JavaScript and C versions give the same bits.
"""

import math

from skewless_sdk import List, Utf8, Vector, export, row_transform

DIMENSION = 128
SEED = 0x5EED1E55
HASHES = 3
MASK = (1 << 64) - 1


def fnv1a(data: bytes, seed: int) -> int:
    hash = 0xCBF29CE484222325 ^ seed
    for byte in data:
        hash = ((hash ^ byte) * 0x100000001B3) & MASK
    return hash


def words(title: str) -> list[str]:
    out, word = [], []
    for c in title:
        if c.isascii() and c.isalnum():
            word.append(c.lower())
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out


def embed(title_words: list[str]) -> list[float] | None:
    counts = [0] * DIMENSION
    for word in title_words:
        for seed in range(SEED, SEED + HASHES):
            hash = fnv1a(word.encode(), seed)
            counts[hash % DIMENSION] += 1 if hash >> 63 == 0 else -1
    squares = sum(c * c for c in counts)
    if not title_words or squares == 0:
        return None
    norm = math.sqrt(squares)
    # Python floats are float64: the host rounds each to float32 once, as Rust's `as f32` does.
    return [c / norm for c in counts]


@row_transform(
    name="text_embedding",
    version="1.0.0",
    inputs={"title": Utf8},
    outputs={"title": Utf8, "embedding": Vector(DIMENSION), "words": List(Utf8)},
)
def text_embedding(title: str | None) -> dict | None:
    if title is None:
        return None
    title_words = words(title)
    return {"title": title, "embedding": embed(title_words), "words": title_words}


Transform = export(text_embedding)
