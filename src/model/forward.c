/* The deepseek2 forward pass, read top to bottom like spec/model-deepseek2.md §4-§5:
 * embed -> for each block: attention (absorbed MLA, §4.2/§4.5), then dense_ffn (§4.8) or
 * moe (§5) -> final norm and logits (§4.9). A batch of tokens is appended to the cache at
 * positions len ... len+n-1 and attends causally to everything cached before it. */
#include "model/model.h"
#include "quant/quant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- primitives (§4.0) ---- */

static void rmsnorm(float *out, const float *x, const float *g, int64_t n, float eps) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++) ss += (double)(x[i] * x[i]); /* f32 product, double sum (§4.0) */
    float scale = 1.0f / sqrtf((float)(ss / (double)n) + eps);
    for (int64_t i = 0; i < n; i++) out[i] = g[i] * (x[i] * scale);
}

static inline float silu(float u) { return u / (1.0f + expf(-u)); }
static inline float sigmoid(float u) { return 1.0f / (1.0f + expf(-u)); }

/* u <- silu(u) * v, elementwise (SwiGLU) */
typedef struct swiglu_job {
    float *u;
    const float *v;
    bool vector; /* fast mode on AVX-512: the vector exp (exact mode keeps libm's expf) */
} swiglu_job;

static void swiglu_task(void *arg, int64_t b, int64_t e, int tid) {
    (void)tid;
    swiglu_job *j = arg;
#if defined(__x86_64__)
    if (j->vector) {
        model_swiglu_avx512(j->u + b, j->v + b, e - b);
        return;
    }
#endif
    for (int64_t i = b; i < e; i++) j->u[i] = silu(j->u[i]) * j->v[i];
}

static bool g_expand_kernels;

/* on all threads: one exp per element (~40k per decode step, millions per prefill) */
static void swiglu(k2_context *ctx, float *u, const float *v, int64_t n) {
    swiglu_job j = {u, v, !ctx->exact && g_expand_kernels};
    model_pool_for(ctx->pool, n, 4096, swiglu_task, &j);
}

/* §4.3.1: rotate adjacent pairs (u_2m, u_2m+1) by phi_m; cos/sin already carry r. */
static void rope(float *u, const float *cs, const float *sn, int64_t n_pairs) {
    for (int64_t m = 0; m < n_pairs; m++) {
        float a = u[2 * m], b = u[2 * m + 1];
        u[2 * m] = a * cs[m] - b * sn[m];
        u[2 * m + 1] = a * sn[m] + b * cs[m];
    }
}

static float f16_table[65536];
static pthread_once_t f16_once = PTHREAD_ONCE_INIT, attn_once = PTHREAD_ONCE_INIT;
static void f16_table_init(void) {
    for (uint32_t i = 0; i < 65536; i++) f16_table[i] = model_f16_to_f32((uint16_t)i);
}

/* ---- the cache: one row [latent (d_c) | roped key (d_r)] per token and layer (§4.2 A7) ---- */

static void cache_store(k2_context *ctx, int layer, int64_t pos, const float *row) {
    size_t n = ctx->cache_row;
    if (ctx->cache_type == K2_CACHE_F32) {
        memcpy((float *)ctx->cache[layer] + (size_t)pos * n, row, n * sizeof(float));
    } else {
        uint16_t *dst = (uint16_t *)ctx->cache[layer] + (size_t)pos * n;
        for (size_t i = 0; i < n; i++) dst[i] = model_f32_to_f16(row[i]);
    }
}

/* ---- attention (§4.2, absorbed form §4.5) ---- */

/* One sequence's rows [t0, t0 + T) of a batch: its own context (cache) at positions
 * pos0 ... pos0 + T - 1. */
typedef struct model_seg {
    k2_context *c;
    int64_t t0, T, pos0;
    const int32_t *tokens;
    int seq;                /* its index in the caller's arrays */
    bool want;              /* its last row's logits are wanted */
    float *dst;             /* where they go (NULL: c->last_logits) */
} model_seg;

typedef struct attn_job {
    k2_context *ctx;        /* the batch's buffers and scratch */
    int layer;
    const model_seg *seg;
    int nseg;
    const bool *expanded;   /* per segment: on the expanded form, its rows are left out (NULL: none) */
} attn_job;

/* The segment holding batch row t (segments are in row order). */
static inline const model_seg *seg_of(const model_seg *seg, int nseg, int64_t t) {
    int lo = 0, hi = nseg - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (seg[mid].t0 <= t) lo = mid; else hi = mid - 1;
    }
    return &seg[lo];
}

/* ---- the two attention loops: portable C and AVX2 (attn_avx2.c), same bits ---- */

/* z[h * ldz + u] = dot(q row h, k row u) * scale for h < nh, u < nk (model_dot_f32). */
static void scores_c(const float *q, int64_t ldq, int64_t nh, const float *k, int64_t ldk, int64_t nk, int64_t n,
                     float scale, float *z, int64_t ldz) {
    for (int64_t u = 0; u < nk; u++)
        for (int64_t h = 0; h < nh; h++) z[h * ldz + u] = model_dot_f32(q + h * ldq, k + u * ldk, n) * scale;
}

/* lat row h += sum over u (in order) of w[h * ldw + u] * k row u, first n columns. */
static void latent_c(const float *w, int64_t ldw, int64_t nh, const float *k, int64_t ldk, int64_t nk, int64_t n,
                     float *lat, int64_t ldl) {
    for (int64_t u = 0; u < nk; u++)
        for (int64_t h = 0; h < nh; h++) {
            float a = w[h * ldw + u], *y = lat + h * ldl;
            const float *x = k + u * ldk;
            for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
        }
}

static void f16_row_c(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] = f16_table[src[i]];
}

void model_attn_scores_avx2(const float *q, int64_t ldq, int64_t nh, const float *k, int64_t ldk, int64_t nk,
                            int64_t n, float scale, float *z, int64_t ldz);
void model_attn_latent_avx2(const float *w, int64_t ldw, int64_t nh, const float *k, int64_t ldk, int64_t nk,
                            int64_t n, float *lat, int64_t ldl);
