/* k2 — a local engine for Kimi K2 (deepseek2 GGUF models).
 *
 * This is the only public header. Conventions (see docs/architecture.md):
 *  - every fallible function returns a k2_status and fills a caller-provided
 *    k2_error (which may be NULL) with a sentence naming the file/URL/field;
 *  - objects have explicit lifetimes: k2_x_open/new ... k2_x_close/free;
 *  - option structs are initialised with k2_x_options_init() to documented defaults.
 *
 * The header is organised in sections, one per subsystem; each section is
 * owned by its module and kept apart from the others.
 */
#ifndef K2_H
#define K2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ========================================================================
 * Version, status codes and errors (src/base)
 * ======================================================================== */

const char *k2_version(void);

typedef enum k2_status {
    K2_OK = 0,
    K2_EINVAL,        /* bad argument or malformed input */
    K2_EIO,           /* operating-system I/O failure */
    K2_EFORMAT,       /* a file or document is malformed */
    K2_ENOMEM,        /* out of memory */
    K2_EUNSUPPORTED,  /* valid but not supported by k2 */
    K2_ENOTFOUND,     /* file, key, tensor, repo ... does not exist */
    K2_ENETWORK,      /* connection or protocol failure */
    K2_ECANCELLED,    /* the operation was cancelled */
    K2_ERANGE,        /* a value is out of its allowed range (e.g. context) */
    K2_ETYPE,         /* a value has the wrong type */
    K2_EAUTH,         /* authentication / authorisation failure */
    K2_EINTEGRITY,    /* size or checksum mismatch */
    K2_ETIMEOUT,      /* an operation took too long */
    K2_EBUSY,         /* resource busy (locks, full queues) */
    K2_EINTERNAL      /* a bug in k2 */
} k2_status;

#define K2_ERROR_MESSAGE_MAX 1024

typedef struct k2_error {
    k2_status status;
    char message[K2_ERROR_MESSAGE_MAX];
} k2_error;

/* Resets an error to K2_OK with an empty message. */
void k2_error_clear(k2_error *err);
/* A short, stable name for a status ("EFORMAT"). */
const char *k2_status_name(k2_status status);

/* A view of bytes that need not be NUL-terminated (e.g. strings inside a mapped file). */
typedef struct k2_str {
    const char *ptr;
    size_t len;
} k2_str;

/* ========================================================================
 * Tensor types (src/quant)
 * ======================================================================== */

/* ggml type ids as stored in GGUF files (spec/quant-types.md §1). */
typedef enum k2_type {
    K2_TYPE_F32 = 0, K2_TYPE_F16 = 1, K2_TYPE_Q4_0 = 2, K2_TYPE_Q4_1 = 3,
    K2_TYPE_Q5_0 = 6, K2_TYPE_Q5_1 = 7, K2_TYPE_Q8_0 = 8, K2_TYPE_Q8_1 = 9,
    K2_TYPE_Q2_K = 10, K2_TYPE_Q3_K = 11, K2_TYPE_Q4_K = 12, K2_TYPE_Q5_K = 13,
    K2_TYPE_Q6_K = 14, K2_TYPE_Q8_K = 15, K2_TYPE_IQ2_XXS = 16, K2_TYPE_IQ2_XS = 17,
    K2_TYPE_IQ3_XXS = 18, K2_TYPE_IQ1_S = 19, K2_TYPE_IQ4_NL = 20, K2_TYPE_IQ3_S = 21,
    K2_TYPE_IQ2_S = 22, K2_TYPE_IQ4_XS = 23, K2_TYPE_I8 = 24, K2_TYPE_I16 = 25,
    K2_TYPE_I32 = 26, K2_TYPE_I64 = 27, K2_TYPE_F64 = 28, K2_TYPE_IQ1_M = 29,
    K2_TYPE_BF16 = 30, K2_TYPE_TQ1_0 = 34, K2_TYPE_TQ2_0 = 35, K2_TYPE_MXFP4 = 39,
    K2_TYPE_NVFP4 = 40, K2_TYPE_Q1_0 = 41, K2_TYPE_Q2_0 = 42,
    K2_TYPE_COUNT = 43
} k2_type;

/* Name ("Q4_K"), or NULL for an id that is out of range or removed. */
const char *k2_type_name(uint32_t type);
/* Elements per block and bytes per block; 0 for out-of-range or removed ids. */
int64_t k2_type_block_size(uint32_t type);
int64_t k2_type_block_bytes(uint32_t type);
/* True when a tensor of this type may appear in a GGUF file k2 accepts. */
bool k2_type_is_valid(uint32_t type);
/* Bytes taken by a row of n elements (n must be a multiple of the block size). */
int64_t k2_type_row_bytes(uint32_t type, int64_t n);

/* Dequantizes n elements (a whole number of blocks) of `type` at src into f32 dst.
 * This is the scalar reference path, bit-identical to the gguf Python package. */
k2_status k2_dequantize(uint32_t type, const void *src, float *dst, int64_t n, k2_error *err);

/* ========================================================================
 * GGUF files (src/gguf)
 * ======================================================================== */

typedef enum k2_gguf_type {
    K2_GGUF_UINT8 = 0, K2_GGUF_INT8 = 1, K2_GGUF_UINT16 = 2, K2_GGUF_INT16 = 3,
    K2_GGUF_UINT32 = 4, K2_GGUF_INT32 = 5, K2_GGUF_FLOAT32 = 6, K2_GGUF_BOOL = 7,
    K2_GGUF_STRING = 8, K2_GGUF_ARRAY = 9, K2_GGUF_UINT64 = 10, K2_GGUF_INT64 = 11,
    K2_GGUF_FLOAT64 = 12
} k2_gguf_type;

const char *k2_gguf_type_name(k2_gguf_type type);

/* One metadata value. Scalars are widened (u8..u64 in u64, i8..i64 in i64,
 * f32/f64 in f64) but `type` keeps the stored type. Strings and primitive
 * array data point into the mapped file and stay valid until k2_gguf_close. */
typedef struct k2_gguf_value {
    k2_gguf_type type;
    union {
        uint64_t u64;
        int64_t i64;
        double f64;
        bool b;
        k2_str str;
        struct {
            k2_gguf_type type;                    /* element type */
            uint64_t n;                           /* element count */
            const void *data;                     /* primitive elements, packed little-endian */
            const k2_str *strings;                /* when type == STRING */
            const struct k2_gguf_value *arrays;   /* when type == ARRAY (nested arrays) */
        } arr;
    } v;
} k2_gguf_value;

typedef struct k2_gguf_tensor {
    const char *name;
    uint32_t type;       /* k2_type */
    uint32_t n_dims;
    int64_t ne[4];       /* ne[0] is the contiguous dimension; unused dims are 1 */
    uint64_t offset;     /* relative to its shard's data section */
    uint64_t nbytes;
    uint32_t shard;      /* index into the shard list */
    const void *data;    /* mapped, read-only */
} k2_gguf_tensor;

