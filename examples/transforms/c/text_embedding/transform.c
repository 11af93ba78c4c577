/*
 * `text_embedding` in C: the hashing embedding of a title.
 *
 * Each lower-cased word of `title` (split on anything but ASCII letters and
 * digits) is hashed three times with 64-bit FNV-1a (three seeds) into three of
 * 128 slots, each with a sign; the signed counts are summed and scaled to unit
 * length. Also the title's words as a list, and the title. Integer hashing, an
 * exact integer sum of squares, one square root and one division per
 * component, rounded once to float: the Rust, Python and JavaScript versions
 * give the same bits.
 */
#include <math.h>
#include <stdlib.h>

#include "skewless.h"

enum { DIMENSION = 128, HASHES = 3 };
static const uint64_t SEED = 0x5eed1e55u;

static const sk_field INPUTS[] = {{"title", SK_UTF8}};
static const sk_field OUTPUTS[] = {
    {"title", SK_UTF8},
    {"embedding", SK_VECTOR_OF(DIMENSION)},
    {"words", SK_LIST_OF(SK_UTF8)},
};
enum { TITLE };
enum { TITLE_OUT, EMBEDDING, WORDS };

static uint64_t fnv1a(const char *bytes, size_t len, uint64_t seed) {
    uint64_t hash = 0xcbf29ce484222325u ^ seed;
    for (size_t i = 0; i < len; i++) {
        hash ^= (uint8_t)bytes[i];
        hash *= 0x100000001b3u;
    }
    return hash;
}

static int is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static void text_embedding(const sk_input *in, size_t row, sk_output *out) {
    if (sk_is_null(in, TITLE, row)) return;
    size_t len;
    const char *title = sk_str(in, TITLE, row, &len);
    sk_set_str(out, TITLE_OUT, row, title, len);
    sk_start_list(out, WORDS, row);
    int32_t counts[DIMENSION] = {0};
    int words = 0;
    char *word = malloc(len ? len : 1); /* the longest word fits */
    if (!word) __builtin_trap();
    for (size_t start = 0; start < len;) {
        if (!is_word_char(title[start])) {
            start++;
            continue;
        }
        size_t end = start;
        while (end < len && is_word_char(title[end])) end++;
        size_t n = end - start;
        for (size_t i = 0; i < n; i++) {
            char c = title[start + i];
            word[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
        }
        sk_push_str(out, WORDS, word, n);
        for (uint64_t seed = SEED; seed < SEED + HASHES; seed++) {
            uint64_t hash = fnv1a(word, n, seed);
            counts[hash % DIMENSION] += (hash >> 63) == 0 ? 1 : -1;
        }
        words++;
        start = end;
    }
    free(word);
    int64_t squares = 0;
    for (int i = 0; i < DIMENSION; i++) squares += (int64_t)counts[i] * counts[i];
    if (words == 0 || squares == 0) return; /* no direction: the embedding stays null */
    double norm = sqrt((double)squares);
    float *embedding = sk_set_vector(out, EMBEDDING, row);
    for (int i = 0; i < DIMENSION; i++) embedding[i] = (float)((double)counts[i] / norm);
}

SK_ROW_TRANSFORM("text_embedding", "1.0.0", INPUTS, OUTPUTS, text_embedding)
