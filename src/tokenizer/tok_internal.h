/* tokenizer/: byte-level BPE (one core, three loaders), pre-tokenizers, special
 * tokens, detokenizer and the Kimi K2 chat format (spec/tokenizer.md). */
#ifndef K2_TOK_INTERNAL_H
#define K2_TOK_INTERNAL_H

#include "base/base.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* ---- Unicode classes (tok_unicode.c, data in tok_unicode_data.c) ---- */
enum {
    TOK_U_HAN = 1,   /* Script=Han */
    TOK_U_UP = 2,    /* Lu, Lt */
    TOK_U_LO = 4,    /* Ll */
    TOK_U_BOTH = 8,  /* Lm, Lo, Mn, Mc, Me, minus Han */
    TOK_U_L = 16,    /* any letter */
    TOK_U_N = 32,    /* Nd, Nl, No */
    TOK_U_WS = 64,   /* White_Space */
};
typedef struct tok_uni_range {
    uint32_t lo, hi;
    uint8_t flags;
} tok_uni_range;
extern const tok_uni_range tok_uni_ranges[];
extern const size_t tok_uni_n_ranges;

/* Flat table of class bits per code point (built once, thread-safe). */
const uint8_t *tok_uni_table(void);

/* Decodes one UTF-8 sequence from valid UTF-8 at s (n > 0 bytes left); returns its length. */
static inline int tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    if (c < 0xE0 && n >= 2) { *cp = ((c & 0x1F) << 6) | (s[1] & 0x3F); return 2; }
    if (c < 0xF0 && n >= 3) { *cp = ((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F); return 3; }
    if (n >= 4) {
        *cp = ((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) | (s[3] & 0x3F);
        return 4;
    }
    *cp = 0xFFFD;
    return 1;
}
/* Length of the valid UTF-8 sequence at s, 0 if ill-formed, -k if a valid but
 * incomplete prefix of k bytes ends the buffer (spec §7.3). */
int tok_utf8_check(const unsigned char *s, size_t n);
/* Length of the maximal ill-formed subpart at s (>= 1), for U+FFFD substitution. */
size_t tok_utf8_bad_len(const unsigned char *s, size_t n);
/* Appends the bytes of s with each maximal ill-formed subpart replaced by U+FFFD. */
typedef struct tok_buf {
    char *p;
    size_t len, cap;
} tok_buf;
bool tok_buf_reserve(tok_buf *b, size_t extra);
bool tok_buf_add(tok_buf *b, const void *p, size_t n);
bool tok_buf_addc(tok_buf *b, char c);
bool tok_buf_addf(tok_buf *b, const char *fmt, ...) K2_PRINTF(2, 3);
void tok_buf_free(tok_buf *b);
bool tok_utf8_sanitize(tok_buf *out, const char *s, size_t n);
bool tok_utf8_valid(const char *s, size_t n);
void tok_utf8_put(tok_buf *b, uint32_t cp);

/* GPT-2 byte-to-unicode alphabet (spec §4.3). */
uint32_t tok_byte_to_cp(uint8_t b);
/* -1 when the code point is not in the alphabet. */
int tok_cp_to_byte(uint32_t cp);
/* Converts a byte-level token text to raw bytes; false if a character is outside the alphabet. */
bool tok_unbyte(const char *s, size_t n, tok_buf *out);

/* ---- token table ---- */
enum tok_type {
    TOK_UNDEFINED = 0, TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3,
    TOK_USER = 4, TOK_UNUSED = 5, TOK_BYTE = 6,
};

/* Map from byte strings (stored in the tokenizer's blob) to ids. */
typedef struct tok_bmap {
    uint32_t *slots; /* id + 1, 0 = empty */
    uint32_t *fp;    /* 32-bit hash fingerprints */
    size_t cap;
} tok_bmap;

/* Map (left id, right id) -> (rank, merged id). */
typedef struct tok_pmap {
    uint64_t *keys;  /* (a << 32 | b) + 1, 0 = empty */
    uint32_t *rank;
    int32_t *id;
    size_t cap, count;
} tok_pmap;

/* An added/special token found by text (spec §3.5, §5.2). */
typedef struct tok_added {
    int32_t id;
    uint32_t off, len;   /* text in blob */
    uint8_t first;       /* first byte, for the scanner */
    bool control;        /* found only with parse_special */
    bool lstrip, rstrip, single_word, normalized;
} tok_added;

/* Pre-tokenizer steps, applied in order (spec §2, §4.6, §5.4). */
enum tok_step_kind {
    TOK_STEP_KIMI,       /* hand-written Kimi matcher, §2.5 */
    TOK_STEP_KIMI_CHUNK, /* reference chunking, §2.7 */
    TOK_STEP_REGEX,      /* PCRE2 split */
    TOK_STEP_DIGITS,     /* HF Digits */
    TOK_STEP_PREFIX_SPACE, /* HF ByteLevel add_prefix_space */
};
enum tok_split_behavior { TOK_SPLIT_ISOLATED, TOK_SPLIT_REMOVED };
typedef struct tok_step {
    int kind;
    pcre2_code *re;
    int behavior;
    bool invert;
    bool individual; /* digits */
} tok_step;

/* Normalizers of tokenizer.json (§5.3). */
enum tok_norm_kind { TOK_NORM_NFC, TOK_NORM_NFKC, TOK_NORM_NFD, TOK_NORM_NFKD, TOK_NORM_REPLACE, TOK_NORM_PREPEND };
typedef struct tok_norm {
    int kind;
    pcre2_code *re;     /* Replace with a regex */
    char *pattern;      /* Replace with a string */
    size_t pattern_len;
    char *content;      /* replacement / prepended text */
    size_t content_len;
} tok_norm;

#define TOK_CACHE_SLOTS 8192
#define TOK_CACHE_MAXLEN 23
typedef struct tok_cache_entry {
    uint8_t len;            /* piece length; 0 = empty slot */
    uint8_t n_ids;          /* ids stored (<= 4) */
    char key[TOK_CACHE_MAXLEN];
    int32_t ids[4];
} tok_cache_entry;

struct k2_tokenizer {
    int32_t n_vocab;
    uint8_t *type;         /* per id, enum tok_type */
    uint32_t *off, *len;   /* per id: bytes (NORMAL) or text (others) in blob */
    char *blob;
    size_t blob_len, blob_cap;

    int32_t n_base;        /* ids below this are base tokens (informational) */
    tok_bmap vocab;        /* NORMAL token bytes -> id */
    int32_t byte_id[256];  /* single-byte token ids, -1 if absent */
    tok_pmap merges;
    bool ignore_merges;    /* whole-piece shortcut (tiktoken, HF ignore_merges) */
    int32_t unk_id;        /* HF unk_token, -1 if none */
    bool fuse_unk;

    tok_added *added;      /* sorted by text, for the scanner */
    size_t n_added;
    bool any_user;         /* USER_DEFINED tokens exist */
    uint8_t added_first[256]; /* bit 1: some control token starts with byte; 2: some user token */
    bool hf_added_semantics; /* lstrip/rstrip/single_word/normalized honoured */

    tok_step *steps;
    size_t n_steps;
    tok_norm *norms;
    size_t n_norms;

    int32_t bos, eos, eot, eom, pad;
    bool add_bos, add_eos;
    int32_t stop[8];
    size_t n_stop;
    char *pre_name;
    char *source;          /* file name for messages */
    char *chat_template;   /* from GGUF, may be NULL */
    int chat_kind;         /* enum k2_chat_format */

    tok_cache_entry *cache; /* per tokenizer, used only when single-threaded encode is requested */
};

/* Construction helpers (tok_vocab.c). */
k2_status tok_new(int32_t n_vocab, const char *source, k2_tokenizer **out, k2_error *err);
/* Stores bytes for id in the blob. */
k2_status tok_set_token(k2_tokenizer *t, int32_t id, const void *p, size_t n, int type, k2_error *err);
static inline const char *tok_text(const k2_tokenizer *t, int32_t id) { return t->blob + t->off[id]; }
/* Builds the vocab map (NORMAL tokens), byte ids, checks the 243 required bytes, and the added-token table. */
k2_status tok_finish(k2_tokenizer *t, k2_error *err);
int32_t tok_vocab_find(const k2_tokenizer *t, const void *p, size_t n);
k2_status tok_pmap_put(tok_pmap *m, int32_t a, int32_t b, uint32_t rank, int32_t id, bool *dup);
/* Derives merges from ranks: (A, B) -> (rank(A‖B), id) for every split of every token (§1.1, §3.2). */
k2_status tok_merges_from_ranks(k2_tokenizer *t, k2_error *err);
void tok_set_stops(k2_tokenizer *t);

/* Pre-tokenizer construction (tok_pretok.c). */
k2_status tok_compile_regex(const char *pattern, size_t len, pcre2_code **out, const char *what, k2_error *err);
k2_status tok_add_step(k2_tokenizer *t, tok_step step, k2_error *err);
k2_status tok_add_regex_step(k2_tokenizer *t, const char *pattern, size_t len, int behavior, bool invert,
                             const char *what, k2_error *err);
k2_status tok_set_pre_by_name(k2_tokenizer *t, const char *name, k2_error *err);
extern const char *const tok_kimi_pattern_original;
extern const char *const tok_kimi_pattern_pcre2;

/* Encoding an ordinary text run (tok_encode.c). */
typedef struct tok_ids {
    int32_t *v;
    size_t n, cap;
} tok_ids;
bool tok_ids_push(tok_ids *ids, int32_t id);
k2_status tok_encode_run(const k2_tokenizer *t, const char *s, size_t n, tok_ids *out, k2_error *err);
k2_status tok_bpe(const k2_tokenizer *t, const unsigned char *s, size_t n, tok_ids *out, k2_error *err);
/* Splits valid UTF-8 s[0..n) with the Kimi matcher; calls emit for each pre-token. */
typedef k2_status (*tok_emit_fn)(void *ctx, const char *s, size_t n);
k2_status tok_kimi_split(const char *s, size_t n, tok_emit_fn emit, void *ctx);
k2_status tok_regex_split(const pcre2_code *re, const char *s, size_t n, tok_emit_fn emit, void *ctx, k2_error *err);

/* Chat (tok_chat.c). */
bool tok_is_kimi_template(const char *tmpl);

#endif