typedef struct k2_gguf k2_gguf;

/* Opens a GGUF file (mmap, full validation). If the name is a split shard
 * (`...-0000N-of-0000M.gguf`) or the file carries split.count > 1, all shards
 * are opened into one tensor namespace; metadata comes from the first shard. */
k2_status k2_gguf_open(const char *path, k2_gguf **out, k2_error *err);
/* Parses a GGUF image held in memory (not copied; must outlive the handle). */
k2_status k2_gguf_open_memory(const void *data, size_t size, const char *name,
                              k2_gguf **out, k2_error *err);
void k2_gguf_close(k2_gguf *g);

uint32_t k2_gguf_version(const k2_gguf *g);
uint32_t k2_gguf_alignment(const k2_gguf *g);
uint32_t k2_gguf_shard_count(const k2_gguf *g);
const char *k2_gguf_shard_path(const k2_gguf *g, uint32_t shard);
uint64_t k2_gguf_shard_size(const k2_gguf *g, uint32_t shard);
uint64_t k2_gguf_shard_data_offset(const k2_gguf *g, uint32_t shard);

int64_t k2_gguf_kv_count(const k2_gguf *g);
const char *k2_gguf_kv_key(const k2_gguf *g, int64_t i);
const k2_gguf_value *k2_gguf_kv_value(const k2_gguf *g, int64_t i);
/* NULL when absent. */
const k2_gguf_value *k2_gguf_find(const k2_gguf *g, const char *key);

/* Typed accessors: K2_ENOTFOUND when absent, K2_ETYPE when the stored type
 * cannot represent the request (integers convert only when the value fits). */
k2_status k2_gguf_get_u32(const k2_gguf *g, const char *key, uint32_t *out, k2_error *err);
k2_status k2_gguf_get_i32(const k2_gguf *g, const char *key, int32_t *out, k2_error *err);
k2_status k2_gguf_get_u64(const k2_gguf *g, const char *key, uint64_t *out, k2_error *err);
k2_status k2_gguf_get_i64(const k2_gguf *g, const char *key, int64_t *out, k2_error *err);
k2_status k2_gguf_get_f32(const k2_gguf *g, const char *key, float *out, k2_error *err);
k2_status k2_gguf_get_f64(const k2_gguf *g, const char *key, double *out, k2_error *err);
k2_status k2_gguf_get_bool(const k2_gguf *g, const char *key, bool *out, k2_error *err);
k2_status k2_gguf_get_str(const k2_gguf *g, const char *key, k2_str *out, k2_error *err);
/* Any array; `elem_type` (or -1 for any) is checked against the stored element type. */
k2_status k2_gguf_get_array(const k2_gguf *g, const char *key, int elem_type,
                            const k2_gguf_value **out, k2_error *err);

int64_t k2_gguf_tensor_count(const k2_gguf *g);
const k2_gguf_tensor *k2_gguf_tensor_at(const k2_gguf *g, int64_t i);
/* NULL when absent. */
const k2_gguf_tensor *k2_gguf_find_tensor(const k2_gguf *g, const char *name);

/* ---- writer (tests, tools, benchmark models) ---- */
typedef struct k2_gguf_writer k2_gguf_writer;

k2_gguf_writer *k2_gguf_writer_new(void);
void k2_gguf_writer_free(k2_gguf_writer *w);
/* GGUF version to write (2 or 3; default 3). */
void k2_gguf_writer_set_version(k2_gguf_writer *w, uint32_t version);
/* Setting an existing key replaces its value in place (order is kept). */
k2_status k2_gguf_writer_set_u8(k2_gguf_writer *w, const char *key, uint8_t v);
k2_status k2_gguf_writer_set_i8(k2_gguf_writer *w, const char *key, int8_t v);
k2_status k2_gguf_writer_set_u16(k2_gguf_writer *w, const char *key, uint16_t v);
k2_status k2_gguf_writer_set_i16(k2_gguf_writer *w, const char *key, int16_t v);
k2_status k2_gguf_writer_set_u32(k2_gguf_writer *w, const char *key, uint32_t v);
k2_status k2_gguf_writer_set_i32(k2_gguf_writer *w, const char *key, int32_t v);
k2_status k2_gguf_writer_set_u64(k2_gguf_writer *w, const char *key, uint64_t v);
k2_status k2_gguf_writer_set_i64(k2_gguf_writer *w, const char *key, int64_t v);
k2_status k2_gguf_writer_set_f32(k2_gguf_writer *w, const char *key, float v);
k2_status k2_gguf_writer_set_f64(k2_gguf_writer *w, const char *key, double v);
k2_status k2_gguf_writer_set_bool(k2_gguf_writer *w, const char *key, bool v);
k2_status k2_gguf_writer_set_str(k2_gguf_writer *w, const char *key, const char *v);
/* Array of primitive elements (packed, native little-endian). */
k2_status k2_gguf_writer_set_array(k2_gguf_writer *w, const char *key, k2_gguf_type elem_type,
                                   const void *data, uint64_t n);
k2_status k2_gguf_writer_set_str_array(k2_gguf_writer *w, const char *key,
                                       const char *const *strs, uint64_t n);
/* Any value, including nested arrays (deep-copied). */
k2_status k2_gguf_writer_set_value(k2_gguf_writer *w, const char *key, const k2_gguf_value *v);
/* Adds a tensor; `data` (k2_type_row_bytes(type, ne[0]) * ne[1]*ne[2]*ne[3] bytes) is
 * borrowed until k2_gguf_writer_write returns. Unused dims must be 1. */
k2_status k2_gguf_writer_add_tensor(k2_gguf_writer *w, const char *name, uint32_t type,
                                    uint32_t n_dims, const int64_t *ne, const void *data,
                                    k2_error *err);
/* Writes atomically (temp file + rename). Alignment comes from general.alignment (default 32). */
k2_status k2_gguf_writer_write(k2_gguf_writer *w, const char *path, k2_error *err);

/* ========================================================================
 * Model and inference (src/model)
 * ======================================================================== */

/* A loaded deepseek2 model (spec/model-deepseek2.md). Weights stay in the mapped GGUF
 * (tensor data pointers are used in place); a model is read-only after loading and may be
 * shared by several contexts. */
typedef struct k2_model k2_model;
/* Evaluation state of one sequence: the compressed MLA cache ([latent | rope key] row per
 * token and layer, spec §4.5/§8.1), scratch buffers and worker threads. */
typedef struct k2_context k2_context;

typedef struct k2_model_options {
    /* YaRN beta overrides; negative = take the file's rope.scaling.yarn_beta_fast/slow,
     * default 32/1 when absent (spec §4.3.4). */
    float yarn_beta_fast;
    float yarn_beta_slow;
    /* Force llama.cpp's hard-wired beta 32/1 (for comparing against unmodified llama.cpp). */
    bool llama_compat_beta;
} k2_model_options;

void k2_model_options_init(k2_model_options *opt);

