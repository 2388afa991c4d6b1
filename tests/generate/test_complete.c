/* The completion loop: stop tokens and stop strings (split across tokens), UTF-8 split
 * across tokens, max_tokens, context limits and errors on scripted logits with the real
 * k2-tiny tokenizer; then on the k2-tiny f32 model: the greedy golden, prefix reuse vs a
 * cold run, concurrent streams vs running alone, cancellation, shutdown. */
#include "generate/generate.h"
#include "testutil.h"
#include "base/base.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ---- */

typedef struct result {
    char *text;
    size_t len;
    int32_t ids[4096];
    size_t n_ids;
    int deltas;
    bool utf8_whole;  /* every delta was whole UTF-8 characters */
    k2_chunk final;
    char message[512];
} result;

static bool utf8_complete(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t need = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        if (!need || i + need > n) return false;
        for (size_t k = 1; k < need; k++)
            if (((unsigned char)s[i + k] & 0xC0) != 0x80) return false;
        i += need;
    }
    return true;
}

static void collect(k2_stream *s, result *r) {
    memset(r, 0, sizeof *r);
    r->text = calloc(1, 1);
    r->utf8_whole = true;
    k2_chunk c;
    for (;;) {
        k2_status st = k2_stream_next(s, 60000, &c);
        CHECK_MSG(st == K2_OK, "k2_stream_next: %s", k2_status_name(st));
        if (st != K2_OK) return;
        if (c.type == K2_CHUNK_DELTA) {
            r->deltas++;
            if (!utf8_complete(c.text, c.text_len)) r->utf8_whole = false;
            r->text = realloc(r->text, r->len + c.text_len + 1);
            memcpy(r->text + r->len, c.text, c.text_len);
            r->len += c.text_len;
            r->text[r->len] = 0;
            for (size_t i = 0; i < c.n_ids && r->n_ids < 4096; i++) r->ids[r->n_ids++] = c.ids[i];
            continue;
        }
        r->final = c;
        if (c.type == K2_CHUNK_ERROR) snprintf(r->message, sizeof r->message, "%s", c.message);
        r->final.message = r->message;
        return;
    }
}

static void result_free(result *r) { free(r->text); }

/* Runs gen_run on a slot in this thread and collects the stream. */
static void run_slot(gen_slot *slot, const k2_tokenizer *tok, const k2_completion_request *req, result *r,
                     const gen_run_options *o) {
    k2_error err;
    k2_stream *s;
    CHECK_OK(gen_stream_new(&s, &err), &err);
    int32_t *ids = NULL;
    size_t n = 0;
    k2_error_stage stage;
    if (gen_prompt_ids(tok, req, slot->backend->n_vocab, &ids, &n, &stage, &err) != K2_OK) {
        gen_stream_push_error(s, stage, err.status, err.message);
    } else {
        gen_run(slot, tok, req, ids, n, o, s);
    }
    free(ids);
    gen_stream_release(s);
    collect(s, r);
    k2_stream_free(s);
}

static int32_t byte_id(const k2_tokenizer *t, unsigned char b) {
    char c = (char)b;
    return k2_token_find(t, &c, 1);
}

/* Script = one byte token per byte of text. */
static size_t bytes_script(const k2_tokenizer *t, const char *text, int32_t *out) {
    size_t n = strlen(text);
    for (size_t i = 0; i < n; i++) out[i] = byte_id(t, (unsigned char)text[i]);
    return n;
}

static void scripted_slot(gen_slot *slot, const int32_t *script, size_t n, int32_t end_id, int32_t n_vocab,
                          uint32_t n_ctx) {
    k2_error err;
    memset(slot, 0, sizeof *slot);
    CHECK_OK(gen_backend_scripted_new(script, n, end_id, n_vocab, n_ctx, &slot->backend, &err), &err);
}

/* ---- scripted tests ---- */

