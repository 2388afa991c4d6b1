/* Buffers, JSON output, UTF-8 repair, ids and the text hold-back buffer. */
#include "server/server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- sbuf ---- */

static void sbuf_grow(sbuf *b, size_t need) {
    if (b->len + need + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + need + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) abort();   /* out of memory: nothing sensible is left to do */
    b->p = p;
    b->cap = cap;
}

void sbuf_put(sbuf *b, const void *data, size_t n) {
    sbuf_grow(b, n);
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}

void sbuf_puts(sbuf *b, const char *s) { sbuf_put(b, s, strlen(s)); }

void sbuf_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n > 0) {
        sbuf_grow(b, (size_t)n);
        vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
        b->len += (size_t)n;
    }
    va_end(ap2);
}

void sbuf_free(sbuf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

char *sbuf_take(sbuf *b) {
    if (!b->p) sbuf_grow(b, 0), b->p[0] = 0;
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

/* ---- JSON ---- */

static int dump_cb(const char *buf, size_t size, void *data) {
    sbuf *b = data;
    /* §1.4: U+0085, U+2028 and U+2029 only occur inside strings in valid output, so
     * escaping them here is safe. */
    size_t i = 0, start = 0;
    while (i < size) {
        unsigned char c = (unsigned char)buf[i];
        if (c == 0xC2 && i + 1 < size && (unsigned char)buf[i + 1] == 0x85) {
            sbuf_put(b, buf + start, i - start);
            sbuf_puts(b, "\\u0085");
            i += 2;
            start = i;
        } else if (c == 0xE2 && i + 2 < size && (unsigned char)buf[i + 1] == 0x80 &&
                   ((unsigned char)buf[i + 2] == 0xA8 || (unsigned char)buf[i + 2] == 0xA9)) {
            sbuf_put(b, buf + start, i - start);
            sbuf_puts(b, (unsigned char)buf[i + 2] == 0xA8 ? "\\u2028" : "\\u2029");
            i += 3;
            start = i;
        } else {
            i++;
        }
    }
    sbuf_put(b, buf + start, size - start);
    return 0;
}

void srv_json_append(sbuf *b, const json_t *j) {
    /* jansson hands the callback whole tokens (a string is passed in pieces that never
     * split a UTF-8 sequence), so the byte scan above sees complete sequences. */
    json_dump_callback(j, dump_cb, b, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17));
}

char *srv_json_dump(const json_t *j) {
    sbuf b = {0};
    srv_json_append(&b, j);
    return sbuf_take(&b);
}

json_t *srv_json_str(const char *s, size_t n) {
    if (srv_utf8_valid(s, n) && !memchr(s, 0, n)) return json_stringn(s, n);
    sbuf b = {0};
    srv_utf8_repair(&b, s, n);
    json_t *j = json_stringn(b.p ? b.p : "", b.len);
    sbuf_free(&b);
    return j;
}

/* ---- UTF-8 ---- */

/* Length of the valid sequence at s[0..n), 0 if ill-formed (maximal subsequence rules:
 * *bad receives how many bytes form the maximal ill-formed prefix). */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c == 0xE0) need = 2, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC) need = 2;
    else if (c == 0xED) need = 2, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF) need = 2;
    else if (c == 0xF0) need = 3, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) need = 3;
    else if (c == 0xF4) need = 3, hi = 0x8F;
    else {
        *bad = 1;
        return 0;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= n) {
            *bad = i;
            return 0;
        }
        unsigned char d = s[i];
        unsigned char l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (d < l || d > h) {
            *bad = i;
            return 0;
        }
    }
    return need + 1;
}

void srv_utf8_repair(sbuf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, start = 0;
    while (i < n) {
        size_t bad = 0;
        size_t k = utf8_seq(u + i, n - i, &bad);
        if (k && !(k == 1 && u[i] == 0)) {
            i += k;
            continue;
        }
        sbuf_put(out, s + start, i - start);
        sbuf_puts(out, "\xEF\xBF\xBD");
        i += k ? 1 : bad;
        start = i;
    }
    sbuf_put(out, s + start, n - start);
}

bool srv_utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t bad;
        size_t k = utf8_seq(u + i, n - i, &bad);
        if (!k) return false;
        i += k;
    }
    return true;
}