void model_f16_row_avx2(const uint16_t *src, float *dst, int64_t n);

typedef struct attn_kernels {
    void (*scores)(const float *, int64_t, int64_t, const float *, int64_t, int64_t, int64_t, float, float *, int64_t);
    void (*latent)(const float *, int64_t, int64_t, const float *, int64_t, int64_t, int64_t, float *, int64_t);
    void (*f16_row)(const uint16_t *, float *, int64_t);
} attn_kernels;

static attn_kernels attn_k = {scores_c, latent_c, f16_row_c};
/* fast mode: the same, or AVX-512 + FMA loops that round differently (attn_avx512.c) */
static attn_kernels attn_k_fast = {scores_c, latent_c, f16_row_c};

/* Which MLA form prefill may take (§4.5 absorbed, §4.6 expanded): K2_MLA=absorbed or
 * =expanded forces one for fast-mode sequences (tests compare the two); default: by cost. */
typedef enum { MLA_AUTO, MLA_ABSORBED, MLA_EXPANDED } mla_mode;
static mla_mode g_mla = MLA_AUTO;
/* g_expand_kernels (declared above swiglu): the AVX-512 kernels of the expanded form and
 * the vector exp are usable */

static void attn_kernels_init(void) {
    const char *env = getenv("K2_MLA");
    if (env && strcmp(env, "absorbed") == 0) g_mla = MLA_ABSORBED;
    if (env && strcmp(env, "expanded") == 0) g_mla = MLA_EXPANDED;
#if defined(__x86_64__)
    /* the quant module's level (AVX2 implies FMA and F16C there), lowered by K2_CPU */
    if (quant_cpu_level_active() >= QUANT_CPU_AVX2)
        attn_k = (attn_kernels){model_attn_scores_avx2, model_attn_latent_avx2, model_f16_row_avx2};
    attn_k_fast = attn_k;
    if (quant_cpu_level_active() >= QUANT_CPU_AVX512) {
        attn_k_fast = (attn_kernels){model_attn_scores_avx512, model_attn_latent_avx512, model_f16_row_avx2};
        g_expand_kernels = true;
    }
#endif
}

/* Cache rows [u0, u0 + nk) of a layer as f32 rows cache_row floats apart: in place for an
 * f32 cache, converted into buf for f16. */
static inline const float *cache_rows(const k2_context *ctx, int layer, int64_t u0, int64_t nk, float *buf) {
    size_t n = ctx->cache_row;
    if (ctx->cache_type == K2_CACHE_F32) return (const float *)ctx->cache[layer] + (size_t)u0 * n;
    attn_k.f16_row((const uint16_t *)ctx->cache[layer] + (size_t)u0 * n, buf, nk * (int64_t)n);
    return buf;
}

/* One token and a chunk of heads: scores against the cached rows u <= pos of its own
 * sequence's cache (rows taken in blocks of MODEL_KV_BLOCK, each block read once for all
 * heads of the chunk), softmax, latent sum (§4.5 steps 2-4). Tasks of all sequences of a
 * batch share one parallel job. */
static void attn_task(void *arg, int64_t b, int64_t e, int tid) {
    attn_job *j = arg;
    k2_context *ctx = j->ctx;
    const k2_model_hparams *hp = &ctx->model->hp;
    int64_t H = hp->n_head, d_c = hp->kv_lora_rank, rw = (int64_t)ctx->cache_row, hc = ctx->head_chunk;
    int64_t n_chunks = (H + hc - 1) / hc;
    float *z = ctx->scratch[tid].scores, *buf = ctx->scratch[tid].kvrow;
    const attn_kernels *ak = ctx->exact ? &attn_k : &attn_k_fast;
    for (int64_t it = b; it < e; it++) {
        int64_t t = it / n_chunks, h0 = (it % n_chunks) * hc, h1 = K2_MIN(H, h0 + hc);
        const model_seg *sg = seg_of(j->seg, j->nseg, t);
        if (j->expanded && j->expanded[sg - j->seg]) continue;
        const k2_context *cc = sg->c;
        int64_t nh = h1 - h0, n_kv = sg->pos0 + (t - sg->t0) + 1;
        const float *q = ctx->qabs + (t * H + h0) * rw; /* rows [q~_h ; q-bar^R_h] */
        float *lat = ctx->lat + (t * H + h0) * d_c;
        for (int64_t u0 = 0; u0 < n_kv; u0 += MODEL_KV_BLOCK) {
            int64_t nk = K2_MIN((int64_t)MODEL_KV_BLOCK, n_kv - u0);
            ak->scores(q, rw, nh, cache_rows(cc, j->layer, u0, nk, buf), rw, nk, rw, hp->kq_scale, z + u0, n_kv);
        }
        for (int64_t h = 0; h < nh; h++) {
            float *zh = z + h * n_kv, zmax = -INFINITY;
            for (int64_t u = 0; u < n_kv; u++)
                if (zh[u] > zmax) zmax = zh[u];
            double sum = 0.0;
            for (int64_t u = 0; u < n_kv; u++) {
                zh[u] = expf(zh[u] - zmax);
                sum += zh[u];
            }
            float inv = (float)(1.0 / sum);
            for (int64_t u = 0; u < n_kv; u++) zh[u] *= inv;
        }
        memset(lat, 0, sizeof(float) * (size_t)(nh * d_c));
        for (int64_t u0 = 0; u0 < n_kv; u0 += MODEL_KV_BLOCK) {
            int64_t nk = K2_MIN((int64_t)MODEL_KV_BLOCK, n_kv - u0);
            ak->latent(z + u0, n_kv, nh, cache_rows(cc, j->layer, u0, nk, buf), rw, nk, d_c, lat, d_c);
        }
    }
}

/* ---- expanded (non-absorbed) attention for prefill, §4.6 ----
 * Why: the absorbed form costs d_c + d_r + d_c = 1088 multiply-adds per (query, key,
 * head) plus the k_b/v_b products per query; the expanded form decompresses each cached
 * latent once per head (k_b, v_b: d_c x (d_n + d_v) multiply-adds per key and head) and
 * then costs d_k + d_v = 320 per (query, key, head). With T new tokens over n_kv cached
 * rows the expanded form wins once T is a good fraction of n_kv: a prompt. Fast mode only
 * (exact mode keeps the absorbed form of the float64 reference); decided per sequence, so
 * a sequence's arithmetic does not depend on what it is batched with. */
