/* The Kimi K2 chat format, rendered natively (spec §6.2), and its tokenization with
 * special tokens as ids and the text between them as whole runs (§6.5). */
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- Python json.dumps(ensure_ascii=False) (§6.2 item 1) ---- */

static void json_put_string(tok_buf *b, const char *s, size_t n) {
    tok_buf_addc(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[8];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\b') esc = "\\b";
        else if (c == '\t') esc = "\\t";
        else if (c == '\n') esc = "\\n";
        else if (c == '\f') esc = "\\f";
        else if (c == '\r') esc = "\\r";
        else if (c < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        if (!esc) continue;
        tok_buf_add(b, s + run, i - run);
        tok_buf_add(b, esc, strlen(esc));
        run = i + 1;
    }
    tok_buf_add(b, s + run, n - run);
    tok_buf_addc(b, '"');
}

/* Python repr(float): shortest round-trip digits; fixed notation for 1e-4 <= |x| < 1e16. */
static void json_put_real(tok_buf *b, double v) {
    if (isnan(v)) { tok_buf_add(b, "NaN", 3); return; }
    if (isinf(v)) { tok_buf_add(b, v < 0 ? "-Infinity" : "Infinity", v < 0 ? 9 : 8); return; }
    char buf[64];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* buf = [-]d.ddde[+-]XX */
    char digits[32];
    size_t nd = 0;
    const char *p = buf;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) tok_buf_addc(b, '-');
    if (exp >= -4 && exp < 16) {
        if (exp < 0) {
            tok_buf_add(b, "0.", 2);
            for (int i = 0; i < -exp - 1; i++) tok_buf_addc(b, '0');
            tok_buf_add(b, digits, nd);
        } else {
            for (int i = 0; i <= exp; i++) tok_buf_addc(b, (size_t)i < nd ? digits[i] : '0');
            tok_buf_addc(b, '.');
            if ((size_t)exp + 1 < nd) tok_buf_add(b, digits + exp + 1, nd - (size_t)exp - 1);
            else tok_buf_addc(b, '0');
        }
    } else {
        tok_buf_addc(b, digits[0]);
        if (nd > 1) {
            tok_buf_addc(b, '.');
            tok_buf_add(b, digits + 1, nd - 1);
        }
        tok_buf_addf(b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
}

static int key_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool json_dump(tok_buf *b, json_t *v, bool sort, const char *item_sep, const char *key_sep) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v), i = 0;
        const char **keys = malloc((n ? n : 1) * sizeof *keys);
        if (!keys) return false;
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) keys[i++] = k;
        /* Sorting UTF-8 bytes = sorting code points, as Python does. */
        if (sort) qsort(keys, n, sizeof *keys, key_cmp);
        tok_buf_addc(b, '{');
        for (i = 0; i < n; i++) {
            if (i) tok_buf_add(b, item_sep, strlen(item_sep));
            json_put_string(b, keys[i], strlen(keys[i]));
            tok_buf_add(b, key_sep, strlen(key_sep));
            if (!json_dump(b, json_object_get(v, keys[i]), sort, item_sep, key_sep)) {
                free(keys);
                return false;
            }
        }
        tok_buf_addc(b, '}');
        free(keys);
        return true;
    }
    case JSON_ARRAY: {
        tok_buf_addc(b, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) tok_buf_add(b, item_sep, strlen(item_sep));
            if (!json_dump(b, json_array_get(v, i), sort, item_sep, key_sep)) return false;
        }
        tok_buf_addc(b, ']');
        return true;
    }
    case JSON_STRING: json_put_string(b, json_string_value(v), json_string_length(v)); return true;
    case JSON_INTEGER: tok_buf_addf(b, "%lld", (long long)json_integer_value(v)); return true;
    case JSON_REAL: json_put_real(b, json_real_value(v)); return true;
    case JSON_TRUE: tok_buf_add(b, "true", 4); return true;
    case JSON_FALSE: tok_buf_add(b, "false", 5); return true;
    case JSON_NULL: tok_buf_add(b, "null", 4); return true;
    }
    return false;
}

/* ---- segments ---- */

typedef struct chat_seg {
    bool special;
    size_t off, len; /* in the text buffer */
} chat_seg;

