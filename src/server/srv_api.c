/* Endpoint handlers: request validation (spec/server-api.md §1.3, §2), prompt building,
 * admission, and the response / chunk JSON written as generation proceeds (§3, §4). */
#include "server/server.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- small helpers ---- */

void api_error_reply(api_reply *r, const srv_error *e) {
    r->status = e->http;
    r->body = srv_error_body(e);
    r->content_type = "application/json";
    if (e->http == 503) r->retry_after = strcmp(e->code ? e->code : "", "model_loading") == 0 ? 5 : 1;
    if (e->http == 429) r->retry_after = 1;
}

static void reply_json(api_reply *r, int status, json_t *j) {
    r->status = status;
    r->body = srv_json_dump(j);
    r->content_type = "application/json";
    json_decref(j);
}

/* Nesting depth of a JSON text (brackets outside strings). */
static int json_depth(const char *s, size_t n) {
    int d = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\') i++;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '{' || c == '[') {
            if (++d > max) max = d;
        } else if (c == '}' || c == ']') d--;
    }
    return max;
}

static json_t *parse_body(const char *body, size_t len, srv_error *e) {
    if (json_depth(body, len) > 128) {
        srv_fail(e, 400, "invalid_json", NULL, "The request body nests deeper than 128 levels.");
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(body ? body : "", len, 0, &je);
    if (!j) {
        srv_fail(e, 400, "invalid_json", NULL, "The request body is not valid JSON: %s (line %d, column %d).",
                 je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        srv_fail(e, 400, "invalid_json", NULL, "The request body must be a JSON object.");
        return NULL;
    }
    return j;
}

/* Field getters: absent or null -> *present = false (returns true). */
static json_t *field(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_null(v) ? NULL : v;
}

static bool get_number(json_t *o, const char *k, double lo, double hi, bool lo_open, double *out, bool *present,
                       srv_error *e) {
    json_t *v = field(o, k);
    if (present) *present = v != NULL;
    if (!v) return true;
    if (!json_is_number(v)) return srv_fail(e, 400, "invalid_type", k, "%s must be a number.", k);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo || x > hi || (lo_open && x <= lo))
        return srv_fail(e, 400, "invalid_value", k, "%s must be between %g and %g, got %g.", k, lo, hi, x);
    *out = x;
    return true;
}

static bool get_int(json_t *o, const char *k, double lo, double hi, int64_t *out, bool *present, srv_error *e) {
    json_t *v = field(o, k);
    if (present) *present = v != NULL;
    if (!v) return true;
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if ((double)x < lo || (double)x > hi)
            return srv_fail(e, 400, "invalid_value", k, "%s must be between %.0f and %.0f, got %lld.", k, lo, hi,
                            (long long)x);
        *out = x;
        return true;
    }
    if (json_is_real(v)) {
        double x = json_real_value(v);
        if (x != floor(x)) return srv_fail(e, 400, "invalid_type", k, "%s must be an integer.", k);
        if (x < lo || x > hi)
            return srv_fail(e, 400, "invalid_value", k, "%s must be between %.0f and %.0f, got %g.", k, lo, hi, x);
        *out = (int64_t)x;
        return true;
    }
    return srv_fail(e, 400, "invalid_type", k, "%s must be an integer.", k);
}

static bool get_bool(json_t *o, const char *k, bool *out, srv_error *e) {
    json_t *v = field(o, k);
    if (!v) return true;
    if (!json_is_boolean(v)) return srv_fail(e, 400, "invalid_type", k, "%s must be a boolean.", k);
    *out = json_is_true(v);
    return true;
}

static bool get_string(json_t *o, const char *k, const char **out, srv_error *e) {
    json_t *v = field(o, k);
    if (!v) return true;
    if (!json_is_string(v)) return srv_fail(e, 400, "invalid_type", k, "%s must be a string.", k);
    *out = json_string_value(v);
    return true;
}

bool api_model_known(srv *s, const char *name) {
    if (!name || s->o.accept_any_model) return true;
    if (strcmp(name, s->model_id) == 0) return true;
    for (size_t i = 0; i < s->n_aliases; i++)
        if (strcmp(name, s->aliases[i]) == 0) return true;
    return false;
}

static bool check_model(srv *s, json_t *o, srv_error *e) {
    const char *m = NULL;
    if (!get_string(o, "model", &m, e)) return false;
    if (m && !api_model_known(s, m))
        return srv_fail(e, 404, "model_not_found", "model", "The model '%s' does not exist.", m);
    return true;
}

/* ---- simple endpoints ---- */

void api_health(srv *s, api_reply *r) {
    int st = atomic_load(&s->state);
    srv_error e;
    if (st == SRV_LOADING) {
        srv_fail(&e, 503, "model_loading", NULL, "The model is loading.");
        api_error_reply(r, &e);
        return;
    }
    if (st == SRV_FAILED) {
        srv_fail(&e, 503, "model_load_failed", NULL, "The model failed to load: %s", s->load_err.message);
        api_error_reply(r, &e);
        r->retry_after = 0;
        return;
    }
    if (st == SRV_SHUTTING_DOWN) {
        srv_fail(&e, 503, "shutting_down", NULL, "The server is shutting down.");
        api_error_reply(r, &e);
        return;
    }
    int busy, queued;
    sched_counts(s, &busy, &queued);
    json_t *j = json_pack("{s:s,s:i,s:i,s:i}", "status", "ok", "slots_total", s->sched.n_slots, "slots_busy", busy,
                          "queue_length", queued);
    reply_json(r, 200, j);
}

static json_t *model_object(srv *s) {
    json_t *meta = json_pack("{s:I,s:I,s:I,s:i}", "n_ctx_slot", (json_int_t)s->n_ctx_slot, "n_ctx_train",
                             (json_int_t)s->n_ctx_train, "n_vocab", (json_int_t)s->n_vocab, "n_parallel",
                             s->sched.n_slots);
    return json_pack("{s:s,s:s,s:I,s:s,s:o}", "id", s->model_id, "object", "model", "created", (json_int_t)s->created,
                     "owned_by", s->o.owned_by ? s->o.owned_by : "local", "meta", meta);
}

