/* The Kimi K2 tool-call parser (spec/server-api.md §7.4). Events in generation order
 * (text of ordinary tokens, preserved marker tokens, end) become content, reasoning,
 * call headers and argument pieces. Streaming sends exactly these outputs and the
 * non-streaming response accumulates them, so the two always agree (§4.3). */
#include "server/server.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char THINK_OPEN[] = "<think>";
static const char THINK_CLOSE[] = "</think>";

void kimi_init(kimi_parser *p, bool reasoning_enabled, const kimi_sink *sink) {
    memset(p, 0, sizeof *p);
    p->sink = *sink;
    p->reasoning_enabled = reasoning_enabled;
    p->state = KS_START;
}

void kimi_free(kimi_parser *p) {
    sbuf_free(&p->id_buf);
    sbuf_free(&p->ws_hold);
    sbuf_free(&p->think_hold);
    for (size_t i = 0; i < p->n_ids; i++) free(p->ids[i]);
    free(p->ids);
    p->ids = NULL;
    p->n_ids = 0;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static void emit_dropped(kimi_parser *p, size_t n) {
    if (n && p->sink.dropped) p->sink.dropped(p->sink.user, n);
}

static void emit_content(kimi_parser *p, const char *s, size_t n) {
    if (!p->content_started) {
        size_t n0 = n;
        while (n && is_ws(*s)) s++, n--;
        emit_dropped(p, n0 - n);
        if (!n) return;
        p->content_started = true;
    }
    if (n && p->sink.content) p->sink.content(p->sink.user, s, n);
}

static void emit_reasoning(kimi_parser *p, const char *s, size_t n) {
    if (n && p->sink.reasoning) p->sink.reasoning(p->sink.user, s, n);
}


/* Longest suffix of s[0..n) that is a proper prefix of tag. */
static size_t partial_suffix(const char *s, size_t n, const char *tag) {
    size_t tl = strlen(tag);
    for (size_t k = K2_MIN(n, tl - 1); k > 0; k--)
        if (memcmp(s + n - k, tag, k) == 0) return k;
    return 0;
}

static void reasoning_text(kimi_parser *p, const char *s, size_t n) {
    sbuf_put(&p->think_hold, s, n);
    char *b = p->think_hold.p;
    size_t len = p->think_hold.len;
    char *close = NULL;
    for (size_t i = 0; i + sizeof THINK_CLOSE - 1 <= len; i++)
        if (memcmp(b + i, THINK_CLOSE, sizeof THINK_CLOSE - 1) == 0) {
            close = b + i;
            break;
        }
    if (close) {
        size_t before = (size_t)(close - b);
        size_t after_off = before + sizeof THINK_CLOSE - 1;
        emit_reasoning(p, b, before);
        emit_dropped(p, after_off - before);
        sbuf rest = {0};
        sbuf_put(&rest, b + after_off, len - after_off);
        p->think_hold.len = 0;
        p->state = KS_CONTENT;
        if (rest.len) emit_content(p, rest.p, rest.len);
        sbuf_free(&rest);
        return;
    }
    size_t keep = partial_suffix(b, len, THINK_CLOSE);
    emit_reasoning(p, b, len - keep);
    memmove(b, b + len - keep, keep);
    p->think_hold.len = keep;
}

static void start_text(kimi_parser *p, const char *s, size_t n) {
    if (!p->reasoning_enabled) {
        p->state = KS_CONTENT;
        emit_content(p, s, n);
        return;
    }
    sbuf_put(&p->think_hold, s, n);
    const char *b = p->think_hold.p;
    size_t len = p->think_hold.len, i = 0;
    while (i < len && is_ws(b[i])) i++;
    size_t rest = len - i, tl = sizeof THINK_OPEN - 1;
    if (rest >= tl && memcmp(b + i, THINK_OPEN, tl) == 0) {
        sbuf tail = {0};
        sbuf_put(&tail, b + i + tl, rest - tl);
        p->think_hold.len = 0;
        emit_dropped(p, i + tl);
        p->state = KS_REASONING;
        if (tail.len) reasoning_text(p, tail.p, tail.len);
        sbuf_free(&tail);
        return;
    }
    if (rest < tl && memcmp(b + i, THINK_OPEN, rest) == 0) return;   /* hold (maybe empty) */
    sbuf all = {0};
    sbuf_put(&all, b, len);
    p->think_hold.len = 0;
    p->state = KS_CONTENT;
    emit_content(p, all.p, all.len);
    sbuf_free(&all);
}

/* Leaving START or REASONING: held partial tags become text of the current channel. */
static void flush_think_hold(kimi_parser *p) {
    if (!p->think_hold.len) return;
    sbuf h = {0};
    sbuf_put(&h, p->think_hold.p, p->think_hold.len);
    p->think_hold.len = 0;
    if (p->state == KS_REASONING) emit_reasoning(p, h.p, h.len);
    else emit_content(p, h.p, h.len);
    sbuf_free(&h);
}

static void args_text(kimi_parser *p, const char *s, size_t n) {
    if (!p->call_open) return;   /* arguments of a dropped call */
    if (!p->args_started) {
        while (n && is_ws(*s)) s++, n--;
        if (!n) return;
        p->args_started = true;
    }
    size_t end = n;
    while (end && is_ws(s[end - 1])) end--;
    if (end == 0) {
        sbuf_put(&p->ws_hold, s, n);
        return;
    }
    sbuf piece = {0};
    sbuf_put(&piece, p->ws_hold.p ? p->ws_hold.p : "", p->ws_hold.len);
    sbuf_put(&piece, s, end);
    p->ws_hold.len = 0;
    sbuf_put(&p->ws_hold, s + end, n - end);
    if (p->sink.call_args) p->sink.call_args(p->sink.user, p->k, piece.p, piece.len);
    sbuf_free(&piece);
}

static bool id_used(kimi_parser *p, const char *id) {
    for (size_t i = 0; i < p->n_ids; i++)
        if (strcmp(p->ids[i], id) == 0) return true;
    return false;
}

static void remember_id(kimi_parser *p, const char *id) {
    char **n = realloc(p->ids, (p->n_ids + 1) * sizeof *n);
    if (!n) return;
    p->ids = n;
    p->ids[p->n_ids++] = k2_strdup(id);
}

static bool name_char_ok(char c) { return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.'; }

/* Resolves id_buf at <AB>; emits the header. Returns false when the call is dropped. */
static bool resolve_call(kimi_parser *p) {
    const char *b = p->id_buf.p ? p->id_buf.p : "";
    size_t len = p->id_buf.len;
    while (len && is_ws(*b)) b++, len--;
    while (len && is_ws(b[len - 1])) len--;
    char *raw = k2_strndup(b, len);
    const char *rest = raw;
    if (strncmp(rest, "functions.", 10) == 0) rest += 10;
    char *name = k2_strdup(rest);
    char *colon = strrchr(name, ':');
    bool has_num = false;
    if (colon && colon[1]) {
        has_num = true;
        for (const char *d = colon + 1; *d; d++)
            if (!isdigit((unsigned char)*d)) has_num = false;
        if (has_num) *colon = 0;
    }
    if (!name[0]) {
        p->parse_errors++;
        free(raw);
        free(name);
        return false;
    }
    bool canonical = strncmp(raw, "functions.", 10) == 0 && has_num;
    for (const char *c = name; *c && canonical; c++)
        if (!name_char_ok(*c)) canonical = false;
    char gen[32];
    const char *id = raw;
    if (!canonical || id_used(p, raw)) {
        memcpy(gen, "call_", 5);
        srv_rand_alnum(gen + 5, 24);
        id = gen;
    }
    remember_id(p, id);
    if (p->sink.call_header) p->sink.call_header(p->sink.user, p->k, id, name);
    free(raw);
    free(name);
    return true;
}

static void close_call(kimi_parser *p) {
    p->ws_hold.len = 0;
    if (p->call_open) p->k++;
    p->call_open = false;
}

void kimi_force_call(kimi_parser *p, const char *id, const char *name) {
    remember_id(p, id);
    if (p->sink.call_header) p->sink.call_header(p->sink.user, p->k, id, name);
    p->state = KS_CALL_ARGS;
    p->call_open = true;
    p->args_started = false;
    p->entered_call_id = true;
}

void kimi_text(kimi_parser *p, const char *s, size_t n) {
    if (!n) return;
    switch (p->state) {
    case KS_START: start_text(p, s, n); break;
    case KS_REASONING: reasoning_text(p, s, n); break;
    case KS_CONTENT:
    case KS_AFTER: emit_content(p, s, n); break;
    case KS_SECTION:
        for (size_t i = 0; i < n; i++)
            if (!is_ws(s[i])) {
                p->parse_errors++;
                break;
            }
        break;
    case KS_CALL_ID: sbuf_put(&p->id_buf, s, n); break;
    case KS_CALL_ARGS: args_text(p, s, n); break;
    }
}

static void begin_call_id(kimi_parser *p) {
    p->id_buf.len = 0;
    p->state = KS_CALL_ID;
    p->entered_call_id = true;
}

void kimi_on_mark(kimi_parser *p, kimi_mark m) {
    if (!p->reasoning_enabled && (m == KM_THINK_OPEN || m == KM_THINK_CLOSE)) {
        const char *t = m == KM_THINK_OPEN ? THINK_OPEN : THINK_CLOSE;
        kimi_text(p, t, strlen(t));
        return;
    }
    switch (p->state) {
    case KS_START:
    case KS_CONTENT:
    case KS_AFTER:
    case KS_REASONING:
        if (p->state == KS_START && m == KM_THINK_OPEN) {
            p->think_hold.len = 0;   /* whitespace before the tag */
            p->state = KS_REASONING;
            return;
        }
        if (p->state == KS_REASONING && m == KM_THINK_CLOSE) {
            flush_think_hold(p);
            p->state = KS_CONTENT;
            return;
        }
        if (m == KM_SB || m == KM_CB) {
            flush_think_hold(p);
            if (m == KM_SB) p->state = KS_SECTION;
            else begin_call_id(p);
            return;
        }
        p->parse_errors++;
        return;
    case KS_SECTION:
        if (m == KM_CB) begin_call_id(p);
        else if (m == KM_SE) p->state = KS_AFTER;
        else p->parse_errors++;
        return;
    case KS_CALL_ID:
        if (m == KM_AB) {
            p->call_open = resolve_call(p);
            p->args_started = false;
            p->ws_hold.len = 0;
            p->state = KS_CALL_ARGS;
        } else {
            p->parse_errors++;
        }
        return;
    case KS_CALL_ARGS:
        if (m == KM_CE) {
            close_call(p);
            p->state = KS_SECTION;
        } else if (m == KM_CB) {
            close_call(p);
            begin_call_id(p);
        } else if (m == KM_SE) {
            close_call(p);
            p->state = KS_AFTER;
        } else {
            p->parse_errors++;
        }
        return;
    }
}

void kimi_end(kimi_parser *p) {
    switch (p->state) {
    case KS_START:
        if (p->think_hold.len) {
            p->state = KS_CONTENT;
            flush_think_hold(p);
        }
        break;
    case KS_REASONING: flush_think_hold(p); break;
    case KS_CALL_ARGS: close_call(p); break;
    case KS_CALL_ID:
        if (resolve_call(p)) p->k++;
        break;
    default: break;
    }
    p->state = KS_AFTER;
}