/* Length of the prefix of s that does not end inside a sequence that may still complete. */
static size_t utf8_complete_prefix(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = u[n - back];
        if ((c & 0xC0) == 0x80) continue;   /* continuation: look further back */
        if (c < 0x80) return n;
        size_t bad = 0;
        size_t k = utf8_seq(u + n - back, back, &bad);
        if (k) return n;                    /* complete */
        /* incomplete but so far valid: hold it */
        if (bad == back && c >= 0xC2 && c <= 0xF4) return n - back;
        return n;                           /* ill-formed: repaired on release */
    }
    return n;
}

/* ---- ids, time ---- */

void srv_rand_alnum(char *out, size_t n) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char r[64];
    size_t done = 0;
    while (done < n) {
        size_t want = K2_MIN(sizeof r, n - done);
        if (getrandom(r, want, 0) != (ssize_t)want) {
            for (size_t i = 0; i < want; i++) r[i] = (unsigned char)(rand() & 0xFF);
        }
        for (size_t i = 0; i < want; i++) {
            /* 248 = 62 * 4: rejection keeps the distribution uniform */
            if (r[i] >= 248) r[i] = (unsigned char)(r[i] % 62);
            out[done + i] = al[r[i] % 62];
        }
        done += want;
    }
    out[n] = 0;
}

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- text hold-back ---- */

void textbuf_init(textbuf *t, char *const *stop, size_t n_stop) {
    memset(t, 0, sizeof *t);
    t->stop = (char **)stop;
    t->n_stop = n_stop;
    for (size_t i = 0; i < n_stop; i++) t->max_stop = K2_MAX(t->max_stop, strlen(stop[i]));
}

void textbuf_free(textbuf *t) { sbuf_free(&t->pending); }

static void release(textbuf *t, size_t n, sbuf *out) {
    srv_utf8_repair(out, t->pending.p, n);
    memmove(t->pending.p, t->pending.p + n, t->pending.len - n);
    t->pending.len -= n;
    t->pending.p[t->pending.len] = 0;
}

bool textbuf_push(textbuf *t, const char *s, size_t n, sbuf *out) {
    if (t->stopped) return true;
    sbuf_put(&t->pending, s, n);
    const char *p = t->pending.p;
    size_t len = t->pending.len;
    /* earliest stop match */
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < t->n_stop; i++) {
        size_t sl = strlen(t->stop[i]);
        if (!sl || sl > len) continue;
        for (size_t at = 0; at + sl <= len && at < best; at++) {
            if (memcmp(p + at, t->stop[i], sl) == 0) {
                best = at;
                break;
            }
        }
    }
    if (best != SIZE_MAX) {
        release(t, best, out);
        t->pending.len = 0;
        t->stopped = true;
        return true;
    }
    /* hold the longest suffix that is a proper prefix of a stop string */
    size_t hold = 0;
    for (size_t i = 0; i < t->n_stop; i++) {
        size_t sl = strlen(t->stop[i]);
        for (size_t k = K2_MIN(sl - (sl ? 1 : 0), len); k > hold; k--) {
            if (memcmp(p + len - k, t->stop[i], k) == 0) {
                hold = k;
                break;
            }
        }
    }
    size_t safe = utf8_complete_prefix(p, len - hold);
    if (safe) release(t, safe, out);
    return false;
}

void textbuf_flush(textbuf *t, sbuf *out) {
    if (t->pending.len) release(t, t->pending.len, out);
}

/* ---- errors ---- */

bool srv_fail(srv_error *e, int http, const char *code, const char *param, const char *fmt, ...) {
    e->http = http;
    e->code = code;
    switch (http) {
    case 401: e->type = "authentication_error"; break;
    case 429: e->type = "rate_limit_error"; break;
    case 503: e->type = "service_unavailable_error"; break;
    default: e->type = http >= 500 ? "server_error" : "invalid_request_error"; break;
    }
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

json_t *srv_error_json(const srv_error *e) {
    json_t *in = json_object();
    json_object_set_new(in, "message", srv_json_str(e->message, strlen(e->message)));
    json_object_set_new(in, "type", json_string(e->type));
    json_object_set_new(in, "param", e->param[0] ? srv_json_str(e->param, strlen(e->param)) : json_null());
    json_object_set_new(in, "code", e->code ? json_string(e->code) : json_null());
    json_t *o = json_object();
    json_object_set_new(o, "error", in);
    return o;
}

char *srv_error_body(const srv_error *e) {
    json_t *j = srv_error_json(e);
    char *s = srv_json_dump(j);
    json_decref(j);
    return s;
}