/* Hyperparameters as read from metadata and the tensors present (spec §1.2, §2.3). */
typedef struct k2_model_hparams {
    uint32_t n_vocab;           /* V: length of tokenizer.ggml.tokens (else token_embd rows) */
    uint32_t n_ctx_train;       /* context_length */
    uint32_t n_embd;            /* d */
    uint32_t n_layer;           /* L = block_count - nextn_predict_layers */
    uint32_t n_layer_dense;     /* L_d */
    uint32_t n_head;            /* H */
    uint32_t q_lora_rank;       /* r_q; 0 = plain attn_q */
    uint32_t kv_lora_rank;      /* d_c */
    uint32_t head_dim_k;        /* d_k = d_n + d_r */
    uint32_t head_dim_v;        /* d_v */
    uint32_t rope_dim;          /* d_r */
    uint32_t n_ff;              /* f_d */
    uint32_t n_ff_exp;          /* f_e */
    uint32_t n_expert;          /* E */
    uint32_t n_expert_used;     /* K */
    uint32_t n_expert_shared;   /* S */
    uint32_t n_expert_groups;   /* G */
    uint32_t n_expert_groups_used; /* G_k */
    uint32_t gating_func;       /* 1 softmax, 2 sigmoid, 3 softmax over selected, 4 sqrt-softplus */
    bool expert_weights_norm;
    bool has_expert_bias;
    bool legacy_kv_b;           /* file has attn_kv_b (split at load) */
    bool tied_output;           /* no output.weight: the head is token_embd */
    bool yarn;
    float expert_weights_scale; /* rho (0 or 1: not applied) */
    float rms_eps;
    float rope_freq_base;
    float rope_scale;           /* s (1 when unscaled) */
    uint32_t yarn_orig_ctx;     /* L0 */
    float yarn_beta_fast, yarn_beta_slow;
    float yarn_mscale_all_dim;  /* mu */
    float kq_scale;             /* tau, spec §4.4 */
    float rope_mag;             /* r, spec §4.4 (1 for every known model) */
} k2_model_hparams;

/* Opens the GGUF at `path` and binds the model (opt may be NULL for defaults). Refuses
 * other architectures and mis-shaped or missing tensors with a message naming them. */
k2_status k2_model_load(const char *path, const k2_model_options *opt, k2_model **out, k2_error *err);
/* Binds a model to an already opened GGUF; the model takes ownership of `g` on success
 * and on failure alike. */
k2_status k2_model_from_gguf(k2_gguf *g, const k2_model_options *opt, k2_model **out, k2_error *err);
/* Models are reference counted: loading gives one reference, k2_model_ref adds one and
 * k2_model_free drops one; the last one frees the model (contexts must be gone by then). */
void k2_model_free(k2_model *m);
k2_model *k2_model_ref(k2_model *m);

const k2_model_hparams *k2_model_get_hparams(const k2_model *m);
const k2_gguf *k2_model_gguf(const k2_model *m);
uint32_t k2_model_n_vocab(const k2_model *m);
uint32_t k2_model_n_ctx_train(const k2_model *m);
/* Warnings found while loading (e.g. a Kimi-K2-looking file without YaRN beta keys);
 * "" when none. */
const char *k2_model_warnings(const k2_model *m);

typedef enum k2_cache_type { K2_CACHE_F16 = 0, K2_CACHE_F32 = 1 } k2_cache_type;

typedef struct k2_context_options {
    uint32_t n_ctx;             /* 0 = min(n_ctx_train, 4096) */
    k2_cache_type cache_type;   /* default F16 */
    bool exact;                 /* true: dequantize weights, f32 activations (golden-exact
                                 * semantics); false: fast mode (quantized activations where
                                 * the kernels exist). Default false. */
    int n_threads;              /* 0 = number of physical cores */
} k2_context_options;

void k2_context_options_init(k2_context_options *opt);
k2_status k2_context_new(k2_model *m, const k2_context_options *opt, k2_context **out, k2_error *err);
void k2_context_free(k2_context *ctx);

uint32_t k2_context_n_ctx(const k2_context *ctx);
/* Number of tokens currently in the cache (the position of the next token). */
uint32_t k2_context_length(const k2_context *ctx);
int k2_context_n_threads(const k2_context *ctx);

typedef enum k2_logits_rows {
    K2_ROWS_NONE = 0,   /* only fill the cache */
    K2_ROWS_LAST = 1,   /* one row: the last token's logits */
    K2_ROWS_ALL = 2     /* one row per token */
} k2_logits_rows;

/* Evaluates n tokens appended at the current cache length (positions len ... len+n-1),
 * causally attending to everything already cached. Writes the requested logit rows
 * (n_vocab floats each) into `logits` (may be NULL; the last row is also kept and
 * returned by k2_context_logits). K2_ERANGE if the cache would overflow n_ctx, K2_EINVAL
 * for token ids outside [0, n_vocab). On error the cache length is unchanged. */
k2_status k2_eval(k2_context *ctx, const int32_t *tokens, uint32_t n, k2_logits_rows rows,
                  float *logits, k2_error *err);
/* Continuous batching: evaluates n_seq sequences, each in its own context of one model
 * (all exact or all fast), in ONE forward pass: sequence q appends n_tokens[q] tokens
 * (tokens[q]; 0 is allowed) at its own cache length, as k2_eval would (several tokens:
 * a prompt chunk; one: a decode step). Every weight is read once for all rows; only the
 * attention is per sequence, each against its own cache. With rows == K2_ROWS_LAST each
 * context's k2_context_logits then holds its last token's logits (contexts given no
 * tokens keep theirs). rows must be NONE or LAST. Results equal evaluating each sequence
 * alone (bit for bit in exact mode). The first context's threads run the batch; no context
 * may be in use elsewhere meanwhile. K2_EINVAL for a repeated context, mixed models or
 * modes, or a bad token id; K2_ERANGE if a sequence would overflow its context (the
 * message names the sequence). Nothing is evaluated when the check fails; on any error
 * every cache length is unchanged. */
k2_status k2_eval_batch(k2_context *const *ctxs, const int32_t *const *tokens, const uint32_t *n_tokens, int n_seq,
                        k2_logits_rows rows, k2_error *err);
/* The last token's logits from the latest k2_eval with rows != NONE (NULL before). */
const float *k2_context_logits(const k2_context *ctx);
/* Keeps the first n_keep cached tokens (prefix reuse); K2_ERANGE if n_keep > length. */
k2_status k2_context_truncate(k2_context *ctx, uint32_t n_keep, k2_error *err);
void k2_context_reset(k2_context *ctx);

/* ========================================================================
 * Tokenizer and chat format (src/tokenizer)
 * ======================================================================== */

/* Byte-level BPE tokenizers (spec/tokenizer.md). One tokenizer is immutable after
 * loading and may be used from several threads at once. */
typedef struct k2_tokenizer k2_tokenizer;

/* From a GGUF's tokenizer.ggml.* keys (model "gpt2"; pre-tokenizers kimi-k2,
 * deepseek-v3, deepseek-llm, deepseek-coder, gpt-2 and the other names of spec §4.6).
 * The handle does not keep the GGUF; it may be closed afterwards. */