static void test_scripted(const k2_tokenizer *tok) {
    const int32_t V = k2_tokenizer_n_vocab(tok);
    const int32_t eos = k2_token_eos(tok);
    int32_t script[512];
    int32_t prompt[4] = {byte_id(tok, 'H'), byte_id(tok, 'i'), byte_id(tok, ':'), byte_id(tok, ' ')};
    k2_completion_request req;
    gen_slot slot;
    result r;

    CHECK(V == 2048 && eos >= 0);
    for (int i = 0; i < 4; i++) CHECK(prompt[i] >= 0);

    /* stop string across tokens; sampling is on (scripted logits dominate any sampler) */
    size_t n = bytes_script(tok, "Hello, world! More text.", script);
    scripted_slot(&slot, script, n, eos, V, 256);
    k2_completion_request_init(&req);
    req.prompt_ids = prompt;
    req.n_prompt_ids = 4;
    req.sampling.seed = 3;
    req.sampling.has_seed = true;
    const char *stops[] = {"zzz", "lo, wor", ""};
    req.stop = stops;
    req.n_stop = 3;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.type == K2_CHUNK_DONE && r.final.finish == K2_FINISH_STOP);
    CHECK_MSG(!strcmp(r.text, "Hel"), "text '%s'", r.text);
    CHECK(r.final.usage.prompt_tokens == 4);
    CHECK_MSG(r.final.usage.completion_tokens == 10, "completion tokens %u", r.final.usage.completion_tokens);
    CHECK(r.n_ids == 10 && r.ids[0] == script[0] && r.ids[9] == script[9]);
    result_free(&r);

    /* a partial match is held and then released; the end of the script is EOS */
    const char *stops2[] = {"world?"};
    req.stop = stops2;
    req.n_stop = 1;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_STOP);
    CHECK_MSG(!strcmp(r.text, "Hello, world! More text."), "text '%s'", r.text);
    CHECK(r.final.usage.completion_tokens == n + 1); /* the EOS counts */
    CHECK(r.n_ids == n);                             /* but is not a delta */
    /* prefix reuse on the same slot: everything but the last prompt token is kept */
    CHECK_MSG(r.final.usage.cached_tokens == 3, "cached %u", r.final.usage.cached_tokens);
    result_free(&r);
    gen_slot_clear(&slot);

    /* UTF-8 split across byte tokens: deltas carry whole characters only */
    const char *u8 = "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80!";
    n = bytes_script(tok, u8, script);
    scripted_slot(&slot, script, n, eos, V, 256);
    req.stop = NULL;
    req.n_stop = 0;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_STOP);
    CHECK_MSG(!strcmp(r.text, u8), "text '%s'", r.text);
    CHECK(r.utf8_whole);
    CHECK(r.deltas == (int)n);
    result_free(&r);

    /* stop string made of multi-byte characters, split inside a character */
    const char *stops3[] = {"\xE2\x82\xAC \xF0\x9F"};
    req.stop = stops3;
    req.n_stop = 1;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_STOP);
    CHECK_MSG(!strcmp(r.text, "caf\xC3\xA9 "), "text '%s'", r.text);
    CHECK(r.utf8_whole);
    result_free(&r);

    /* an incomplete character at the end becomes U+FFFD */
    gen_slot_clear(&slot);
    script[0] = byte_id(tok, 'a');
    script[1] = byte_id(tok, 0xE2);
    script[2] = byte_id(tok, 0x82);
    scripted_slot(&slot, script, 3, eos, V, 256);
    req.stop = NULL;
    req.n_stop = 0;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK_MSG(!strcmp(r.text, "a\xEF\xBF\xBD"), "text '%s'", r.text);
    CHECK(r.utf8_whole);
    result_free(&r);
    gen_slot_clear(&slot);

    /* the tokenizer's stop token (here mid-script), request stop ids, ignore_stop_tokens */
    n = bytes_script(tok, "ok", script);
    script[n++] = eos;
    n += bytes_script(tok, "after", script + n);
    scripted_slot(&slot, script, n, eos, V, 256);
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_STOP && !strcmp(r.text, "ok") && r.final.usage.completion_tokens == 3);
    result_free(&r);
    req.ignore_stop_tokens = true;
    req.max_tokens = (int32_t)n;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_LENGTH);
    CHECK_MSG(!strcmp(r.text, "okafter"), "text '%s' (special tokens are skipped)", r.text);
    CHECK(r.n_ids == n);
    result_free(&r);
    req.ignore_stop_tokens = false;
    req.max_tokens = 0;
    int32_t extra_stop = byte_id(tok, 'f');
    req.stop_ids = &extra_stop;
    req.n_stop_ids = 1;
    req.detok_flags = 0; /* show special tokens */
    script[2] = byte_id(tok, 'x');
    gen_slot_clear(&slot);
    scripted_slot(&slot, script, n, eos, V, 256);
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_STOP);
    CHECK_MSG(!strcmp(r.text, "okxa"), "text '%s'", r.text);
    result_free(&r);
    req.stop_ids = NULL;
    req.n_stop_ids = 0;
    req.detok_flags = K2_DETOK_SKIP_SPECIAL;
    gen_slot_clear(&slot);

    /* max_tokens and the end of the context */
    n = bytes_script(tok, "abcdefghijklmnopqrstuvwxyz", script);
    scripted_slot(&slot, script, n, eos, V, 10);
    req.max_tokens = 3;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_LENGTH && !strcmp(r.text, "abc") && r.final.usage.completion_tokens == 3);
    result_free(&r);
    req.max_tokens = 0;  /* C - P = 6 tokens */
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_LENGTH);
    CHECK_MSG(!strcmp(r.text, "abcdef"), "text '%s'", r.text);
    result_free(&r);
    req.max_tokens = 100;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.finish == K2_FINISH_LENGTH && r.final.usage.completion_tokens == 6);
    result_free(&r);

    /* prompt overflow and empty prompt: ERROR chunks at the prompt stage */
    int32_t big[10];
    for (int i = 0; i < 10; i++) big[i] = prompt[i % 4];
    req.prompt_ids = big;
    req.n_prompt_ids = 10;
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.type == K2_CHUNK_ERROR && r.final.stage == K2_STAGE_PROMPT && r.final.status == K2_ERANGE);
    CHECK_MSG(strstr(r.message, "maximum context length is 10 tokens, but the request has 10 prompt tokens") != NULL,
              "%s", r.message);
    CHECK(r.deltas == 0);
    result_free(&r);
    req.prompt_ids = NULL;
    req.n_prompt_ids = 0;
    req.prompt = "";
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.type == K2_CHUNK_ERROR && r.final.stage == K2_STAGE_PROMPT);
    result_free(&r);
    /* raw text prompt with special-token parsing */
    req.prompt = "<|im_user|>hi";
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.type == K2_CHUNK_DONE && r.final.usage.prompt_tokens >= 2);
    result_free(&r);
    req.prompt = NULL;
    gen_slot_clear(&slot);

    /* chat messages render through k2_chat_tokenize */
    k2_chat_message msgs[2] = {{.role = "system", .content = "Be brief."}, {.role = "user", .content = "Hi \xC3\xA9"}};
    req.messages = msgs;
    req.n_messages = 2;
    int32_t *cids;
    size_t ncids;
    k2_error err;
    CHECK_OK(k2_chat_tokenize(tok, msgs, 2, NULL, true, &cids, &ncids, &err), &err);
    n = bytes_script(tok, "Hello", script);
    scripted_slot(&slot, script, n, eos, V, 256);
    run_slot(&slot, tok, &req, &r, NULL);
    CHECK(r.final.type == K2_CHUNK_DONE && r.final.usage.prompt_tokens == ncids && !strcmp(r.text, "Hello"));
    CHECK(slot.n_cached >= ncids && !memcmp(slot.cached, cids, ncids * sizeof *cids));
    result_free(&r);
    free(cids);
    gen_slot_clear(&slot);

    /* request validation */
    k2_completion_request bad;
    k2_completion_request_init(&bad);
    CHECK(gen_request_validate(&bad, V, &err) == K2_EINVAL);
    bad.prompt = "x";
    bad.prompt_ids = prompt;
    bad.n_prompt_ids = 1;
    CHECK(gen_request_validate(&bad, V, &err) == K2_EINVAL);
    bad.prompt_ids = NULL;
    bad.n_prompt_ids = 0;
    CHECK_OK(gen_request_validate(&bad, V, &err), &err);
    bad.sampling.top_p = 2;
    CHECK(gen_request_validate(&bad, V, &err) == K2_EINVAL && strstr(err.message, "top_p"));
    bad.sampling.top_p = 1;
    int32_t badstop = V;
    bad.stop_ids = &badstop;
    bad.n_stop_ids = 1;
    CHECK(gen_request_validate(&bad, V, &err) == K2_EINVAL && strstr(err.message, "stop_ids"));
}

