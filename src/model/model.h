/* model/: the deepseek2 forward pass (spec/model-deepseek2.md).
 *
 * load.c     metadata -> hyperparameters, tensors bound in place with shape checks
 * forward.c  one function per block: attention (absorbed MLA), moe, dense_ffn, then logits
 * matmul.c   weight x activations (exact: dequantize rows on the fly; fast: quant kernels)
 * pool.c     a small pthread pool that splits row ranges across threads */
#ifndef K2_MODEL_H
#define K2_MODEL_H

#include "base/base.h"

#include <pthread.h>
#include <stdatomic.h>

/* A matrix bound in place: `rows` rows of `cols` elements of `type`, row stride `row_bytes`.
 * 3-D tensors are viewed as a stack of such matrices (slice stride `slice_bytes`). */
typedef struct model_weight {
    const char *name;
    uint32_t type;
    int64_t cols;        /* ne0: input length */
    int64_t rows;        /* ne1: outputs */
    int64_t slices;      /* ne2 */
    size_t row_bytes;
    size_t slice_bytes;
    const uint8_t *data; /* NULL = absent */
} model_weight;

/* The weight matrix for slice s (an expert, a head). */
static inline model_weight model_weight_slice(const model_weight *w, int64_t s) {
    model_weight v = *w;
    v.data = w->data + (size_t)s * w->slice_bytes;
    v.slices = 1;
    return v;
}

typedef struct model_layer {
    const float *attn_norm;
    model_weight q_a, q_b, q;       /* q_a/q_b with q-LoRA, else q */
    const float *q_a_norm;
    model_weight kv_a;              /* attn_kv_a_mqa: {d, d_c + d_r} */
    const float *kv_a_norm;
    model_weight k_b;               /* {d_n, d_c, H} */
    model_weight v_b;               /* {d_c, d_v, H} */
    model_weight out;               /* attn_output {H*d_v, d} */
    const float *out_scale;         /* attn_output.scale (optional, {1}) */
    const float *ffn_norm;
    /* dense */
    model_weight ffn_gate, ffn_up, ffn_down;
    /* MoE */
    model_weight gate_inp;          /* router, F32 {d, E} */
    const float *exp_bias;          /* exp_probs_b.bias or NULL */
    model_weight gate_exps, up_exps, down_exps;
    bool fused_gate_up;             /* gate_exps holds [gate; up] per slice */
    model_weight gate_sh, up_sh, down_sh;
} model_layer;

struct k2_model {
    k2_gguf *gguf;
    k2_model_hparams hp;
    uint32_t d_n;
    model_weight tok_embd, output;
    const float *output_norm;
    model_layer *layers;
    double *rope_freq;       /* omega_m, d_r/2 entries (spec §4.3.2) */
    float *owned;            /* legacy attn_kv_b split into f32 k_b/v_b */
    int64_t max_cols;        /* widest weight input, for dequant scratch */
    char warnings[512];
    /* Sharing (src/runtime): a reference count (1 after loading), an optional owner hook
     * that k2_model_free calls instead of dropping a reference itself (the open-model
     * registry drops it under its lock), and an attachment (tokenizer, generator) freed
     * with the model. */
    atomic_int refs;
    void (*release)(k2_model *m);
    void *ext;
    void (*ext_free)(void *ext);
};

/* Frees the weights and the attachment, whatever the reference count. */
void model_destroy(k2_model *m);

/* f32 dot product with 8 independent partial sums (vectorizes without fast-math). */
static inline float model_dot_f32(const float *a, const float *b, int64_t n) {
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) acc[k] += a[i + k] * b[i + k];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- thread pool ---- */
typedef struct model_pool model_pool;
/* fn processes items [begin, end) on thread `tid` (0 = the caller). */
typedef void (*model_pool_fn)(void *arg, int64_t begin, int64_t end, int tid);
k2_status model_pool_new(int n_threads, model_pool **out, k2_error *err);
void model_pool_free(model_pool *p);
int model_pool_size(const model_pool *p);
/* Runs fn over [0, n) in chunks of `grain` items spread over all threads; returns when done. */
void model_pool_for(model_pool *p, int64_t n, int64_t grain, model_pool_fn fn, void *arg);
int model_physical_cores(void);

/* ---- per-thread scratch ---- */
#define MODEL_KV_BLOCK 64  /* cache rows converted and used together by the attention */
typedef struct model_scratch {
    float *row;        /* one dequantized weight row (max_cols) */
    float *scores;     /* attention scores (heads per task x n_ctx) */
    float *kvrow;      /* MODEL_KV_BLOCK cache rows as f32 (d_c + d_r each) */
    void *act;         /* quantized activations (fast mode) */
    /* expanded attention (fast-mode prefill, forward.c): one head's dequantized k_b and
     * transposed v_b, a decompressed key block (rows and transposed) and value block, the
     * queries of a sequence and their scores */
    float *xw, *xk, *xkt, *xv, *xq, *xz;
    size_t xq_cap, xz_cap; /* floats */
} model_scratch;

/* ---- matmul ---- */
/* One product Y[t][o] = W[o] . X[t] for t < n_tok, o < w.rows; X rows ldx floats apart,
 * Y rows ldy floats apart. */
typedef struct model_mm {
    model_weight w;     /* a 2-D matrix (use model_weight_slice for a head or an expert) */
    const float *x;
    int64_t ldx;
    float *y;
    int64_t ldy;
    int64_t n_tok;
    /* Leading rows that may take the panel GEMM (fast mode): with gemm_set false, derived
     * from the batch (ctx->gemm_rows when n_tok == ctx->batch_rows, else none). */
    int64_t n_gemm;
    bool gemm_set;
} model_mm;
/* Runs n independent products as one parallel job: their output rows are split across the
 * pool's threads (so per-head and per-expert products cost one dispatch, not one each).
 * A row's arithmetic never depends on the split or the thread count. */