k2_status k2_tokenizer_from_gguf(const k2_gguf *g, k2_tokenizer **out, k2_error *err);
/* Kimi K2's own files: `tiktoken.model` plus the special tokens, read from
 * `special_path`: a JSON map {"text": id} (special_tokens.json) or a
 * tokenizer_config.json with `added_tokens_decoder`. NULL: looks beside the model for
 * special_tokens.json, then tokenizer_config.json. Uses the Kimi pre-tokenizer. */
k2_status k2_tokenizer_from_tiktoken(const char *model_path, const char *special_path,
                                     k2_tokenizer **out, k2_error *err);
/* A Hugging Face tokenizer.json (byte-level BPE subset, spec §5). */
k2_status k2_tokenizer_from_json(const char *path, k2_tokenizer **out, k2_error *err);
void k2_tokenizer_free(k2_tokenizer *t);

/* Total number of ids (base tokens + special/added tokens). */
int32_t k2_tokenizer_n_vocab(const k2_tokenizer *t);
/* Special ids; -1 when the vocabulary has none. */
int32_t k2_token_bos(const k2_tokenizer *t);
int32_t k2_token_eos(const k2_tokenizer *t);
int32_t k2_token_eot(const k2_tokenizer *t);
/* True when the vocabulary asks for BOS at the start of a sequence (never for Kimi). */
bool k2_tokenizer_adds_bos(const k2_tokenizer *t);
/* The pre-tokenizer's name ("kimi-k2", "deepseek-v3", "tokenizer.json", ...). */
const char *k2_tokenizer_pre_name(const k2_tokenizer *t);
/* Ids that end generation (Kimi: <|im_end|>, [EOS], [EOT], spec §6.6). */
size_t k2_tokenizer_stop_ids(const k2_tokenizer *t, const int32_t **ids);
bool k2_token_is_stop(const k2_tokenizer *t, int32_t id);
/* True for control tokens (special tokens that are hidden unless asked for). */
bool k2_token_is_special(const k2_tokenizer *t, int32_t id);
/* A token's raw bytes (base tokens) or text (special/added tokens); the view lives
 * as long as the tokenizer. K2_ERANGE for an id outside the vocabulary. */
k2_status k2_token_bytes(const k2_tokenizer *t, int32_t id, k2_str *out, k2_error *err);
/* The id of a special/added token text or of a base token's exact bytes; -1 if none. */
int32_t k2_token_find(const k2_tokenizer *t, const char *text, size_t len);

enum {
    K2_TOKENIZE_PARSE_SPECIAL = 1, /* special-token strings in the text become their ids */
    K2_TOKENIZE_ADD_SPECIAL = 2,   /* add BOS/EOS when the vocabulary asks for them */
};
/* Text to ids. Invalid UTF-8 is first repaired: each maximal ill-formed subsequence
 * becomes U+FFFD (as Python's decode(errors="replace") does, spec §3.6).
 * *ids is malloc'ed (free() it); it is NULL when *n is 0. */
k2_status k2_tokenize(const k2_tokenizer *t, const char *text, size_t len, unsigned flags,
                      int32_t **ids, size_t *n, k2_error *err);

enum {
    K2_DETOK_SKIP_SPECIAL = 1, /* control tokens decode to nothing */
    K2_DETOK_RAW = 2,          /* k2_detokenize: keep raw bytes (no U+FFFD repair) */
};
/* Ids to UTF-8 text (ill-formed sequences become U+FFFD). *out is malloc'ed and
 * NUL-terminated; K2_ERANGE for an id outside the vocabulary. */
k2_status k2_detokenize(const k2_tokenizer *t, const int32_t *ids, size_t n, unsigned flags,
                        char **out, size_t *len, k2_error *err);

/* Incremental detokenizer for streaming (spec §7.3): never emits part of a UTF-8
 * character, and holds back text that may still turn into a stop string. */
typedef struct k2_detok k2_detok;
k2_status k2_detok_new(const k2_tokenizer *t, unsigned flags, k2_detok **out, k2_error *err);
void k2_detok_free(k2_detok *d);
/* Adds a stop string: the text is cut before its first occurrence. */
k2_status k2_detok_add_stop(k2_detok *d, const char *s, size_t len, k2_error *err);
/* Feeds one id; *text receives the text that became safe to emit (valid until the
 * next call). *stopped (may be NULL) turns true once a stop string has been seen;
 * later pushes emit nothing. */
k2_status k2_detok_push(k2_detok *d, int32_t id, k2_str *text, bool *stopped, k2_error *err);
/* End of stream: emits everything held back (an incomplete character becomes U+FFFD). */
k2_status k2_detok_flush(k2_detok *d, k2_str *text, k2_error *err);

/* Chat format (spec §6). Strings are UTF-8, NUL-terminated; NULL means absent. */
typedef struct k2_chat_message {
    const char *role;            /* "system", "user", "assistant" or "tool" */
    const char *content;         /* text; NULL = none */
    const char *content_json;    /* instead of content: a JSON array of parts ({"type":"text","text":..}) */
    const char *name;            /* optional speaker name */
    const char *tool_call_id;    /* tool messages */
    const char *tool_calls_json; /* assistant: JSON array of OpenAI tool calls */
} k2_chat_message;

typedef enum k2_chat_format {
    K2_CHAT_KIMI_K2 = 0, /* Kimi-K2-Instruct, spec §6.2 */
} k2_chat_format;

/* The chat format the tokenizer's model uses: Kimi K2 when the vocabulary has the
 * Kimi turn tokens and any GGUF template is recognised as Kimi's; K2_EUNSUPPORTED
 * for a template k2 does not know (it is never guessed). */
k2_status k2_tokenizer_chat_format(const k2_tokenizer *t, k2_chat_format *out, k2_error *err);
/* Renders a conversation as text (tools_json: an OpenAI tools array or NULL).
 * *out is malloc'ed. */
k2_status k2_chat_render(const k2_chat_message *msgs, size_t n, const char *tools_json,
                         bool add_generation_prompt, char **out, k2_error *err);
/* Renders and tokenizes: special tokens are emitted as ids and the text between them
 * is tokenized as whole runs without parsing special strings (spec §6.5). */
k2_status k2_chat_tokenize(const k2_tokenizer *t, const k2_chat_message *msgs, size_t n,
                           const char *tools_json, bool add_generation_prompt,
                           int32_t **ids, size_t *n_ids, k2_error *err);

/* ========================================================================
 * Runtime, futures and the event loop (src/async, src/runtime)
 * ======================================================================== */

/* A runtime owns one event-loop thread (libuv) and a worker pool for blocking
 * chores (hashing, fsync, renames, directory scans). Asynchronous operations
 * (k2_hub_fetch, ...) run on it and report through futures. */
typedef struct k2_runtime k2_runtime;