void api_models(srv *s, const char *one, api_reply *r) {
    if (one) {
        bool known = strcmp(one, s->model_id) == 0;
        for (size_t i = 0; i < s->n_aliases; i++)
            if (strcmp(one, s->aliases[i]) == 0) known = true;
        if (!known) {
            srv_error e;
            srv_fail(&e, 404, "model_not_found", "model", "The model '%s' does not exist.", one);
            api_error_reply(r, &e);
            return;
        }
        reply_json(r, 200, model_object(s));
        return;
    }
    json_t *data = json_array();
    json_array_append_new(data, model_object(s));
    reply_json(r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

void api_tokenize(srv *s, const char *body, size_t len, api_reply *r) {
    srv_error e;
    json_t *o = parse_body(body, len, &e);
    if (!o) return api_error_reply(r, &e);
    const char *content = NULL;
    bool add_special = false, parse_special = true, with_pieces = false;
    if (!check_model(s, o, &e) || !get_string(o, "content", &content, &e) ||
        !get_bool(o, "add_special", &add_special, &e) || !get_bool(o, "parse_special", &parse_special, &e) ||
        !get_bool(o, "with_pieces", &with_pieces, &e))
        goto fail;
    if (!content) {
        srv_fail(&e, 400, "missing_required_parameter", "content", "content is required.");
        goto fail;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    k2_error err;
    unsigned flags = (parse_special ? K2_TOKENIZE_PARSE_SPECIAL : 0) | (add_special ? K2_TOKENIZE_ADD_SPECIAL : 0);
    size_t clen = json_string_length(json_object_get(o, "content"));
    if (k2_tokenize(s->tok, content, clen, flags, &ids, &n, &err) != K2_OK) {
        srv_fail(&e, 400, "invalid_value", "content", "%s", err.message);
        goto fail;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (!with_pieces) {
            json_array_append_new(arr, json_integer(ids[i]));
            continue;
        }
        k2_str b = {0};
        k2_token_bytes(s->tok, ids[i], &b, NULL);
        json_t *piece;
        if (srv_utf8_valid(b.ptr, b.len) && !memchr(b.ptr, 0, b.len)) piece = json_stringn(b.ptr, b.len);
        else {
            piece = json_array();
            for (size_t k = 0; k < b.len; k++) json_array_append_new(piece, json_integer((unsigned char)b.ptr[k]));
        }
        json_array_append_new(arr, json_pack("{s:i,s:o}", "id", ids[i], "piece", piece));
    }
    free(ids);
    json_decref(o);
    reply_json(r, 200, json_pack("{s:o}", "tokens", arr));
    return;
fail:
    json_decref(o);
    api_error_reply(r, &e);
}

void api_detokenize(srv *s, const char *body, size_t len, api_reply *r) {
    srv_error e;
    json_t *o = parse_body(body, len, &e);
    if (!o) return api_error_reply(r, &e);
    if (!check_model(s, o, &e)) goto fail;
    json_t *t = field(o, "tokens");
    if (!t) {
        srv_fail(&e, 400, "missing_required_parameter", "tokens", "tokens is required.");
        goto fail;
    }
    if (!json_is_array(t)) {
        srv_fail(&e, 400, "invalid_type", "tokens", "tokens must be an array of integers.");
        goto fail;
    }
    size_t n = json_array_size(t);
    int32_t *ids = calloc(n ? n : 1, sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(t, i);
        char p[32];
        snprintf(p, sizeof p, "tokens[%zu]", i);
        if (!json_is_integer(v)) {
            free(ids);
            srv_fail(&e, 400, "invalid_type", p, "%s must be an integer.", p);
            goto fail;
        }
        json_int_t x = json_integer_value(v);
        if (x < 0 || x >= s->n_vocab) {
            free(ids);
            srv_fail(&e, 400, "invalid_value", p, "%s = %lld is not a token id (vocabulary size %d).", p, (long long)x,
                     s->n_vocab);
            goto fail;
        }
        ids[i] = (int32_t)x;
    }
    char *text = NULL;
    size_t tl = 0;
    k2_error err;
    if (k2_detokenize(s->tok, ids, n, K2_DETOK_RAW, &text, &tl, &err) != K2_OK) {
        free(ids);
        srv_fail(&e, 400, "invalid_value", "tokens", "%s", err.message);
        goto fail;
    }
    free(ids);
    json_decref(o);
    reply_json(r, 200, json_pack("{s:o}", "content", srv_json_str(text, tl)));
    free(text);
    return;
fail:
    json_decref(o);
    api_error_reply(r, &e);
}

/* ---- chat request parsing ---- */

typedef struct chat_req {
    k2_chat_message *msgs;
    char **owned;           /* strings allocated for msgs */
    size_t n_msgs, n_owned;
    char *tools_json;
    char **tool_names;
    size_t n_tools;
    int tool_choice;
    const char *named;
    size_t n_history_calls;
} chat_req;

static char *own(chat_req *c, char *s) {
    char **n = realloc(c->owned, (c->n_owned + 1) * sizeof *n);
    if (!n) {
        free(s);
        return NULL;
    }
    c->owned = n;
    c->owned[c->n_owned++] = s;
    return s;
}

static void chat_req_free(chat_req *c) {
    for (size_t i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c->owned);
    free(c->msgs);
    free(c->tools_json);
    for (size_t i = 0; i < c->n_tools; i++) free(c->tool_names[i]);
    free(c->tool_names);
    memset(c, 0, sizeof *c);
}

/* Content: a string or an array of text parts, concatenated. */
static bool text_content(json_t *v, size_t i, bool required, char **out, srv_error *e) {
    char p[64];
    snprintf(p, sizeof p, "messages[%zu].content", i);
    if (!v || json_is_null(v)) {
        if (required) return srv_fail(e, 400, "missing_required_parameter", p, "%s is required.", p);
        *out = NULL;
        return true;
    }
    if (json_is_string(v)) {
        *out = k2_strndup(json_string_value(v), json_string_length(v));
        return true;
    }
    if (!json_is_array(v)) return srv_fail(e, 400, "invalid_type", p, "%s must be a string or an array of parts.", p);
    sbuf b = {0};
    size_t j;
    json_t *part;
    json_array_foreach(v, j, part) {
        char pp[192];
        snprintf(pp, sizeof pp, "%s[%zu].type", p, j);
        const char *ty = json_string_value(json_object_get(part, "type"));
        if (!json_is_object(part) || !ty) {
            sbuf_free(&b);
            return srv_fail(e, 400, "invalid_type", pp, "%s[%zu] must be a content part object with a type.", p, j);
        }
        if (strcmp(ty, "text") != 0) {
            sbuf_free(&b);
            return srv_fail(e, 400, "unsupported_value", pp, "Content parts of type '%s' are not supported (text only).",
                            ty);
        }
        json_t *t = json_object_get(part, "text");
        if (!json_is_string(t)) {
            sbuf_free(&b);
            snprintf(pp, sizeof pp, "%s[%zu].text", p, j);
            return srv_fail(e, 400, "invalid_type", pp, "%s must be a string.", pp);
        }
        sbuf_put(&b, json_string_value(t), json_string_length(t));
    }
    *out = sbuf_take(&b);
    return true;
}

static bool valid_tool_name(const char *n) {
    size_t l = strlen(n);
    if (l < 1 || l > 64) return false;
    for (const char *c = n; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-') return false;
    return true;
}

static bool parse_messages(json_t *o, chat_req *c, srv_error *e) {
    json_t *ms = field(o, "messages");
    if (!ms) return srv_fail(e, 400, "missing_required_parameter", "messages", "messages is required.");
    if (!json_is_array(ms)) return srv_fail(e, 400, "invalid_type", "messages", "messages must be an array.");
    size_t n = json_array_size(ms);
    if (!n) return srv_fail(e, 400, "invalid_value", "messages", "messages must not be empty.");
    c->msgs = k2_calloc(n, sizeof *c->msgs);
    c->n_msgs = n;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(ms, i);
        char p[64];
        snprintf(p, sizeof p, "messages[%zu]", i);
        if (!json_is_object(m)) return srv_fail(e, 400, "invalid_type", p, "%s must be an object.", p);
        json_t *rv = field(m, "role");
        snprintf(p, sizeof p, "messages[%zu].role", i);
        if (!rv) return srv_fail(e, 400, "missing_required_parameter", p, "%s is required.", p);
        if (!json_is_string(rv)) return srv_fail(e, 400, "invalid_type", p, "%s must be a string.", p);
        const char *role = json_string_value(rv);
        k2_chat_message *cm = &c->msgs[i];
        if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) cm->role = "system";
        else if (strcmp(role, "user") == 0) cm->role = "user";
        else if (strcmp(role, "assistant") == 0) cm->role = "assistant";
        else if (strcmp(role, "tool") == 0) cm->role = "tool";
        else return srv_fail(e, 400, "invalid_value", p, "Unknown role '%s'.", role);
        json_t *nv = field(m, "name");
        if (nv) {
            snprintf(p, sizeof p, "messages[%zu].name", i);
            if (!json_is_string(nv)) return srv_fail(e, 400, "invalid_type", p, "%s must be a string.", p);
            cm->name = own(c, k2_strdup(json_string_value(nv)));
        }
        bool asst = strcmp(cm->role, "assistant") == 0;
        char *content = NULL;
        json_t *tcs = asst ? field(m, "tool_calls") : NULL;
        if (!text_content(field(m, "content"), i, !asst, &content, e)) return false;
        cm->content = content ? own(c, content) : NULL;
        if (tcs) {
            snprintf(p, sizeof p, "messages[%zu].tool_calls", i);
            if (!json_is_array(tcs)) return srv_fail(e, 400, "invalid_type", p, "%s must be an array.", p);
            size_t k;
            json_t *tc;
            json_array_foreach(tcs, k, tc) {
                char pp[192];
                snprintf(pp, sizeof pp, "%s[%zu].function.name", p, k);
                json_t *fn = json_object_get(tc, "function");
                if (!json_is_object(tc) || !json_is_object(fn))
                    return srv_fail(e, 400, "invalid_type", pp, "%s[%zu] must be a tool call object with a function.", p,
                                    k);
                if (!json_is_string(json_object_get(fn, "name")))
                    return srv_fail(e, 400, "missing_required_parameter", pp, "%s is required.", pp);
                c->n_history_calls++;
            }
            if (json_array_size(tcs)) cm->tool_calls_json = own(c, srv_json_dump(tcs));
        }
        json_t *tid = field(m, "tool_call_id");
        if (tid && json_is_string(tid)) cm->tool_call_id = own(c, k2_strdup(json_string_value(tid)));
    }
    return true;
}

static bool parse_tools(json_t *o, chat_req *c, srv_error *e) {
    json_t *tools = field(o, "tools");
    if (tools) {
        if (!json_is_array(tools)) return srv_fail(e, 400, "invalid_type", "tools", "tools must be an array.");
        size_t n = json_array_size(tools);
        if (n > 128) return srv_fail(e, 400, "invalid_value", "tools", "At most 128 tools may be declared.");
        c->tool_names = k2_calloc(n ? n : 1, sizeof *c->tool_names);
        for (size_t i = 0; i < n; i++) {
            json_t *t = json_array_get(tools, i);
            char p[64];
            snprintf(p, sizeof p, "tools[%zu].type", i);
            if (!json_is_object(t)) return srv_fail(e, 400, "invalid_type", p, "tools[%zu] must be an object.", i);
            const char *ty = json_string_value(json_object_get(t, "type"));
            if (!ty || strcmp(ty, "function") != 0)
                return srv_fail(e, 400, "unsupported_value", p, "Only tools of type 'function' are supported.");
            json_t *fn = json_object_get(t, "function");
            snprintf(p, sizeof p, "tools[%zu].function.name", i);
            const char *name = json_string_value(json_object_get(fn, "name"));
            if (!json_is_object(fn) || !name)
                return srv_fail(e, 400, "missing_required_parameter", p, "%s is required.", p);
            if (!valid_tool_name(name))
                return srv_fail(e, 400, "invalid_value", p, "%s must be 1-64 characters of [A-Za-z0-9_-].", p);
            for (size_t k = 0; k < c->n_tools; k++)
                if (strcmp(c->tool_names[k], name) == 0)
                    return srv_fail(e, 400, "invalid_value", p, "Duplicate tool name '%s'.", name);
            json_t *params = json_object_get(fn, "parameters");
            if (params && !json_is_null(params) && !json_is_object(params)) {
                snprintf(p, sizeof p, "tools[%zu].function.parameters", i);
                return srv_fail(e, 400, "invalid_type", p, "%s must be an object.", p);
            }
            c->tool_names[c->n_tools++] = k2_strdup(name);
        }
        if (n) c->tools_json = srv_json_dump(tools);
    }
    json_t *tc = field(o, "tool_choice");
    c->tool_choice = c->n_tools ? TC_AUTO : TC_NONE;
    if (tc) {
        if (json_is_string(tc)) {
            const char *v = json_string_value(tc);
            if (strcmp(v, "none") == 0) c->tool_choice = TC_NONE;
            else if (strcmp(v, "auto") == 0) c->tool_choice = c->n_tools ? TC_AUTO : TC_NONE;
            else if (strcmp(v, "required") == 0) c->tool_choice = TC_REQUIRED;
            else return srv_fail(e, 400, "invalid_value", "tool_choice", "Unknown tool_choice '%s'.", v);
        } else if (json_is_object(tc)) {
            const char *name = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
            if (!name) return srv_fail(e, 400, "invalid_value", "tool_choice", "tool_choice.function.name is required.");
            c->tool_choice = TC_NAMED;
            c->named = name;
        } else {
            return srv_fail(e, 400, "invalid_type", "tool_choice", "tool_choice must be a string or an object.");
        }
        if ((c->tool_choice == TC_REQUIRED || c->tool_choice == TC_NAMED) && !c->n_tools)
            return srv_fail(e, 400, "invalid_value", "tool_choice", "tool_choice requires tools.");
        if (c->tool_choice == TC_NAMED) {
            bool found = false;
            for (size_t k = 0; k < c->n_tools; k++)
                if (strcmp(c->tool_names[k], c->named) == 0) found = true;
            if (!found)
                return srv_fail(e, 400, "invalid_value", "tool_choice", "tool_choice names '%s', which is not in tools.",
                                c->named);
        }
    }
    return true;
}

/* ---- shared sampling / stop / stream fields ---- */

typedef struct gen_fields {
    int64_t max_tokens;
    bool has_max;
    double temperature, top_p, min_p, presence, frequency, repeat_penalty;
    int64_t top_k, repeat_last_n, seed;
    bool has_seed;
    char **stop;
    size_t n_stop;
    bool stream, include_usage;
    k2_logit_bias *bias;
    size_t n_bias;
} gen_fields;

static void gen_fields_free(gen_fields *g) {
    for (size_t i = 0; i < g->n_stop; i++) free(g->stop[i]);
    free(g->stop);
    free(g->bias);
}

static bool parse_stop(json_t *o, gen_fields *g, srv_error *e) {
    json_t *st = field(o, "stop");
    if (!st) return true;
    if (json_is_string(st)) {
        g->stop = k2_calloc(1, sizeof *g->stop);
        if (json_string_length(st) > 256) return srv_fail(e, 400, "invalid_value", "stop", "stop strings are limited to 256 bytes.");
        if (json_string_length(st)) g->stop[g->n_stop++] = k2_strdup(json_string_value(st));
        return true;
    }
    if (!json_is_array(st)) return srv_fail(e, 400, "invalid_type", "stop", "stop must be a string or an array of strings.");
    size_t n = json_array_size(st);
    if (n > 16) return srv_fail(e, 400, "invalid_value", "stop", "At most 16 stop strings are allowed.");
    g->stop = k2_calloc(n ? n : 1, sizeof *g->stop);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(st, i);
        char p[32];
        snprintf(p, sizeof p, "stop[%zu]", i);
        if (!json_is_string(v)) return srv_fail(e, 400, "invalid_type", p, "%s must be a string.", p);
        if (json_string_length(v) > 256) return srv_fail(e, 400, "invalid_value", p, "stop strings are limited to 256 bytes.");
        if (json_string_length(v) && !memchr(json_string_value(v), 0, json_string_length(v)))
            g->stop[g->n_stop++] = k2_strdup(json_string_value(v));
    }
    return true;
}

static bool parse_bias(srv *s, json_t *o, gen_fields *g, srv_error *e) {
    json_t *lb = field(o, "logit_bias");
    if (!lb) return true;
    if (!json_is_object(lb)) return srv_fail(e, 400, "invalid_type", "logit_bias", "logit_bias must be an object.");
    g->bias = k2_calloc(json_object_size(lb) + 1, sizeof *g->bias);
    const char *k;
    json_t *v;
    json_object_foreach(lb, k, v) {
        char p[96];
        snprintf(p, sizeof p, "logit_bias.%.64s", k);
        char *end;
        long id = strtol(k, &end, 10);
        if (!*k || *end || id < 0 || id >= s->n_vocab)
            return srv_fail(e, 400, "invalid_value", p, "logit_bias keys must be token ids below %d.", s->n_vocab);
        if (!json_is_number(v)) return srv_fail(e, 400, "invalid_type", p, "%s must be a number.", p);
        double b = json_number_value(v);
        if (b < -100 || b > 100) return srv_fail(e, 400, "invalid_value", p, "%s must be between -100 and 100.", p);
        g->bias[g->n_bias++] = (k2_logit_bias){(int32_t)id, (float)b};
    }
    return true;
}

static bool parse_gen_fields(srv *s, json_t *o, bool chat, gen_fields *g, srv_error *e) {
    g->temperature = s->o.temperature;
    g->top_p = s->o.top_p;
    g->top_k = s->o.top_k;
    g->min_p = s->o.min_p;
    g->repeat_penalty = s->o.repeat_penalty;
    g->repeat_last_n = 64;
    if (chat) {
        int64_t mct = 0, mt = 0;
        bool p1 = false, p2 = false;
        if (!get_int(o, "max_completion_tokens", 1, 9.2e18, &mct, &p1, e)) return false;
        if (!get_int(o, "max_tokens", 1, 9.2e18, &mt, &p2, e)) return false;
        g->has_max = p1 || p2;
        g->max_tokens = p1 ? mct : p2 ? mt : s->o.max_tokens_default;
    } else {
        bool p = false;
        g->max_tokens = 16;
        if (!get_int(o, "max_tokens", 1, 9.2e18, &g->max_tokens, &p, e)) return false;
        g->has_max = true;
    }
    int64_t n = 1;
    if (!get_number(o, "temperature", 0, 2, false, &g->temperature, NULL, e) ||
        !get_number(o, "top_p", 0, 1, false, &g->top_p, NULL, e) ||
        !get_int(o, "top_k", 0, 2147483647.0, &g->top_k, NULL, e) ||
        !get_number(o, "min_p", 0, 1, false, &g->min_p, NULL, e) ||
        !get_number(o, "presence_penalty", -2, 2, false, &g->presence, NULL, e) ||
        !get_number(o, "frequency_penalty", -2, 2, false, &g->frequency, NULL, e) ||
        !get_number(o, "repeat_penalty", 0, 10, true, &g->repeat_penalty, NULL, e) ||
        !get_int(o, "repeat_last_n", 0, 65536, &g->repeat_last_n, NULL, e) ||
        !get_int(o, "seed", -9.3e18, 9.3e18, &g->seed, &g->has_seed, e) || !parse_stop(o, g, e) ||
        !get_bool(o, "stream", &g->stream, e))
        return false;
    json_t *so = field(o, "stream_options");
    if (so) {
        if (!json_is_object(so)) return srv_fail(e, 400, "invalid_type", "stream_options", "stream_options must be an object.");
        json_t *iu = field(so, "include_usage");
        if (iu && !json_is_boolean(iu))
            return srv_fail(e, 400, "invalid_type", "stream_options.include_usage", "stream_options.include_usage must be a boolean.");
        g->include_usage = g->stream && json_is_true(iu);
    }
    bool np = false;
    json_t *nv = field(o, "n");
    if (nv && !json_is_number(nv)) return srv_fail(e, 400, "invalid_type", "n", "n must be an integer.");
    if (nv && (!get_int(o, "n", -9e18, 9e18, &n, &np, e) || n != 1))
        return srv_fail(e, 400, "unsupported_value", "n", "Only n = 1 is supported.");
    return true;
}

static void fill_sampling(srv_job *j, const gen_fields *g) {
    k2_sampling_options_init(&j->samp);
    j->samp.temperature = (float)g->temperature;
    j->samp.top_p = (float)g->top_p;
    j->samp.top_k = (int32_t)g->top_k;
    j->samp.min_p = (float)g->min_p;
    j->samp.repeat_penalty = (float)g->repeat_penalty;
    j->samp.repeat_last_n = (int32_t)g->repeat_last_n;
    j->samp.frequency_penalty = (float)g->frequency;
    j->samp.presence_penalty = (float)g->presence;
    j->samp.has_seed = g->has_seed;
    j->samp.seed = (uint64_t)g->seed;
    j->bias = g->bias;
    j->n_bias = g->n_bias;
    j->samp.logit_bias = j->bias;
    j->samp.n_logit_bias = j->n_bias;
}

/* test_script (spec §8.1) */
static bool parse_script(srv *s, json_t *o, srv_job *j, srv_error *e) {
    json_t *ts = field(o, "test_script");
    if (!ts || !s->o.test_mode) return true;
    if (!json_is_object(ts)) return srv_fail(e, 400, "invalid_type", "test_script", "test_script must be an object.");
    json_t *pieces = field(ts, "pieces");
    if (pieces && !json_is_array(pieces))
        return srv_fail(e, 400, "invalid_type", "test_script.pieces", "test_script.pieces must be an array.");
    size_t n = json_array_size(pieces);
    j->pieces = k2_calloc(n ? n : 1, sizeof *j->pieces);
    for (size_t i = 0; i < n; i++) {
        json_t *p = json_array_get(pieces, i);
        script_piece *sp = &j->pieces[j->n_pieces++];
        sp->token = -1;
        if (json_is_string(p)) {
            sp->len = json_string_length(p);
            sp->bytes = k2_strndup(json_string_value(p), sp->len);
            int32_t id = k2_token_find(s->tok, sp->bytes, sp->len);
            if (id >= 0 && k2_token_is_special(s->tok, id)) {
                bool keep = k2_token_is_stop(s->tok, id);
                for (int m = 0; m < KM_COUNT; m++)
                    if (s->marks[m] == id) keep = true;
                for (int m = 0; m < 3; m++)
                    if (s->eog_extra[m] == id) keep = true;
                if (keep) sp->token = id;
            }
        } else if (json_is_array(p)) {
            sbuf b = {0};
            for (size_t k = 0; k < json_array_size(p); k++) {
                json_int_t v = json_integer_value(json_array_get(p, k));
                unsigned char c = (unsigned char)(v & 0xFF);
                sbuf_put(&b, &c, 1);
            }
            sp->len = b.len;
            sp->bytes = sbuf_take(&b);
        } else {
            return srv_fail(e, 400, "invalid_type", "test_script.pieces", "Each piece must be a string or an array of bytes.");
        }
    }
    int64_t v = 0;
    if (!get_int(ts, "piece_delay_ms", 0, 600000, &v, NULL, e)) return false;
    j->piece_delay_ms = (int)v;
    v = 0;
    if (!get_int(ts, "prompt_delay_ms", 0, 600000, &v, NULL, e)) return false;
    j->prompt_delay_ms = (int)v;
    bool has = false;
    v = -1;
    if (!get_int(ts, "fail_after", 0, 1e9, &v, &has, e)) return false;
    j->fail_after = has ? v : -1;
    j->scripted = true;
    return true;
}

static const char *const REJECTED_CHAT[] = {"functions", "function_call", "audio", "prediction", "web_search_options"};

/* Renders the conversation (and forced prefix) to ids, or to text for /apply-template. */
static bool chat_prompt(srv *s, chat_req *c, bool want_text, char **text, int32_t **ids, size_t *n_ids, char **forced_id,
                        srv_error *e) {
    k2_error err;
    char *rendered = NULL;
    if (k2_chat_render(c->msgs, c->n_msgs, c->tools_json, true, &rendered, &err) != K2_OK)
        return srv_fail(e, 400, "invalid_value", "messages", "%s", err.message);
    char *fid = NULL;
    if (c->tool_choice == TC_NAMED) fid = k2_asprintf("functions.%s:%zu", c->named, c->n_history_calls);
    if (want_text) {
        if (fid) {
            char *t = k2_asprintf("%s<|tool_calls_section_begin|><|tool_call_begin|>%s<|tool_call_argument_begin|>",
                                  rendered, fid);
            free(rendered);
            rendered = t;
        }
        *text = rendered;
        free(fid);
        return true;
    }
    free(rendered);
    if (k2_chat_tokenize(s->tok, c->msgs, c->n_msgs, c->tools_json, true, ids, n_ids, &err) != K2_OK) {
        free(fid);
        return srv_fail(e, 400, "invalid_value", "messages", "%s", err.message);
    }
    if (fid) {
        int32_t *more = NULL;
        size_t nm = 0;
        k2_tokenize(s->tok, fid, strlen(fid), 0, &more, &nm, NULL);
        int32_t *all = realloc(*ids, (*n_ids + nm + 3) * sizeof *all);
        if (all) {
            *ids = all;
            if (s->marks[KM_SB] >= 0) all[(*n_ids)++] = s->marks[KM_SB];
            if (s->marks[KM_CB] >= 0) all[(*n_ids)++] = s->marks[KM_CB];
            for (size_t i = 0; i < nm; i++) all[(*n_ids)++] = more[i];
            if (s->marks[KM_AB] >= 0) all[(*n_ids)++] = s->marks[KM_AB];
        }
        free(more);
        *forced_id = fid;
    }
    return true;
}

void api_apply_template(srv *s, const char *body, size_t len, api_reply *r) {
    srv_error e;
    chat_req c = {0};
    json_t *o = parse_body(body, len, &e);
    if (!o) return api_error_reply(r, &e);
    char *text = NULL;
    if (!parse_messages(o, &c, &e) || !parse_tools(o, &c, &e) ||
        !chat_prompt(s, &c, true, &text, NULL, NULL, NULL, &e)) {
        json_decref(o);
        chat_req_free(&c);
        return api_error_reply(r, &e);
    }
    json_decref(o);
    chat_req_free(&c);
    reply_json(r, 200, json_pack("{s:o}", "prompt", srv_json_str(text, strlen(text))));
    free(text);
}

/* ---- completions ---- */

static bool completion_prompt(srv *s, json_t *o, int32_t **ids, size_t *n_ids, srv_error *e) {
    json_t *p = field(o, "prompt");
    if (!p) return srv_fail(e, 400, "missing_required_parameter", "prompt", "prompt is required.");
    const char *text = NULL;
    size_t tl = 0;
    if (json_is_array(p) && json_array_size(p) == 1 && (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    else if (json_is_array(p) && json_array_size(p) > 0 && !json_is_integer(json_array_get(p, 0)))
        return srv_fail(e, 400, "unsupported_value", "prompt", "Only one prompt per request is supported.");
    if (json_is_string(p)) {
        text = json_string_value(p);
        tl = json_string_length(p);
        k2_error err;
        unsigned flags = K2_TOKENIZE_PARSE_SPECIAL | K2_TOKENIZE_ADD_SPECIAL;
        if (k2_tokenize(s->tok, text, tl, flags, ids, n_ids, &err) != K2_OK)
            return srv_fail(e, 400, "invalid_value", "prompt", "%s", err.message);
    } else if (json_is_array(p)) {
        size_t n = json_array_size(p);
        *ids = k2_calloc(n ? n : 1, sizeof **ids);
        for (size_t i = 0; i < n; i++) {
            json_t *v = json_array_get(p, i);
            char pp[32];
            snprintf(pp, sizeof pp, "prompt[%zu]", i);
            if (!json_is_integer(v)) return srv_fail(e, 400, "invalid_type", pp, "%s must be a token id.", pp);
            json_int_t x = json_integer_value(v);
            if (x < 0 || x >= s->n_vocab) return srv_fail(e, 400, "invalid_value", pp, "%s is not a token id.", pp);
            (*ids)[i] = (int32_t)x;
        }
        *n_ids = n;
    } else {
        return srv_fail(e, 400, "invalid_type", "prompt", "prompt must be a string or an array of token ids.");
    }
    if (!*n_ids) return srv_fail(e, 400, "invalid_value", "prompt", "The prompt is empty.");
    return true;
}

void api_completion(srv *s, bool chat, const char *body, size_t len, const char *api_key, api_reply *r) {
    srv_error e;
    chat_req c = {0};
    gen_fields g = {0};
    srv_job *j = NULL;
    json_t *o = parse_body(body, len, &e);
    if (!o) return api_error_reply(r, &e);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    char *forced_id = NULL;
    bool reasoning_separate = true, parallel = true, want_lp = false;
    int n_top_lp = 0;
    if (!check_model(s, o, &e)) goto fail;
    if (chat && !parse_messages(o, &c, &e)) goto fail;
    if (!chat && !field(o, "prompt")) {
        srv_fail(&e, 400, "missing_required_parameter", "prompt", "prompt is required.");
        goto fail;
    }
    if (!parse_gen_fields(s, o, chat, &g, &e)) goto fail;
    if (chat) {
        bool lp = false;
        if (!get_bool(o, "logprobs", &lp, &e)) goto fail;
        int64_t tl = 0;
        bool tlp = false;
        if (!get_int(o, "top_logprobs", 0, 20, &tl, &tlp, &e)) goto fail;
        if (tlp && tl > 0 && !lp) {
            srv_fail(&e, 400, "invalid_value", "top_logprobs", "top_logprobs requires logprobs to be true.");
            goto fail;
        }
        want_lp = lp;
        n_top_lp = (int)tl;
    }
    if (!parse_bias(s, o, &g, &e)) goto fail;
    if (chat) {
        if (!parse_tools(o, &c, &e) || !get_bool(o, "parallel_tool_calls", &parallel, &e)) goto fail;
        json_t *rf = field(o, "response_format");
        if (rf) {
            const char *ty = json_is_object(rf) ? json_string_value(json_object_get(rf, "type")) : NULL;
            if (!json_is_object(rf)) {
                srv_fail(&e, 400, "invalid_type", "response_format", "response_format must be an object.");
                goto fail;
            }
            if (!ty || (strcmp(ty, "text") != 0 && strcmp(ty, "json_object") != 0 && strcmp(ty, "json_schema") != 0)) {
                srv_fail(&e, 400, "invalid_value", "response_format.type", "Unknown response_format type.");
                goto fail;
            }
            if (strcmp(ty, "text") != 0) {
                srv_fail(&e, 400, "unsupported_value", "response_format",
                         "This server has no constrained decoding; response_format '%s' is not supported.", ty);
                goto fail;
            }
        }
        const char *rfmt = NULL;
        if (!get_string(o, "reasoning_format", &rfmt, &e)) goto fail;
        if (rfmt && strcmp(rfmt, "separate") != 0 && strcmp(rfmt, "none") != 0) {
            srv_fail(&e, 400, "invalid_value", "reasoning_format", "reasoning_format must be 'separate' or 'none'.");
            goto fail;
        }
        reasoning_separate = !rfmt || strcmp(rfmt, "separate") == 0;
        for (size_t i = 0; i < K2_ARRAY_LEN(REJECTED_CHAT); i++)
            if (field(o, REJECTED_CHAT[i])) {
                srv_fail(&e, 400, "unsupported_parameter", REJECTED_CHAT[i], "%s is not supported.", REJECTED_CHAT[i]);
                goto fail;
            }
        json_t *mod = field(o, "modalities");
        if (mod && !(json_is_array(mod) && json_array_size(mod) == 1 &&
                     json_is_string(json_array_get(mod, 0)) &&
                     strcmp(json_string_value(json_array_get(mod, 0)), "text") == 0)) {
            srv_fail(&e, 400, "unsupported_parameter", "modalities", "Only text output is supported.");
            goto fail;
        }
    } else {
        bool echo = false;
        int64_t best_of = 1;
        const char *suffix = NULL;
        json_t *lpv = field(o, "logprobs");
        if (!get_bool(o, "echo", &echo, &e) || !get_int(o, "best_of", -9e18, 9e18, &best_of, NULL, &e) ||
            !get_string(o, "suffix", &suffix, &e))
            goto fail;
        if (echo) {
            srv_fail(&e, 400, "unsupported_value", "echo", "echo is not supported.");
            goto fail;
        }
        if (best_of != 1) {
            srv_fail(&e, 400, "unsupported_value", "best_of", "Only best_of = 1 is supported.");
            goto fail;
        }
        if (suffix && suffix[0]) {
            srv_fail(&e, 400, "unsupported_parameter", "suffix", "suffix is not supported.");
            goto fail;
        }
        if (lpv) {
            int64_t k = 0;
            bool present = false;
            if (!get_int(o, "logprobs", 0, 5, &k, &present, &e)) goto fail;
            want_lp = present;
            n_top_lp = (int)k;
        }
    }
    /* prompt */
    if (chat) {
        if (!chat_prompt(s, &c, false, NULL, &ids, &n_ids, &forced_id, &e)) goto fail;
    } else if (!completion_prompt(s, o, &ids, &n_ids, &e)) {
        goto fail;
    }
    if (n_ids >= s->n_ctx_slot) {
        srv_fail(&e, 400, "context_length_exceeded", chat ? "messages" : "prompt",
                 "This model's maximum context length is %u tokens, but the request has %zu prompt tokens.",
                 s->n_ctx_slot, n_ids);
        goto fail;
    }
    j = job_new(s);
    if (!parse_script(s, o, j, &e)) goto fail;
    j->chat = chat;
    j->stream = g.stream;
    j->include_usage = g.include_usage;
    j->prompt = ids;
    j->n_prompt = n_ids;
    ids = NULL;
    j->max_tokens = g.max_tokens;
    if (s->o.max_tokens_cap > 0 && (j->max_tokens <= 0 || j->max_tokens > s->o.max_tokens_cap))
        j->max_tokens = s->o.max_tokens_cap;
    fill_sampling(j, &g);
    g.bias = NULL;
    j->stop = g.stop;
    j->n_stop = g.n_stop;
    g.stop = NULL;
    g.n_stop = 0;
    j->reasoning_separate = reasoning_separate;
    j->want_lp = want_lp;
    j->n_top_lp = n_top_lp;
    j->tool_choice = c.tool_choice;
    j->has_tools = c.n_tools > 0;
    j->parallel_tool_calls = parallel;
    if (forced_id) {
        j->forced_id = forced_id;
        j->forced_name = k2_strdup(c.named);
        forced_id = NULL;
    }
    if (api_key) j->api_key = k2_strdup(api_key);
    if (api_key && s->o.max_concurrent_per_key > 0) {
        bool limited = false;
        pthread_mutex_lock(&s->m.mu);
        for (size_t i = 0; i < s->n_keys; i++)
            if (strcmp(s->keys[i], api_key) == 0) {
                if (s->key_active[i] >= s->o.max_concurrent_per_key) {
                    limited = true;
                    s->m.rejected[REJ_RATE]++;
                } else {
                    s->key_active[i]++;
                    j->key_index = (int)i;
                }
                break;
            }
        pthread_mutex_unlock(&s->m.mu);
        if (limited) {
            srv_fail(&e, 429, "rate_limit_exceeded", NULL, "Too many concurrent requests for this API key.");
            goto fail;
        }
    }
    char rnd[25];
    srv_rand_alnum(rnd, 24);
    snprintf(j->id, sizeof j->id, "%s%s", chat ? "chatcmpl-" : "cmpl-", rnd);
    j->created = (int64_t)time(NULL);
    j->t_admit = srv_now();
    j->t_last_write = j->t_admit;
    json_decref(o);
    chat_req_free(&c);
    gen_fields_free(&g);
    if (atomic_load(&s->state) == SRV_SHUTTING_DOWN || !sched_submit(s, j)) {
        bool shut = atomic_load(&s->state) == SRV_SHUTTING_DOWN;
        pthread_mutex_lock(&s->m.mu);
        s->m.rejected[shut ? REJ_SHUTDOWN : REJ_QUEUE_FULL]++;
        pthread_mutex_unlock(&s->m.mu);
        job_unref(j);
        srv_fail(&e, 503, shut ? "shutting_down" : "server_overloaded", NULL,
                 shut ? "The server is shutting down." : "The server is overloaded; retry later.");
        return api_error_reply(r, &e);
    }
    r->job = j;
    r->status = 200;
    return;
fail:
    if (j) job_unref(j);
    free(ids);
    free(forced_id);
    json_decref(o);
    chat_req_free(&c);
    gen_fields_free(&g);
    api_error_reply(r, &e);
}

/* ---- generation output (scheduler thread) ---- */

static json_t *envelope(srv_job *j) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(j->id));
    json_object_set_new(o, "object", json_string(j->chat ? (j->stream ? "chat.completion.chunk" : "chat.completion")
                                                         : "text_completion"));
    json_object_set_new(o, "created", json_integer(j->created));
    json_object_set_new(o, "model", json_string(j->s->model_id));
    json_object_set_new(o, "system_fingerprint", json_string(j->s->fingerprint));
    return o;
}

static void emit_event(srv_job *j, json_t *o) {
    sbuf b = {0};
    sbuf_puts(&b, "data: ");
    srv_json_append(&b, o);
    sbuf_puts(&b, "\n\n");
    job_emit(j, b.p, b.len, false);
    sbuf_free(&b);
    json_decref(o);
}

/* A chat chunk with one delta (stolen), its logprobs (stolen, NULL = null) and a finish
 * reason (or NULL). */
static void chat_chunk(srv_job *j, json_t *delta, json_t *lp, const char *finish) {
    if (!j->role_sent && (json_object_size(delta) > 0 || finish)) {
        j->role_sent = true;
        json_t *o = envelope(j);
        json_t *ch = json_pack("{s:i,s:{s:s,s:s},s:n,s:n}", "index", 0, "delta", "role", "assistant", "content", "",
                               "logprobs", "finish_reason");
        json_object_set_new(o, "choices", json_pack("[o]", ch));
        if (j->include_usage) json_object_set_new(o, "usage", json_null());
        emit_event(j, o);
    }
    json_t *o = envelope(j);
    json_t *ch = json_pack("{s:i,s:o,s:o,s:o}", "index", 0, "delta", delta, "logprobs", lp ? lp : json_null(),
                           "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(o, "choices", json_pack("[o]", ch));
    if (j->include_usage) json_object_set_new(o, "usage", json_null());
    emit_event(j, o);
}

static void text_chunk(srv_job *j, const char *s, size_t n, json_t *lp, const char *finish) {
    json_t *o = envelope(j);
    json_t *ch = json_pack("{s:o,s:i,s:o,s:o}", "text", srv_json_str(s, n), "index", 0, "logprobs",
                           lp ? lp : json_null(), "finish_reason", finish ? json_string(finish) : json_null());
    json_object_set_new(o, "choices", json_pack("[o]", ch));
    if (j->include_usage) json_object_set_new(o, "usage", json_null());
    emit_event(j, o);
}

/* ---- log-probabilities (§3.4) ----
 * Every text token is queued with its byte count when it enters the hold-back buffer; the
 * bytes that reach a sink are taken from the front of the queue in order. A token gets an
 * entry (with all its bytes) when one of its bytes first goes into content, so a first token
 * whose leading whitespace the parser strips (§7.4) still has one; bytes routed to reasoning or tool calls,
 * dropped by the parser, cut by a stop string or belonging to markup (the queue is emptied
 * at every marker token) take their tokens with them without an entry. */

static void lp_queue(srv_job *j, const char *bytes, size_t n) {
    if (!n) return;
    if (j->lp_n == j->lp_cap) {
        if (j->lp_head > 0) {
            memmove(j->lp_q, j->lp_q + j->lp_head, (j->lp_n - j->lp_head) * sizeof *j->lp_q);
            j->lp_n -= j->lp_head;
            j->lp_head = 0;
        }
        if (j->lp_n == j->lp_cap) {
            size_t cap = j->lp_cap ? j->lp_cap * 2 : 16;
            lp_tok *q = realloc(j->lp_q, cap * sizeof *q);
            if (!q) return;
            j->lp_q = q;
            j->lp_cap = cap;
        }
    }
    lp_tok *t = &j->lp_q[j->lp_n];
    if (j->lp_cur_set) {
        *t = j->lp_cur;
    } else {
        memset(t, 0, sizeof *t);
        t->id = -1;
    }
    t->bytes = malloc(n);
    if (!t->bytes) return;
    memcpy(t->bytes, bytes, n);
    t->len = t->rem = n;
    t->sent = false;
    j->lp_n++;
}

static void lp_clear(srv_job *j) {
    for (size_t i = j->lp_head; i < j->lp_n; i++) free(j->lp_q[i].bytes);
    j->lp_head = j->lp_n = 0;
}

static json_t *lp_bytes_json(const char *b, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)b[i]));
    return a;
}