/* ---- model tests ---- */

static const char *model_path(void) { return k2t_shared_path("fixtures/models/k2-tiny-f32.gguf"); }

/* greedy.json: {"generated": [...], "margin": [...], "prompt": [...]} */
static size_t json_ints(const char *doc, const char *key, double *out, size_t cap) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": [", key);
    const char *p = strstr(doc, pat);
    if (!p) return 0;
    p += strlen(pat);
    size_t n = 0;
    while (*p && *p != ']' && n < cap) {
        char *end;
        out[n++] = strtod(p, &end);
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    return n;
}

typedef struct golden {
    int32_t prompt[256];
    size_t n_prompt;
    int32_t gen[64];
    size_t n_gen;
    size_t n_sure; /* ids before the first margin < 0.005 */
} golden;

static bool load_golden(golden *g) {
    char *doc;
    size_t size;
    k2_error err;
    const char *p = k2t_shared_path("fixtures/golden/k2-tiny-f32/greedy.json");
    if (k2_read_file(p, &doc, &size, &err) != K2_OK) return false;
    double v[256];
    g->n_prompt = json_ints(doc, "prompt", v, 256);
    for (size_t i = 0; i < g->n_prompt; i++) g->prompt[i] = (int32_t)v[i];
    g->n_gen = json_ints(doc, "generated", v, 64);
    for (size_t i = 0; i < g->n_gen; i++) g->gen[i] = (int32_t)v[i];
    size_t nm = json_ints(doc, "margin", v, 64);
    g->n_sure = nm;
    for (size_t i = 0; i < nm; i++)
        if (v[i] < 0.005) {
            g->n_sure = i;
            break;
        }
    free(doc);
    return g->n_prompt > 0 && g->n_gen == 32;
}