typedef struct k2_runtime_options {
    int workers;   /* worker-pool threads; 0 = libuv's default (4, or UV_THREADPOOL_SIZE) */
} k2_runtime_options;

void k2_runtime_options_init(k2_runtime_options *o);
/* Starts the loop thread. `o` may be NULL for defaults. */
k2_status k2_runtime_new(const k2_runtime_options *o, k2_runtime **out, k2_error *err);
/* Cancels what is still running on the runtime, waits for it to wind down and
 * joins the loop thread. Must not be called from the loop thread. */
void k2_runtime_free(k2_runtime *rt);

/* A future: the eventual result of an asynchronous operation. Thread-safe and
 * reference-counted; the creator's reference is released with k2_future_free. */
typedef struct k2_future k2_future;

typedef enum k2_future_state {
    K2_FUTURE_PENDING = 0,
    K2_FUTURE_DONE,
    K2_FUTURE_FAILED,
    K2_FUTURE_CANCELLED
} k2_future_state;

/* Called once on the runtime's loop thread after the future settles (whatever the
 * outcome). It must not block; it may call any k2_future_* function. */
typedef void (*k2_future_cb)(k2_future *f, void *user);

k2_future_state k2_future_state_of(const k2_future *f);
/* Blocks the calling thread until the future settles or timeout_ms passes
 * (timeout_ms < 0: no limit). Returns K2_OK when done, K2_ETIMEOUT when still
 * pending, else the failure status (K2_ECANCELLED when cancelled).
 * Never call with a timeout from the loop thread (use k2_future_then). */
k2_status k2_future_wait(k2_future *f, int64_t timeout_ms);
/* Registers a callback (several may be registered). If the future has already
 * settled the callback is still delivered on the loop thread, never inline. */
void k2_future_then(k2_future *f, k2_future_cb cb, void *user);
/* Requests cancellation. The operation stops promptly and the future settles as
 * K2_FUTURE_CANCELLED (unless it completed first). No effect once settled. */
void k2_future_cancel(k2_future *f);
/* The failure (status K2_OK with an empty message while pending or done). */
const k2_error *k2_future_error(const k2_future *f);
/* The operation-specific result while DONE, else NULL. Owned by the future. */
void *k2_future_result(const k2_future *f);
k2_future *k2_future_ref(k2_future *f);
void k2_future_free(k2_future *f);

/* ========================================================================
 * Hugging Face Hub client (src/hub)
 * ======================================================================== */

/* Model references (spec/hub.md §5):
 *   org/repo                 every file of the default branch (subject to the
 *                            ambiguity rule below)
 *   org/repo:QUANT           the GGUF (complete shard set) whose folder or file tag is QUANT
 *                            (case-insensitive; exact tag preferred over substring)
 *   org/repo@REVISION        a branch, tag or commit (combinable: org/repo@v1:Q4_K_M)
 * Include globs use huggingface_hub's fnmatch semantics on the full repo path
 * (`*` crosses `/`). Selected shards always bring their complete -NNNNN-of-MMMMM set. */

typedef enum k2_hub_event_kind {
    K2_HUB_EVENT_PLAN = 0,     /* the selected files are known (files/n_files set) */
    K2_HUB_EVENT_FILE_START,   /* a file starts downloading */
    K2_HUB_EVENT_PROGRESS,     /* periodic (~4/s): one per downloading file, then one with file_index -1 */
    K2_HUB_EVENT_FILE_DONE,    /* a file is in the cache (downloaded or already there) */
    K2_HUB_EVENT_RETRY,        /* a transfer failed and will be retried (message set) */
    K2_HUB_EVENT_WAITING_LOCK  /* another process holds this blob's lock */
} k2_hub_event_kind;

typedef struct k2_hub_file {
    const char *path;       /* repo-relative, '/'-separated */
    const char *etag;       /* blob name: sha256 (LFS) or git sha1 */
    uint64_t size;
    bool lfs;
    bool cached;            /* PLAN event / result: already complete in the cache */
} k2_hub_file;

typedef struct k2_hub_event {
    k2_hub_event_kind kind;
    const char *repo;
    const char *commit;
    const k2_hub_file *files;   /* PLAN: all selected files */
    size_t n_files;
    int file_index;             /* FILE_* / PROGRESS: which file (-1: whole fetch) */
    const char *path;
    uint64_t file_done, file_size;
    uint64_t total_done, total_size;   /* bytes present in the cache / selected */
    double rate_bps;                   /* recent download rate of the whole fetch */
    double eta_s;                      /* of the whole fetch; < 0 when unknown */
    double file_rate_bps;              /* PROGRESS with file_index >= 0: that file's rate */
    double file_eta_s;                 /* that file's ETA; < 0 when unknown */
    const char *message;               /* RETRY / WAITING_LOCK */
} k2_hub_event;

/* Called on the runtime's loop thread: must be quick and must not block. */
typedef void (*k2_hub_event_cb)(const k2_hub_event *ev, void *user);

typedef struct k2_hub_options {
    const char *revision;          /* overrides @REV in the ref; NULL = ref's or "main" */
    const char *const *include;    /* include globs (NULL-terminated) or NULL */
    bool all;                      /* allow selections spanning several quants */
    bool verify;                   /* sha256 / git-sha1 check (default true); size is always checked */
    bool offline;                  /* cache only (also HF_HUB_OFFLINE) */
    bool list_only;                /* resolve and select, download nothing (k2 ls / dry runs) */
    bool check_space;              /* fail early when the disk is too small (default true) */
    int connections;               /* parallel ranged requests per file (default 4) */
    int parallel_files;            /* files downloaded at once (default 4) */
    uint64_t chunk_size;           /* range size (default 32 MiB) */
    int max_retries;               /* consecutive failures without progress (default 5) */
    int retry_base_ms;             /* backoff base (default 1000); capped at 30 s */
    int stall_timeout_s;           /* no byte for this long = failed attempt (default HF_HUB_DOWNLOAD_TIMEOUT or 10) */
    const char *endpoint;          /* overrides HF_ENDPOINT */
    const char *cache_dir;         /* overrides HF_HUB_CACHE & co */
    const char *token;             /* overrides HF_TOKEN & the token file */
    k2_hub_event_cb on_event;
    void *user;
} k2_hub_options;

void k2_hub_options_init(k2_hub_options *o);

/* The value of a settled k2_hub_fetch future. */
typedef struct k2_hub_result {
    const char *repo;
    const char *commit;
    const char *snapshot_dir;      /* <cache>/models--org--repo/snapshots/<commit> */
    size_t n_files;
    const k2_hub_file *files;      /* selected files, sorted by path */
    const char *const *paths;      /* local path of each file (NULL with list_only) */
    const char *model_path;        /* first shard of the first GGUF, or NULL */
    bool from_cache_only;          /* resolved without network (offline, fallback or cache hit) */
    size_t n_absent;               /* explicitly requested paths (--include without wildcards) */
    const char *const *absent;     /* known not to exist at the commit (.no_exist, spec §4.6) */
} k2_hub_result;