static json_t *lp_real(float v) { return json_real(isfinite(v) ? (double)v : -9999.0); }

static size_t utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

/* Adds the entry of token t to dst: a chat array of entries, or the completions object of
 * parallel arrays (text offset `cp` in code points). */
static void lp_entry(srv_job *j, const lp_tok *t, size_t cp, json_t *dst) {
    const k2_tokenizer *tok = j->s->tok;
    if (j->chat) {
        json_t *top = json_array();
        for (int i = 0; i < t->n_top; i++) {
            k2_str b = {0};
            if (k2_token_bytes(tok, t->top_id[i], &b, NULL) != K2_OK) b.len = 0;
            json_array_append_new(top, json_pack("{s:o,s:o,s:o}", "token", srv_json_str(b.ptr ? b.ptr : "", b.len),
                                                 "logprob", lp_real(t->top_lp[i]), "bytes",
                                                 lp_bytes_json(b.ptr, b.len)));
        }
        json_array_append_new(dst, json_pack("{s:o,s:o,s:o,s:o}", "token", srv_json_str(t->bytes, t->len), "logprob",
                                             lp_real(t->lp), "bytes", lp_bytes_json(t->bytes, t->len),
                                             "top_logprobs", top));
        return;
    }
    json_array_append_new(json_object_get(dst, "tokens"), srv_json_str(t->bytes, t->len));
    json_array_append_new(json_object_get(dst, "token_logprobs"), lp_real(t->lp));
    json_t *top = json_object();
    for (int i = 0; i < t->n_top; i++) {
        k2_str b = {0};
        if (k2_token_bytes(tok, t->top_id[i], &b, NULL) != K2_OK) b.len = 0;
        sbuf key = {0};
        srv_utf8_repair(&key, b.ptr ? b.ptr : "", b.len);
        char *k = sbuf_take(&key);
        if (!json_object_get(top, k)) json_object_set_new(top, k, lp_real(t->top_lp[i]));   /* best first */
        free(k);
    }
    json_array_append_new(json_object_get(dst, "top_logprobs"), top);
    json_array_append_new(json_object_get(dst, "text_offset"), json_integer((json_int_t)cp));
}

