/* Pre-tokenizers: the hand-written Kimi K2 matcher (spec §2.5), the reference's
 * chunking (§2.7), PCRE2 splitting with the White_Space rewrite (§2.4, §4.6) and
 * the table of pre-tokenizer names (§4.6). */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* §2.1, verbatim. */
const char *const tok_kimi_pattern_original =
    "[\\p{Han}]+|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]*"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]+"
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}&&[^\\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define WS "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define KU "(?:(?!\\p{sc=Han})[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}])"
#define KL "(?:(?!\\p{sc=Han})[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}])"
#define KC "(?:'(?:[sS\\x{17F}]|[tT]|[rR][eE]|[vV][eE]|[mM]|[lL][lL]|[dD]))"

/* §2.4: the rewrite PCRE2 honours (no `&&`, Script=Han, White_Space spelled out). */
const char *const tok_kimi_pattern_pcre2 =
    "\\p{sc=Han}+|[^\\r\\n\\p{L}\\p{N}]?" KU "*" KL "+" KC "?|[^\\r\\n\\p{L}\\p{N}]?" KU "+" KL "*" KC
    "?|\\p{N}{1,3}| ?[^" WS "\\p{L}\\p{N}]+[\\r\\n]*|[" WS "]*[\\r\\n]+|[" WS "]+(?![^" WS "])|[" WS "]+";

/* ---- Kimi matcher (§2.5) ---- */

typedef struct kimi_cur {
    const unsigned char *s;
    size_t n;
    const uint8_t *tab;
} kimi_cur;

/* Class bits and length of the character at byte offset i (< n). */
static inline uint8_t kc_at(const kimi_cur *c, size_t i, int *len, uint32_t *cp) {
    unsigned b = c->s[i];
    if (b < 0x80) { *len = 1; *cp = b; return c->tab[b]; }
    *len = tok_utf8_next(c->s + i, c->n - i, cp);
    return c->tab[*cp];
}

#define K_U (TOK_U_UP | TOK_U_BOTH)
#define K_L (TOK_U_LO | TOK_U_BOTH)

/* End of the maximal run of characters having any bit of `mask` (and not Han when asked). */
static inline size_t kc_run(const kimi_cur *c, size_t i, uint8_t mask, size_t *last_both) {
    while (i < c->n) {
        int len;
        uint32_t cp;
        uint8_t f = kc_at(c, i, &len, &cp);
        if (!(f & mask) || (f & TOK_U_HAN)) break;
        i += (size_t)len;
        if (last_both && (f & TOK_U_BOTH)) *last_both = i;
    }
    return i;
}

static size_t kimi_alt2(const kimi_cur *c, size_t s) {
    size_t last_both = 0;
    bool have_both = false;
    size_t k = s;
    /* U run, tracking the end of its last BOTH character. */
    while (k < c->n) {
        int len;
        uint32_t cp;
        uint8_t f = kc_at(c, k, &len, &cp);
        if (!(f & K_U) || (f & TOK_U_HAN)) break;
        k += (size_t)len;
        if (f & TOK_U_BOTH) { last_both = k; have_both = true; }
    }
    if (k < c->n) {
        int len;
        uint32_t cp;
        uint8_t f = kc_at(c, k, &len, &cp);
        if ((f & TOK_U_LO) && !(f & TOK_U_HAN)) return kc_run(c, k, K_L, NULL);
    }
    return have_both ? last_both : 0;
}

static size_t kimi_alt3(const kimi_cur *c, size_t s) {
    size_t k = kc_run(c, s, K_U, NULL);
    if (k == s) return 0;
    return kc_run(c, k, K_L, NULL);
}

static inline bool ci(unsigned char x, char lo) { return x == (unsigned char)lo || x == (unsigned char)(lo - 32); }

static size_t kimi_contraction(const kimi_cur *c, size_t e) {
    const unsigned char *s = c->s;
    size_t n = c->n;
    if (e + 1 >= n || s[e] != '\'') return e;
    unsigned char x = s[e + 1];
    if (ci(x, 's') || ci(x, 't') || ci(x, 'm') || ci(x, 'd')) return e + 2;
    if (x == 0xC5 && e + 2 < n && s[e + 2] == 0xBF) return e + 3; /* U+017F ſ */
    if (e + 2 < n) {
        unsigned char y = s[e + 2];
        if ((ci(x, 'r') && ci(y, 'e')) || (ci(x, 'v') && ci(y, 'e')) || (ci(x, 'l') && ci(y, 'l')))
            return e + 3;
    }
    return e;
}