/* Resolves `ref` to one commit, selects files and downloads what is missing into the
 * shared Hugging Face cache, all on the runtime's loop thread (never blocking the
 * caller). The future resolves to a k2_hub_result (see k2_hub_fetch_result). */
k2_future *k2_hub_fetch(k2_runtime *rt, const char *ref, const k2_hub_options *o);
/* The result of a DONE fetch future, else NULL. */
const k2_hub_result *k2_hub_fetch_result(const k2_future *f);

/* The hub cache directory per HF_HUB_CACHE / HUGGINGFACE_HUB_CACHE / HF_HOME /
 * XDG_CACHE_HOME (spec §3). Returns a heap string (free()). */
char *k2_hub_cache_dir(void);

/* One cached repository (synchronous directory scan; not for the loop thread). */
typedef struct k2_hub_cached_repo {
    char *repo_id;        /* "org/name" */
    char *kind;           /* "model", "dataset", "space" */
    char *path;           /* folder in the cache */
    uint64_t size;        /* bytes in blobs/ (and regular snapshot files) */
    int n_snapshots;
    int n_incomplete;     /* partial downloads */
    char *refs;           /* "main=abcd123, v1=..." */
} k2_hub_cached_repo;

k2_status k2_hub_cache_scan(const char *cache_dir, k2_hub_cached_repo **out, size_t *n, k2_error *err);
void k2_hub_cache_scan_free(k2_hub_cached_repo *repos, size_t n);
/* Deletes a cached repo ("org/name") with all its blobs, snapshots and locks. */
k2_status k2_hub_cache_remove(const char *cache_dir, const char *repo_id, k2_error *err);

/* ========================================================================
 * Generation and completion streams (src/generate, src/runtime)
 * ======================================================================== */

/* ---- Sampling ----
 *
 * Per generated token, in this order (spec/server-api.md §2.3.1, "Sampling semantics"):
 *   1. logit_bias[id] is added (a bias of -INFINITY bans a token);
 *   2. repeat_penalty r != 1: for every distinct id among the last repeat_last_n tokens of
 *      prompt + output, a positive logit is divided by r, a negative one multiplied by r;
 *   3. frequency_penalty f / presence_penalty p (OpenAI), counts over the generated tokens
 *      only: logit[j] -= count[j]*f + (count[j] > 0 ? p : 0);
 *   4. temperature <= 0 or top_p <= 0: the arg-max (lowest id on ties) is taken; stop;
 *   5. top_k > 0: keep the k largest logits (ties broken towards the lower id);
 *   6. softmax (at temperature 1); top_p < 1: keep the smallest prefix of the tokens sorted
 *      by probability whose mass reaches top_p (at least one token);
 *   7. min_p > 0: drop the tokens whose probability is below min_p x the largest;
 *   8. divide the remaining logits by temperature, softmax, and draw with k2's own PRNG
 *      (xoshiro256** seeded through splitmix64), so that the same seed and the same logits
 *      give the same token on every platform.
 * Probabilities are computed in double precision over the candidates in (logit desc, id asc)
 * order. */

/* One logit bias entry. */
typedef struct k2_logit_bias {
    int32_t token;
    float bias;     /* added to the logit; -INFINITY bans the token */
} k2_logit_bias;

typedef struct k2_sampling_options {
    float temperature;        /* default 0.6 (Moonshot's recommendation for Kimi-K2-Instruct);
                               * 0 = greedy */
    float top_p;              /* default 1 (off); 0 = greedy */
    int32_t top_k;            /* default 0 (off) */
    float min_p;              /* default 0 (off) */
    float repeat_penalty;     /* default 1 (off) */
    int32_t repeat_last_n;    /* window of repeat_penalty over prompt + output; default 64,
                               * 0 = no penalty, -1 = the whole history */
    float frequency_penalty;  /* default 0 */
    float presence_penalty;   /* default 0 */
    uint64_t seed;            /* PRNG seed, used when has_seed */
    bool has_seed;            /* default false: a seed is drawn from the OS per sampler */
    const k2_logit_bias *logit_bias;  /* copied by k2_sampler_new; NULL when none */
    size_t n_logit_bias;
} k2_sampling_options;

void k2_sampling_options_init(k2_sampling_options *o);

/* A sampler: the options above plus the token history the penalties need. Not
 * thread-safe (one per sequence). */
typedef struct k2_sampler k2_sampler;

/* K2_EINVAL (naming the field) for out-of-range options or bias ids outside [0, n_vocab). */
k2_status k2_sampler_new(const k2_sampling_options *o, int32_t n_vocab, k2_sampler **out,
                         k2_error *err);
void k2_sampler_free(k2_sampler *s);
/* Records a token of the sequence: prompt tokens (generated = false) feed the repeat
 * window only; generated tokens also feed the frequency/presence counts. */
void k2_sampler_accept(k2_sampler *s, int32_t token, bool generated);
/* Forgets the history (the PRNG state is kept). */
void k2_sampler_reset(k2_sampler *s);
/* Chooses the next token from n_vocab raw logits (not modified). K2_EINVAL when no token
 * is left (every logit is -inf or NaN after bias). */
k2_status k2_sampler_sample(k2_sampler *s, const float *logits, int32_t *token, k2_error *err);
/* The seed actually used (the drawn one when has_seed was false). */
uint64_t k2_sampler_seed(const k2_sampler *s);

/* ---- Completion streams ----
 *
 * A completion runs on a thread of its own and reports through a k2_stream: zero or more
 * DELTA chunks, then exactly one DONE or ERROR chunk. */

typedef enum k2_chunk_type {
    K2_CHUNK_DELTA = 1,
    K2_CHUNK_DONE = 2,
    K2_CHUNK_ERROR = 3
} k2_chunk_type;

typedef enum k2_finish_reason {
    K2_FINISH_NONE = 0,
    K2_FINISH_STOP,       /* a stop token or stop string */
    K2_FINISH_LENGTH,     /* max_tokens reached or the context is full */
    K2_FINISH_CANCELLED   /* k2_stream_cancel (or k2_stream_free) */
} k2_finish_reason;

/* "stop", "length", "cancelled" ("" for NONE). */
const char *k2_finish_reason_name(k2_finish_reason r);

typedef enum k2_error_stage {
    K2_STAGE_DOWNLOAD = 0,
    K2_STAGE_LOAD,
    K2_STAGE_TOKENIZE,
    K2_STAGE_PROMPT,
    K2_STAGE_GENERATE
} k2_error_stage;

/* "download", "load", "tokenize", "prompt", "generate". */
const char *k2_error_stage_name(k2_error_stage s);

typedef struct k2_usage {
    uint32_t prompt_tokens;      /* tokens of the rendered prompt */
    uint32_t completion_tokens;  /* sampled tokens, a final stop token included */
    uint32_t cached_tokens;      /* prompt tokens reused from the previous request's cache */
} k2_usage;