static json_t *lp_new(srv_job *j) {
    if (j->chat) return json_array();
    return json_pack("{s:[],s:[],s:[],s:[]}", "tokens", "token_logprobs", "top_logprobs", "text_offset");
}

/* Takes n routed bytes off the queue; with dst (content s[0..n)), adds the entries of the
 * tokens whose first byte is among them. */
static void lp_take(srv_job *j, const char *s, size_t n, json_t *dst) {
    size_t pos = 0;
    while (pos < n && j->lp_head < j->lp_n) {
        lp_tok *t = &j->lp_q[j->lp_head];
        if (dst && !t->sent) {
            t->sent = true;
            lp_entry(j, t, j->text_cp + utf8_count(s, pos), dst);
        }
        size_t take = K2_MIN(t->rem, n - pos);
        t->rem -= take;
        pos += take;
        if (t->rem == 0) {
            free(t->bytes);
            j->lp_head++;
        }
    }
    if (dst) j->text_cp += utf8_count(s, n);
}

static void lp_append(json_t *acc, json_t *add) {
    if (json_is_array(acc)) {
        json_array_extend(acc, add);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(add, k, v) json_array_extend(json_object_get(acc, k), v);
}

static void sink_dropped(void *u, size_t n) {
    srv_job *j = u;
    if (j->want_lp) lp_take(j, NULL, n, NULL);
}

static void sink_content(void *u, const char *s, size_t n) {
    srv_job *j = u;
    if (!n) return;
    json_t *lp = NULL;
    if (j->want_lp) {
        lp = lp_new(j);
        lp_take(j, s, n, lp);
    }
    if (!j->stream) {
        sbuf_put(&j->content, s, n);
        if (lp) {
            if (!j->lp_acc) j->lp_acc = lp_new(j);
            lp_append(j->lp_acc, lp);
            json_decref(lp);
        }
        return;
    }
    if (!j->chat) {
        text_chunk(j, s, n, lp, NULL);
        return;
    }
    if (lp) lp = json_pack("{s:o}", "content", lp);
    chat_chunk(j, json_pack("{s:o}", "content", srv_json_str(s, n)), lp, NULL);
}

static void sink_reasoning(void *u, const char *s, size_t n) {
    srv_job *j = u;
    if (!n) return;
    sink_dropped(u, n);
    if (!j->stream) {
        sbuf_put(&j->reasoning, s, n);
        return;
    }
    chat_chunk(j, json_pack("{s:o}", "reasoning_content", srv_json_str(s, n)), NULL, NULL);
}

static bool call_dropped(srv_job *j, int k) { return !j->parallel_tool_calls && k >= 1; }

static void sink_header(void *u, int k, const char *id, const char *name) {
    srv_job *j = u;
    if (call_dropped(j, k)) return;
    if (!j->stream) {
        tool_call_acc *n = realloc(j->calls, (j->n_calls_acc + 1) * sizeof *n);
        if (!n) return;
        j->calls = n;
        memset(&j->calls[j->n_calls_acc], 0, sizeof *n);
        j->calls[j->n_calls_acc].id = k2_strdup(id);
        j->calls[j->n_calls_acc].name = k2_strdup(name);
        j->n_calls_acc++;
        return;
    }
    json_t *tc = json_pack("{s:i,s:s,s:s,s:{s:s,s:s}}", "index", k, "id", id, "type", "function", "function", "name",
                           name, "arguments", "");
    chat_chunk(j, json_pack("{s:[o]}", "tool_calls", tc), NULL, NULL);
}

static void sink_args(void *u, int k, const char *s, size_t n) {
    srv_job *j = u;
    if (!n) return;
    sink_dropped(u, n);
    if (call_dropped(j, k)) return;
    if (!j->stream) {
        if (j->n_calls_acc) sbuf_put(&j->calls[j->n_calls_acc - 1].args, s, n);
        return;
    }
    json_t *tc = json_pack("{s:i,s:{s:o}}", "index", k, "function", "arguments", srv_json_str(s, n));
    chat_chunk(j, json_pack("{s:[o]}", "tool_calls", tc), NULL, NULL);
}

void out_begin(srv_job *j) {
    textbuf_init(&j->text, j->stop, j->n_stop);
    kimi_sink sink = {sink_content, sink_reasoning, sink_header, sink_args, j, sink_dropped};
    kimi_init(&j->parser, j->reasoning_separate, &sink);
    if (j->chat && j->forced_id) kimi_force_call(&j->parser, j->forced_id, j->forced_name);
}

static void route_text(srv_job *j, const char *s, size_t n) {
    if (!n) return;
    if (j->chat) kimi_text(&j->parser, s, n);
    else sink_content(j, s, n);
}

bool out_token(srv_job *j, int32_t token, const char *bytes, size_t n) {
    srv *s = j->s;
    if (token >= 0) {
        if (!j->chat) return false;   /* control tokens render as nothing */
        for (int m = 0; m < KM_COUNT; m++) {
            if (s->marks[m] != token) continue;
            sbuf rel = {0};
            textbuf_flush(&j->text, &rel);
            route_text(j, rel.p, rel.len);
            sbuf_free(&rel);
            if (m == KM_CE) j->first_ce_seen = true;
            kimi_on_mark(&j->parser, (kimi_mark)m);
            if (j->want_lp) lp_clear(j);   /* text before a marker not routed by now was markup */
            return false;
        }
        return false;
    }
    if (j->want_lp) lp_queue(j, bytes, n);
    j->lp_cur_set = false;
    sbuf rel = {0};
    bool stopped = textbuf_push(&j->text, bytes, n, &rel);
    route_text(j, rel.p, rel.len);
    sbuf_free(&rel);
    return stopped;
}

static json_t *usage_json(srv_job *j) {
    json_t *u = json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)j->n_prompt, "completion_tokens",
                          (json_int_t)j->n_gen, "total_tokens", (json_int_t)(j->n_prompt + (size_t)j->n_gen));
    if (j->chat)
        json_object_set_new(u, "prompt_tokens_details", json_pack("{s:I}", "cached_tokens", (json_int_t)j->n_cached));
    return u;
}

