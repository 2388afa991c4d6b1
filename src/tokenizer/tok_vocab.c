/* The token table shared by the three loaders: id -> bytes/text, bytes -> id,
 * merge pairs, added/special tokens, stop set (spec §1, §3.7, §4.7). */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

static inline uint64_t tok_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t v = 0;
        memcpy(&v, s, n);
        h = (h ^ v) * 0x94d049bb133111ebull;
        h ^= h >> 31;
    }
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 32;
    return h;
}

k2_status tok_new(int32_t n_vocab, const char *source, k2_tokenizer **out, k2_error *err) {
    *out = NULL;
    if (n_vocab <= 0 || n_vocab > (1 << 28))
        return k2_err(err, K2_EFORMAT, "%s: vocabulary size %d is out of range", source, (int)n_vocab);
    k2_tokenizer *t = k2_calloc(1, sizeof *t);
    if (!t) return k2_err(err, K2_ENOMEM, "%s: out of memory", source);
    t->n_vocab = n_vocab;
    t->type = k2_calloc((size_t)n_vocab, 1);
    t->off = k2_calloc((size_t)n_vocab, sizeof *t->off);
    t->len = k2_calloc((size_t)n_vocab, sizeof *t->len);
    t->source = k2_strdup(source);
    t->bos = t->eos = t->eot = t->eom = t->pad = t->unk_id = -1;
    if (!t->type || !t->off || !t->len || !t->source) {
        k2_tokenizer_free(t);
        return k2_err(err, K2_ENOMEM, "%s: out of memory", source);
    }
    *out = t;
    return K2_OK;
}

k2_status tok_set_token(k2_tokenizer *t, int32_t id, const void *p, size_t n, int type, k2_error *err) {
    if (id < 0 || id >= t->n_vocab)
        return k2_err(err, K2_EFORMAT, "%s: token id %d is out of range", t->source, (int)id);
    if (n > UINT32_MAX / 2 || t->blob_len + n + 1 > UINT32_MAX)
        return k2_err(err, K2_EFORMAT, "%s: token text too large", t->source);
    if (t->blob_len + n + 1 > t->blob_cap) {
        size_t cap = t->blob_cap ? t->blob_cap : 4096;
        while (cap < t->blob_len + n + 1) cap *= 2;
        char *b = realloc(t->blob, cap);
        if (!b) return k2_err(err, K2_ENOMEM, "%s: out of memory", t->source);
        t->blob = b;
        t->blob_cap = cap;
    }
    if (n) memcpy(t->blob + t->blob_len, p, n);
    t->blob[t->blob_len + n] = '\0';
    t->off[id] = (uint32_t)t->blob_len;
    t->len[id] = (uint32_t)n;
    t->type[id] = (uint8_t)type;
    t->blob_len += n + 1;
    return K2_OK;
}

/* ---- bytes -> id ---- */

static k2_status bmap_build(k2_tokenizer *t, k2_error *err) {
    size_t count = 0;
    for (int32_t i = 0; i < t->n_vocab; i++)
        if (t->type[i] == TOK_NORMAL) count++;
    size_t cap = 64;
    while (cap < count * 2 + 2) cap <<= 1;
    tok_bmap *m = &t->vocab;
    m->slots = k2_calloc(cap, sizeof *m->slots);
    m->fp = k2_calloc(cap, sizeof *m->fp);
    if (!m->slots || !m->fp) return k2_err(err, K2_ENOMEM, "%s: out of memory", t->source);
    m->cap = cap;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->type[id] != TOK_NORMAL) continue;
        const char *p = tok_text(t, id);
        size_t n = t->len[id];
        if (n == 0) return k2_err(err, K2_EFORMAT, "%s: token %d is empty", t->source, (int)id);
        uint64_t h = tok_hash(p, n);
        size_t i = (size_t)h & (cap - 1);
        while (m->slots[i]) {
            int32_t o = (int32_t)m->slots[i] - 1;
            if (m->fp[i] == (uint32_t)(h >> 32) && t->len[o] == n && memcmp(tok_text(t, o), p, n) == 0)
                return k2_err(err, K2_EFORMAT, "%s: tokens %d and %d have the same bytes", t->source,
                              (int)o, (int)id);
            i = (i + 1) & (cap - 1);
        }
        m->slots[i] = (uint32_t)id + 1;
        m->fp[i] = (uint32_t)(h >> 32);
    }
    return K2_OK;
}