/* fewest new tokens for the expanded form (the cost model alone says ~19 for Kimi K2 from an
 * empty cache; each call also dequantizes k_b and v_b per head) */
#define MODEL_MLA_EXPAND_MIN 32

static bool use_expanded(const k2_context *ctx, const model_seg *sg) {
    const k2_model_hparams *hp = &ctx->model->hp;
    if (ctx->exact || !g_expand_kernels || g_mla == MLA_ABSORBED || hp->head_dim_v % 64 != 0 ||
        ctx->model->d_n % 64 != 0 || hp->rope_dim % 16 != 0 || hp->kv_lora_rank % 16 != 0)
        return false;
    if (g_mla == MLA_EXPANDED) return true;
    if (sg->T < MODEL_MLA_EXPAND_MIN) return false;
    double d_c = hp->kv_lora_rank, d_r = hp->rope_dim, d_n = ctx->model->d_n, d_v = hp->head_dim_v;
    double n_kv = (double)(sg->pos0 + sg->T), pairs = (double)sg->T * ((double)sg->pos0 + 0.5 * (double)(sg->T + 1));
    double absorbed = (double)sg->T * d_c * (d_n + d_v) + pairs * (2 * d_c + d_r);
    double expanded = (n_kv + 1) * d_c * (d_n + d_v) + pairs * (d_n + d_r + d_v);
    return expanded < absorbed;
}

static float *aligned_floats(size_t n) {
    return aligned_alloc(64, (sizeof(float) * n + 63) / 64 * 64);
}

/* Per-thread buffers for the expanded form; false when memory is short (the caller then
 * keeps the absorbed form). */
static bool expand_buffers(k2_context *ctx, int64_t max_t, int64_t max_kv) {
    const k2_model_hparams *hp = &ctx->model->hp;
    size_t d_c = hp->kv_lora_rank, d_k = (size_t)ctx->model->d_n + hp->rope_dim, d_v = hp->head_dim_v;
    size_t nq = (size_t)max_t * d_k, nz = (size_t)max_t * (size_t)max_kv;
    for (int i = 0; i < ctx->n_threads; i++) {
        model_scratch *sc = &ctx->scratch[i];
        /* 64-byte aligned: the kernels stream these with full-vector loads, and loads that
         * straddle cache lines ran the decompression at 2/3 speed (measured); each one is
         * retried while missing, so a failed call leaves no half-set scratch behind */
        if (!sc->xw) sc->xw = aligned_floats(d_c * ((size_t)ctx->model->d_n + d_v));
        if (!sc->xk) sc->xk = aligned_floats(MODEL_KV_BLOCK * K2_MAX(d_k, d_c));
        if (!sc->xkt) sc->xkt = aligned_floats(MODEL_KV_BLOCK * d_k);
        if (!sc->xv) sc->xv = aligned_floats(MODEL_KV_BLOCK * d_v);
        if (!sc->xw || !sc->xk || !sc->xkt || !sc->xv) return false;
        if (sc->xq_cap < nq) {
            float *p = realloc(sc->xq, sizeof(float) * nq);
            if (!p) return false;
            sc->xq = p, sc->xq_cap = nq;
        }
        if (sc->xz_cap < nz) {
            float *p = realloc(sc->xz, sizeof(float) * nz);
            if (!p) return false;
            sc->xz = p, sc->xz_cap = nz;
        }
    }
    return true;
}

/* Rows [0, rows) of one head's slice of k_b or v_b as f32 (legacy files hold f32). */
static void slice_rows_f32(const model_weight *w, int64_t rows, float *dst) {
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *src = w->data + (size_t)r * w->row_bytes;
        if (w->type == K2_TYPE_F32)
            memcpy(dst + r * w->cols, src, sizeof(float) * (size_t)w->cols);
        else
            quant_dequantize_row(w->type, src, dst + r * w->cols, w->cols);
    }
}

typedef struct xattn_job {
    k2_context *ctx;
    int layer;
    const model_seg *seg;
    const int *xs; /* the segments on the expanded form */
} xattn_job;

/* Item i: segment xs[i / H], head i % H: decompress the keys block by block and score all
 * the sequence's new queries against them, softmax, then decompress the values block by
 * block and accumulate o (two passes over the cache rows: no n_kv-sized key buffer). */
