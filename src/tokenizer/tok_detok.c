/* Decoding: ids to bytes to UTF-8 (spec §7), one-shot and streaming with stop strings. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* Bytes an id contributes (§7.1, §7.2). */
static bool id_piece(const k2_tokenizer *t, int32_t id, unsigned flags, const char **p, size_t *n) {
    int ty = t->type[id];
    *p = tok_text(t, id);
    *n = t->len[id];
    switch (ty) {
    case TOK_NORMAL: case TOK_USER: return true;
    case TOK_CONTROL: case TOK_UNKNOWN: return !(flags & K2_DETOK_SKIP_SPECIAL);
    default: *n = 0; return false;
    }
}

k2_status k2_detokenize(const k2_tokenizer *t, const int32_t *ids, size_t n, unsigned flags, char **out, size_t *len,
                        k2_error *err) {
    *out = NULL;
    if (len) *len = 0;
    tok_buf raw = {0};
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= t->n_vocab) {
            tok_buf_free(&raw);
            return k2_err(err, K2_ERANGE, "token id %d at position %zu is outside the vocabulary (size %d)",
                          (int)ids[i], i, (int)t->n_vocab);
        }
        const char *p;
        size_t pn;
        if (id_piece(t, ids[i], flags, &p, &pn) && !tok_buf_add(&raw, p, pn)) {
            tok_buf_free(&raw);
            return k2_err(err, K2_ENOMEM, "out of memory");
        }
    }
    if (!raw.p && !tok_buf_add(&raw, "", 0)) return k2_err(err, K2_ENOMEM, "out of memory");
    if (flags & K2_DETOK_RAW) {
        *out = raw.p;
        if (len) *len = raw.len;
        return K2_OK;
    }
    tok_buf txt = {0};
    bool ok = tok_utf8_sanitize(&txt, raw.p, raw.len) && tok_buf_add(&txt, "", 0);
    tok_buf_free(&raw);
    if (!ok) {
        tok_buf_free(&txt);
        return k2_err(err, K2_ENOMEM, "out of memory");
    }
    *out = txt.p;
    if (len) *len = txt.len;
    return K2_OK;
}

/* ---- streaming ---- */

struct k2_detok {
    const k2_tokenizer *t;
    unsigned flags;
    tok_buf pending; /* bytes that may still complete a character */
    tok_buf held;    /* valid text not yet emitted (may start a stop string) */
    tok_buf outb;    /* what the last call returned */
    char **stops;
    size_t *stop_len;
    size_t n_stops;
    bool stopped;
};

k2_status k2_detok_new(const k2_tokenizer *t, unsigned flags, k2_detok **out, k2_error *err) {
    k2_detok *d = k2_calloc(1, sizeof *d);
    if (!d) return k2_err(err, K2_ENOMEM, "out of memory");
    d->t = t;
    d->flags = flags;
    /* Buffers start allocated so that pointer arithmetic on them is always defined. */
    if (!tok_buf_reserve(&d->pending, 64) || !tok_buf_reserve(&d->held, 64) || !tok_buf_reserve(&d->outb, 64)) {
        k2_detok_free(d);
        return k2_err(err, K2_ENOMEM, "out of memory");
    }
    *out = d;
    return K2_OK;
}

void k2_detok_free(k2_detok *d) {
    if (!d) return;
    tok_buf_free(&d->pending);
    tok_buf_free(&d->held);
    tok_buf_free(&d->outb);
    for (size_t i = 0; i < d->n_stops; i++) free(d->stops[i]);
    free(d->stops);
    free(d->stop_len);
    free(d);
}

k2_status k2_detok_add_stop(k2_detok *d, const char *s, size_t len, k2_error *err) {
    if (len == 0) return k2_err(err, K2_EINVAL, "a stop string must not be empty");
    char **ns = realloc(d->stops, (d->n_stops + 1) * sizeof *ns);
    if (!ns) return k2_err(err, K2_ENOMEM, "out of memory");
    d->stops = ns;
    size_t *nl = realloc(d->stop_len, (d->n_stops + 1) * sizeof *nl);
    if (!nl) return k2_err(err, K2_ENOMEM, "out of memory");
    d->stop_len = nl;
    char *c = k2_malloc(len);
    if (!c) return k2_err(err, K2_ENOMEM, "out of memory");
    memcpy(c, s, len);
    d->stops[d->n_stops] = c;
    d->stop_len[d->n_stops++] = len;
    return K2_OK;
}