typedef struct k2_timings {
    double ttft_ms;        /* request start (after slot wait) to the first sampled token */
    double prompt_ms;      /* prefill time */
    double prompt_tps;     /* evaluated prompt tokens per second (cached ones excluded) */
    double gen_ms;         /* time after the first token until the end */
    double gen_tps;        /* generated tokens per second after the first one */
    double queue_ms;       /* time spent waiting for a free context */
} k2_timings;

typedef struct k2_chunk {
    k2_chunk_type type;
    /* DELTA: one per generated token that is not a stop token (ids = that token,
     * n_ids = 1); `text` is the UTF-8 text that became safe to send at that token (whole
     * characters only; may be empty while text is held back). A last DELTA with n_ids = 0
     * carries text released at the end of generation, when there is any. */
    const char *text;          /* NUL-terminated */
    size_t text_len;
    const int32_t *ids;
    size_t n_ids;
    /* DONE */
    k2_finish_reason finish;
    k2_usage usage;
    k2_timings timings;
    /* ERROR */
    k2_error_stage stage;
    k2_status status;
    const char *message;       /* a sentence naming what failed */
} k2_chunk;
/* Pointers in a chunk stay valid until the next k2_stream_next on the same stream or
 * k2_stream_free (in callback mode: until the callback returns). */

typedef struct k2_stream k2_stream;

/* Waits up to timeout_ms (< 0: no limit, 0: poll) for the next chunk. K2_OK with *chunk
 * filled; K2_ETIMEOUT when none came in time; K2_ENOTFOUND once the final chunk (DONE or
 * ERROR) has been returned; K2_EINVAL in callback mode. Only one consumer thread. */
k2_status k2_stream_next(k2_stream *s, int64_t timeout_ms, k2_chunk *chunk);
/* Callback mode: chunks are passed to cb instead of being queued: chunks already queued
 * are delivered from this call, later ones on the producing thread as they come. cb must
 * return quickly and must not call k2_stream_next or k2_stream_free. NULL cb: back to
 * polling. */
typedef void (*k2_chunk_cb)(const k2_chunk *chunk, void *user);
void k2_stream_set_callback(k2_stream *s, k2_chunk_cb cb, void *user);
/* Requests cancellation: generation stops before its next decode step (within one token;
 * prompt evaluation between chunks) and the stream ends with DONE / K2_FINISH_CANCELLED.
 * Callable from any thread, any number of times. */
void k2_stream_cancel(k2_stream *s);
bool k2_stream_cancelled(const k2_stream *s);
/* Waits (timeout_ms < 0: no limit) until the producer has pushed the final chunk.
 * K2_OK or K2_ETIMEOUT. */
k2_status k2_stream_wait(k2_stream *s, int64_t timeout_ms);
/* Cancels if still running and releases the consumer's reference (the producer keeps
 * the object alive until it is done). Never blocks on generation. */
void k2_stream_free(k2_stream *s);

/* ---- Completions over a model ---- */

/* A completion request. Exactly one prompt form is given. Everything is copied by
 * k2_generate, so the caller's strings need not outlive the call. */
typedef struct k2_completion_request {
    /* prompt forms */
    const k2_chat_message *messages;  /* chat: rendered with the model's chat template,
                                       * generation prompt added */
    size_t n_messages;
    const char *tools_json;           /* chat: OpenAI tools array, or NULL */
    const char *prompt;               /* raw text, tokenized with tokenize_flags */
    unsigned tokenize_flags;          /* default K2_TOKENIZE_PARSE_SPECIAL | K2_TOKENIZE_ADD_SPECIAL */
    const int32_t *prompt_ids;        /* already tokenized */
    size_t n_prompt_ids;
    /* generation */
    k2_sampling_options sampling;
    int32_t max_tokens;               /* <= 0: until the context is full (default) */
    const char *const *stop;          /* stop strings (empty ones are dropped) */
    size_t n_stop;
    const int32_t *stop_ids;          /* extra stop tokens (the tokenizer's are always on) */
    size_t n_stop_ids;
    bool ignore_stop_tokens;          /* do not stop at the tokenizer's stop ids */
    unsigned detok_flags;             /* default K2_DETOK_SKIP_SPECIAL */
} k2_completion_request;

void k2_completion_request_init(k2_completion_request *r);

/* A generator serves completions from one model: it owns n_slots contexts, each keeping
 * the tokens whose cache it holds so that a request sharing a prefix with the previous
 * one evaluates only the rest (prefix reuse). Requests beyond n_slots wait for a free
 * slot; each slot runs one request at a time, so concurrent streams give the same output
 * as if each ran alone. */
typedef struct k2_generator k2_generator;

typedef struct k2_generator_options {
    uint32_t n_slots;               /* contexts (default 1) */
    k2_context_options context;     /* per-slot context options (k2_context_options_init) */
    uint32_t prefill_chunk;         /* prompt tokens per k2_eval call (default 512); cancellation
                                     * is checked between chunks */
} k2_generator_options;

void k2_generator_options_init(k2_generator_options *o);
/* The model and tokenizer are borrowed and must outlive the generator. */
k2_status k2_generator_new(k2_model *m, const k2_tokenizer *tok, const k2_generator_options *o,
                           k2_generator **out, k2_error *err);
/* Cancels running and waiting requests, waits for their threads, frees the contexts.
 * Streams already handed out stay valid until k2_stream_free. */
void k2_generator_free(k2_generator *g);
uint32_t k2_generator_n_ctx(const k2_generator *g);
/* Starts a completion on a thread of its own. Problems with the request itself
 * (no prompt, bad sampling options) fail here with K2_EINVAL; problems found later
 * (tokenization, context overflow, evaluation) arrive as an ERROR chunk. */
k2_status k2_generate(k2_generator *g, const k2_completion_request *req, k2_stream **out,
                      k2_error *err);

/* ---- Opening models by reference, completions over an opened model (src/runtime) ----
 *
 * A reference is a local GGUF file (the first shard of a split set), a local folder holding
 * one GGUF model (a Hub snapshot folder, say), or a Hub reference `org/repo[:QUANT][@REV]`
 * (fetched into the shared Hugging Face cache through k2_hub_fetch). Opened models are
 * shared: opening what is already open (or being opened) with the same tokenizer and model
 * options gives another reference to the same k2_model, and concurrent opens wait for one
 * fetch and one load. A Hub reference and the local file it resolves to share one instance
 * too. Every reference is released with k2_model_free. */

typedef enum k2_open_stage {
    K2_OPEN_DOWNLOAD = 0,  /* a Hub event of the model's or the tokenizer's fetch (ev->hub) */
    K2_OPEN_LOAD,          /* the GGUF is being mapped and checked (ev->path) */
    K2_OPEN_READY,         /* loaded (ev->path, ev->seconds: time since the open began) */
    K2_OPEN_SHARED         /* this open joined an instance already being opened */
} k2_open_stage;

