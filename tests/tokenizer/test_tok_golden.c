/* Golden ids (shared/fixtures/tokenizer): tiktoken.model loader, tokenizer.json loader,
 * GGUF loader (k2-tiny and llama.cpp vocab files), plus the round trip decode(encode(x)) == x. */
#include "testutil.h"
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include "base/base.h"
#include <stdlib.h>
#include <string.h>

static int check_ids(const char *what, const char *text, size_t len, const int32_t *got, size_t n, json_t *want) {
    size_t wn = json_array_size(want);
    bool same = wn == n;
    for (size_t i = 0; same && i < n; i++) same = json_integer_value(json_array_get(want, i)) == got[i];
    if (!same) {
        fprintf(stderr, "%s: mismatch for %.*s\n  got :", what, (int)K2_MIN(len, 120), text);
        for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", got[i]);
        fprintf(stderr, "\n  want:");
        for (size_t i = 0; i < wn && i < 40; i++) fprintf(stderr, " %lld", json_integer_value(json_array_get(want, i)));
        fprintf(stderr, "\n");
    }
    return same;
}

/* Runs every case of golden.json through tok; returns the number of cases. */
static size_t run_golden(const k2_tokenizer *tok, const char *golden, const char *what) {
    json_error_t je;
    json_t *g = json_load_file(golden, 0, &je);
    CHECK_MSG(g != NULL, "%s: %s", golden, je.text);
    if (!g) return 0;
    size_t cases = 0;
    const char *groups[] = {"ordinary", "with_special"};
    for (int gi = 0; gi < 2; gi++) {
        json_t *arr = json_object_get(g, groups[gi]);
        size_t i;
        json_t *c;
        json_array_foreach(arr, i, c) {
            const char *text = json_string_value(json_object_get(c, "text"));
            size_t len = json_string_length(json_object_get(c, "text"));
            int32_t *ids = NULL;
            size_t n = 0;
            k2_error err;
            CHECK_OK(k2_tokenize(tok, text, len, gi ? K2_TOKENIZE_PARSE_SPECIAL : 0, &ids, &n, &err), &err);
            CHECK_MSG(check_ids(what, text, len, ids, n, json_object_get(c, "ids")), "%s %s[%zu]", what, groups[gi], i);
            char *back = NULL;
            size_t blen = 0;
            CHECK_OK(k2_detokenize(tok, ids, n, 0, &back, &blen, &err), &err);
            CHECK_MSG(back && blen == len && memcmp(back, text, len) == 0, "%s: round trip of %s[%zu]", what, groups[gi], i);
            free(back);
            free(ids);
            cases++;
        }
    }
    json_decref(g);
    return cases;
}

