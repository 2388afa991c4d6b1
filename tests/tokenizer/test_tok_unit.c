/* Tokenizer unit tests: the Kimi matcher against PCRE2 (random strings) and the §2.8
 * table, chunking (§2.7), malformed files, streaming detokenization, chat tokenization. */
#include "testutil.h"
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct pieces {
    size_t off[4096];
    size_t n;
    const char *base;
} pieces;

static k2_status collect(void *ctx, const char *s, size_t n) {
    pieces *p = ctx;
    if (p->n < 4096) p->off[p->n++] = (size_t)(s - p->base) + n;
    return K2_OK;
}

/* Joins the pre-tokens with '|' for comparison with the §2.8 table. */
static void split_str(const char *s, char *out, size_t cap) {
    pieces p = {.base = s};
    tok_kimi_split(s, strlen(s), collect, &p);
    size_t o = 0, prev = 0;
    for (size_t i = 0; i < p.n && o + 1 < cap; i++) {
        if (i) out[o++] = '|';
        size_t l = p.off[i] - prev;
        if (o + l + 1 >= cap) break;
        memcpy(out + o, s + prev, l);
        o += l;
        prev = p.off[i];
    }
    out[o] = '\0';
}

static void test_table(void) {
    static const char *cases[][2] = {
        {"HelloWorld", "Hello|World"}, {"helloWORLD", "hello|WORLD"}, {"HTTPServer", "HTTPServer"}, {"aBc", "a|Bc"},
        {"I'm ChatGPT. CAN'T wait 'til 2026.", "I'm| Chat|GPT|.| CAN'T| wait| '|til| |202|6|."},
        {"\xe2\x80\x9cHello,\xe2\x80\x9d \xe4\xb8\x96\xe7\x95\x8c\xe4\xb8\x96\xe4\xb8\x96\xe4\xb8\x96\xe7\x95\x8c\xe4\xb8\x96\xe7\x95\x8c\xe2\x80\x94\xe2\x80\x94I'm",
         "\xe2\x80\x9cHello|,\xe2\x80\x9d| |\xe4\xb8\x96\xe7\x95\x8c\xe4\xb8\x96\xe4\xb8\x96\xe4\xb8\x96\xe7\x95\x8c\xe4\xb8\x96\xe7\x95\x8c|\xe2\x80\x94\xe2\x80\x94|I'm"},
        {"人々の生活", "人々|の|生活"}, {"〇一二", "〇一二"}, {"12〇3", "12〇|3"}, {"你好，世界。", "你好|，|世界|。"},
        {" 你好", " |你好"}, {"abc你好def", "abc|你好|def"}, {"   leading", "  | leading"},
        {"a  \n\n  b", "a|  \n\n| | b"}, {"x\r\n\r\ny", "x|\r\n\r\n|y"}, {"\t\tfoo", "\t|\tfoo"}, {"end   ", "end|   "},
        {"x\xc2\xa0\xc2\xa0y", "x|\xc2\xa0|\xc2\xa0y"}, {"tab\xe1\xa0\x8e \xe1\xa0\x8e", "tab|\xe1\xa0\x8e| \xe1\xa0\x8e"},
        {"नमस्ते दुनिया", "नमस्ते| दुनिया"}, {"a\xcc\x81" "b", "a\xcc\x81" "b"}, {" \xcc\x81x", " \xcc\x81x"},
        {"}\n///doc", "}\n|///|doc"}, {"$hello", "$hello"}, {"1234567", "123|456|7"},
        {"don't DON'T we'Ve x'\xc5\xbf", "don't| DON'T| we'Ve| x'\xc5\xbf"}, {"emoji 😀😀 ok", "emoji| 😀😀| ok"},
        {"⼀⺀radicals", "⼀⺀|radicals"},
    };
    char buf[512];
    for (size_t i = 0; i < K2_ARRAY_LEN(cases); i++) {
        split_str(cases[i][0], buf, sizeof buf);
        CHECK_MSG(strcmp(buf, cases[i][1]) == 0, "split of '%s': got '%s', want '%s'", cases[i][0], buf, cases[i][1]);
    }
}