static k2_generator_options gen_opts(uint32_t slots, uint32_t n_ctx) {
    k2_generator_options o;
    k2_generator_options_init(&o);
    o.n_slots = slots;
    o.context.n_ctx = n_ctx;
    o.context.n_threads = 1;
    o.context.cache_type = K2_CACHE_F32;
    return o;
}

static void greedy_req(k2_completion_request *req, const int32_t *ids, size_t n, int32_t max_tokens) {
    k2_completion_request_init(req);
    req->prompt_ids = ids;
    req->n_prompt_ids = n;
    req->sampling.temperature = 0;
    req->max_tokens = max_tokens;
    req->ignore_stop_tokens = true;
}

static void run_gen(k2_generator *g, const k2_completion_request *req, result *r) {
    k2_stream *s;
    k2_error err;
    CHECK_OK(k2_generate(g, req, &s, &err), &err);
    collect(s, r);
    k2_stream_free(s);
}

static void test_golden(k2_model *m, const k2_tokenizer *tok, const golden *gd) {
    k2_error err;
    k2_generator *g;
    k2_generator_options o = gen_opts(1, 256);
    CHECK_OK(k2_generator_new(m, tok, &o, &g, &err), &err);
    if (!g) return;
    CHECK(k2_generator_n_ctx(g) == 256);
    k2_completion_request req;
    greedy_req(&req, gd->prompt, gd->n_prompt, 32);
    result r;
    run_gen(g, &req, &r);
    CHECK(r.final.type == K2_CHUNK_DONE && r.final.finish == K2_FINISH_LENGTH);
    CHECK(r.n_ids == 32 && r.final.usage.completion_tokens == 32);
    CHECK(r.final.usage.prompt_tokens == gd->n_prompt && r.final.usage.cached_tokens == 0);
    size_t same = 0;
    while (same < r.n_ids && same < gd->n_gen && r.ids[same] == gd->gen[same]) same++;
    CHECK_MSG(same >= gd->n_sure, "greedy golden: %zu ids agree, %zu required", same, gd->n_sure);
    CHECK(r.final.timings.ttft_ms > 0 && r.final.timings.prompt_tps > 0 && r.final.timings.gen_tps > 0);
    fprintf(stderr, "golden: %zu/%zu ids agree (%zu required); ttft %.1f ms, prompt %.0f tok/s, gen %.0f tok/s\n",
            same, gd->n_gen, gd->n_sure, r.final.timings.ttft_ms, r.final.timings.prompt_tps, r.final.timings.gen_tps);
    result_free(&r);

    /* prefix reuse: continue the conversation from prompt + the first 10 golden ids */
    int32_t cont[300];
    memcpy(cont, gd->prompt, gd->n_prompt * sizeof *cont);
    memcpy(cont + gd->n_prompt, gd->gen, 10 * sizeof *cont);
    greedy_req(&req, cont, gd->n_prompt + 10, 6);
    run_gen(g, &req, &r);
    CHECK_MSG(r.final.usage.cached_tokens == gd->n_prompt + 9, "cached %u", r.final.usage.cached_tokens);
    for (size_t i = 0; i < 6 && 10 + i < gd->n_sure; i++) CHECK(r.ids[i] == gd->gen[10 + i]);
    result_free(&r);

    /* context overflow through the generator */
    int32_t many[256];
    for (int i = 0; i < 256; i++) many[i] = gd->prompt[i % gd->n_prompt];
    greedy_req(&req, many, 256, 4);
    run_gen(g, &req, &r);
    CHECK(r.final.type == K2_CHUNK_ERROR && r.final.stage == K2_STAGE_PROMPT && r.final.status == K2_ERANGE);
    CHECK(strstr(r.message, "maximum context length is 256 tokens, but the request has 256 prompt tokens") != NULL);
    result_free(&r);
    /* bad requests fail at once */
    k2_stream *s = NULL;
    req.sampling.temperature = -1;
    CHECK(k2_generate(g, &req, &s, &err) == K2_EINVAL && s == NULL);
    k2_generator_free(g);
}

