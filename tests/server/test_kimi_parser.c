/* The Kimi K2 tool-call parser (spec/server-api.md §7.4) and the text hold-back buffer
 * (§4.6) on their own: every event sequence is fed whole and split at every byte, and the
 * accumulated outputs must not depend on the split. */
#include "server/server.h"
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

typedef struct acc {
    sbuf content, reasoning, log;
    char ids[8][64], names[8][64];
    sbuf args[8];
    int headers;
} acc;

static void on_content(void *u, const char *s, size_t n) {
    acc *a = u;
    sbuf_put(&a->content, s, n);
}
static void on_reasoning(void *u, const char *s, size_t n) {
    acc *a = u;
    sbuf_put(&a->reasoning, s, n);
}
static void on_header(void *u, int k, const char *id, const char *name) {
    acc *a = u;
    if (k < 8) {
        snprintf(a->ids[k], sizeof a->ids[k], "%s", id);
        snprintf(a->names[k], sizeof a->names[k], "%s", name);
    }
    sbuf_printf(&a->log, "H%d;", k);
    a->headers++;
}
static void on_args(void *u, int k, const char *s, size_t n) {
    acc *a = u;
    if (k < 8) sbuf_put(&a->args[k], s, n);
    CHECK(n > 0);
}

static void acc_free(acc *a) {
    sbuf_free(&a->content);
    sbuf_free(&a->reasoning);
    sbuf_free(&a->log);
    for (int i = 0; i < 8; i++) sbuf_free(&a->args[i]);
}

/* Events: strings; "\x01N" is mark N. */
#define M(n) "\x01" #n
static const char *S(const char *s) { return s ? s : ""; }

static int run(const char *const *ev, size_t n, bool reasoning, int split, acc *a) {
    memset(a, 0, sizeof *a);
    kimi_parser p;
    kimi_sink sink = {on_content, on_reasoning, on_header, on_args, a, NULL};
    kimi_init(&p, reasoning, &sink);
    for (size_t i = 0; i < n; i++) {
        if (ev[i][0] == 1) {
            kimi_on_mark(&p, (kimi_mark)(ev[i][1] - '0'));
            continue;
        }
        size_t len = strlen(ev[i]);
        if (split <= 0) kimi_text(&p, ev[i], len);
        else
            for (size_t o = 0; o < len; o += (size_t)split) kimi_text(&p, ev[i] + o, K2_MIN((size_t)split, len - o));
    }
    kimi_end(&p);
    int k = p.k;
    kimi_free(&p);
    return k;
}

