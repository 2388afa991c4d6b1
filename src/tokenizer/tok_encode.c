/* Encoding: added/special token extraction (spec §3.5, §5.2), pre-tokenizer steps,
 * normalizers (§5.3) and the BPE core (§3.2, §3.3, §3.7). */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

bool tok_ids_push(tok_ids *ids, int32_t id) {
    if (ids->n == ids->cap) {
        size_t cap = ids->cap ? ids->cap * 2 : 64;
        int32_t *v = realloc(ids->v, cap * sizeof *v);
        if (!v) return false;
        ids->v = v;
        ids->cap = cap;
    }
    ids->v[ids->n++] = id;
    return true;
}

/* ---- BPE ---- */

static inline bool pair_lookup(const tok_pmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *id) {
    if (!m->cap || a < 0 || b < 0) return false;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (m->cap - 1);
    for (;;) {
        uint64_t k = m->keys[i];
        if (k == key) { *rank = m->rank[i]; *id = m->id[i]; return true; }
        if (!k) return false;
        i = (i + 1) & (m->cap - 1);
    }
}

static k2_status bpe_emit(const k2_tokenizer *t, const int32_t *ids, size_t n, tok_ids *out) {
    bool prev_unk = false;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0) {
            /* A byte without a token (§3.4): unk if the file has one, else dropped. */
            if (t->unk_id < 0) continue;
            if (t->fuse_unk && prev_unk) continue;
            id = t->unk_id;
            prev_unk = true;
        } else prev_unk = false;
        if (!tok_ids_push(out, id)) return K2_ENOMEM;
    }
    return K2_OK;
}

#define BPE_SMALL 128

/* Quadratic scan: fastest for ordinary words. */
static k2_status bpe_small(const k2_tokenizer *t, const unsigned char *s, size_t n, tok_ids *out) {
    int32_t ids[BPE_SMALL], mid[BPE_SMALL];
    uint32_t rk[BPE_SMALL];
    size_t m = n;
    for (size_t i = 0; i < n; i++) ids[i] = t->byte_id[s[i]];
    for (size_t i = 0; i + 1 < m; i++)
        if (!pair_lookup(&t->merges, ids[i], ids[i + 1], &rk[i], &mid[i])) rk[i] = UINT32_MAX;
    while (m > 1) {
        uint32_t best = UINT32_MAX;
        size_t bi = 0;
        for (size_t i = 0; i + 1 < m; i++)
            if (rk[i] < best) { best = rk[i]; bi = i; }
        if (best == UINT32_MAX) break;
        ids[bi] = mid[bi];
        memmove(ids + bi + 1, ids + bi + 2, (m - bi - 2) * sizeof *ids);
        memmove(rk + bi + 1, rk + bi + 2, (m - bi - 2) * sizeof *rk);
        memmove(mid + bi + 1, mid + bi + 2, (m - bi - 2) * sizeof *mid);
        m--;
        if (bi + 1 < m && !pair_lookup(&t->merges, ids[bi], ids[bi + 1], &rk[bi], &mid[bi])) rk[bi] = UINT32_MAX;
        if (bi + 1 >= m) rk[bi] = UINT32_MAX;
        if (bi > 0 && !pair_lookup(&t->merges, ids[bi - 1], ids[bi], &rk[bi - 1], &mid[bi - 1]))
            rk[bi - 1] = UINT32_MAX;
    }
    return bpe_emit(t, ids, m, out);
}

/* Linked parts + binary heap with lazy invalidation, O(m log m) (§3.7). */
typedef struct bpe_cand {
    uint32_t rank;
    uint32_t left; /* part index = start byte */
    int32_t idl, idr;
} bpe_cand;