typedef struct logit_cap {
    float *first;
    int32_t n;
} logit_cap;

static void capture_first(const float *lg, int32_t n, void *user) {
    logit_cap *c = user;
    if (c->first) return;
    c->first = malloc(sizeof(float) * (size_t)n);
    memcpy(c->first, lg, sizeof(float) * (size_t)n);
    c->n = n;
}

/* Reuse vs cold at the loop level: the first logits after a reused prefix equal a cold run's. */
static void test_reuse_logits(k2_model *m, const k2_tokenizer *tok, const golden *gd) {
    k2_error err;
    k2_context_options co;
    k2_context_options_init(&co);
    co.n_ctx = 256;
    co.n_threads = 1;
    co.cache_type = K2_CACHE_F32;
    gen_slot warm = {0}, cold = {0};
    k2_context *c1, *c2;
    CHECK_OK(k2_context_new(m, &co, &c1, &err), &err);
    CHECK_OK(k2_context_new(m, &co, &c2, &err), &err);
    CHECK_OK(gen_backend_model_new(c1, (int32_t)k2_model_n_vocab(m), &warm.backend, &err), &err);
    CHECK_OK(gen_backend_model_new(c2, (int32_t)k2_model_n_vocab(m), &cold.backend, &err), &err);
    k2_completion_request req;
    result r;
    /* warm the slot with the prompt's first 40 ids plus 3 unrelated ones */
    int32_t first[48];
    memcpy(first, gd->prompt, 40 * sizeof *first);
    first[40] = 5, first[41] = 6, first[42] = 7;
    greedy_req(&req, first, 43, 4);
    run_slot(&warm, tok, &req, &r, NULL);
    result_free(&r);
    /* the real prompt: 40 ids are reused, the rest evaluated in chunks of 4 */
    logit_cap lw = {0}, lc = {0};
    gen_run_options ow = {.prefill_chunk = 4, .on_logits = capture_first, .user = &lw};
    gen_run_options oc = {.on_logits = capture_first, .user = &lc};
    greedy_req(&req, gd->prompt, gd->n_prompt, 8);
    result rw, rc;
    run_slot(&warm, tok, &req, &rw, &ow);
    run_slot(&cold, tok, &req, &rc, &oc);
    CHECK_MSG(rw.final.usage.cached_tokens == 40, "cached %u", rw.final.usage.cached_tokens);
    CHECK(rc.final.usage.cached_tokens == 0);
    CHECK(rw.n_ids == 8 && rc.n_ids == 8 && !memcmp(rw.ids, rc.ids, 8 * sizeof(int32_t)));
    double md = 0;
    if (lw.first && lc.first)
        for (int32_t i = 0; i < lw.n; i++) md = fmax(md, fabs((double)lw.first[i] - lc.first[i]));
    CHECK_MSG(lw.first && lc.first && md < 1e-4, "reused vs cold logits differ by %g", md);
    free(lw.first);
    free(lc.first);
    result_free(&rw);
    result_free(&rc);
    gen_slot_clear(&warm);
    gen_slot_clear(&cold);
}