/* Moves the decodable prefix of `pending` into `held` (§7.3 steps 2-3). */
static bool drain_pending(k2_detok *d, bool final) {
    const unsigned char *u = (const unsigned char *)d->pending.p;
    size_t n = d->pending.len, i = 0, run = 0;
    if (n == 0) return true;  /* nothing pending (and p may still be NULL) */
    while (i < n) {
        if (u[i] < 0x80) { i++; continue; }
        int r = tok_utf8_check(u + i, n - i);
        if (r > 0) { i += (size_t)r; continue; }
        if (r < 0 && !final) break; /* valid but incomplete at the end: keep it */
        if (!tok_buf_add(&d->held, u + run, i - run) || !tok_buf_add(&d->held, "\xEF\xBF\xBD", 3)) return false;
        i += r < 0 ? (size_t)-r : tok_utf8_bad_len(u + i, n - i);
        run = i;
    }
    if (!tok_buf_add(&d->held, u + run, i - run)) return false;
    memmove(d->pending.p, d->pending.p + i, n - i);
    d->pending.len = n - i;
    return true;
}

/* Moves the part of `held` that cannot start a stop string into outb. */
static void release_held(k2_detok *d, bool final) {
    size_t n = d->held.len, cut = n;
    /* A completed stop string: emit what precedes the earliest one and stop. */
    size_t best = SIZE_MAX;
    for (size_t k = 0; k < d->n_stops; k++) {
        size_t L = d->stop_len[k];
        for (size_t i = 0; i + L <= n && i < best; i++)
            if (memcmp(d->held.p + i, d->stops[k], L) == 0) { best = i; break; }
    }
    if (best != SIZE_MAX) {
        tok_buf_add(&d->outb, d->held.p, best);
        d->held.len = 0;
        d->stopped = true;
        return;
    }
    if (!final) {
        /* Hold back the longest suffix that is a proper prefix of a stop string. */
        for (size_t k = 0; k < d->n_stops; k++) {
            size_t L = d->stop_len[k];
            for (size_t m = K2_MIN(L - 1, n); m > 0; m--)
                if (memcmp(d->held.p + n - m, d->stops[k], m) == 0) {
                    if (n - m < cut) cut = n - m;
                    break;
                }
        }
        /* Never cut inside a UTF-8 character. */
        while (cut > 0 && cut < n && ((unsigned char)d->held.p[cut] & 0xC0) == 0x80) cut--;
    }
    tok_buf_add(&d->outb, d->held.p, cut);
    memmove(d->held.p, d->held.p + cut, n - cut);
    d->held.len = n - cut;
}

k2_status k2_detok_push(k2_detok *d, int32_t id, k2_str *text, bool *stopped, k2_error *err) {
    d->outb.len = 0;
    text->ptr = "";
    text->len = 0;
    if (stopped) *stopped = d->stopped;
    if (d->stopped) return K2_OK;
    if (id < 0 || id >= d->t->n_vocab)
        return k2_err(err, K2_ERANGE, "token id %d is outside the vocabulary (size %d)", (int)id, (int)d->t->n_vocab);
    const char *p;
    size_t n;
    if (id_piece(d->t, id, d->flags, &p, &n) && n) {
        int ty = d->t->type[id];
        if (ty != TOK_NORMAL && !drain_pending(d, true)) return k2_err(err, K2_ENOMEM, "out of memory");
        if (!tok_buf_add(&d->pending, p, n)) return k2_err(err, K2_ENOMEM, "out of memory");
    }
    if (!drain_pending(d, false) || !tok_buf_reserve(&d->outb, d->held.len))
        return k2_err(err, K2_ENOMEM, "out of memory");
    release_held(d, false);
    if (stopped) *stopped = d->stopped;
    text->ptr = d->outb.p ? d->outb.p : "";
    text->len = d->outb.len;
    return K2_OK;
}

k2_status k2_detok_flush(k2_detok *d, k2_str *text, k2_error *err) {
    d->outb.len = 0;
    text->ptr = "";
    text->len = 0;
    if (d->stopped) return K2_OK;
    if (!drain_pending(d, true) || !tok_buf_reserve(&d->outb, d->held.len))
        return k2_err(err, K2_ENOMEM, "out of memory");
    release_held(d, true);
    text->ptr = d->outb.p ? d->outb.p : "";
    text->len = d->outb.len;
    return K2_OK;
}
