/* Contexts: the compressed MLA cache (spec §4.5, §8.1), per-thread scratch and the pool. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

void k2_context_options_init(k2_context_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->cache_type = K2_CACHE_F16;
}

k2_status k2_context_new(k2_model *m, const k2_context_options *opt, k2_context **out, k2_error *err) {
    *out = NULL;
    k2_context_options def;
    if (!opt) {
        k2_context_options_init(&def);
        opt = &def;
    }
    if (!m) return k2_err(err, K2_EINVAL, "k2_context_new: no model");
    if (opt->cache_type != K2_CACHE_F16 && opt->cache_type != K2_CACHE_F32)
        return k2_err(err, K2_EINVAL, "k2_context_new: unknown cache type %d", (int)opt->cache_type);
    if (opt->n_threads < 0 || opt->n_threads > 1024)
        return k2_err(err, K2_EINVAL, "k2_context_new: n_threads %d is out of range", opt->n_threads);
    const k2_model_hparams *hp = &m->hp;
    k2_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return k2_err(err, K2_ENOMEM, "out of memory creating a context");
    ctx->model = m;
    ctx->n_ctx = opt->n_ctx ? opt->n_ctx : K2_MIN(hp->n_ctx_train ? hp->n_ctx_train : 4096u, 4096u);
    ctx->cache_type = opt->cache_type;
    ctx->exact = opt->exact;
    ctx->n_threads = opt->n_threads ? opt->n_threads : model_physical_cores();
    ctx->cache_row = (size_t)hp->kv_lora_rank + hp->rope_dim;
    /* heads per attention task: enough tasks for every thread, at most 64 (stack arrays) */
    ctx->head_chunk = K2_MAX(1, K2_MIN(64, (int64_t)hp->n_head / ctx->n_threads));
    k2_status s = model_pool_new(ctx->n_threads, &ctx->pool, err);
    if (s != K2_OK) goto fail;
    ctx->scratch = calloc((size_t)ctx->n_threads, sizeof *ctx->scratch);
    ctx->cache = calloc(hp->n_layer, sizeof(void *));
    ctx->last_logits = malloc(sizeof(float) * hp->n_vocab);
    ctx->rprob = malloc(sizeof(float) * 2 * K2_MAX(1, (size_t)hp->n_expert));
    ctx->mm = malloc(sizeof(model_mm) * K2_MAX((size_t)hp->n_head, 3 * (size_t)hp->n_expert + 3));
    if (!ctx->scratch || !ctx->cache || !ctx->last_logits || !ctx->rprob || !ctx->mm) goto oom;
    for (int i = 0; i < ctx->n_threads; i++) {
        ctx->scratch[i].row = malloc(sizeof(float) * (size_t)K2_MAX(m->max_cols, 1));
        ctx->scratch[i].scores = malloc(sizeof(float) * ctx->n_ctx * (size_t)ctx->head_chunk);
        ctx->scores_cap = ctx->n_ctx;
        ctx->scratch[i].kvrow = malloc(sizeof(float) * ctx->cache_row * MODEL_KV_BLOCK);
        if (!ctx->scratch[i].row || !ctx->scratch[i].scores || !ctx->scratch[i].kvrow) goto oom;
    }
    size_t esz = ctx->cache_type == K2_CACHE_F32 ? 4 : 2;
    uint64_t bytes;
    if (!k2_mul_u64((uint64_t)ctx->n_ctx * ctx->cache_row, esz, &bytes) || bytes > SIZE_MAX) goto oom;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        ctx->cache[l] = malloc((size_t)bytes);
        if (!ctx->cache[l]) goto oom;
    }
    *out = ctx;
    return K2_OK;
oom:
    s = k2_err(err, K2_ENOMEM, "out of memory creating a context of %u tokens (%u layers)", ctx->n_ctx,
               hp->n_layer);
fail:
    k2_context_free(ctx);
    return s;
}