static inline bool cand_less(const bpe_cand *a, const bpe_cand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_cand *h, size_t *n, bpe_cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static bpe_cand heap_pop(bpe_cand *h, size_t *n) {
    bpe_cand top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bpe_cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) { m = l; best = &h[l]; }
        if (r < *n && cand_less(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

static k2_status bpe_large(const k2_tokenizer *t, const unsigned char *s, size_t n, tok_ids *out) {
    int32_t *id = malloc(n * sizeof *id);
    uint32_t *next = malloc(n * sizeof *next), *prev = malloc(n * sizeof *prev);
    bpe_cand *heap = malloc(2 * n * sizeof *heap);
    k2_status st = K2_OK;
    if (!id || !next || !prev || !heap) { st = K2_ENOMEM; goto done; }
    size_t hn = 0;
    const uint32_t NONE = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        id[i] = t->byte_id[s[i]];
        next[i] = i + 1 < n ? (uint32_t)(i + 1) : NONE;
        prev[i] = i ? (uint32_t)(i - 1) : NONE;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r;
        int32_t m;
        if (pair_lookup(&t->merges, id[i], id[i + 1], &r, &m))
            heap_push(heap, &hn, (bpe_cand){r, (uint32_t)i, id[i], id[i + 1]});
    }
    while (hn) {
        if (hn + 2 > 2 * n) break; /* cannot happen: at most 2 pushes per merge */
        bpe_cand c = heap_pop(heap, &hn);
        uint32_t l = c.left, r = next[l];
        if (id[l] != c.idl || r == NONE || id[r] != c.idr) continue; /* stale */
        uint32_t rank = 0;
        int32_t m = -1;
        if (!pair_lookup(&t->merges, id[l], id[r], &rank, &m)) continue;
        id[l] = m;
        id[r] = -2; /* dead */
        next[l] = next[r];
        if (next[r] != NONE) prev[next[r]] = l;
        if (prev[l] != NONE) {
            uint32_t p = prev[l];
            if (pair_lookup(&t->merges, id[p], id[l], &rank, &m))
                heap_push(heap, &hn, (bpe_cand){rank, p, id[p], id[l]});
        }
        if (next[l] != NONE) {
            uint32_t q = next[l];
            if (pair_lookup(&t->merges, id[l], id[q], &rank, &m))
                heap_push(heap, &hn, (bpe_cand){rank, l, id[l], id[q]});
        }
    }
    {
        size_t k = 0;
        for (uint32_t i = 0; i != NONE; i = next[i]) id[k++] = id[i];
        st = bpe_emit(t, id, k, out);
    }
done:
    free(id); free(next); free(prev); free(heap);
    return st;
}

k2_status tok_bpe(const k2_tokenizer *t, const unsigned char *s, size_t n, tok_ids *out, k2_error *err) {
    if (n == 0) return K2_OK;
    if (t->ignore_merges || n == 1) {
        int32_t id = n == 1 ? t->byte_id[s[0]] : tok_vocab_find(t, s, n);
        if (id >= 0) return tok_ids_push(out, id) ? K2_OK : k2_err(err, K2_ENOMEM, "out of memory");
    }
    k2_status st = n <= BPE_SMALL ? bpe_small(t, s, n, out) : bpe_large(t, s, n, out);
    if (st) return k2_err(err, st, "out of memory while encoding");
    return K2_OK;
}

/* ---- pre-tokenizer steps ---- */

typedef struct enc_ctx {
    const k2_tokenizer *t;
    tok_ids *out;
    k2_error *err;
    size_t step;
} enc_ctx;

static k2_status run_steps(enc_ctx *c, size_t step, const char *s, size_t n);

typedef struct step_ctx {
    enc_ctx *c;
    size_t next;
} step_ctx;

static k2_status step_emit(void *vp, const char *s, size_t n) {
    step_ctx *sc = vp;
    return run_steps(sc->c, sc->next, s, n);
}

/* Python str.isspace (§2.7): White_Space plus U+001C..U+001F. */
static inline bool py_isspace(uint32_t cp, uint8_t f) { return (f & TOK_U_WS) || (cp >= 0x1C && cp <= 0x1F); }

static k2_status kimi_chunks(enc_ctx *c, size_t next, const char *s, size_t n) {
    /* §2.7: chunks of 400 000 code points, cut where a same-class run would exceed 25 000. */
    const uint8_t *tab = tok_uni_table();
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, i = 0, chunk_cps = 0, run = 0;
    int cls = -1;
    while (i < n) {
        uint32_t cp;
        int len = tok_utf8_next(u + i, n - i, &cp);
        int k = py_isspace(cp, tab[cp]);
        if (chunk_cps == 400000) {
            k2_status st = run_steps(c, next, s + start, i - start);
            if (st) return st;
            start = i;
            chunk_cps = 0;
            run = 0;
            cls = -1;
        }
        if (k == cls) run++;
        else { cls = k; run = 1; }
        if (run > 25000) {
            k2_status st = run_steps(c, next, s + start, i - start);
            if (st) return st;
            start = i;
            chunk_cps = 0;
            run = 1;
        }
        chunk_cps++;
        i += (size_t)len;
    }
    return n > start ? run_steps(c, next, s + start, n - start) : K2_OK;
}

static k2_status digits_split(enc_ctx *c, size_t next, const char *s, size_t n, bool individual) {
    const uint8_t *tab = tok_uni_table();
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, start = 0;
    int prev = -1;
    while (i < n) {
        uint32_t cp;
        int len = tok_utf8_next(u + i, n - i, &cp);
        int d = (tab[cp] & TOK_U_N) != 0;
        if (i > start && (d != prev || (d && individual))) {
            k2_status st = run_steps(c, next, s + start, i - start);
            if (st) return st;
            start = i;
        }
        prev = d;
        i += (size_t)len;
    }
    return n > start ? run_steps(c, next, s + start, n - start) : K2_OK;
}

/* Split with a regex; Isolated or Removed, optionally inverted (§5.4). */
static k2_status regex_piece(enc_ctx *c, size_t next, const tok_step *st, const char *s, size_t n) {
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(st->re, NULL);
    if (!md) return k2_err(c->err, K2_ENOMEM, "out of memory for regex matching");
    size_t pos = 0, gap = 0;
    k2_status rs = K2_OK;
    bool keep_match = !(st->behavior == TOK_SPLIT_REMOVED && !st->invert);
    bool keep_gap = !(st->behavior == TOK_SPLIT_REMOVED && st->invert);
    while (pos <= n) {
        int rc = pcre2_match(st->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            rs = k2_err(c->err, K2_EINTERNAL, "regex matching failed: %s", (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {
            if (ms >= n) break;
            uint32_t cp;
            pos = ms + (size_t)tok_utf8_next((const unsigned char *)s + ms, n - ms, &cp);
            continue;
        }
        if (ms > gap && keep_gap && (rs = run_steps(c, next, s + gap, ms - gap))) break;
        if (keep_match && (rs = run_steps(c, next, s + ms, me - ms))) break;
        pos = gap = me;
    }
    pcre2_match_data_free(md);
    if (rs) return rs;
    if (gap < n && keep_gap) return run_steps(c, next, s + gap, n - gap);
    return K2_OK;
}

static k2_status run_steps(enc_ctx *c, size_t step, const char *s, size_t n) {
    const k2_tokenizer *t = c->t;
    if (n == 0) return K2_OK;
    if (step == t->n_steps) return tok_bpe(t, (const unsigned char *)s, n, c->out, c->err);
    const tok_step *st = &t->steps[step];
    switch (st->kind) {
    case TOK_STEP_KIMI: {
        step_ctx sc = {c, step + 1};
        return tok_kimi_split(s, n, step_emit, &sc);
    }
    case TOK_STEP_KIMI_CHUNK:
        return kimi_chunks(c, step + 1, s, n);
    case TOK_STEP_REGEX:
        return regex_piece(c, step + 1, st, s, n);
    case TOK_STEP_DIGITS:
        return digits_split(c, step + 1, s, n, st->individual);
    case TOK_STEP_PREFIX_SPACE: {
        if (s[0] == ' ') return run_steps(c, step + 1, s, n);
        char *p = malloc(n + 1);
        if (!p) return k2_err(c->err, K2_ENOMEM, "out of memory");
        p[0] = ' ';
        memcpy(p + 1, s, n);
        k2_status r = run_steps(c, step + 1, p, n + 1);
        free(p);
        return r;
    }
    }
    return k2_err(c->err, K2_EINTERNAL, "unknown pre-tokenizer step");
}

/* ---- normalizers (§5.3) ---- */

static k2_status normalize(const k2_tokenizer *t, const char *s, size_t n, tok_buf *out, k2_error *err) {
    tok_buf cur = {0};
    if (!tok_buf_add(&cur, s, n)) return k2_err(err, K2_ENOMEM, "out of memory");
    for (size_t i = 0; i < t->n_norms; i++) {
        const tok_norm *nm = &t->norms[i];
        tok_buf nx = {0};
        bool ok = true;
        switch (nm->kind) {
        case TOK_NORM_NFC: case TOK_NORM_NFKC: case TOK_NORM_NFD: case TOK_NORM_NFKD: {
            int opt = UTF8PROC_STABLE | (nm->kind == TOK_NORM_NFC || nm->kind == TOK_NORM_NFKC ? UTF8PROC_COMPOSE
                                                                                              : UTF8PROC_DECOMPOSE);
            if (nm->kind == TOK_NORM_NFKC || nm->kind == TOK_NORM_NFKD) opt |= UTF8PROC_COMPAT;
            utf8proc_uint8_t *r = NULL;
            utf8proc_ssize_t rl = utf8proc_map((const utf8proc_uint8_t *)cur.p, (utf8proc_ssize_t)cur.len, &r,
                                               (utf8proc_option_t)opt);
            if (rl < 0) ok = false;
            else ok = tok_buf_add(&nx, r, (size_t)rl);
            free(r);
            break;
        }
        case TOK_NORM_PREPEND:
            ok = cur.len == 0 || (tok_buf_add(&nx, nm->content, nm->content_len) && tok_buf_add(&nx, cur.p, cur.len));
            break;
        case TOK_NORM_REPLACE: {
            if (nm->re) {
                PCRE2_SIZE outlen = cur.len * 2 + 64;
                for (;;) {
                    if (!tok_buf_reserve(&nx, outlen)) { ok = false; break; }
                    PCRE2_SIZE ol = outlen;
                    int rc = pcre2_substitute(nm->re, (PCRE2_SPTR)(cur.p ? cur.p : ""), cur.len, 0,
                                              PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_LITERAL |
                                                  PCRE2_SUBSTITUTE_OVERFLOW_LENGTH | PCRE2_NO_UTF_CHECK,
                                              NULL, NULL, (PCRE2_SPTR)nm->content, nm->content_len,
                                              (PCRE2_UCHAR *)nx.p, &ol);
                    if (rc == PCRE2_ERROR_NOMEMORY) { outlen = ol; continue; }
                    if (rc < 0) ok = false;
                    else nx.len = ol;
                    break;
                }
            } else {
                size_t j = 0;
                while (ok && j < cur.len) {
                    if (nm->pattern_len && j + nm->pattern_len <= cur.len &&
                        memcmp(cur.p + j, nm->pattern, nm->pattern_len) == 0) {
                        ok = tok_buf_add(&nx, nm->content, nm->content_len);
                        j += nm->pattern_len;
                    } else ok = tok_buf_add(&nx, cur.p + j++, 1);
                }
            }
            break;
        }
        }
        tok_buf_free(&cur);
        if (!ok) {
            tok_buf_free(&nx);
            return k2_err(err, K2_EINTERNAL, "%s: normalization failed", t->source);
        }
        cur = nx;
    }
    *out = cur;
    return K2_OK;
}

/* ---- added tokens (§3.5, §5.2) ---- */

static inline bool is_word_cp(uint32_t cp) {
    const uint8_t *tab = tok_uni_table();
    if (tab[cp] & (TOK_U_L | TOK_U_N | TOK_U_BOTH)) return true;
    return utf8proc_category((utf8proc_int32_t)cp) == UTF8PROC_CATEGORY_PC || cp == '_';
}

static uint32_t cp_before(const char *s, size_t i) {
    size_t k = i;
    while (k > 0 && ((unsigned char)s[k - 1] & 0xC0) == 0x80) k--;
    if (k > 0) k--;
    uint32_t cp;
    tok_utf8_next((const unsigned char *)s + k, i - k, &cp);
    return cp;
}

static inline bool is_ws_at(const char *s, size_t n, size_t i, int *len) {
    uint32_t cp;
    *len = tok_utf8_next((const unsigned char *)s + i, n - i, &cp);
    return (tok_uni_table()[cp] & TOK_U_WS) != 0;
}

/* Finds the leftmost-longest eligible added token at or after pos.
 * stage: 0 = any (no normalizer), 1 = normalized=false, 2 = normalized=true. */
static bool find_added(const k2_tokenizer *t, const char *s, size_t n, size_t pos, size_t floor, bool parse_special,
                       int stage, size_t *ms, size_t *me, int32_t *id) {
    uint8_t mask = (uint8_t)((parse_special ? 1 : 0) | 2);
    for (size_t i = pos; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (!(t->added_first[b] & mask)) continue;
        /* Binary search would help with thousands of added tokens; first bytes are few. */
        for (size_t k = 0; k < t->n_added; k++) {
            const tok_added *a = &t->added[k];
            if (a->first != b) continue;
            if (a->control && !parse_special) continue;
            if (stage == 1 && a->normalized) continue;
            if (stage == 2 && !a->normalized) continue;
            if (a->len > n - i || memcmp(s + i, t->blob + a->off, a->len) != 0) continue;
            size_t end = i + a->len;
            if (a->single_word) {
                if (i > 0 && is_word_cp(cp_before(s, i))) continue;
                if (end < n) {
                    uint32_t cp;
                    tok_utf8_next((const unsigned char *)s + end, n - end, &cp);
                    if (is_word_cp(cp)) continue;
                }
            }
            size_t st = i, en = end;
            int len;
            if (a->lstrip)
                while (st > floor) {
                    size_t k2 = st - 1;
                    while (k2 > floor && ((unsigned char)s[k2] & 0xC0) == 0x80) k2--;
                    if (!is_ws_at(s, n, k2, &len)) break;
                    st = k2;
                }
            if (a->rstrip)
                while (en < n && is_ws_at(s, n, en, &len)) en += (size_t)len;
            *ms = st;
            *me = en;
            *id = a->id;
            return true;
        }
    }
    return false;
}

static k2_status encode_ordinary(const k2_tokenizer *t, const char *s, size_t n, tok_ids *out, bool parse_special,
                                 k2_error *err) {
    if (n == 0) return K2_OK;
    if (t->n_norms == 0) {
        enc_ctx c = {t, out, err, 0};
        return run_steps(&c, 0, s, n);
    }
    tok_buf nb = {0};
    k2_status st = normalize(t, s, n, &nb, err);
    if (st) return st;
    enc_ctx c = {t, out, err, 0};
    size_t pos = 0, ms, me;
    int32_t id;
    while (!st && pos < nb.len && find_added(t, nb.p, nb.len, pos, pos, parse_special, 2, &ms, &me, &id)) {
        st = run_steps(&c, 0, nb.p + pos, ms - pos);
        if (!st && !tok_ids_push(out, id)) st = k2_err(err, K2_ENOMEM, "out of memory");
        pos = me;
    }
    if (!st && pos < nb.len) st = run_steps(&c, 0, nb.p + pos, nb.len - pos);
    tok_buf_free(&nb);
    return st;
}

k2_status tok_encode_run(const k2_tokenizer *t, const char *s, size_t n, tok_ids *out, k2_error *err) {
    /* A text run between special tokens: user-defined tokens are still split out (§3.5). */
    int stage = t->n_norms ? 1 : 0;
    size_t pos = 0, ms, me;
    int32_t id;
    if (t->any_user) {
        while (pos < n && find_added(t, s, n, pos, pos, false, stage, &ms, &me, &id)) {
            k2_status st = encode_ordinary(t, s + pos, ms - pos, out, false, err);
            if (st) return st;
            if (!tok_ids_push(out, id)) return k2_err(err, K2_ENOMEM, "out of memory");
            pos = me;
        }
    }
    return encode_ordinary(t, s + pos, n - pos, out, false, err);
}

k2_status k2_tokenize(const k2_tokenizer *t, const char *text, size_t len, unsigned flags, int32_t **ids_out,
                      size_t *n_out, k2_error *err) {
    *ids_out = NULL;
    *n_out = 0;
    if (!text && len) return k2_err(err, K2_EINVAL, "k2_tokenize: NULL text");
    tok_buf fixed = {0};
    if (!tok_utf8_valid(text, len)) {
        if (!tok_utf8_sanitize(&fixed, text, len)) return k2_err(err, K2_ENOMEM, "out of memory");
        text = fixed.p;
        len = fixed.len;
    }
    tok_ids out = {0};
    k2_status st = K2_OK;
    bool parse_special = (flags & K2_TOKENIZE_PARSE_SPECIAL) != 0;
    if ((flags & K2_TOKENIZE_ADD_SPECIAL) && t->add_bos && t->bos >= 0 && !tok_ids_push(&out, t->bos))
        st = k2_err(err, K2_ENOMEM, "out of memory");
    int stage = t->n_norms ? 1 : 0;
    size_t pos = 0, ms, me;
    int32_t id;
    if (!st && (parse_special || t->any_user)) {
        while (pos < len && find_added(t, text, len, pos, pos, parse_special, stage, &ms, &me, &id)) {
            if ((st = encode_ordinary(t, text + pos, ms - pos, &out, parse_special, err))) break;
            if (!tok_ids_push(&out, id)) { st = k2_err(err, K2_ENOMEM, "out of memory"); break; }
            pos = me;
        }
    }
    if (!st) st = encode_ordinary(t, text + pos, len - pos, &out, parse_special, err);
    if (!st && (flags & K2_TOKENIZE_ADD_SPECIAL) && t->add_eos && t->eos >= 0 && !tok_ids_push(&out, t->eos))
        st = k2_err(err, K2_ENOMEM, "out of memory");
    tok_buf_free(&fixed);
    if (st) {
        free(out.v);
        return st;
    }
    *ids_out = out.v;
    *n_out = out.n;
    return K2_OK;
}