static void xattn_task(void *arg, int64_t b, int64_t e, int tid) {
    xattn_job *j = arg;
    k2_context *ctx = j->ctx;
    const k2_model *m = ctx->model;
    const k2_model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[j->layer];
    int64_t H = hp->n_head, d_c = hp->kv_lora_rank, d_r = hp->rope_dim, d_n = m->d_n, d_v = hp->head_dim_v;
    int64_t d_k = d_n + d_r, rw = (int64_t)ctx->cache_row, np = d_r / 2, B = MODEL_KV_BLOCK;
    model_scratch *sc = &ctx->scratch[tid];
    float *kb = sc->xw, *vbt = sc->xw + d_c * d_n;
    for (int64_t it = b; it < e; it++) {
        const model_seg *sg = &j->seg[j->xs[it / H]];
        int64_t h = it % H, T = sg->T, pos0 = sg->pos0, n_kv = pos0 + T;
        /* head h: k_b slice is d_c rows of d_n (row c: W^UK[.][c]), v_b slice d_v rows of d_c */
        model_weight kw = model_weight_slice(&ly->k_b, h), vw = model_weight_slice(&ly->v_b, h);
        slice_rows_f32(&kw, d_c, kb);
        for (int64_t v0 = 0; v0 < d_v; v0 += 16) { /* 16 rows at a time through xk, transposed */
            model_weight rows16 = vw;
            rows16.data = vw.data + (size_t)v0 * vw.row_bytes;
            slice_rows_f32(&rows16, 16, sc->xk);
            model_transpose_avx512(sc->xk, d_c, 16, d_c, vbt + v0, d_v);
        }
        /* queries [q^N ; rope(q^R)] */
        float *q = sc->xq, *z = sc->xz;
        for (int64_t t = 0; t < T; t++) {
            int64_t row = sg->t0 + t;
            const float *src = ctx->q + (row * H + h) * d_k;
            memcpy(q + t * d_k, src, sizeof(float) * (size_t)d_k);
            rope(q + t * d_k + d_n, ctx->rope_cos + row * np, ctx->rope_sin + row * np, np);
        }
        /* pass 1: scores of queries t (position pos0 + t) against keys u <= pos0 + t */
        for (int64_t u0 = 0; u0 < n_kv; u0 += B) {
            int64_t nk = K2_MIN(B, n_kv - u0), t0 = K2_MAX(0, u0 - pos0);
            const float *cr = cache_rows(sg->c, j->layer, u0, nk, sc->kvrow);
            model_attn_expand_avx512(cr, rw, nk, kb, d_c, d_n, sc->xk, d_k);
            for (int64_t u = 0; u < nk; u++)
                memcpy(sc->xk + u * d_k + d_n, cr + u * rw + d_c, sizeof(float) * (size_t)d_r);
            /* rows past nk (last block) carry stale values into columns the scores mask off */
            model_transpose_avx512(sc->xk, d_k, (nk + 15) / 16 * 16, d_k, sc->xkt, B);
            model_attn_scores_t_avx512(q + t0 * d_k, d_k, T - t0, sc->xkt, B, nk, d_k, hp->kq_scale, z + t0 * n_kv + u0,
                                       n_kv);
        }
        /* softmax over each query's keys; its masked keys in its last block weigh 0 */
        for (int64_t t = 0; t < T; t++) {
            int64_t n = pos0 + t + 1;
            model_softmax_avx512(z + t * n_kv, n, K2_MIN(n_kv, (n + B - 1) / B * B));
            memset(ctx->o + (sg->t0 + t) * H * d_v + h * d_v, 0, sizeof(float) * (size_t)d_v);
        }
        /* pass 2: o_t += sum over u of alpha_{t,u} v_u */
        for (int64_t u0 = 0; u0 < n_kv; u0 += B) {
            int64_t nk = K2_MIN(B, n_kv - u0), t0 = K2_MAX(0, u0 - pos0);
            const float *cr = cache_rows(sg->c, j->layer, u0, nk, sc->kvrow);
            model_attn_expand_avx512(cr, rw, nk, vbt, d_c, d_v, sc->xv, d_v);
            model_attn_latent_avx512(z + t0 * n_kv + u0, n_kv, T - t0, sc->xv, d_v, nk, d_v,
                                     ctx->o + (sg->t0 + t0) * H * d_v + h * d_v, H * d_v);
        }
    }
}

static void absorbed_attention(k2_context *ctx, int l, int64_t T, const model_seg *seg, int nseg,
                               const bool *expanded);

static void attention(k2_context *ctx, int l, int64_t T, const model_seg *seg, int nseg) {
    const k2_model *m = ctx->model;
    const k2_model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[l];
    int64_t d = hp->n_embd, H = hp->n_head, d_k = hp->head_dim_k, d_v = hp->head_dim_v;
    int64_t d_c = hp->kv_lora_rank, d_r = hp->rope_dim, rq = hp->q_lora_rank;
    int64_t rw = d_c + d_r, np = d_r / 2;

    /* A1 */
    for (int64_t t = 0; t < T; t++) rmsnorm(ctx->h + t * d, ctx->x + t * d, ly->attn_norm, d, hp->rms_eps);
    /* A2: q-LoRA (q_a, norm, q_b) or plain attn_q */
    /* A2 and A4 read the same normed input: one job, one activation conversion */
    model_mm first[2] = {
        {rq > 0 ? ly->q_a : ly->q, ctx->h, d, rq > 0 ? ctx->cq : ctx->q, rq > 0 ? rq : H * d_k, T, 0, false},
        {ly->kv_a, ctx->h, d, ctx->kv, rw, T, 0, false}};
    model_matmul_multi(ctx, first, 2);
    if (rq > 0) {
        for (int64_t t = 0; t < T; t++) rmsnorm(ctx->cq + t * rq, ctx->cq + t * rq, ly->q_a_norm, rq, hp->rms_eps);
        model_matmul(ctx, &ly->q_b, ctx->cq, rq, ctx->q, H * d_k, T);
    }
    /* A4-A7: joint down-projection (above), latent norm, rope on k^R, append to each
     * sequence's own cache */
    for (int s = 0; s < nseg; s++)
        for (int64_t t = seg[s].t0; t < seg[s].t0 + seg[s].T; t++) {
            float *kv = ctx->kv + t * rw;
            rmsnorm(kv, kv, ly->kv_a_norm, d_c, hp->rms_eps);
            rope(kv + d_c, ctx->rope_cos + t * np, ctx->rope_sin + t * np, np);
            cache_store(seg[s].c, l, seg[s].pos0 + (t - seg[s].t0), kv);
        }
    /* the form per sequence: expanded (§4.6) for prompts where it is cheaper, else absorbed */
    int xs[nseg > 0 ? nseg : 1], nx = 0;
    bool expanded[nseg > 0 ? nseg : 1];
    int64_t max_t = 0, max_kv = 0;
    for (int s = 0; s < nseg; s++) {
        expanded[s] = use_expanded(ctx, &seg[s]);
        if (expanded[s]) {
            xs[nx++] = s;
            max_t = K2_MAX(max_t, seg[s].T);
            max_kv = K2_MAX(max_kv, seg[s].pos0 + seg[s].T);
        }
    }
    if (nx > 0 && !expand_buffers(ctx, max_t, max_kv)) nx = 0; /* short of memory: absorbed */
    if (nx < nseg) absorbed_attention(ctx, l, T, seg, nseg, nx > 0 ? expanded : NULL);
    if (nx > 0) {
        xattn_job xj = {ctx, l, seg, xs};
        model_pool_for(ctx->pool, (int64_t)nx * H, 1, xattn_task, &xj);
    }
    /* A9, A10 */
    model_matmul(ctx, &ly->out, ctx->o, H * d_v, ctx->y, d, T);
    float scale = ly->out_scale ? ly->out_scale[0] : 1.0f;
    for (int64_t k = 0; k < T * d; k++) ctx->x[k] += ctx->y[k] * scale;
}