/* Code points whose classes agree between PCRE2's tables and ours (Unicode versions differ). */
static uint8_t *agreeing_cps(void) {
    static const char *pats[] = {"\\p{sc=Han}", "[\\p{Lu}\\p{Lt}]", "\\p{Ll}", "[\\p{Lm}\\p{Lo}\\p{M}]", "\\p{L}", "\\p{N}"};
    static const uint8_t bits[] = {TOK_U_HAN, TOK_U_UP, TOK_U_LO, 0, TOK_U_L, TOK_U_N};
    uint8_t *ok = malloc(0x110000);
    memset(ok, 1, 0x110000);
    const uint8_t *tab = tok_uni_table();
    for (size_t k = 0; k < K2_ARRAY_LEN(pats); k++) {
        pcre2_code *re;
        k2_error err;
        if (tok_compile_regex(pats[k], strlen(pats[k]), &re, "test", &err)) continue;
        pcre2_match_data *md = pcre2_match_data_create(1, NULL);
        for (uint32_t c = 0; c < 0x110000; c++) {
            if (c >= 0xD800 && c <= 0xDFFF) { ok[c] = 0; continue; }
            tok_buf b = {0};
            tok_utf8_put(&b, c);
            bool m = pcre2_match(re, (PCRE2_SPTR)b.p, b.len, 0, PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, md, NULL) >= 0;
            bool ours = k == 3 ? (tab[c] & TOK_U_BOTH) || ((tab[c] & TOK_U_HAN) && (tab[c] & TOK_U_L))
                               : (tab[c] & bits[k]) != 0;
            if (k == 3) {
                /* [\p{Lm}\p{Lo}\p{M}] includes Han letters; BOTH excludes them. */
            }
            if (m != ours) ok[c] = 0;
            tok_buf_free(&b);
        }
        pcre2_match_data_free(md);
        pcre2_code_free(re);
    }
    return ok;
}

static void test_matcher_vs_pcre2(void) {
    pcre2_code *re;
    k2_error err;
    CHECK_OK(tok_compile_regex(tok_kimi_pattern_pcre2, strlen(tok_kimi_pattern_pcre2), &re, "kimi", &err), &err);
    uint8_t *ok = agreeing_cps();
    static const uint32_t pool[] = {'a', 'B', 'z', 'Z', ' ', ' ', '\t', '\n', '\r', '\'', 's', 'S', 't', 'l', 'L', 'r', 'e',
                                    'v', 'm', 'd', '1', '9', '.', ',', '!', '$', 0x17F, 0x301, 0x4E16, 0x3005, 0x3007,
                                    0x3001, 0x2F00, 0xA0, 0x3000, 0x180E, 0x1C, 0x85, 0x2028, 0x1F600, 0x200D, 0x928,
                                    0x94D, 0x1C5, 0x2B0, 0xE01, 0x663, 0xBD, 0x2160, 0x20000, 0xAC00, 0x30A2, 0xFF21};
    uint64_t rng = 88172645463325252ull;
    int mismatches = 0, cases = 0;
    for (int it = 0; it < 20000; it++) {
        tok_buf b = {0};
        int len = 1 + (int)(rng % 24);
        for (int i = 0; i < len; i++) {
            rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
            uint32_t c;
            if (rng % 3) c = pool[(rng >> 8) % K2_ARRAY_LEN(pool)];
            else {
                do { c = (uint32_t)((rng >> 12) % 0x110000); rng = rng * 6364136223846793005ull + 1; } while (!ok[c]);
            }
            tok_utf8_put(&b, c);
        }
        pieces a = {.base = b.p}, p = {.base = b.p};
        tok_kimi_split(b.p, b.len, collect, &a);
        tok_regex_split(re, b.p, b.len, collect, &p, &err);
        bool same = a.n == p.n && memcmp(a.off, p.off, a.n * sizeof a.off[0]) == 0;
        if (!same && mismatches++ < 5) fprintf(stderr, "matcher differs from PCRE2 on %s\n", b.p);
        cases++;
        tok_buf_free(&b);
    }
    CHECK_MSG(mismatches == 0, "%d of %d random strings split differently", mismatches, cases);
    free(ok);
    pcre2_code_free(re);
}