void k2_context_free(k2_context *ctx) {
    if (!ctx) return;
    if (ctx->cache)
        for (uint32_t l = 0; l < ctx->model->hp.n_layer; l++) free(ctx->cache[l]);
    free(ctx->cache);
    if (ctx->scratch)
        for (int i = 0; i < ctx->n_threads; i++) {
            free(ctx->scratch[i].row);
            free(ctx->scratch[i].scores);
            free(ctx->scratch[i].kvrow);
            free(ctx->scratch[i].act);
            free(ctx->scratch[i].xw);
            free(ctx->scratch[i].xk);
            free(ctx->scratch[i].xkt);
            free(ctx->scratch[i].xv);
            free(ctx->scratch[i].xq);
            free(ctx->scratch[i].xz);
        }
    free(ctx->scratch);
    model_pool_free(ctx->pool);
    float *bufs[] = {ctx->x, ctx->h, ctx->cq, ctx->q, ctx->kv, ctx->qabs, ctx->lat, ctx->o, ctx->y,
                     ctx->f1, ctx->f2, ctx->rl, ctx->rprob, ctx->rope_cos, ctx->rope_sin, ctx->selw,
                     ctx->ex, ctx->ey, ctx->eout, ctx->sh, ctx->last_logits, ctx->blogits};
    for (size_t i = 0; i < K2_ARRAY_LEN(bufs); i++) free(bufs[i]);
    free(ctx->sel);
    free(ctx->etok);
    free(ctx->act);
    free(ctx->mm);
    free(ctx);
}

uint32_t k2_context_n_ctx(const k2_context *ctx) { return ctx->n_ctx; }
uint32_t k2_context_length(const k2_context *ctx) { return ctx->len; }
int k2_context_n_threads(const k2_context *ctx) { return ctx->n_threads; }

k2_status k2_eval(k2_context *ctx, const int32_t *tokens, uint32_t n, k2_logits_rows rows, float *logits,
                  k2_error *err) {
    if (!ctx) return k2_err(err, K2_EINVAL, "k2_eval: no context");
    if (n == 0) return K2_OK;
    if (!tokens) return k2_err(err, K2_EINVAL, "k2_eval: no tokens");
    if (rows != K2_ROWS_NONE && rows != K2_ROWS_LAST && rows != K2_ROWS_ALL)
        return k2_err(err, K2_EINVAL, "k2_eval: unknown rows mode %d", (int)rows);
    return model_forward(ctx, tokens, n, rows, logits, err);
}

k2_status k2_eval_batch(k2_context *const *ctxs, const int32_t *const *tokens, const uint32_t *n_tokens, int n_seq,
                        k2_logits_rows rows, k2_error *err) {
    if (!ctxs || !n_tokens || n_seq <= 0)
        return k2_err(err, K2_EINVAL, "k2_eval_batch: no sequences (contexts, token counts and n_seq > 0 are required)");
    if (rows != K2_ROWS_NONE && rows != K2_ROWS_LAST)
        return k2_err(err, K2_EINVAL, "k2_eval_batch: rows mode %d is not NONE or LAST (all rows need k2_eval)",
                      (int)rows);
    if (!tokens) return k2_err(err, K2_EINVAL, "k2_eval_batch: no token arrays");
    for (int q = 0; q < n_seq; q++) {
        if (!ctxs[q]) return k2_err(err, K2_EINVAL, "k2_eval_batch: sequence %d has no context", q);
        if (n_tokens[q] > 0 && !tokens[q]) return k2_err(err, K2_EINVAL, "k2_eval_batch: sequence %d has no tokens", q);
        if (ctxs[q]->model != ctxs[0]->model)
            return k2_err(err, K2_EINVAL, "k2_eval_batch: sequence %d's context belongs to another model than sequence 0's", q);
        if (ctxs[q]->exact != ctxs[0]->exact)
            return k2_err(err, K2_EINVAL, "k2_eval_batch: sequence %d's context is in %s mode, sequence 0's in %s mode", q,
                          ctxs[q]->exact ? "exact" : "fast", ctxs[0]->exact ? "exact" : "fast");
        for (int p = 0; p < q; p++)
            if (ctxs[p] == ctxs[q])
                return k2_err(err, K2_EINVAL, "k2_eval_batch: sequences %d and %d share one context", p, q);
    }
    return model_forward_multi(ctxs, tokens, n_tokens, n_seq, rows, NULL, err);
}

const float *k2_context_logits(const k2_context *ctx) { return ctx->have_logits ? ctx->last_logits : NULL; }

k2_status k2_context_truncate(k2_context *ctx, uint32_t n_keep, k2_error *err) {
    if (n_keep > ctx->len)
        return k2_err(err, K2_ERANGE, "cannot keep %u tokens: the context holds only %u", n_keep, ctx->len);
    ctx->len = n_keep;
    ctx->have_logits = false;
    return K2_OK;
}

void k2_context_reset(k2_context *ctx) {
    ctx->len = 0;
    ctx->have_logits = false;
}