typedef struct chat_out {
    tok_buf text;
    chat_seg *segs;
    size_t n, cap;
    bool oom;
} chat_out;

static void seg_add(chat_out *o, bool special, const char *s, size_t n) {
    if (!n && !special) return;
    if (!special && o->n && !o->segs[o->n - 1].special) {
        /* Adjacent text joins one run (§6.5). */
        o->segs[o->n - 1].len += n;
        if (!tok_buf_add(&o->text, s, n)) o->oom = true;
        return;
    }
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 32;
        chat_seg *ns = realloc(o->segs, cap * sizeof *ns);
        if (!ns) { o->oom = true; return; }
        o->segs = ns;
        o->cap = cap;
    }
    o->segs[o->n++] = (chat_seg){special, o->text.len, n};
    if (!tok_buf_add(&o->text, s, n)) o->oom = true;
}
static void sp(chat_out *o, const char *s) { seg_add(o, true, s, strlen(s)); }
static void tx(chat_out *o, const char *s) { seg_add(o, false, s, strlen(s)); }

static bool is_functions_id(const char *id) {
    /* functions.<name>:<digits> */
    if (strncmp(id, "functions.", 10) != 0) return false;
    const char *colon = strrchr(id, ':');
    if (!colon || colon <= id + 10 || !colon[1]) return false;
    for (const char *p = colon + 1; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

static json_t *parse_json(const char *s, const char *what, k2_error *err) {
    json_error_t je;
    json_t *v = json_loads(s, JSON_DECODE_ANY, &je);
    if (!v) k2_err(err, K2_EINVAL, "%s: invalid JSON at line %d column %d: %s", what, je.line, je.column, je.text);
    return v;
}

static k2_status render_content(chat_out *o, const k2_chat_message *m, size_t idx, k2_error *err) {
    if (m->content_json) {
        char what[64];
        snprintf(what, sizeof what, "messages[%zu].content", idx);
        json_t *v = parse_json(m->content_json, what, err);
        if (!v) return K2_EINVAL;
        if (json_is_string(v)) tx(o, json_string_value(v));
        else if (json_is_array(v)) {
            size_t i;
            json_t *part;
            json_array_foreach(v, i, part) {
                const char *ty = json_string_value(json_object_get(part, "type"));
                if ((ty && strcmp(ty, "image") == 0) || json_object_get(part, "image") ||
                    json_object_get(part, "image_url"))
                    tx(o, "<|media_start|>image<|media_content|><|media_pad|><|media_end|>\n");
                else {
                    const char *t = json_string_value(json_object_get(part, "text"));
                    if (t) tx(o, t);
                }
            }
        } else if (!json_is_null(v)) {
            json_decref(v);
            return k2_err(err, K2_EINVAL, "%s: expected a string or an array of parts", what);
        }
        json_decref(v);
        return K2_OK;
    }
    if (m->content) tx(o, m->content);
    return K2_OK;
}

typedef struct call_rec {
    char *orig;     /* caller's id or NULL */
    char *rendered; /* ID as rendered */
    bool answered;
} call_rec;

static k2_status chat_build(const k2_chat_message *msgs, size_t n, const char *tools_json, bool add_gen, chat_out *o,
                            k2_error *err) {
    k2_status st = K2_OK;
    call_rec *calls = NULL;
    size_t n_calls = 0;
    if (tools_json) {
        json_t *tools = parse_json(tools_json, "tools", err);
        if (!tools) return K2_EINVAL;
        if (!json_is_array(tools) && !json_is_null(tools)) {
            json_decref(tools);
            return k2_err(err, K2_EINVAL, "tools: expected a JSON array");
        }
        if (json_array_size(tools) > 0) {
            tok_buf j = {0};
            json_dump(&j, tools, true, ",", ":");
            sp(o, "<|im_system|>");
            tx(o, "tool_declare");
            sp(o, "<|im_middle|>");
            if (j.p) tx(o, j.p);
            sp(o, "<|im_end|>");
            tok_buf_free(&j);
        }
        json_decref(tools);
    }
    if (n == 0 || !msgs[0].role || strcmp(msgs[0].role, "system") != 0) {
        sp(o, "<|im_system|>");
        tx(o, "system");
        sp(o, "<|im_middle|>");
        tx(o, "You are Kimi, an AI assistant created by Moonshot AI.");
        sp(o, "<|im_end|>");
        tx(o, "\n");
    }
    for (size_t i = 0; i < n && !st; i++) {
        const k2_chat_message *m = &msgs[i];
        if (!m->role) {
            st = k2_err(err, K2_EINVAL, "messages[%zu]: missing role", i);
            break;
        }
        bool user = strcmp(m->role, "user") == 0, asst = strcmp(m->role, "assistant") == 0;
        bool tool = strcmp(m->role, "tool") == 0;
        sp(o, user ? "<|im_user|>" : asst ? "<|im_assistant|>" : "<|im_system|>");
        tx(o, m->name && m->name[0] ? m->name : m->role);
        sp(o, "<|im_middle|>");
        json_t *tc = NULL;
        if (asst && m->tool_calls_json) {
            char what[64];
            snprintf(what, sizeof what, "messages[%zu].tool_calls", i);
            tc = parse_json(m->tool_calls_json, what, err);
            if (!tc) { st = K2_EINVAL; break; }
            if (!json_is_array(tc) && !json_is_null(tc)) {
                json_decref(tc);
                st = k2_err(err, K2_EINVAL, "%s: expected a JSON array", what);
                break;
            }
        }
        if (asst && json_array_size(tc) > 0) {
            if ((st = render_content(o, m, i, err))) { json_decref(tc); break; }
            sp(o, "<|tool_calls_section_begin|>");
            size_t k;
            json_t *call;
            json_array_foreach(tc, k, call) {
                json_t *fn = json_object_get(call, "function");
                const char *fname = json_string_value(json_object_get(fn, "name"));
                const char *id = json_string_value(json_object_get(call, "id"));
                char *rendered = id && is_functions_id(id) ? k2_strdup(id)
                                                           : k2_asprintf("functions.%s:%zu", fname ? fname : "", n_calls);
                call_rec *nc = realloc(calls, (n_calls + 1) * sizeof *nc);
                if (!rendered || !nc) {
                    free(rendered);
                    if (nc) calls = nc;
                    st = k2_err(err, K2_ENOMEM, "out of memory");
                    break;
                }
                calls = nc;
                calls[n_calls++] = (call_rec){id ? k2_strdup(id) : NULL, rendered, false};
                sp(o, "<|tool_call_begin|>");
                tx(o, rendered);
                sp(o, "<|tool_call_argument_begin|>");
                json_t *args = json_object_get(fn, "arguments");
                if (json_is_string(args)) tx(o, json_string_value(args));
                else if (args) {
                    tok_buf j = {0};
                    json_dump(&j, args, false, ", ", ": ");
                    if (j.p) tx(o, j.p);
                    tok_buf_free(&j);
                } else tx(o, "{}");
                sp(o, "<|tool_call_end|>");
            }
            sp(o, "<|tool_calls_section_end|>");
        } else if (tool) {
            char *id = NULL;
            call_rec *match = NULL;
            if (m->tool_call_id)
                for (size_t c = 0; c < n_calls && !match; c++)
                    if (calls[c].orig && strcmp(calls[c].orig, m->tool_call_id) == 0) match = &calls[c];
            if (match) id = k2_strdup(match->rendered);
            else if (m->tool_call_id && is_functions_id(m->tool_call_id)) {
                id = k2_strdup(m->tool_call_id);
                for (size_t c = 0; c < n_calls && !match; c++)
                    if (!calls[c].answered && strcmp(calls[c].rendered, id) == 0) match = &calls[c];
            } else {
                for (size_t c = 0; c < n_calls && !match; c++)
                    if (!calls[c].answered) match = &calls[c];
                if (match) id = k2_strdup(match->rendered);
                else id = k2_asprintf("functions.%s:%zu", m->name ? m->name : "unknown", n_calls);
            }
            if (match) match->answered = true;
            if (!id) { st = k2_err(err, K2_ENOMEM, "out of memory"); json_decref(tc); break; }
            tx(o, "## Return of ");
            tx(o, id);
            tx(o, "\n");
            free(id);
            st = render_content(o, m, i, err);
        } else
            st = render_content(o, m, i, err);
        json_decref(tc);
        if (st) break;
        sp(o, "<|im_end|>");
    }
    if (!st && add_gen) {
        sp(o, "<|im_assistant|>");
        tx(o, "assistant");
        sp(o, "<|im_middle|>");
    }
    for (size_t c = 0; c < n_calls; c++) {
        free(calls[c].orig);
        free(calls[c].rendered);
    }
    free(calls);
    if (!st && o->oom) st = k2_err(err, K2_ENOMEM, "out of memory");
    return st;
}

static void chat_out_free(chat_out *o) {
    tok_buf_free(&o->text);
    free(o->segs);
}

k2_status k2_chat_render(const k2_chat_message *msgs, size_t n, const char *tools_json, bool add_generation_prompt,
                         char **out, k2_error *err) {
    *out = NULL;
    chat_out o = {0};
    k2_status st = chat_build(msgs, n, tools_json, add_generation_prompt, &o, err);
    if (st) {
        chat_out_free(&o);
        return st;
    }
    if (!o.text.p && !tok_buf_add(&o.text, "", 0)) {
        chat_out_free(&o);
        return k2_err(err, K2_ENOMEM, "out of memory");
    }
    *out = o.text.p;
    free(o.segs);
    return K2_OK;
}

k2_status k2_chat_tokenize(const k2_tokenizer *t, const k2_chat_message *msgs, size_t n, const char *tools_json,
                           bool add_generation_prompt, int32_t **ids, size_t *n_ids, k2_error *err) {
    *ids = NULL;
    *n_ids = 0;
    k2_chat_format fmt;
    k2_status st = k2_tokenizer_chat_format(t, &fmt, err);
    if (st) return st;
    chat_out o = {0};
    if ((st = chat_build(msgs, n, tools_json, add_generation_prompt, &o, err))) {
        chat_out_free(&o);
        return st;
    }
    tok_ids out = {0};
    for (size_t i = 0; i < o.n && !st; i++) {
        const char *s = o.text.p + o.segs[i].off;
        size_t len = o.segs[i].len;
        if (o.segs[i].special) {
            int32_t id = k2_token_find(t, s, len);
            if (id < 0 || t->type[id] == TOK_NORMAL)
                st = k2_err(err, K2_EUNSUPPORTED, "%s: the vocabulary has no special token %.*s", t->source, (int)len, s);
            else if (!tok_ids_push(&out, id))
                st = k2_err(err, K2_ENOMEM, "out of memory");
        } else {
            /* Text between specials: never parse special strings in it (§3.5, §6.5). */
            tok_buf fixed = {0};
            if (!tok_utf8_valid(s, len)) {
                if (!tok_utf8_sanitize(&fixed, s, len)) st = k2_err(err, K2_ENOMEM, "out of memory");
                s = fixed.p;
                len = fixed.len;
            }
            if (!st) st = tok_encode_run(t, s, len, &out, err);
            tok_buf_free(&fixed);
        }
    }
    chat_out_free(&o);
    if (st) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return K2_OK;
}

bool tok_is_kimi_template(const char *tmpl) {
    /* llama.cpp's detection rule (§6.4). */
    return strstr(tmpl, "<|im_assistant|>assistant<|im_middle|>") != NULL;
}

k2_status k2_tokenizer_chat_format(const k2_tokenizer *t, k2_chat_format *out, k2_error *err) {
    static const char *const need[] = {"<|im_user|>", "<|im_assistant|>", "<|im_system|>", "<|im_middle|>", "<|im_end|>"};
    if (t->chat_template && !tok_is_kimi_template(t->chat_template))
        return k2_err(err, K2_EUNSUPPORTED,
                      "%s: tokenizer.chat_template is not a chat template k2 knows (only Kimi K2's is supported)",
                      t->source);
    for (size_t i = 0; i < K2_ARRAY_LEN(need); i++) {
        int32_t id = k2_token_find(t, need[i], strlen(need[i]));
        if (id < 0 || t->type[id] == TOK_NORMAL)
            return k2_err(err, K2_EUNSUPPORTED, "%s: no chat format: the vocabulary lacks the Kimi token %s", t->source,
                          need[i]);
    }
    *out = K2_CHAT_KIMI_K2;
    return K2_OK;
}