void out_finish(srv_job *j, const char *finish) {
    sbuf rel = {0};
    textbuf_flush(&j->text, &rel);
    route_text(j, rel.p, rel.len);
    sbuf_free(&rel);
    int n_calls = 0;
    if (j->chat) {
        kimi_end(&j->parser);
        n_calls = j->parser.k;
        if (!j->parallel_tool_calls && n_calls > 1) n_calls = 1;
        if (n_calls > 0 && strcmp(finish, "stop") == 0) finish = "tool_calls";
        pthread_mutex_lock(&j->s->m.mu);
        j->s->m.tool_calls += (uint64_t)n_calls;
        j->s->m.tool_parse_errors += (uint64_t)j->parser.parse_errors;
        pthread_mutex_unlock(&j->s->m.mu);
    }
    if (j->stream) {
        if (j->chat) chat_chunk(j, json_object(), NULL, finish);
        else text_chunk(j, "", 0, NULL, finish);
        if (j->include_usage) {
            json_t *o = envelope(j);
            json_object_set_new(o, "choices", json_array());
            json_object_set_new(o, "usage", usage_json(j));
            emit_event(j, o);
        }
        static const char done[] = "data: [DONE]\n\n";
        job_emit(j, done, sizeof done - 1, true);
        return;
    }
    json_t *o = envelope(j);
    json_t *choice;
    if (j->chat) {
        json_t *msg = json_object();
        json_object_set_new(msg, "role", json_string("assistant"));
        if (j->content.len || j->n_calls_acc == 0) json_object_set_new(msg, "content", srv_json_str(j->content.p ? j->content.p : "", j->content.len));
        else json_object_set_new(msg, "content", json_null());
        if (j->reasoning.len) json_object_set_new(msg, "reasoning_content", srv_json_str(j->reasoning.p, j->reasoning.len));
        if (j->n_calls_acc) {
            json_t *arr = json_array();
            for (size_t i = 0; i < j->n_calls_acc; i++) {
                tool_call_acc *c = &j->calls[i];
                json_array_append_new(arr, json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", c->id, "type", "function", "function",
                                                     "name", c->name, "arguments",
                                                     srv_json_str(c->args.p ? c->args.p : "", c->args.len)));
            }
            json_object_set_new(msg, "tool_calls", arr);
        }
        json_t *lp = json_null();
        if (j->want_lp) lp = json_pack("{s:o,s:n}", "content", j->lp_acc ? json_incref(j->lp_acc) : json_array(), "refusal");
        choice = json_pack("{s:i,s:o,s:o,s:s}", "index", 0, "message", msg, "logprobs", lp, "finish_reason", finish);
    } else {
        json_t *lp = json_null();
        if (j->want_lp) lp = j->lp_acc ? json_incref(j->lp_acc) : lp_new(j);
        choice = json_pack("{s:o,s:i,s:o,s:s}", "text", srv_json_str(j->content.p ? j->content.p : "", j->content.len),
                           "index", 0, "logprobs", lp, "finish_reason", finish);
    }
    json_object_set_new(o, "choices", json_pack("[o]", choice));
    json_object_set_new(o, "usage", usage_json(j));
    job_finish_body(j, 200, srv_json_dump(o));
    json_decref(o);
}

void out_error(srv_job *j, int http, const char *code, const char *message) {
    srv_error e;
    srv_fail(&e, http, code, NULL, "%s", message);
    if (j->stream) {
        sbuf b = {0};
        sbuf_puts(&b, "data: ");
        json_t *ej = srv_error_json(&e);
        srv_json_append(&b, ej);
        json_decref(ej);
        sbuf_puts(&b, "\n\ndata: [DONE]\n\n");
        job_emit(j, b.p, b.len, true);
        sbuf_free(&b);
        return;
    }
    job_finish_body(j, http, srv_error_body(&e));
}