void model_matmul_multi(k2_context *ctx, const model_mm *mm, int n);
void model_matmul(k2_context *ctx, const model_weight *w, const float *x, int64_t ldx,
                  float *y, int64_t ldy, int64_t n_tok);
/* Checks that `type` can be dequantized (exact path). */
bool model_type_supported(uint32_t type);

/* Fewest tokens a sequence must give one eval for its rows to take the panel GEMM
 * (measured with `quant_bench -g`: x1.4-1.9 the row kernels at 8 tokens, about even at 4). */
#define MODEL_GEMM_MIN_TOK 6

/* ---- fast-mode attention loops (attn_avx512.c; AVX-512 CPUs only) ---- */
void model_attn_scores_avx512(const float *q, int64_t ldq, int64_t nh, const float *k, int64_t ldk, int64_t nk,
                              int64_t n, float scale, float *z, int64_t ldz);
void model_attn_latent_avx512(const float *w, int64_t ldw, int64_t nh, const float *k, int64_t ldk, int64_t nk,
                              int64_t n, float *lat, int64_t ldl);

/* Expanded (non-absorbed) attention for prefill (§4.6): per-head decompression of cached
 * latents (out = a x b, b row-major n_in x n_out, n_out a multiple of 64) and scores
 * against a transposed key block of at most 64 keys. */
void model_attn_expand_avx512(const float *a, int64_t lda, int64_t nk, const float *b, int64_t n_in, int64_t n_out,
                              float *out, int64_t ldo);
void model_attn_scores_t_avx512(const float *q, int64_t ldq, int64_t nq, const float *kt, int64_t ldkt, int64_t nk,
                                int64_t n, float scale, float *z, int64_t ldz);
/* u[i] = silu(u[i]) * v[i] with the vector exp (fast mode). */
void model_swiglu_avx512(float *u, const float *v, int64_t n);
/* z[0..n) = softmax (vector exp, f32 lane sums), z[n..end) = 0. */
void model_softmax_avx512(float *z, int64_t n, int64_t end);
/* dst[j * ldd + i] = src[i * lds + j], i < rows, j < cols (multiples of 16). */
void model_transpose_avx512(const float *src, int64_t lds, int64_t rows, int64_t cols, float *dst, int64_t ldd);

/* ---- f16 helpers ---- */
uint16_t model_f32_to_f16(float f);
float model_f16_to_f32(uint16_t h);

struct k2_context {
    k2_model *model;
    uint32_t n_ctx;
    uint32_t len;            /* cached tokens */
    k2_cache_type cache_type;
    bool exact;
    int n_threads;
    model_pool *pool;
    model_scratch *scratch;  /* one per thread */
    void **cache;            /* per layer: n_ctx rows of d_c + d_r (f32 or f16) */
    size_t cache_row;        /* elements per row */
    int64_t head_chunk;      /* heads per attention task */
    float *last_logits;
    bool have_logits;
    /* batch buffers (grown on demand, in tokens) */
    int64_t cap_tok;
    float *x, *h, *cq, *q, *kv, *qabs, *lat, *o, *y, *f1, *f2, *rl;
    float *rprob;            /* routing scratch: probabilities and choice scores (2E) */
    model_mm *mm;            /* grouped products: max(H, 3E + 3): gate/up at 0, down at 2E + 2 */
    float *rope_cos, *rope_sin;
    uint8_t *act;            /* fast mode: quantized activations of a batch */
    size_t act_cap;          /* its size in bytes */
    int32_t *sel;            /* selected experts [tok][K] */
    float *selw;             /* their weights */
    int32_t *etok;           /* token list per expert */
    float *ex, *ey, *eout;    /* per-expert gathered inputs/outputs, weighted outputs [tok][K] */
    float *sh;               /* shared experts' output [tok][d] */
    /* The current micro-batch: rows, and how many leading rows belong to sequences that
     * gave k2_eval(_batch) at least MODEL_GEMM_MIN_TOK tokens. Only those take the panel
     * GEMM, so a sequence's kernels (and bits) do not depend on what it is batched with:
     * a decode token of a batch computes exactly as when decoded alone. */
    int64_t batch_rows, gemm_rows;
    /* batches of several sequences (k2_eval_batch) */
    uint32_t scores_cap;     /* positions each scratch.scores holds (per head of a chunk) */
    float *blogits;          /* logits of the sequences of a batch [seq][n_vocab] */
    int64_t blogits_rows;
};

/* spec §5 M2-M8 for one token: K expert ids (sel) and weights (w) from E router logits;
 * probs and choice are E-float scratch. */
void model_route(const k2_model_hparams *hp, const float *logits, const float *bias, float *probs,
                 float *choice, int32_t *sel, float *w);

/* YaRN frequencies omega_m (m < d_r/2) per spec §4.3.2. */
void model_yarn_freqs(double base, int d_r, double s, double L0, double beta_fast, double beta_slow,
                      double *omega);

k2_status model_forward(k2_context *ctx, const int32_t *tokens, int64_t n, k2_logits_rows rows,
                        float *logits, k2_error *err);
/* Several sequences, each in its own context, through one forward pass (the arguments are
 * checked by k2_eval_batch; the first context's threads and buffers run it). logits: only
 * for one sequence, as in k2_eval. */
k2_status model_forward_multi(k2_context *const *ctxs, const int32_t *const *tokens, const uint32_t *n_tokens,
                              int n_seq, k2_logits_rows rows, float *logits, k2_error *err);

#endif
