/* libFuzzer target over the tokenizer: encode/decode (with a round-trip check), each
 * loader (tiktoken.model, special tokens JSON, tokenizer.json, GGUF from memory), the
 * streaming detokenizer and the chat renderer. The first input byte picks the target.
 * Links against k2lib only. */
#include "k2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static k2_tokenizer *g_tok;
static char g_dir[256];

static const char *tmp_path(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return p;
}

static void write_file(const char *path, const uint8_t *d, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (n) fwrite(d, 1, n, f);
    fclose(f);
}

/* A byte-level vocabulary with some merges and Kimi's turn tokens. */
static void init(void) {
    /* A private scratch folder under $TMPDIR (the harness's own files, not fuzz input). */
    const char *base = getenv("TMPDIR");
    int len = snprintf(g_dir, sizeof g_dir - 7, "%s/k2fuzz.", base && *base ? base : P_tmpdir);
    if (len < 0 || (size_t)len >= sizeof g_dir - 7) abort();
    memset(g_dir + len, 'X', 6); /* mkdtemp's template: six placeholder characters */
    g_dir[len + 6] = '\0';
    if (!mkdtemp(g_dir)) abort();
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    FILE *f = fopen(tmp_path("tiktoken.model"), "wb");
    if (!f) abort();
    int rank = 0;
    for (int i = 0; i < 256; i++) fprintf(f, "%c%c== %d\n", al[i >> 2], al[(i & 3) << 4], rank++);
    static const char *extra[] = {"aW4=", "dGg=", "ZXI=", "IHQ=", "dGhl", "IHRo", "IHRoZQ==", "ICA=", "5LiW", "5LiW55WM"};
    for (size_t i = 0; i < sizeof extra / sizeof extra[0]; i++) fprintf(f, "%s %d\n", extra[i], rank++);
    fclose(f);
    char sp[512];
    snprintf(sp, sizeof sp,
             "{\"[BOS]\": %d, \"[EOS]\": %d, \"<|im_end|>\": %d, \"<|im_user|>\": %d, \"<|im_assistant|>\": %d, "
             "\"<|im_system|>\": %d, \"<|im_middle|>\": %d}", rank, rank + 1, rank + 2, rank + 3, rank + 4, rank + 5, rank + 6);
    write_file(tmp_path("special_tokens.json"), (const uint8_t *)sp, strlen(sp));
    char model[512];
    snprintf(model, sizeof model, "%s", tmp_path("tiktoken.model"));
    k2_error err;
    if (k2_tokenizer_from_tiktoken(model, tmp_path("special_tokens.json"), &g_tok, &err) != K2_OK) abort();
}

static void fuzz_encode(const uint8_t *d, size_t n, unsigned flags) {
    int32_t *ids = NULL;
    size_t nid = 0;
    k2_error err;
    if (k2_tokenize(g_tok, (const char *)d, n, flags, &ids, &nid, &err) != K2_OK) abort();
    char *back = NULL;
    size_t bl = 0;
    if (k2_detokenize(g_tok, ids, nid, 0, &back, &bl, &err) != K2_OK) abort();
    /* Valid UTF-8 must round-trip exactly. */
    bool valid = true;
    for (size_t i = 0; i < n; i++) if (d[i] >= 0x80) { valid = false; break; }
    if (valid && (bl != n || memcmp(back, d, n) != 0)) abort();
    free(back);
    /* Streaming decode equals the one-shot decode. */
    k2_detok *dt;
    if (k2_detok_new(g_tok, 0, &dt, &err) != K2_OK) abort();
    size_t total = 0;
    for (size_t i = 0; i < nid; i++) {
        k2_str s;
        if (k2_detok_push(dt, ids[i], &s, NULL, &err) != K2_OK) abort();
        total += s.len;
    }
    k2_str s;
    k2_detok_flush(dt, &s, &err);
    total += s.len;
    k2_detok_free(dt);
    char *one = NULL;
    k2_detokenize(g_tok, ids, nid, 0, &one, &bl, &err);
    if (total != bl) abort();
    free(one);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_tok) init();
    if (size == 0) return 0;
    uint8_t sel = data[0];
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    k2_error err;
    k2_tokenizer *t = NULL;
    switch (sel % 8) {
    case 0: fuzz_encode(d, n, 0); break;
    case 1: fuzz_encode(d, n, K2_TOKENIZE_PARSE_SPECIAL | K2_TOKENIZE_ADD_SPECIAL); break;
    case 2: {
        char p[512];
        snprintf(p, sizeof p, "%s", tmp_path("f.model"));
        write_file(p, d, n);
        if (k2_tokenizer_from_tiktoken(p, tmp_path("special_tokens.json"), &t, &err) == K2_OK) {
            int32_t *ids = NULL;
            size_t nid;
            k2_tokenize(t, "Hello, world 世界", 19, 0, &ids, &nid, &err);
            free(ids);
        }
        break;
    }
    case 3: {
        char p[512], m[512];
        snprintf(p, sizeof p, "%s", tmp_path("f.json"));
        snprintf(m, sizeof m, "%s", tmp_path("tiktoken.model"));
        write_file(p, d, n);
        k2_tokenizer_from_tiktoken(m, p, &t, &err);
        break;
    }
    case 4: {
        char p[512];
        snprintf(p, sizeof p, "%s", tmp_path("tokenizer.json"));
        write_file(p, d, n);
        if (k2_tokenizer_from_json(p, &t, &err) == K2_OK) {
            int32_t *ids = NULL;
            size_t nid;
            k2_tokenize(t, "Hello, world 123 <s>", 20, K2_TOKENIZE_PARSE_SPECIAL, &ids, &nid, &err);
            free(ids);
        }
        break;
    }
    case 5: {
        k2_gguf *g;
        if (k2_gguf_open_memory(d, n, "fuzz.gguf", &g, &err) == K2_OK) {
            if (k2_tokenizer_from_gguf(g, &t, &err) == K2_OK) {
                int32_t *ids = NULL;
                size_t nid;
                k2_tokenize(t, "Hello, world", 12, K2_TOKENIZE_PARSE_SPECIAL, &ids, &nid, &err);
                free(ids);
            }
            k2_gguf_close(g);
        }
        break;
    }
    case 6: {
        /* Streaming detokenizer over arbitrary ids, with a stop string. */
        k2_detok *dt;
        if (k2_detok_new(g_tok, sel & 8 ? K2_DETOK_SKIP_SPECIAL : 0, &dt, &err) != K2_OK) abort();
        k2_detok_add_stop(dt, "the", 3, &err);
        for (size_t i = 0; i + 1 < n; i += 2) {
            k2_str s;
            bool stopped;
            k2_detok_push(dt, (int32_t)(d[i] | (d[i + 1] & 0x7) << 8), &s, &stopped, &err);
        }
        k2_str s;
        k2_detok_flush(dt, &s, &err);
        k2_detok_free(dt);
        break;
    }
    case 7: {
        /* Chat renderer: the input is the tool calls JSON and the content. */
        char *s = malloc(n + 1);
        if (!s) return 0;
        memcpy(s, d, n);
        s[n] = '\0';
        k2_chat_message m[3] = {{.role = "user", .content = s},
                                {.role = "assistant", .tool_calls_json = s},
                                {.role = "tool", .content_json = s, .tool_call_id = s}};
        int32_t *ids = NULL;
        size_t nid;
        k2_chat_tokenize(g_tok, m, 3, s, true, &ids, &nid, &err);
        free(ids);
        free(s);
        break;
    }
    }
    k2_tokenizer_free(t);
    return 0;
}