/* §4.5 for the batch (the rows of expanded sequences too when mixed: their o rows are
 * overwritten by xattn_task afterwards; `expanded` leaves their attention loops out). */
static void absorbed_attention(k2_context *ctx, int l, int64_t T, const model_seg *seg, int nseg,
                               const bool *expanded) {
    const k2_model *m = ctx->model;
    const k2_model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[l];
    int64_t H = hp->n_head, d_k = hp->head_dim_k, d_v = hp->head_dim_v;
    int64_t d_c = hp->kv_lora_rank, d_r = hp->rope_dim, d_n = m->d_n;
    int64_t rw = d_c + d_r, np = d_r / 2;
    /* §4.5 step 1: absorbed query rows [q~_i = W^UK_i^T q^N_i ; RoPE(q^R_i)] */
    for (int64_t i = 0; i < H; i++)
        ctx->mm[i] = (model_mm){model_weight_slice(&ly->k_b, i), ctx->q + i * d_k, H * d_k, ctx->qabs + i * rw,
                                H * rw, T, 0, false};
    model_matmul_multi(ctx, ctx->mm, (int)H);
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H; i++) {
            float *dst = ctx->qabs + (t * H + i) * rw + d_c;
            memcpy(dst, ctx->q + t * H * d_k + i * d_k + d_n, sizeof(float) * (size_t)d_r);
            rope(dst, ctx->rope_cos + t * np, ctx->rope_sin + t * np, np);
        }
    /* §4.5 steps 2-4: scores, softmax, latent output */
    attn_job job = {ctx, l, seg, nseg, expanded};
    model_pool_for(ctx->pool, T * ((H + ctx->head_chunk - 1) / ctx->head_chunk), 1, attn_task, &job);
    /* §4.5 step 5: decompress with W^UV per head */
    for (int64_t i = 0; i < H; i++)
        ctx->mm[i] = (model_mm){model_weight_slice(&ly->v_b, i), ctx->lat + i * d_c, H * d_c, ctx->o + i * d_v,
                                H * d_v, T, 0, false};
    model_matmul_multi(ctx, ctx->mm, (int)H);
}

/* ---- FFN (§4.8) ---- */

/* y = W_down (silu(W_gate h) * (W_up h)) for T tokens; f1/f2 are [T][width] scratch. */
static void swiglu_ffn(k2_context *ctx, const model_weight *gate, const model_weight *up,
                       const model_weight *down, const float *h, float *y, int64_t T) {
    int64_t d = ctx->model->hp.n_embd, f = gate->rows;
    model_mm gu[2] = {{*gate, h, d, ctx->f1, f, T, 0, false}, {*up, h, d, ctx->f2, f, T, 0, false}};
    model_matmul_multi(ctx, gu, 2);
    swiglu(ctx, ctx->f1, ctx->f2, T * f);
    model_matmul(ctx, down, ctx->f1, f, y, d, T);
}

static void dense_ffn(k2_context *ctx, int l, int64_t T) {
    const model_layer *ly = &ctx->model->layers[l];
    int64_t d = ctx->model->hp.n_embd;
    swiglu_ffn(ctx, &ly->ffn_gate, &ly->ffn_up, &ly->ffn_down, ctx->h, ctx->y, T);
    for (int64_t k = 0; k < T * d; k++) ctx->x[k] += ctx->y[k];
}

/* ---- MoE (§5) ---- */

/* §5 M2-M8 for one token: router logits -> K expert ids and weights. */
void model_route(const k2_model_hparams *hp, const float *logits, const float *bias, float *probs,
                  float *choice, int32_t *sel, float *w) {
    int64_t E = hp->n_expert, K = hp->n_expert_used;
    /* M2 */
    switch (hp->gating_func) {
    case 2:
        for (int64_t e = 0; e < E; e++) probs[e] = sigmoid(logits[e]);
        break;
    case 3:
        for (int64_t e = 0; e < E; e++) probs[e] = logits[e];
        break;
    case 4:
        for (int64_t e = 0; e < E; e++) {
            float x = logits[e];
            float sp = x > 20.0f ? x : log1pf(expf(x));
            probs[e] = sqrtf(sp);
        }
        break;
    default: {
        float mx = -INFINITY, sum = 0.0f;
        for (int64_t e = 0; e < E; e++) mx = fmaxf(mx, logits[e]);
        for (int64_t e = 0; e < E; e++) sum += probs[e] = expf(logits[e] - mx);
        for (int64_t e = 0; e < E; e++) probs[e] /= sum;
    }
    }
    /* M3: the bias only chooses */
    for (int64_t e = 0; e < E; e++) choice[e] = probs[e] + (bias ? bias[e] : 0.0f);
    /* M4: group-limited routing, group score = sum of the two largest, others -inf */
    if (hp->n_expert_groups > 1) {
        int64_t G = hp->n_expert_groups, per = E / G;
        float gscore[512];
        bool keep[512];
        for (int64_t g = 0; g < G; g++) {
            float a = -INFINITY, b2 = -INFINITY;
            for (int64_t k = 0; k < per; k++) {
                float v = choice[g * per + k];
                if (v > a) { b2 = a; a = v; } else if (v > b2) b2 = v;
            }
            gscore[g] = a + b2;
            keep[g] = false;
        }
        for (uint32_t n = 0; n < hp->n_expert_groups_used; n++) {
            int64_t best = -1;
            for (int64_t g = 0; g < G; g++)
                if (!keep[g] && (best < 0 || gscore[g] > gscore[best])) best = g;
            keep[best] = true;
        }
        for (int64_t g = 0; g < G; g++)
            if (!keep[g])
                for (int64_t k = 0; k < per; k++) choice[g * per + k] = -INFINITY;
    }
    /* M5: top-K, ties to the lowest index */
    for (int64_t k = 0; k < K; k++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            if (choice[e] == -INFINITY && best >= 0) continue;
            bool taken = false;
            for (int64_t j = 0; j < k; j++) taken |= sel[j] == e;
            if (!taken && (best < 0 || choice[e] > choice[best])) best = e;
        }
        sel[k] = (int32_t)best;
    }
    /* M6-M8: weights from the unbiased probabilities */
    for (int64_t k = 0; k < K; k++) w[k] = probs[sel[k]];
    if (hp->gating_func == 3) {
        float mx = -INFINITY, sum = 0.0f;
        for (int64_t k = 0; k < K; k++) mx = fmaxf(mx, w[k]);
        for (int64_t k = 0; k < K; k++) sum += w[k] = expf(w[k] - mx);
        for (int64_t k = 0; k < K; k++) w[k] /= sum;
    }
    if (hp->expert_weights_norm) {
        float sum = 0.0f;
        for (int64_t k = 0; k < K; k++) sum += w[k];
        sum = fmaxf(sum, 6.103515625e-5f); /* 2^-14 */
        for (int64_t k = 0; k < K; k++) w[k] /= sum;
    }
    float rho = hp->expert_weights_scale;
    if (rho != 0.0f && rho != 1.0f)
        for (int64_t k = 0; k < K; k++) w[k] *= rho;
}