static size_t kimi_match(const kimi_cur *c, size_t p) {
    int len;
    uint32_t cp;
    uint8_t f = kc_at(c, p, &len, &cp);
    size_t n = c->n;
    /* 1. Han run. */
    if (f & TOK_U_HAN) {
        size_t i = p + (size_t)len;
        while (i < n) {
            int l2;
            uint32_t c2;
            if (!(kc_at(c, i, &l2, &c2) & TOK_U_HAN)) break;
            i += (size_t)l2;
        }
        return i;
    }
    /* 2. Letters, with an optional one-character prefix. */
    bool prefix = cp != '\r' && cp != '\n' && !(f & (TOK_U_L | TOK_U_N));
    size_t q = p + (size_t)len, e = 0;
    if (prefix && q < n) e = kimi_alt2(c, q);
    if (!e && (f & (K_U | K_L))) e = kimi_alt2(c, p);
    if (!e && prefix && q < n) e = kimi_alt3(c, q);
    if (!e && (f & K_U)) e = kimi_alt3(c, p);
    if (e) return kimi_contraction(c, e);
    /* 3. Numbers, at most three. */
    if (f & TOK_U_N) {
        size_t i = q;
        for (int k = 1; k < 3 && i < n; k++) {
            int l2;
            uint32_t c2;
            if (!(kc_at(c, i, &l2, &c2) & TOK_U_N)) break;
            i += (size_t)l2;
        }
        return i;
    }
    /* 4. Punctuation and symbols (O = not WS, letter or number). */
    const uint8_t O_NOT = TOK_U_WS | TOK_U_L | TOK_U_N;
    size_t s = p;
    if (cp == ' ' && q < n) {
        int l2;
        uint32_t c2;
        if (!(kc_at(c, q, &l2, &c2) & O_NOT)) s = q;
    }
    {
        int l2;
        uint32_t c2;
        uint8_t f2 = kc_at(c, s, &l2, &c2);
        if (!(f2 & O_NOT)) {
            size_t i = s + (size_t)l2;
            while (i < n) {
                uint8_t f3 = kc_at(c, i, &l2, &c2);
                if (f3 & O_NOT) break;
                i += (size_t)l2;
            }
            while (i < n && (c->s[i] == '\r' || c->s[i] == '\n')) i++;
            return i;
        }
    }
    /* 5. Whitespace. */
    size_t k = p, last_nl = 0, last_start = p;
    bool nl = false;
    int chars = 0;
    while (k < n) {
        int l2;
        uint32_t c2;
        uint8_t f3 = kc_at(c, k, &l2, &c2);
        if (!(f3 & TOK_U_WS)) break;
        last_start = k;
        k += (size_t)l2;
        chars++;
        if (c2 == '\r' || c2 == '\n') { nl = true; last_nl = k; }
    }
    if (k == p) return p + (size_t)len; /* unreachable for valid input; never loop */
    if (nl) return last_nl;
    if (k == n) return k;
    if (chars >= 2) return last_start;
    return k;
}

k2_status tok_kimi_split(const char *s, size_t n, tok_emit_fn emit, void *ctx) {
    kimi_cur c = {(const unsigned char *)s, n, tok_uni_table()};
    if (!c.tab) return K2_ENOMEM;
    size_t p = 0;
    while (p < n) {
        size_t e = kimi_match(&c, p);
        k2_status st = emit(ctx, s + p, e - p);
        if (st) return st;
        p = e;
    }
    return K2_OK;
}

/* ---- PCRE2 ---- */

k2_status tok_compile_regex(const char *pattern, size_t len, pcre2_code **out, const char *what, k2_error *err) {
    int code;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return k2_err(err, K2_EFORMAT, "%s: regex does not compile at offset %zu: %s", what, (size_t)off,
                      (const char *)msg);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if JIT is unavailable */
    *out = re;
    return K2_OK;
}