int32_t tok_vocab_find(const k2_tokenizer *t, const void *p, size_t n) {
    const tok_bmap *m = &t->vocab;
    if (!m->cap) return -1;
    uint64_t h = tok_hash(p, n);
    size_t i = (size_t)h & (m->cap - 1);
    uint32_t fp = (uint32_t)(h >> 32);
    while (m->slots[i]) {
        if (m->fp[i] == fp) {
            int32_t o = (int32_t)m->slots[i] - 1;
            if (t->len[o] == n && memcmp(t->blob + t->off[o], p, n) == 0) return o;
        }
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

/* ---- (a, b) -> (rank, id) ---- */

static inline size_t pmap_slot(uint64_t key, size_t cap) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
}

static bool pmap_grow(tok_pmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    uint64_t *keys = calloc(cap, sizeof *keys);
    uint32_t *rank = malloc(cap * sizeof *rank);
    int32_t *id = malloc(cap * sizeof *id);
    if (!keys || !rank || !id) {
        free(keys); free(rank); free(id);
        return false;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = pmap_slot(m->keys[i], cap);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        rank[j] = m->rank[i];
        id[j] = m->id[i];
    }
    free(m->keys); free(m->rank); free(m->id);
    m->keys = keys; m->rank = rank; m->id = id; m->cap = cap;
    return true;
}

k2_status tok_pmap_put(tok_pmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id, bool *dup) {
    *dup = false;
    if ((m->count + 1) * 2 > m->cap && !pmap_grow(m)) return K2_ENOMEM;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = pmap_slot(key, m->cap);
    while (m->keys[i]) {
        if (m->keys[i] == key) { *dup = true; return K2_OK; }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = key;
    m->rank[i] = rank;
    m->id[i] = id;
    m->count++;
    return K2_OK;
}

static void pmap_free(tok_pmap *m) {
    free(m->keys); free(m->rank); free(m->id);
    memset(m, 0, sizeof *m);
}

k2_status tok_merges_from_ranks(k2_tokenizer *t, k2_error *err) {
    /* tiktoken merges A,B iff A‖B has a rank (§3.2); since every part is a token,
     * listing every split of every token into two tokens gives the same rule keyed by ids. */
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->type[id] != TOK_NORMAL || t->len[id] < 2) continue;
        const char *p = tok_text(t, id);
        size_t n = t->len[id];
        for (size_t k = 1; k < n; k++) {
            int32_t a = tok_vocab_find(t, p, k);
            if (a < 0) continue;
            int32_t b = tok_vocab_find(t, p + k, n - k);
            if (b < 0) continue;
            bool dup;
            if (tok_pmap_put(&t->merges, a, b, (uint32_t)id, id, &dup) != K2_OK)
                return k2_err(err, K2_ENOMEM, "%s: out of memory for merges", t->source);
        }
    }
    return K2_OK;
}

/* ---- added tokens ---- */