static void moe(k2_context *ctx, int l, int64_t T) {
    const k2_model *m = ctx->model;
    const k2_model_hparams *hp = &m->hp;
    const model_layer *ly = &m->layers[l];
    int64_t d = hp->n_embd, E = hp->n_expert, K = hp->n_expert_used, fe = hp->n_ff_exp;

    /* M1-M8 */
    model_matmul(ctx, &ly->gate_inp, ctx->h, d, ctx->rl, E, T);
    for (int64_t t = 0; t < T; t++)
        model_route(hp, ctx->rl + t * E, ly->exp_bias, ctx->rprob, ctx->rprob + E, ctx->sel + t * K,
                    ctx->selw + t * K);

    /* M9: each selected expert runs once over the tokens that chose it; all experts' gate/up
     * products form one parallel job, their down products another. Rows j of the gathered
     * buffers are (token, k) pairs grouped by expert; etok maps them back to t*K + k. */
    int64_t n = 0, ne = 0;
    for (int64_t e = 0; e < E; e++) {
        int64_t start = n, ng = 0; /* ng: rows from the batch's GEMM rows (they come first) */
        for (int64_t t = 0; t < T; t++)
            for (int64_t k = 0; k < K; k++)
                if (ctx->sel[t * K + k] == e) {
                    ctx->etok[n] = (int32_t)(t * K + k);
                    memcpy(ctx->ex + n * d, ctx->h + t * d, sizeof(float) * (size_t)d);
                    n++;
                    ng += t < ctx->gemm_rows;
                }
        if (n == start) continue;
        model_weight gate = model_weight_slice(&ly->gate_exps, e), up;
        if (ly->fused_gate_up) {
            up = gate;
            gate.rows = fe;
            up.rows = fe;
            up.data = gate.data + (size_t)fe * gate.row_bytes;
        } else {
            up = model_weight_slice(&ly->up_exps, e);
        }
        ctx->mm[2 * ne] = (model_mm){gate, ctx->ex + start * d, d, ctx->f1 + start * fe, fe, n - start, ng, true};
        ctx->mm[2 * ne + 1] = (model_mm){up, ctx->ex + start * d, d, ctx->f2 + start * fe, fe, n - start, ng, true};
        ctx->mm[2 * E + 2 + ne] = (model_mm){model_weight_slice(&ly->down_exps, e), ctx->f1 + start * fe, fe,
                                             ctx->ey + start * d, d, n - start, ng, true};
        ne++;
    }
    /* M10: the shared experts (width S * f_e, weight 1) join the same two jobs; their rows
     * follow the routed ones in f1/f2, their output goes to sh */
    bool shared = ly->gate_sh.data != NULL;
    int64_t fs = shared ? ly->gate_sh.rows : 0;
    float *sf1 = ctx->f1 + n * fe, *sf2 = ctx->f2 + n * fe;
    if (shared) {
        ctx->mm[2 * ne] = (model_mm){ly->gate_sh, ctx->h, d, sf1, fs, T, 0, false};
        ctx->mm[2 * ne + 1] = (model_mm){ly->up_sh, ctx->h, d, sf2, fs, T, 0, false};
        ctx->mm[2 * E + 2 + ne] = (model_mm){ly->down_sh, sf1, fs, ctx->sh, d, T, 0, false};
    }
    model_matmul_multi(ctx, ctx->mm, (int)(2 * ne + 2 * shared));
    swiglu(ctx, ctx->f1, ctx->f2, n * fe + T * fs);
    model_matmul_multi(ctx, ctx->mm + 2 * E + 2, (int)(ne + shared));
    for (int64_t j = 0; j < n; j++) {
        int64_t tk = ctx->etok[j];
        float *dst = ctx->eout + tk * d, wk = ctx->selw[tk];
        const float *ye = ctx->ey + j * d;
        for (int64_t c = 0; c < d; c++) dst[c] = wk * ye[c];
    }
    for (int64_t t = 0; t < T; t++) {
        float *yt = ctx->y + t * d;
        memcpy(yt, ctx->eout + t * K * d, sizeof(float) * (size_t)d);
        for (int64_t k = 1; k < K; k++) {
            const float *src = ctx->eout + (t * K + k) * d;
            for (int64_t c = 0; c < d; c++) yt[c] += src[c];
        }
    }
    /* M11: shared experts' output, weight 1, added after the routed sum */
    if (shared)
        for (int64_t k = 0; k < T * d; k++) ctx->y[k] += ctx->sh[k];
    for (int64_t k = 0; k < T * d; k++) ctx->x[k] += ctx->y[k];
}

/* ---- one batch ---- */

/* Rows [0, T) of a batch, made of nseg sequences' segments in row order. Every weight
 * product runs once over all rows; only the cache writes and the attention are per
 * sequence. all_logits (one sequence only): every row's logits go there. */