k2_status tok_regex_split(const pcre2_code *re, const char *s, size_t n, tok_emit_fn emit, void *ctx,
                          k2_error *err) {
    /* Matches and gaps become pieces (Isolated, §4.6); empty matches make no piece. */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!md) return k2_err(err, K2_ENOMEM, "out of memory for regex matching");
    size_t pos = 0, gap = 0;
    k2_status st = K2_OK;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            st = k2_err(err, K2_EINTERNAL, "regex matching failed: %s", (const char *)msg);
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {
            if (ms >= n) break;
            uint32_t cp;
            pos = ms + (size_t)tok_utf8_next((const unsigned char *)s + ms, n - ms, &cp);
            continue;
        }
        if (ms > gap && (st = emit(ctx, s + gap, ms - gap))) break;
        if ((st = emit(ctx, s + ms, me - ms))) break;
        pos = gap = me;
    }
    pcre2_match_data_free(md);
    if (st) return st;
    if (gap < n) return emit(ctx, s + gap, n - gap);
    return K2_OK;
}

/* Rewrites \s, \S and $ as spec §4.6 requires. Returns NULL (with err) for
 * what PCRE2 cannot express faithfully. *has_intersection reports `&&` in a class. */
static char *regex_rewrite(const char *p, size_t n, bool *has_intersection, const char *what, k2_error *err) {
    tok_buf b = {0};
    bool in_class = false;
    *has_intersection = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char d = p[i + 1];
            if (d == 's') tok_buf_add(&b, in_class ? WS : "[" WS "]", strlen(in_class ? WS : "[" WS "]"));
            else if (d == 'S') {
                if (in_class) {
                    tok_buf_free(&b);
                    k2_err(err, K2_EUNSUPPORTED, "%s: \\S inside a character class cannot be expressed", what);
                    return NULL;
                }
                tok_buf_add(&b, "[^" WS "]", strlen("[^" WS "]"));
            } else tok_buf_add(&b, p + i, 2);
            i++;
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            tok_buf_addc(&b, c);
            if (i + 1 < n && p[i + 1] == '^') tok_buf_addc(&b, p[++i]);
            if (i + 1 < n && p[i + 1] == ']') tok_buf_addc(&b, p[++i]);
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {
            /* POSIX class [:name:] */
            const char *end = memchr(p + i, ']', n - i);
            size_t k = end ? (size_t)(end - p) : n - 1;
            tok_buf_add(&b, p + i, k - i + 1);
            i = k;
            continue;
        }
        if (in_class && c == '&' && i + 1 < n && p[i + 1] == '&') *has_intersection = true;
        if (in_class && c == ']') in_class = false;
        if (!in_class && c == '$') {
            tok_buf_add(&b, "\\z", 2);
            continue;
        }
        tok_buf_addc(&b, c);
    }
    if (!b.p) tok_buf_add(&b, "", 0);
    return b.p;
}

k2_status tok_add_step(k2_tokenizer *t, tok_step step, k2_error *err) {
    tok_step *s = realloc(t->steps, (t->n_steps + 1) * sizeof *s);
    if (!s) {
        pcre2_code_free(step.re);
        return k2_err(err, K2_ENOMEM, "out of memory");
    }
    t->steps = s;
    t->steps[t->n_steps++] = step;
    return K2_OK;
}

/* Compiles a pattern from a vocabulary file into a split step. A pattern equal to
 * Kimi's original becomes the Kimi matcher; other `&&` patterns are refused. */
k2_status tok_add_regex_step(k2_tokenizer *t, const char *pattern, size_t len, int behavior, bool invert,
                             const char *what, k2_error *err) {
    if (len == strlen(tok_kimi_pattern_original) && memcmp(pattern, tok_kimi_pattern_original, len) == 0 &&
        behavior == TOK_SPLIT_ISOLATED && !invert)
        return tok_add_step(t, (tok_step){.kind = TOK_STEP_KIMI}, err);
    bool inter;
    char *rw = regex_rewrite(pattern, len, &inter, what, err);
    if (!rw) return err ? err->status : K2_EUNSUPPORTED;
    if (inter) {
        free(rw);
        return k2_err(err, K2_EUNSUPPORTED,
                      "%s: the regex uses class intersection (&&), which PCRE2 would silently misread", what);
    }
    tok_step st = {.kind = TOK_STEP_REGEX, .behavior = behavior, .invert = invert};
    k2_status s = tok_compile_regex(rw, strlen(rw), &st.re, what, err);
    free(rw);
    if (s) return s;
    return tok_add_step(t, st, err);
}