static const char *write_tmp(const char *name, const char *content, size_t len) {
    static char path[4096];
    snprintf(path, sizeof path, "%s/%s", k2t_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    fwrite(content, 1, len, f);
    fclose(f);
    return path;
}

/* A tiny tiktoken.model with all 256 bytes (rank = byte) plus extra lines. */
static char *byte_model(const char *extra) {
    tok_buf b = {0};
    static const char *al = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (int i = 0; i < 256; i++) tok_buf_addf(&b, "%c%c== %d\n", al[i >> 2], al[(i & 3) << 4], i);
    tok_buf_add(&b, extra, strlen(extra));
    return b.p;
}

static void expect_load_error(const char *what, const char *model, const char *special, const char *needle) {
    char *m = byte_model(model);
    char mp[4096], sp[4096];
    snprintf(mp, sizeof mp, "%s", write_tmp("tiktoken.model", m, strlen(m)));
    free(m);
    snprintf(sp, sizeof sp, "%s", write_tmp("special.json", special, strlen(special)));
    k2_tokenizer *t = NULL;
    k2_error err;
    k2_status st = k2_tokenizer_from_tiktoken(mp, sp, &t, &err);
    CHECK_MSG(st != K2_OK && strstr(err.message, needle), "%s: status %s, message '%s'", what, k2_status_name(st),
              st ? err.message : "");
    k2_tokenizer_free(t);
}

static void test_malformed(void) {
    expect_load_error("bad base64", "YW!= 256\n", "{}", "base64");
    expect_load_error("bad padding bits", "YR== 256\n", "{}", "base64");
    expect_load_error("duplicate rank", "YWI= 255\n", "{}", "appears twice");
    expect_load_error("duplicate bytes", "YQ== 256\n", "{}", "same bytes");
    expect_load_error("rank gap", "YWI= 300\n", "{}", "outside");
    expect_load_error("two spaces", "YWI=  256\n", "{}", "rank");
    expect_load_error("special JSON", "", "{\"a\": ", "JSON");
    expect_load_error("special id is a rank", "", "{\"<x>\": 5}", "rank");
    expect_load_error("special duplicate id", "", "{\"<x>\": 300, \"<y>\": 300}", "share");
    /* tokenizer.json */
    static const struct { const char *json, *needle; } hf[] = {
        {"{\"model\": {\"type\": \"WordPiece\"}}", "model.type"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Metaspace\"}}", "pre_tokenizer.type"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}, \"pre_tokenizer\": null}", "model.merges"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"[\\\\p{L}&&[^a]]\"}, \"behavior\": \"Isolated\"}}", "&&"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"Lowercase\"}}", "normalizer.type"},
        {"{\"model\": ", "JSON"},
    };
    for (size_t i = 0; i < K2_ARRAY_LEN(hf); i++) {
        const char *p = write_tmp("tokenizer.json", hf[i].json, strlen(hf[i].json));
        k2_tokenizer *t = NULL;
        k2_error err;
        k2_status st = k2_tokenizer_from_json(p, &t, &err);
        CHECK_MSG(st != K2_OK && strstr(err.message, hf[i].needle), "tokenizer.json case %zu: '%s'", i, st ? err.message : "");
        k2_tokenizer_free(t);
    }
}

static k2_tokenizer *load_tiny(void) {
    char m[4096], s[4096];
    snprintf(m, sizeof m, "%s", k2t_shared_path("fixtures/tokenizer/k2-tiny/tiktoken.model"));
    snprintf(s, sizeof s, "%s", k2t_shared_path("fixtures/tokenizer/k2-tiny/special_tokens.json"));
    k2_tokenizer *t = NULL;
    k2_error err;
    CHECK_OK(k2_tokenizer_from_tiktoken(m, s, &t, &err), &err);
    return t;
}