static k2_status forward_batch(k2_context *ctx, int64_t T, const model_seg *seg, int nseg, float *all_logits,
                               k2_error *err) {
    const k2_model *m = ctx->model;
    const k2_model_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, V = hp->n_vocab, np = hp->rope_dim / 2;

    for (int s = 0; s < nseg; s++)
        for (int64_t i = 0; i < seg[s].T; i++) {
            int64_t t = seg[s].t0 + i;
            /* §4.1 embedding */
            const uint8_t *src = m->tok_embd.data + (size_t)seg[s].tokens[i] * m->tok_embd.row_bytes;
            k2_status st = k2_dequantize(m->tok_embd.type, src, ctx->x + t * d, d, err);
            if (st != K2_OK) return st;
            /* RoPE angles phi_m = p * omega_m (§4.3.2), in double, shared by all blocks */
            for (int64_t k = 0; k < np; k++) {
                double phi = (double)(seg[s].pos0 + i) * m->rope_freq[k];
                ctx->rope_cos[t * np + k] = (float)(cos(phi) * hp->rope_mag);
                ctx->rope_sin[t * np + k] = (float)(sin(phi) * hp->rope_mag);
            }
        }
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        attention(ctx, (int)l, T, seg, nseg);
        for (int64_t t = 0; t < T; t++) rmsnorm(ctx->h + t * d, ctx->x + t * d, m->layers[l].ffn_norm, d, hp->rms_eps);
        if (l < hp->n_layer_dense)
            dense_ffn(ctx, (int)l, T);
        else
            moe(ctx, (int)l, T);
    }
    /* §4.9 final norm and logits, only for the rows asked for: one product over the wanted
     * rows of all sequences */
    if (all_logits) {
        for (int64_t t = 0; t < T; t++) rmsnorm(ctx->h + t * d, ctx->x + t * d, m->output_norm, d, hp->rms_eps);
        model_matmul(ctx, &m->output, ctx->h, d, all_logits, V, T);
        if (seg[0].want) {
            memcpy(seg[0].c->last_logits, all_logits + (T - 1) * V, sizeof(float) * (size_t)V);
            seg[0].c->have_logits = true;
        }
        return K2_OK;
    }
    int64_t nr = 0;
    const model_seg *only = NULL;
    for (int s = 0; s < nseg; s++)
        if (seg[s].want) {
            int64_t t = seg[s].t0 + seg[s].T - 1;
            rmsnorm(ctx->h + nr * d, ctx->x + t * d, m->output_norm, d, hp->rms_eps);
            nr++;
            only = &seg[s];
        }
    if (nr == 0) return K2_OK;
    float *dst;
    if (nr == 1) {
        dst = only->dst ? only->dst : only->c->last_logits;
    } else {
        if (ctx->blogits_rows < nr) {
            free(ctx->blogits);
            ctx->blogits = malloc(sizeof(float) * (size_t)(nr * V));
            ctx->blogits_rows = ctx->blogits ? nr : 0;
            if (!ctx->blogits) return k2_err(err, K2_ENOMEM, "out of memory for the logits of %lld sequences", (long long)nr);
        }
        dst = ctx->blogits;
    }
    model_matmul(ctx, &m->output, ctx->h, d, dst, V, nr);
    int64_t r = 0;
    for (int s = 0; s < nseg; s++)
        if (seg[s].want) {
            const float *row = dst + r * V;
            if (seg[s].dst && row != seg[s].dst) memcpy(seg[s].dst, row, sizeof(float) * (size_t)V);
            if (row != seg[s].c->last_logits) memcpy(seg[s].c->last_logits, row, sizeof(float) * (size_t)V);
            seg[s].c->have_logits = true;
            r++;
        }
    return K2_OK;
}

#define UBATCH 256

static k2_status ensure_buffers(k2_context *ctx, int64_t T, k2_error *err) {
    if (T <= ctx->cap_tok) return K2_OK;
    const k2_model *m = ctx->model;
    const k2_model_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, H = hp->n_head, rw = hp->kv_lora_rank + hp->rope_dim;
    int64_t ff = K2_MAX((int64_t)hp->n_ff, (int64_t)hp->n_ff_exp * K2_MAX(1, (int64_t)hp->n_expert_shared));
    int64_t K = K2_MAX(1, (int64_t)hp->n_expert_used);
    /* gathered expert rows (up to K per token) followed by the shared experts' rows */
    int64_t fs = 0;
    for (uint32_t l = 0; l < hp->n_layer; l++) fs = K2_MAX(fs, m->layers[l].gate_sh.data ? m->layers[l].gate_sh.rows : 0);
    ff = K2_MAX(ff, K * (int64_t)hp->n_ff_exp + fs);
    float **bufs[] = {&ctx->x, &ctx->h, &ctx->cq, &ctx->q, &ctx->kv, &ctx->qabs, &ctx->lat, &ctx->o,
                      &ctx->y, &ctx->f1, &ctx->f2, &ctx->rl, &ctx->rope_cos, &ctx->rope_sin,
                      &ctx->selw, &ctx->ex, &ctx->ey, &ctx->eout, &ctx->sh};
    int64_t sizes[] = {d, d, K2_MAX(1, (int64_t)hp->q_lora_rank), H * hp->head_dim_k, rw, H * rw,
                       H * hp->kv_lora_rank, H * hp->head_dim_v, d, ff, ff, K2_MAX(1, (int64_t)hp->n_expert),
                       hp->rope_dim / 2, hp->rope_dim / 2, K, d * K, d * K, d * K, d};
    _Static_assert(sizeof bufs / sizeof bufs[0] == sizeof sizes / sizeof sizes[0], "one size per buffer");
    for (size_t i = 0; i < K2_ARRAY_LEN(bufs); i++) {
        free(*bufs[i]);
        *bufs[i] = malloc(sizeof(float) * (size_t)(sizes[i] * T));
        if (!*bufs[i]) return k2_err(err, K2_ENOMEM, "out of memory for a batch of %lld tokens", (long long)T);
    }
    free(ctx->sel);
    free(ctx->etok);
    free(ctx->act);
    /* widest activation row in any format (f32 is the largest: 4 bytes per element) */
    ctx->act_cap = (size_t)T * (size_t)(K2_MAX(m->max_cols, 256) + 256) * 4;
    ctx->act = malloc(ctx->act_cap);
    if (!ctx->act) return k2_err(err, K2_ENOMEM, "out of memory for a batch");
    ctx->sel = malloc(sizeof(int32_t) * (size_t)(K * T));
    ctx->etok = malloc(sizeof(int32_t) * (size_t)(K * T));
    if (!ctx->sel || !ctx->etok) return k2_err(err, K2_ENOMEM, "out of memory for a batch");
    ctx->cap_tok = T;
    return K2_OK;
}