/* §4.6 lists, original spelling (rewritten at load). */
#define GPT2_RE "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
static const char *const re_gpt2[] = {GPT2_RE, NULL};
static const char *const re_starcoder[] = {"\\p{N}", GPT2_RE, NULL};
static const char *const re_falcon[] = {"[\\p{P}\\$\\+<=>\\^~\\|`]+",
                                        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
                                        "[0-9][0-9][0-9]", NULL};
static const char *const re_llama3[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_qwen2[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_qwen35[] = {
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_deepseek_v3[] = {
    "\\p{N}{1,3}", "[\\x{4E00}-\\x{9FA5}\\x{3040}-\\x{309F}\\x{30A0}-\\x{30FF}]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
    NULL};
static const char *const re_deepseek_coder[] = {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+",
                                                "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
                                                "\\p{N}", NULL};
static const char *const re_deepseek_llm[] = {
    "[\\r\\n]",
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}\\x{1E900}-\\x{1E943}]+",
    "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+",
    "\\s+$",
    "[\\x{4E00}-\\x{9FA5}\\x{800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+",
    "\\p{N}+",
    NULL};
static const char *const re_default[] = {"[\\p{P}\\$\\+<=>\\^~\\|]+",
                                         "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)",
                                         "\\p{N}+", "[0-9][0-9][0-9]", NULL};

static const struct {
    const char *names; /* space-separated, with a space at each end */
    const char *const *regexes;
    bool ignore_merges;
} PRE_TABLE[] = {
    {" gpt-2 mpt olmo jais phi-2 jina-es jina-de ", re_gpt2, false},
    {" starcoder refact command-r smollm codeshell exaone minerva-7b mellum2 ", re_starcoder, false},
    {" falcon ", re_falcon, false},
    {" llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano ", re_llama3, true},
    {" qwen2 deepseek-r1-qwen stablelm2 hunyuan solar-open ", re_qwen2, false},
    {" qwen35 ", re_qwen35, false},
    {" deepseek-v3 ", re_deepseek_v3, false},
    {" deepseek-coder ", re_deepseek_coder, false},
    {" deepseek-llm ", re_deepseek_llm, false},
    {" default ", re_default, false},
};

k2_status tok_set_pre_by_name(k2_tokenizer *t, const char *name, k2_error *err) {
    free(t->pre_name);
    t->pre_name = k2_strdup(name);
    if (strcmp(name, "kimi-k2") == 0) {
        k2_status st = tok_add_step(t, (tok_step){.kind = TOK_STEP_KIMI_CHUNK}, err);
        if (st) return st;
        return tok_add_step(t, (tok_step){.kind = TOK_STEP_KIMI}, err);
    }
    char key[128];
    if (strlen(name) + 3 > sizeof key || strchr(name, ' '))
        return k2_err(err, K2_EUNSUPPORTED, "%s: unknown pre-tokenizer \"%s\"", t->source, name);
    snprintf(key, sizeof key, " %s ", name);
    for (size_t i = 0; i < K2_ARRAY_LEN(PRE_TABLE); i++) {
        if (!strstr(PRE_TABLE[i].names, key)) continue;
        for (const char *const *re = PRE_TABLE[i].regexes; *re; re++) {
            char what[256];
            snprintf(what, sizeof what, "%s: pre-tokenizer %s", t->source, name);
            k2_status st = tok_add_regex_step(t, *re, strlen(*re), TOK_SPLIT_ISOLATED, false, what, err);
            if (st) return st;
        }
        t->ignore_merges = PRE_TABLE[i].ignore_merges;
        return K2_OK;
    }
    return k2_err(err, K2_EUNSUPPORTED,
                  "%s: tokenizer.ggml.pre: unknown pre-tokenizer \"%s\" (k2 knows kimi-k2, deepseek-v3, "
                  "deepseek-llm, deepseek-coder, gpt-2 and the other names of spec §4.6)",
                  t->source, name);
}