typedef struct k2_open_event {
    k2_open_stage stage;
    const char *ref;             /* the reference being opened */
    const char *path;            /* LOAD / READY: the GGUF file */
    const k2_hub_event *hub;     /* DOWNLOAD */
    bool tokenizer;              /* DOWNLOAD: the event belongs to the tokenizer's fetch */
    double seconds;
} k2_open_event;

/* Called on the runtime's loop thread, until the open future settles; must not block. */
typedef void (*k2_open_event_cb)(const k2_open_event *ev, void *user);

typedef struct k2_model_open_options {
    k2_model_options model;          /* k2_model_options_init defaults */
    k2_hub_options hub;              /* for Hub references (its on_event/user are not used:
                                      * Hub events arrive as K2_OPEN_DOWNLOAD events) */
    /* A tokenizer replacing the GGUF's (NULL: the GGUF's own): a local tokenizer.json or
     * tiktoken.model (special tokens beside it, or in tokenizer_special), a local folder
     * holding one, or a Hub repository `org/repo[@REV]` whose tiktoken.model /
     * tokenizer.json (+ tokenizer_config.json / special_tokens.json) are fetched. Its
     * vocabulary size and special-token ids must agree with the model's. */
    const char *tokenizer;
    const char *tokenizer_special;
    /* The generator k2_complete creates on first use (slots, context size, threads).
     * For a shared instance the options of the open that loaded it apply. */
    k2_generator_options generator;
    k2_open_event_cb on_event;
    void *user;
} k2_model_open_options;

void k2_model_open_options_init(k2_model_open_options *o);
/* Opens `ref` asynchronously: the future settles DONE (k2_model_open_result), FAILED
 * (k2_future_error: a sentence naming the ref, URL or file at fault) or CANCELLED.
 * `o` may be NULL; it is copied. Cancelling one open does not disturb others sharing
 * the same load (the load itself stops when nobody waits for it any more). */
k2_future *k2_model_open_async(k2_runtime *rt, const char *ref, const k2_model_open_options *o);
/* A new reference to the model of a DONE open future (release with k2_model_free), else
 * NULL. The future keeps its own reference until it is freed. */
k2_model *k2_model_open_result(const k2_future *f);
/* Opens and waits (any thread but the runtime's loop thread). */
k2_status k2_model_open(k2_runtime *rt, const char *ref, const k2_model_open_options *o, k2_model **out,
                        k2_error *err);
/* The tokenizer the model speaks: the override given when it was opened, else its GGUF's
 * (made on first use for models loaded with k2_model_load). Lives as long as the model. */
k2_status k2_model_get_tokenizer(k2_model *m, const k2_tokenizer **out, k2_error *err);
/* Starts a completion on the model's own generator (created on first use with the open
 * options' generator settings, or defaults). Same contract as k2_generate. Release the
 * model only after its streams have ended (releasing the last reference cancels them). */
k2_status k2_complete(k2_model *m, const k2_completion_request *req, k2_stream **out, k2_error *err);
/* Opens `ref` (shared, as k2_model_open_async) and runs the completion on it, all behind
 * one stream: failures to fetch or load arrive as an ERROR chunk with stage download or
 * load; cancelling the stream while the model is opening ends it with DONE / cancelled.
 * The stream holds a model reference until its final chunk. */
k2_status k2_complete_ref(k2_runtime *rt, const char *ref, const k2_model_open_options *o,
                          const k2_completion_request *req, k2_stream **out, k2_error *err);

/* ========================================================================
 * HTTP server (src/server)
 * ======================================================================== */

/* An OpenAI-compatible HTTP/1.1 server over one model (spec/server-api.md), built on
 * libmicrohttpd. The model loads asynchronously on the runtime's worker pool; until it is
 * ready /health answers 503 "model_loading" (a failed load is reported there too). One
 * scheduler thread owns the model contexts (one per slot) and steps every active slot once
 * per iteration; HTTP handlers never wait for inference (connections are suspended and
 * resumed). */
typedef struct k2_server k2_server;

typedef struct k2_server_options {
    const char *model;             /* GGUF path or Hub reference (org/repo:QUANT) */
    const char *host;              /* default "127.0.0.1" */
    int port;                      /* default 8080; 0 = any free port (see k2_server_port) */
    int parallel;                  /* slots decoding concurrently (default 1) */
    uint32_t ctx_size;             /* total KV capacity; 0 = min(n_ctx_train, 32768) */
    int batch_size;                /* prompt tokens per evaluation step (default 512) */
    int threads;                   /* threads per context (0 = physical cores) */
    const char *api_keys;          /* comma-separated keys, or NULL */
    const char *api_key_file;      /* one key per line, '#' comments */
    const char *model_id;          /* served id (default: general.name, else file name) */
    const char *aliases;           /* comma-separated extra names */
    bool accept_any_model;
    const char *owned_by;          /* default "local" */
    int queue_size;                /* waiting requests beyond the slots (default 32) */
    uint64_t max_body_bytes;       /* default 16 MiB */
    int read_timeout_s;            /* default 30 */
    int keepalive_timeout_s;       /* default 60 */
    int write_timeout_s;           /* default 60 */
    int queue_timeout_s;           /* default 600 */
    int sse_keepalive_s;           /* default 15; 0 disables */
    int max_connections;           /* default 256 */
    int max_concurrent_per_key;    /* admitted requests per API key (0 = unlimited) */
    int64_t max_tokens_default;    /* chat default when the request gives none; 0 = unlimited */
    int64_t max_tokens_cap;        /* hard cap on any request; 0 = none */
    double max_generation_seconds; /* 0 = off */
    size_t max_stream_buffer;      /* default 4 MiB */
    bool metrics;                  /* /metrics (default true) */
    bool test_mode;                /* accept test_script (spec §8.1); never on by default */
    const char *cors_origin;       /* NULL = CORS disabled */
    /* server sampling defaults (spec §2.3.1 built-ins) */
    float temperature, top_p, min_p, repeat_penalty;
    int32_t top_k;
    bool quiet;                    /* no request log lines on stderr */
} k2_server_options;

void k2_server_options_init(k2_server_options *o);
/* Binds the socket and starts serving at once (/health: loading); the model loads in the
 * background. `rt` must outlive the server. */
k2_status k2_server_start(k2_runtime *rt, const k2_server_options *o, k2_server **out,
                          k2_error *err);
/* The bound TCP port. */
int k2_server_port(const k2_server *s);
typedef enum k2_server_state {
    K2_SERVER_LOADING = 0, K2_SERVER_READY, K2_SERVER_FAILED, K2_SERVER_STOPPING
} k2_server_state;
/* The current state; with FAILED, `err` (may be NULL) receives the load error. */
k2_server_state k2_server_get_state(const k2_server *s, k2_error *err);
/* Graceful stop (spec §6.9): /health answers shutting_down, queued requests are refused,
 * running ones get up to grace_s seconds, then everything is cancelled and closed. */
void k2_server_stop(k2_server *s, int grace_s);
/* Stops (if not yet) and frees. */
void k2_server_free(k2_server *s);

#ifdef __cplusplus
}
#endif
#endif /* K2_H */