/* The attention scores scratch must hold n_kv positions for every row of the batch:
 * sequences of other contexts may be longer than the driving context's. */
static k2_status ensure_scores(k2_context *ctx, uint32_t n_pos, k2_error *err) {
    if (n_pos <= ctx->scores_cap) return K2_OK;
    for (int i = 0; i < ctx->n_threads; i++) {
        float *p = realloc(ctx->scratch[i].scores, sizeof(float) * (size_t)n_pos * (size_t)ctx->head_chunk);
        if (!p) return k2_err(err, K2_ENOMEM, "out of memory for attention scores over %u positions", n_pos);
        ctx->scratch[i].scores = p;
    }
    ctx->scores_cap = n_pos;
    return K2_OK;
}

k2_status model_forward_multi(k2_context *const *ctxs, const int32_t *const *tokens, const uint32_t *n_tokens,
                              int n_seq, k2_logits_rows rows, float *logits, k2_error *err) {
    k2_context *ctx = ctxs[0];
    const k2_model_hparams *hp = &ctx->model->hp;
    pthread_once(&f16_once, f16_table_init);
    pthread_once(&attn_once, attn_kernels_init);
    for (int q = 0; q < n_seq; q++) {
        for (uint32_t i = 0; i < n_tokens[q]; i++)
            if (tokens[q][i] < 0 || (uint32_t)tokens[q][i] >= hp->n_vocab) {
                if (n_seq == 1)
                    return k2_err(err, K2_EINVAL, "token id %d at index %u is outside the vocabulary [0, %u)",
                                  tokens[q][i], i, hp->n_vocab);
                return k2_err(err, K2_EINVAL, "sequence %d: token id %d at index %u is outside the vocabulary [0, %u)",
                              q, tokens[q][i], i, hp->n_vocab);
            }
        k2_context *c = ctxs[q];
        if ((uint64_t)c->len + (uint64_t)n_tokens[q] > c->n_ctx) {
            if (n_seq == 1)
                return k2_err(err, K2_ERANGE, "%u tokens after the %u cached ones exceed the context of %u tokens",
                              n_tokens[q], c->len, c->n_ctx);
            return k2_err(err, K2_ERANGE,
                          "sequence %d: %u tokens after the %u cached ones exceed its context of %u tokens", q,
                          n_tokens[q], c->len, c->n_ctx);
        }
    }
    /* rows of several sequences go through the model together, UBATCH at a time; a long
     * sequence spans several micro-batches (its later rows see the earlier ones' cache) */
    model_seg segs_local[16], *segs = segs_local;
    uint32_t offs_local[16], *off = offs_local;
    if (n_seq > 16) {
        segs = malloc(sizeof *segs * (size_t)n_seq);
        off = calloc((size_t)n_seq, sizeof *off);
        if (!segs || !off) {
            free(segs);
            free(off);
            return k2_err(err, K2_ENOMEM, "out of memory for a batch of %d sequences", n_seq);
        }
    } else {
        memset(offs_local, 0, sizeof offs_local);
    }
    uint32_t max_pos = 0;
    for (int q = 0; q < n_seq; q++) max_pos = K2_MAX(max_pos, ctxs[q]->len + n_tokens[q]);
    k2_status st = ensure_scores(ctx, max_pos, err);
    bool touched_logits = false;
    while (st == K2_OK) {
        int nseg = 0;
        int64_t T = 0, Tg = 0;
        /* sequences that gave this eval MODEL_GEMM_MIN_TOK tokens or more come first: their
         * rows (and only theirs) take the panel GEMM, whatever else shares the batch */
        for (int pass = 0; pass < 2; pass++) {
            for (int q = 0; q < n_seq && T < UBATCH; q++) {
                if (off[q] >= n_tokens[q] || (n_tokens[q] >= MODEL_GEMM_MIN_TOK) != (pass == 0)) continue;
                int64_t take = K2_MIN((int64_t)UBATCH - T, (int64_t)(n_tokens[q] - off[q]));
                bool last = off[q] + take == n_tokens[q];
                bool want = rows != K2_ROWS_NONE && last;
                segs[nseg++] = (model_seg){ctxs[q], T, take, (int64_t)ctxs[q]->len + off[q], tokens[q] + off[q], q,
                                           want, want && logits && rows == K2_ROWS_LAST ? logits : NULL};
                T += take;
            }
            if (pass == 0) Tg = T;
        }
        if (nseg == 0) break;
        ctx->batch_rows = T;
        ctx->gemm_rows = Tg;
        float *all = NULL;
        if (rows == K2_ROWS_ALL && logits) /* one sequence (k2_eval) */
            all = logits + (size_t)off[0] * hp->n_vocab;
        st = ensure_buffers(ctx, T, err);
        if (st != K2_OK) break;
        touched_logits = true;
        st = forward_batch(ctx, T, segs, nseg, all, err);
        for (int s = 0; s < nseg; s++) off[segs[s].seq] += (uint32_t)segs[s].T;
    }
    if (st == K2_OK) {
        for (int q = 0; q < n_seq; q++) ctxs[q]->len += n_tokens[q];
    } else if (touched_logits && rows != K2_ROWS_NONE) {
        /* some sequences' logits may belong to rows that are not cached after all */
        for (int q = 0; q < n_seq; q++) ctxs[q]->have_logits = false;
    }
    if (segs != segs_local) {
        free(segs);
        free(off);
    }
    return st;
}

k2_status model_forward(k2_context *ctx, const int32_t *tokens, int64_t n, k2_logits_rows rows,
                        float *logits, k2_error *err) {
    uint32_t nt = (uint32_t)n;
    return model_forward_multi(&ctx, &tokens, &nt, 1, rows, logits, err);
}
