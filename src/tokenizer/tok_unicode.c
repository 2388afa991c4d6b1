/* Unicode helpers for the tokenizer: class table, UTF-8 checks (spec §3.6, §7.3),
 * the GPT-2 byte alphabet (§4.3) and a growable byte buffer. */
#include "tokenizer/tok_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static uint8_t *uni_table;
static pthread_once_t uni_once = PTHREAD_ONCE_INIT;

static void uni_build(void) {
    /* 1.1 MB, one byte per code point: the pre-tokenizer looks up every character. */
    uint8_t *t = calloc(0x110000, 1);
    if (!t) return;
    for (size_t i = 0; i < tok_uni_n_ranges; i++)
        if (tok_uni_ranges[i].flags)
            memset(t + tok_uni_ranges[i].lo, tok_uni_ranges[i].flags,
                   tok_uni_ranges[i].hi - tok_uni_ranges[i].lo + 1);
    uni_table = t;
}

const uint8_t *tok_uni_table(void) {
    pthread_once(&uni_once, uni_build);
    return uni_table;
}

int tok_utf8_check(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) { need = 2; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) { need = 2; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) { need = 3; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) { need = 3; hi = 0x8F; }
    else return 0;
    for (int i = 1; i <= need; i++) {
        if ((size_t)i >= n) return -i;
        unsigned d = s[i];
        if (i == 1 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) return 0;
    }
    return need + 1;
}

size_t tok_utf8_bad_len(const unsigned char *s, size_t n) {
    /* Maximal subpart: the longest prefix of a valid sequence, at least one byte. */
    int r = tok_utf8_check(s, n);
    if (r < 0) return (size_t)-r;
    if (r > 0) return (size_t)r;
    if (tok_utf8_check(s, 1) != -1) return 1;
    size_t k = 1;
    while (k < n && k < 4 && tok_utf8_check(s, k + 1) == -(int)(k + 1)) k++;
    return k;
}

bool tok_buf_reserve(tok_buf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return false;
    b->p = p;
    b->cap = cap;
    return true;
}

bool tok_buf_add(tok_buf *b, const void *p, size_t n) {
    if (!tok_buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return true;
}

bool tok_buf_addc(tok_buf *b, char c) { return tok_buf_add(b, &c, 1); }

bool tok_buf_addf(tok_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !tok_buf_reserve(b, (size_t)n)) return false;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

void tok_buf_free(tok_buf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void tok_utf8_put(tok_buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    tok_buf_add(b, u, n);
}

bool tok_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        int r = tok_utf8_check(u + i, n - i);
        if (r <= 0) return false;
        i += (size_t)r;
    }
    return true;
}

bool tok_utf8_sanitize(tok_buf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    if (!tok_buf_reserve(out, n)) return false;
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        int r = tok_utf8_check(u + i, n - i);
        if (r > 0) { i += (size_t)r; continue; }
        if (!tok_buf_add(out, s + run, i - run) || !tok_buf_add(out, "\xEF\xBF\xBD", 3)) return false;
        i += tok_utf8_bad_len(u + i, n - i);
        run = i;
    }
    return tok_buf_add(out, s + run, n - run);
}

/* Byte-to-unicode alphabet (spec §4.3). */
static bool byte_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_to_cp(uint8_t b) {
    if (byte_printable(b)) return b;
    unsigned k = 0;
    for (unsigned x = 0; x < b; x++)
        if (!byte_printable(x)) k++;
    return 0x100 + k;
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 0x100) return byte_printable(cp) ? (int)cp : -1;
    if (cp > 0x143) return -1;
    unsigned k = cp - 0x100;
    for (unsigned x = 0; x < 256; x++)
        if (!byte_printable(x) && k-- == 0) return (int)x;
    return -1;
}

static int16_t unbyte_inv[0x144];
static pthread_once_t unbyte_once = PTHREAD_ONCE_INIT;
static void unbyte_build(void) {
    for (unsigned i = 0; i < 0x144; i++) unbyte_inv[i] = (int16_t)tok_cp_to_byte(i);
}

bool tok_unbyte(const char *s, size_t n, tok_buf *out) {
    pthread_once(&unbyte_once, unbyte_build);
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    if (!tok_buf_reserve(out, n)) return false;
    while (i < n) {
        int r = tok_utf8_check(u + i, n - i);
        if (r <= 0) return false;
        uint32_t cp;
        tok_utf8_next(u + i, n - i, &cp);
        i += (size_t)r;
        if (cp >= 0x144 || unbyte_inv[cp] < 0) return false;
        out->p[out->len++] = (char)unbyte_inv[cp];
    }
    out->p[out->len] = '\0';
    return true;
}