static int added_cmp(const void *x, const void *y) {
    const tok_added *a = x, *b = y;
    /* Grouped by first byte, longest first: the scanner takes the first that matches. */
    unsigned ca = a->first, cb = b->first;
    if (ca != cb) return ca < cb ? -1 : 1;
    if (a->len != b->len) return a->len > b->len ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

k2_status tok_finish(k2_tokenizer *t, k2_error *err) {
    k2_status st = bmap_build(t, err);
    if (st) return st;
    for (int i = 0; i < 256; i++) {
        unsigned char c = (unsigned char)i;
        t->byte_id[i] = tok_vocab_find(t, &c, 1);
    }
    for (int i = 0; i < 256; i++) {
        /* Every byte that valid UTF-8 can contain must have a token (§3.4). */
        bool required = !(i == 0xC0 || i == 0xC1 || i >= 0xF5);
        if (required && t->byte_id[i] < 0)
            return k2_err(err, K2_EFORMAT, "%s: the vocabulary has no token for the single byte 0x%02X",
                          t->source, i);
    }
    /* Added tokens: everything found by text (CONTROL, UNKNOWN, USER_DEFINED). */
    if (!t->added) {
        size_t n = 0;
        for (int32_t id = 0; id < t->n_vocab; id++) {
            int ty = t->type[id];
            if ((ty == TOK_CONTROL || ty == TOK_UNKNOWN || ty == TOK_USER) && t->len[id]) n++;
        }
        t->added = k2_calloc(n ? n : 1, sizeof *t->added);
        if (!t->added) return k2_err(err, K2_ENOMEM, "%s: out of memory", t->source);
        for (int32_t id = 0; id < t->n_vocab; id++) {
            int ty = t->type[id];
            if (!((ty == TOK_CONTROL || ty == TOK_UNKNOWN || ty == TOK_USER) && t->len[id])) continue;
            tok_added *a = &t->added[t->n_added++];
            a->id = id;
            a->off = t->off[id];
            a->len = t->len[id];
            a->control = ty != TOK_USER;
        }
    }
    for (size_t i = 0; i < t->n_added; i++) t->added[i].first = (uint8_t)t->blob[t->added[i].off];
    qsort(t->added, t->n_added, sizeof *t->added, added_cmp);
    memset(t->added_first, 0, sizeof t->added_first);
    t->any_user = false;
    for (size_t i = 0; i < t->n_added; i++) {
        unsigned c = (unsigned char)t->blob[t->added[i].off];
        t->added_first[c] |= t->added[i].control ? 1 : 2;
        if (!t->added[i].control) t->any_user = true;
    }
    return K2_OK;
}

void tok_set_stops(k2_tokenizer *t) {
    /* Stop set (§6.6): end of turn, EOS, EOT, looked up by text, plus the file's EOS/EOT. */
    static const char *const names[] = {"<|im_end|>", "[EOS]", "[EOT]"};
    t->n_stop = 0;
    for (size_t i = 0; i < K2_ARRAY_LEN(names); i++) {
        int32_t id = k2_token_find(t, names[i], strlen(names[i]));
        if (id >= 0 && t->type[id] != TOK_NORMAL) t->stop[t->n_stop++] = id;
    }
    int32_t extra[] = {t->eos, t->eot, t->eom};
    for (size_t i = 0; i < K2_ARRAY_LEN(extra); i++) {
        if (extra[i] < 0) continue;
        bool have = false;
        for (size_t j = 0; j < t->n_stop; j++) have |= t->stop[j] == extra[i];
        if (!have && t->n_stop < K2_ARRAY_LEN(t->stop)) t->stop[t->n_stop++] = extra[i];
    }
}

/* ---- public accessors ---- */

void k2_tokenizer_free(k2_tokenizer *t) {
    if (!t) return;
    free(t->type); free(t->off); free(t->len); free(t->blob);
    free(t->vocab.slots); free(t->vocab.fp);
    pmap_free(&t->merges);
    free(t->added);
    for (size_t i = 0; i < t->n_steps; i++) pcre2_code_free(t->steps[i].re);
    free(t->steps);
    for (size_t i = 0; i < t->n_norms; i++) {
        pcre2_code_free(t->norms[i].re);
        free(t->norms[i].pattern);
        free(t->norms[i].content);
    }
    free(t->norms);
    free(t->pre_name); free(t->source); free(t->chat_template);
    free(t);
}

int32_t k2_tokenizer_n_vocab(const k2_tokenizer *t) { return t->n_vocab; }
int32_t k2_token_bos(const k2_tokenizer *t) { return t->bos; }
int32_t k2_token_eos(const k2_tokenizer *t) { return t->eos; }
int32_t k2_token_eot(const k2_tokenizer *t) { return t->eot; }
bool k2_tokenizer_adds_bos(const k2_tokenizer *t) { return t->add_bos && t->bos >= 0; }
const char *k2_tokenizer_pre_name(const k2_tokenizer *t) { return t->pre_name ? t->pre_name : ""; }

size_t k2_tokenizer_stop_ids(const k2_tokenizer *t, const int32_t **ids) {
    if (ids) *ids = t->stop;
    return t->n_stop;
}

bool k2_token_is_stop(const k2_tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->n_stop; i++)
        if (t->stop[i] == id) return true;
    return false;
}

bool k2_token_is_special(const k2_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return false;
    int ty = t->type[id];
    return ty == TOK_CONTROL || ty == TOK_UNKNOWN;
}

k2_status k2_token_bytes(const k2_tokenizer *t, int32_t id, k2_str *out, k2_error *err) {
    if (id < 0 || id >= t->n_vocab)
        return k2_err(err, K2_ERANGE, "token id %d is outside the vocabulary (size %d)", (int)id,
                      (int)t->n_vocab);
    out->ptr = tok_text(t, id);
    out->len = t->len[id];
    return K2_OK;
}

int32_t k2_token_find(const k2_tokenizer *t, const char *text, size_t len) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].len == len && memcmp(t->blob + t->added[i].off, text, len) == 0) return t->added[i].id;
    return tok_vocab_find(t, text, len);
}