int main(void) {
    k2t_require_shared();
    k2_error err;
    char model[4096], special[4200];
    k2_tokenizer *tok = NULL;

    const char *dirs[] = {"k2-tiny", "kimi-pattern-128k"};
    for (int d = 0; d < 2; d++) {
        snprintf(model, sizeof model, "%s", k2t_shared_path("fixtures/tokenizer/"));
        strcat(model, dirs[d]);
        snprintf(special, sizeof special, "%s/special_tokens.json", model);
        strcat(model, "/tiktoken.model");
        CHECK_OK(k2_tokenizer_from_tiktoken(model, special, &tok, &err), &err);
        if (!tok) continue;
        char golden[4096];
        snprintf(golden, sizeof golden, "%s/fixtures/tokenizer/%s/golden.json", k2t_shared_dir(), dirs[d]);
        size_t n = run_golden(tok, golden, dirs[d]);
        printf("%s (tiktoken.model): %zu cases\n", dirs[d], n);
        k2_tokenizer_free(tok);
        tok = NULL;
    }
    CHECK_OK(k2_tokenizer_from_json(k2t_shared_path("fixtures/tokenizer/deepseek-v3/tokenizer.json"), &tok, &err), &err);
    if (tok) {
        char golden[4096];
        snprintf(golden, sizeof golden, "%s", k2t_shared_path("fixtures/tokenizer/deepseek-v3/golden.json"));
        size_t n = run_golden(tok, golden, "deepseek-v3");
        printf("deepseek-v3 (tokenizer.json): %zu cases\n", n);
        k2_tokenizer_free(tok);
        tok = NULL;
    }
    /* The k2-tiny GGUF vocabulary (tokens + merges) gives the tiktoken golden ids. */
    k2_gguf *g = NULL;
    CHECK_OK(k2_gguf_open(k2t_shared_path("fixtures/models/k2-tiny-f32.gguf"), &g, &err), &err);
    if (g) {
        CHECK_OK(k2_tokenizer_from_gguf(g, &tok, &err), &err);
        k2_gguf_close(g);
        if (tok) {
            char golden[4096];
            snprintf(golden, sizeof golden, "%s", k2t_shared_path("fixtures/tokenizer/k2-tiny/golden.json"));
            size_t n = run_golden(tok, golden, "k2-tiny gguf");
            printf("k2-tiny (GGUF): %zu cases\n", n);
            CHECK(!k2_tokenizer_adds_bos(tok));
            const int32_t *stops;
            size_t ns = k2_tokenizer_stop_ids(tok, &stops);
            CHECK(ns == 3 && stops[0] == 2029 && stops[1] == 2028 && stops[2] == 2036);
            k2_tokenizer_free(tok);
            tok = NULL;
        }
    }
    /* llama.cpp's vocab test files (spec §8). */
    const char *vocabs[] = {"gpt-2", "deepseek-llm", "deepseek-coder"};
    for (int v = 0; v < 3; v++) {
        char path[4096], inp[4200], outp[4200];
        snprintf(path, sizeof path, "%s/fixtures/tokenizer/llama-cpp-vocab/ggml-vocab-%s.gguf", k2t_shared_dir(), vocabs[v]);
        snprintf(inp, sizeof inp, "%s.inp", path);
        snprintf(outp, sizeof outp, "%s.out", path);
        g = NULL;
        CHECK_OK(k2_gguf_open(path, &g, &err), &err);
        if (!g) continue;
        CHECK_OK(k2_tokenizer_from_gguf(g, &tok, &err), &err);
        k2_gguf_close(g);
        if (!tok) continue;
        char *in = NULL, *ou = NULL;
        size_t inl = 0, oul = 0;
        CHECK_OK(k2_read_file(inp, &in, &inl, &err), &err);
        CHECK_OK(k2_read_file(outp, &ou, &oul, &err), &err);
        const char *sep = "\n__ggml_vocab_test__\n";
        char *p = in, *q = ou;
        int cases = 0, pass = 0;
        while (p && q) {
            char *e = strstr(p, sep);
            if (!e) break;
            char *qe = strchr(q, '\n');
            if (!qe) qe = q + strlen(q);
            int32_t *ids = NULL;
            size_t n = 0;
            CHECK_OK(k2_tokenize(tok, p, (size_t)(e - p), 0, &ids, &n, &err), &err);
            /* Expected ids: decimal numbers separated by spaces. */
            size_t k = 0;
            bool same = true;
            char *r = q;
            while (r < qe) {
                while (r < qe && *r == ' ') r++;
                if (r >= qe) break;
                long val = strtol(r, &r, 10);
                if (k >= n || ids[k] != val) same = false;
                k++;
            }
            same = same && k == n;
            CHECK_MSG(same, "%s case %d: %.*s", vocabs[v], cases, (int)(e - p), p);
            char *back = NULL;
            size_t bl = 0;
            CHECK_OK(k2_detokenize(tok, ids, n, 0, &back, &bl, &err), &err);
            CHECK_MSG(back && bl == (size_t)(e - p) && memcmp(back, p, bl) == 0, "%s round trip %d", vocabs[v], cases);
            free(back);
            free(ids);
            pass += same;
            cases++;
            p = e + strlen(sep);
            q = *qe ? qe + 1 : qe;
        }
        printf("%s (GGUF, llama.cpp vocab test): %d/%d\n", vocabs[v], pass, cases);
        CHECK(cases >= 46);
        free(in);
        free(ou);
        k2_tokenizer_free(tok);
        tok = NULL;
    }
    return k2t_finish("test_tok_golden");
}