/* Several concurrent streams on a 2-slot and a 6-slot generator each equal their run alone;
 * the slots' evaluations share forward passes (continuous batching). */
static void test_concurrent(k2_model *m, const k2_tokenizer *tok, const golden *gd, uint32_t n_slots) {
    enum { N = 6, GEN = 12 };
    k2_error err;
    int32_t prompts[N][32];
    k2_completion_request reqs[N];
    for (int i = 0; i < N; i++) {
        for (int k = 0; k < 24; k++) prompts[i][k] = gd->prompt[(k * 7 + i * 5) % gd->n_prompt];
        prompts[i][0] = 100 + i % 3; /* three distinct prompts, each twice */
        k2_completion_request_init(&reqs[i]);
        reqs[i].prompt_ids = prompts[i];
        reqs[i].n_prompt_ids = 24;
        reqs[i].max_tokens = GEN;
        reqs[i].ignore_stop_tokens = true;
        reqs[i].sampling.temperature = i < 3 ? 0.0f : 0.9f;
        reqs[i].sampling.top_k = 40;
        reqs[i].sampling.seed = 77 + (uint64_t)i;
        reqs[i].sampling.has_seed = true;
    }
    result alone[N], together[N];
    for (int i = 0; i < N; i++) {
        k2_generator *g;
        k2_generator_options o = gen_opts(1, 128);
        CHECK_OK(k2_generator_new(m, tok, &o, &g, &err), &err);
        run_gen(g, &reqs[i], &alone[i]);
        k2_generator_free(g);
    }
    k2_generator *g;
    k2_generator_options o = gen_opts(n_slots, 128);
    CHECK_OK(k2_generator_new(m, tok, &o, &g, &err), &err);
    k2_stream *s[N];
    for (int i = 0; i < N; i++) CHECK_OK(k2_generate(g, &reqs[i], &s[i], &err), &err);
    for (int i = N - 1; i >= 0; i--) { /* read in reverse: others keep running meanwhile */
        collect(s[i], &together[i]);
        k2_stream_free(s[i]);
    }
    uint64_t batches, evals;
    gen_generator_batch_stats(g, &batches, &evals);
    printf("%u slots: %llu evaluations in %llu forward passes\n", n_slots, (unsigned long long)evals,
           (unsigned long long)batches);
    /* N requests of 1 prompt chunk + GEN - 1 decode steps each */
    CHECK_MSG(evals == (uint64_t)N * GEN && batches < evals, "%llu evaluations in %llu passes",
              (unsigned long long)evals, (unsigned long long)batches);
    k2_generator_free(g);
    for (int i = 0; i < N; i++) {
        CHECK(together[i].final.type == K2_CHUNK_DONE && together[i].n_ids == GEN);
        CHECK_MSG(alone[i].n_ids == together[i].n_ids &&
                      !memcmp(alone[i].ids, together[i].ids, alone[i].n_ids * sizeof(int32_t)),
                  "stream %d differs from its run alone", i);
        CHECK(!strcmp(alone[i].text, together[i].text));
        result_free(&alone[i]);
        result_free(&together[i]);
    }
}

typedef struct cancel_cb {
    k2_stream *s;
    int deltas;
    k2_chunk final;
    bool done;
} cancel_cb;

static void cancel_on_third(const k2_chunk *c, void *user) {
    cancel_cb *cc = user;
    if (c->type == K2_CHUNK_DELTA && c->n_ids) {
        if (++cc->deltas == 3) k2_stream_cancel(cc->s);
    } else if (c->type != K2_CHUNK_DELTA) {
        cc->final = *c;
        cc->done = true;
    }
}