static void expect(const char *name, const char *const *ev, size_t n, bool reasoning, const char *content,
                   const char *reason, int calls, const char *const *ids, const char *const *names,
                   const char *const *args) {
    for (int split = 0; split <= 3; split++) {
        acc a;
        int k = run(ev, n, reasoning, split, &a);
        CHECK_MSG(k == calls, "%s split %d: %d calls", name, split, k);
        CHECK_MSG(strcmp(S(a.content.p), content) == 0, "%s split %d: content '%s'", name, split, S(a.content.p));
        CHECK_MSG(strcmp(S(a.reasoning.p), reason) == 0, "%s split %d: reasoning '%s'", name, split, S(a.reasoning.p));
        for (int i = 0; i < calls && i < 8; i++) {
            if (ids[i][0] == '*') CHECK_MSG(strncmp(a.ids[i], "call_", 5) == 0 && strlen(a.ids[i]) == 29, "%s: id %s", name, a.ids[i]);
            else CHECK_MSG(strcmp(a.ids[i], ids[i]) == 0, "%s: id %s", name, a.ids[i]);
            CHECK_MSG(strcmp(a.names[i], names[i]) == 0, "%s: name %s", name, a.names[i]);
            CHECK_MSG(strcmp(S(a.args[i].p), args[i]) == 0, "%s split %d: args '%s'", name, split, S(a.args[i].p));
        }
        acc_free(&a);
    }
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

static void parser_tests(void) {
    {
        const char *ev[] = {M(0), M(2), "functions.get_weather:0", M(3), "{\"city\": \"Paris\"}", M(4), M(1)};
        const char *ids[] = {"functions.get_weather:0"}, *names[] = {"get_weather"}, *args[] = {"{\"city\": \"Paris\"}"};
        expect("single", ev, N(ev), true, "", "", 1, ids, names, args);
    }
    {
        const char *ev[] = {"  Let me", " check.", M(0), M(2), " functions.a:0 ", M(3), "  {\"x\": 1}  \n", M(4),
                            M(2), "functions.html:2", M(3), "{}", M(4), M(1), "tail"};
        const char *ids[] = {"functions.a:0", "functions.html:2"}, *names[] = {"a", "html"},
                   *args[] = {"{\"x\": 1}", "{}"};
        expect("parallel+ws", ev, N(ev), true, "Let me check.tail", "", 2, ids, names, args);
    }
    {   /* no SB/SE, no CE between calls, duplicate ids */
        const char *ev[] = {M(2), "functions.f:0", M(3), "{\"a\":\n1}", M(2), "functions.f:0", M(3), "{}"};
        const char *ids[] = {"functions.f:0", "*"}, *names[] = {"f", "f"}, *args[] = {"{\"a\":\n1}", "{}"};
        expect("tolerant", ev, N(ev), true, "", "", 2, ids, names, args);
    }
    {   /* reasoning as text tags, split anywhere; a call ends reasoning */
        const char *ev[] = {" <think>Plan it</think>Answer"};
        expect("reasoning", ev, N(ev), true, "Answer", "Plan it", 0, NULL, NULL, NULL);
        expect("reasoning off", ev, N(ev), false, "<think>Plan it</think>Answer", "", 0, NULL, NULL, NULL);
        const char *ev2[] = {"<think>hmm", M(0), M(2), "functions.g:3", M(3), "{}", M(4), M(1)};
        const char *ids[] = {"functions.g:3"}, *names[] = {"g"}, *args[] = {"{}"};
        expect("unclosed think", ev2, N(ev2), true, "", "hmm", 1, ids, names, args);
        const char *ev3[] = {"<thi"};
        expect("partial think at end", ev3, N(ev3), true, "<thi", "", 0, NULL, NULL, NULL);
        const char *ev4[] = {M(5), "r</th", "ink-ish", M(6), "c"};
        expect("think marks", ev4, N(ev4), true, "c", "r</think-ish", 0, NULL, NULL, NULL);
    }
    {   /* unusual ids: no functions. prefix, no number, empty name dropped */
        const char *ev[] = {M(2), "lookup", M(3), "{}", M(4), M(2), "  ", M(3), "dropped", M(4), M(2), "functions.x:9"};
        const char *ids[] = {"*", "functions.x:9"}, *names[] = {"lookup", "x"}, *args[] = {"{}", ""};
        expect("odd ids", ev, N(ev), true, "", "", 2, ids, names, args);
    }
    {   /* text inside a section is dropped; stray marks ignored */
        const char *ev[] = {"hi", M(4), M(0), "junk", M(2), "functions.f:0", M(3), "{}", M(4), M(1), " after"};
        const char *ids[] = {"functions.f:0"}, *names[] = {"f"}, *args[] = {"{}"};
        expect("junk", ev, N(ev), true, "hi after", "", 1, ids, names, args);
    }
}

static void textbuf_tests(void) {
    char *stops[] = {"##END##", "x"};
    const char *pieces[] = {"Hel", "lo ", "##", "EN", "D## wo", "rld"};
    textbuf t;
    textbuf_init(&t, stops, 2);
    sbuf out = {0};
    bool stopped = false;
    for (size_t i = 0; i < N(pieces) && !stopped; i++) {
        size_t before = out.len;
        stopped = textbuf_push(&t, pieces[i], strlen(pieces[i]), &out);
        CHECK(!memchr(out.p ? out.p + before : "", '#', out.len - before));
    }
    CHECK(stopped);
    CHECK(out.p && strcmp(out.p, "Hello ") == 0);
    textbuf_free(&t);
    sbuf_free(&out);
    /* UTF-8 held across pushes, invalid bytes repaired, incomplete tail flushed as U+FFFD */
    textbuf_init(&t, NULL, 0);
    textbuf_push(&t, "a\xF0\x9F", 3, &out);
    CHECK(out.len == 1);
    textbuf_push(&t, "\x98\x80\xFF", 3, &out);
    CHECK(out.p && strcmp(out.p, "a\xF0\x9F\x98\x80\xEF\xBF\xBD") == 0);
    textbuf_push(&t, "\xE2\x82", 2, &out);
    textbuf_flush(&t, &out);
    CHECK(out.p && strcmp(out.p, "a\xF0\x9F\x98\x80\xEF\xBF\xBD\xEF\xBF\xBD") == 0);
    textbuf_free(&t);
    sbuf_free(&out);
    /* stop string across a held prefix that turns out not to match */
    char *st2[] = {"abc"};
    textbuf_init(&t, st2, 1);
    textbuf_push(&t, "xab", 3, &out);
    CHECK(out.p && strcmp(out.p, "x") == 0);
    CHECK(!textbuf_push(&t, "d", 1, &out));
    CHECK(strcmp(out.p, "xabd") == 0);
    textbuf_free(&t);
    sbuf_free(&out);
}

static void json_tests(void) {
    json_t *j = json_pack("{s:s}", "a", "x\xE2\x80\xA8y\xC2\x85z\n");
    char *s = srv_json_dump(j);
    CHECK(strcmp(s, "{\"a\":\"x\\u2028y\\u0085z\\n\"}") == 0);
    free(s);
    json_decref(j);
    json_t *r = srv_json_str("ok\xC0", 3);
    CHECK(strcmp(json_string_value(r), "ok\xEF\xBF\xBD") == 0);
    json_decref(r);
}

int main(void) {
    parser_tests();
    textbuf_tests();
    json_tests();
    return k2t_finish("server.kimi_parser");
}
