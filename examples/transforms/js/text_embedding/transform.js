/**
 * `text_embedding` in JavaScript: the hashing embedding of a title.
 *
 * Each lower-cased word of `title` (split on anything but ASCII letters and
 * digits) is hashed three times with 64-bit FNV-1a (three seeds, BigInt
 * arithmetic) into three of 128 slots, each with a sign; the signed counts
 * are summed and scaled to unit length. Also the title's words as a list, and
 * the title. Integer hashing, an exact integer sum of squares, one square root
 * and one division per component, rounded once to float32: the Rust, Python
 * and C versions give the same bits.
 */
import { List, Utf8, Vector, rowTransform } from "./skewless_sdk.js";

const DIMENSION = 128;
const SEED = 0x5eed1e55n;
const HASHES = 3n;
const MASK = (1n << 64n) - 1n;
const utf8 = new TextEncoder();

function fnv1a(bytes, seed) {
  let hash = 0xcbf29ce484222325n ^ seed;
  for (const byte of bytes) {
    hash = ((hash ^ BigInt(byte)) * 0x100000001b3n) & MASK;
  }
  return hash;
}

function words(title) {
  return title
    .split(/[^A-Za-z0-9]+/)
    .filter((w) => w.length > 0)
    .map((w) => w.toLowerCase());
}

function embed(titleWords) {
  const counts = new Array(DIMENSION).fill(0);
  for (const word of titleWords) {
    const bytes = utf8.encode(word);
    for (let seed = SEED; seed < SEED + HASHES; seed++) {
      const hash = fnv1a(bytes, seed);
      counts[Number(hash % BigInt(DIMENSION))] += hash >> 63n === 0n ? 1 : -1;
    }
  }
  // Exact: a few hundred counts of a few hundred each, far below 2^53.
  const squares = counts.reduce((sum, c) => sum + c * c, 0);
  if (titleWords.length === 0 || squares === 0) return null;
  const norm = Math.sqrt(squares);
  return counts.map((c) => c / norm);
}

export const transform = rowTransform({
  name: "text_embedding",
  version: "1.0.0",
  inputs: { title: Utf8 },
  outputs: { title: Utf8, embedding: Vector(DIMENSION), words: List(Utf8) },
  row({ title }) {
    if (title === null) return null;
    const titleWords = words(title);
    return { title, embedding: embed(titleWords), words: titleWords };
  },
});