static void test_gguf_errors(k2_tokenizer *unused) {
    (void)unused;
    k2_error err;
    k2_gguf *src;
    if (k2_gguf_open(k2t_shared_path("fixtures/models/k2-tiny-f32.gguf"), &src, &err)) return;
    /* Copies the tokenizer keys, then breaks one. */
    static const char *keys[] = {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                                 "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id"};
    for (int variant = 0; variant < 5; variant++) {
        k2_gguf_writer *w = k2_gguf_writer_new();
        for (size_t i = 0; i < K2_ARRAY_LEN(keys); i++) {
            if (variant == 1 && i == 4) continue; /* kimi-k2 without merges: allowed (rank = id) */
            if (variant == 3 && i == 3) continue; /* no token_type: error */
            k2_gguf_writer_set_value(w, keys[i], k2_gguf_find(src, keys[i]));
        }
        if (variant == 0) k2_gguf_writer_set_str(w, "tokenizer.ggml.pre", "mystery-7");
        if (variant == 2) k2_gguf_writer_set_str(w, "tokenizer.chat_template", "{{ messages }}<|unknown|>");
        if (variant == 4) k2_gguf_writer_set_str(w, "tokenizer.chat_template", "x<|im_assistant|>assistant<|im_middle|>y");
        char path[4200];
        snprintf(path, sizeof path, "%s/v%d.gguf", k2t_tmpdir(), variant);
        CHECK_OK(k2_gguf_writer_write(w, path, &err), &err);
        k2_gguf_writer_free(w);
        k2_gguf *g;
        CHECK_OK(k2_gguf_open(path, &g, &err), &err);
        k2_tokenizer *t = NULL;
        k2_status st = k2_tokenizer_from_gguf(g, &t, &err);
        k2_gguf_close(g);
        k2_chat_format fmt;
        switch (variant) {
        case 0: CHECK_MSG(st == K2_EUNSUPPORTED && strstr(err.message, "mystery-7"), "%s", err.message); break;
        case 1: {
            CHECK_OK(st, &err);
            int32_t *ids = NULL;
            size_t n = 0;
            if (t) CHECK_OK(k2_tokenize(t, "Hello world", 11, 0, &ids, &n, &err), &err);
            static const int32_t want[] = {72, 1924, 111, 272, 260, 524}; /* as the tiktoken loader gives */
            CHECK(n == 6 && memcmp(ids, want, sizeof want) == 0);
            free(ids);
            break;
        }
        case 2:
            CHECK_OK(st, &err);
            if (t) CHECK(k2_tokenizer_chat_format(t, &fmt, &err) == K2_EUNSUPPORTED && strstr(err.message, "chat_template"));
            break;
        case 3: CHECK_MSG(st == K2_EFORMAT && strstr(err.message, "token_type"), "%s", err.message); break;
        case 4:
            CHECK_OK(st, &err);
            if (t) CHECK_OK(k2_tokenizer_chat_format(t, &fmt, &err), &err);
            break;
        }
        k2_tokenizer_free(t);
    }
    k2_gguf_close(src);
}

static void test_chunking(k2_tokenizer *t) {
    /* 30 000 Han characters: the reference cuts after 25 000 (§2.7). */
    tok_buf b = {0};
    for (int i = 0; i < 30000; i++) tok_buf_add(&b, "\xe4\xb8\x96", 3);
    int32_t *all = NULL, *p1 = NULL, *p2 = NULL;
    size_t na = 0, n1 = 0, n2 = 0;
    k2_error err;
    CHECK_OK(k2_tokenize(t, b.p, b.len, 0, &all, &na, &err), &err);
    CHECK_OK(k2_tokenize(t, b.p, 75000, 0, &p1, &n1, &err), &err);
    CHECK_OK(k2_tokenize(t, b.p + 75000, b.len - 75000, 0, &p2, &n2, &err), &err);
    CHECK(na == n1 + n2 && memcmp(all, p1, n1 * 4) == 0 && memcmp(all + n1, p2, n2 * 4) == 0);
    free(all); free(p1); free(p2);
    tok_buf_free(&b);
}