static void test_cancel(k2_model *m, const k2_tokenizer *tok, const golden *gd) {
    k2_error err;
    k2_generator *g;
    k2_generator_options o = gen_opts(1, 4096);
    CHECK_OK(k2_generator_new(m, tok, &o, &g, &err), &err);
    k2_completion_request req;
    greedy_req(&req, gd->prompt, gd->n_prompt, 0);
    req.sampling.temperature = 1.0f;
    req.sampling.has_seed = true;

    /* polling: cancel after three deltas, the stream ends with CANCELLED */
    k2_stream *s;
    CHECK_OK(k2_generate(g, &req, &s, &err), &err);
    k2_chunk c;
    int deltas = 0;
    while (deltas < 3 && k2_stream_next(s, 60000, &c) == K2_OK)
        if (c.type == K2_CHUNK_DELTA) deltas++;
    k2_stream_cancel(s);
    while (k2_stream_next(s, 60000, &c) == K2_OK && c.type == K2_CHUNK_DELTA) {
    }
    CHECK(c.type == K2_CHUNK_DONE && c.finish == K2_FINISH_CANCELLED);
    CHECK(c.usage.completion_tokens < 4096 - gd->n_prompt);
    k2_stream_free(s);

    /* callback: cancelling from the third delta stops within one token */
    cancel_cb cc = {0};
    CHECK_OK(k2_generate(g, &req, &s, &err), &err);
    cc.s = s;
    k2_stream_set_callback(s, cancel_on_third, &cc);
    CHECK(k2_stream_wait(s, 60000) == K2_OK);
    CHECK(cc.done && cc.final.finish == K2_FINISH_CANCELLED);
    CHECK_MSG(cc.final.usage.completion_tokens == 3, "%u tokens after cancelling at 3", cc.final.usage.completion_tokens);
    k2_stream_free(s);

    /* free the generator under running and waiting requests */
    k2_stream *ss[3];
    for (int i = 0; i < 3; i++) CHECK_OK(k2_generate(g, &req, &ss[i], &err), &err);
    k2_generator_free(g);
    for (int i = 0; i < 3; i++) {
        CHECK(k2_stream_wait(ss[i], 0) == K2_OK);
        k2_chunk last = {0};
        while (k2_stream_next(ss[i], 0, &c) == K2_OK) last = c;
        CHECK(last.type == K2_CHUNK_DONE && last.finish == K2_FINISH_CANCELLED);
        k2_stream_free(ss[i]);
    }
    /* a stream freed by its consumer mid-generation */
    CHECK_OK(k2_generator_new(m, tok, &o, &g, &err), &err);
    CHECK_OK(k2_generate(g, &req, &s, &err), &err);
    k2_stream_next(s, 60000, &c);
    k2_stream_free(s);
    k2_generator_free(g);
}

/* Chat request through the generator with default sampling and a seed. */
static void test_chat(k2_model *m, const k2_tokenizer *tok) {
    k2_error err;
    k2_generator *g;
    k2_generator_options o = gen_opts(1, 256);
    CHECK_OK(k2_generator_new(m, tok, &o, &g, &err), &err);
    k2_chat_message msgs[2] = {{.role = "system", .content = "You are Kimi."}, {.role = "user", .content = "Hello!"}};
    k2_completion_request req;
    k2_completion_request_init(&req);
    req.messages = msgs;
    req.n_messages = 2;
    req.max_tokens = 10;
    req.sampling.seed = 11;
    req.sampling.has_seed = true;
    result r1, r2;
    run_gen(g, &req, &r1);
    run_gen(g, &req, &r2);
    CHECK(r1.final.type == K2_CHUNK_DONE && r1.final.usage.prompt_tokens > 5);
    CHECK(r1.utf8_whole && r2.utf8_whole);
    CHECK(r1.n_ids == r2.n_ids && !memcmp(r1.ids, r2.ids, r1.n_ids * sizeof(int32_t)));
    CHECK(r2.final.usage.cached_tokens == r2.final.usage.prompt_tokens - 1);
    result_free(&r1);
    result_free(&r2);
    k2_generator_free(g);
}

int main(void) {
    k2t_require_shared();
    k2_error err;
    k2_gguf *gg = NULL;
    k2_tokenizer *tok = NULL;
    k2_model *m = NULL;
    CHECK_OK(k2_gguf_open(model_path(), &gg, &err), &err);
    if (gg) CHECK_OK(k2_tokenizer_from_gguf(gg, &tok, &err), &err);
    k2_gguf_close(gg);
    if (!tok) return k2t_finish("test_complete");
    test_scripted(tok);
    CHECK_OK(k2_model_load(model_path(), NULL, &m, &err), &err);
    golden gd;
    CHECK(load_golden(&gd));
    if (m) {
        test_golden(m, tok, &gd);
        test_reuse_logits(m, tok, &gd);
        test_concurrent(m, tok, &gd, 2);
        test_concurrent(m, tok, &gd, 6);
        test_cancel(m, tok, &gd);
        test_chat(m, tok);
    }
    k2_model_free(m);
    k2_tokenizer_free(tok);
    return k2t_finish("test_complete");
}