static void test_stream(k2_tokenizer *t) {
    const char *text = "Héllo wörld 世界 😀 <|im_end|> done";
    int32_t *ids = NULL;
    size_t n = 0;
    k2_error err;
    CHECK_OK(k2_tokenize(t, text, strlen(text), K2_TOKENIZE_PARSE_SPECIAL, &ids, &n, &err), &err);
    k2_detok *d;
    CHECK_OK(k2_detok_new(t, 0, &d, &err), &err);
    tok_buf out = {0};
    for (size_t i = 0; i < n; i++) {
        k2_str s;
        CHECK_OK(k2_detok_push(d, ids[i], &s, NULL, &err), &err);
        CHECK(tok_utf8_valid(s.ptr, s.len));
        tok_buf_add(&out, s.ptr, s.len);
    }
    k2_str s;
    CHECK_OK(k2_detok_flush(d, &s, &err), &err);
    tok_buf_add(&out, s.ptr, s.len);
    CHECK(out.len == strlen(text) && memcmp(out.p, text, out.len) == 0);
    k2_detok_free(d);
    /* Stop string: text before it, nothing after, and no partial stop leaks. */
    CHECK_OK(k2_detok_new(t, K2_DETOK_SKIP_SPECIAL, &d, &err), &err);
    CHECK_OK(k2_detok_add_stop(d, "wörld", strlen("wörld"), &err), &err);
    out.len = 0;
    bool stopped = false;
    for (size_t i = 0; i < n && !stopped; i++) {
        CHECK_OK(k2_detok_push(d, ids[i], &s, &stopped, &err), &err);
        tok_buf_add(&out, s.ptr, s.len);
        CHECK(!memchr(out.p ? out.p : "", 'w', out.len));
    }
    CHECK(stopped && out.len == strlen("Héllo ") && memcmp(out.p, "Héllo ", out.len) == 0);
    k2_detok_free(d);
    /* Invalid and incomplete UTF-8 at the end of a stream (byte tokens: rank = byte in k2-tiny). */
    CHECK_OK(k2_detok_new(t, 0, &d, &err), &err);
    out.len = 0;
    int32_t bytes[] = {0xE4, 0xB8, 'a', 0xF0, 0x9F};
    for (size_t i = 0; i < 5; i++) {
        CHECK_OK(k2_detok_push(d, bytes[i], &s, NULL, &err), &err);
        tok_buf_add(&out, s.ptr, s.len);
    }
    CHECK_OK(k2_detok_flush(d, &s, &err), &err);
    tok_buf_add(&out, s.ptr, s.len);
    CHECK(out.len == 7 && memcmp(out.p, "\xEF\xBF\xBD" "a\xEF\xBF\xBD", 7) == 0);
    char *one = NULL;
    size_t ol;
    CHECK_OK(k2_detokenize(t, bytes, 5, 0, &one, &ol, &err), &err);
    CHECK(one && ol == 7 && memcmp(one, out.p, 7) == 0);
    free(one);
    CHECK(k2_detokenize(t, (int32_t[]){99999}, 1, 0, &one, &ol, &err) == K2_ERANGE);
    k2_detok_free(d);
    tok_buf_free(&out);
    free(ids);
}

static void test_chat(k2_tokenizer *t) {
    k2_chat_message m[] = {{.role = "user", .content = "Hi <|im_end|>"}};
    int32_t *ids = NULL;
    size_t n = 0;
    k2_error err;
    CHECK_OK(k2_chat_tokenize(t, m, 1, NULL, true, &ids, &n, &err), &err);
    /* Specials as ids; the <|im_end|> typed by the user stays text. */
    int specials = 0;
    for (size_t i = 0; i < n; i++) specials += k2_token_is_special(t, ids[i]);
    CHECK(specials == 8); /* system 3, user 3, generation prompt 2 */
    CHECK(n > 0 && ids[0] == 2037 && ids[n - 1] == 2047);
    /* The newline after the injected system prompt is a run of its own. */
    int32_t *sys = NULL;
    size_t ns = 0;
    CHECK_OK(k2_tokenize(t, "\n", 1, 0, &sys, &ns, &err), &err);
    bool found = false;
    for (size_t i = 0; i + 2 < n; i++)
        if (ids[i] == 2029 && ids[i + 1] == sys[0] && ids[i + 2] == 2030) found = true;
    CHECK(found);
    free(sys);
    free(ids);
    const int32_t *stops;
    CHECK(k2_tokenizer_stop_ids(t, &stops) == 3);
    CHECK(k2_token_is_stop(t, 2029) && k2_token_is_stop(t, 2028) && k2_token_is_stop(t, 2036) && !k2_token_is_stop(t, 2043));
}

int main(void) {
    test_table();
    test_matcher_vs_pcre2();
    k2t_require_shared();
    test_malformed();
    k2_tokenizer *t = load_tiny();
    if (t) {
        test_chunking(t);
        test_stream(t);
        test_chat(t);
        test_gguf_errors(t);
        k2_tokenizer_free(t);
    }
    return k2t_finish("test_tok_unit");
}
