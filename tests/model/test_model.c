/* Model API tests on k2-tiny-f32: hyperparameters, batch appended to an existing cache,
 * truncate, thread-count independence, f16 cache, routing rules (spec Appendix B 5-6) and
 * error cases (bad tokens, context overflow, wrong architecture, missing / mis-shaped tensors). */
#include "testutil.h"
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static float maxdiff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

/* Copies a GGUF, dropping tensor `drop` and giving tensor `reshape` a wrong shape
 * (or replacing general.architecture by `arch`). */
static bool rewrite(const char *src, const char *dst, const char *drop, const char *reshape, const char *arch) {
    k2_error err;
    k2_gguf *g;
    if (k2_gguf_open(src, &g, &err) != K2_OK) return false;
    k2_gguf_writer *w = k2_gguf_writer_new();
    for (int64_t i = 0; i < k2_gguf_kv_count(g); i++)
        k2_gguf_writer_set_value(w, k2_gguf_kv_key(g, i), k2_gguf_kv_value(g, i));
    if (arch) k2_gguf_writer_set_str(w, "general.architecture", arch);
    bool ok = true;
    for (int64_t i = 0; i < k2_gguf_tensor_count(g); i++) {
        const k2_gguf_tensor *t = k2_gguf_tensor_at(g, i);
        if (drop && !strcmp(t->name, drop)) continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        uint32_t nd = t->n_dims;
        if (reshape && !strcmp(t->name, reshape)) { /* same bytes, swapped dims */
            int64_t tmp = ne[0]; ne[0] = ne[1]; ne[1] = tmp;
        }
        ok &= k2_gguf_writer_add_tensor(w, t->name, t->type, nd, ne, t->data, &err) == K2_OK;
    }
    ok &= k2_gguf_writer_write(w, dst, &err) == K2_OK;
    k2_gguf_writer_free(w);
    k2_gguf_close(g);
    return ok;
}

static void test_route(void) {
    /* Appendix B 5: E=4, K=2, logits (4,3,2,1), bias (-10,0,0,10), norm, rho 2.827 */
    k2_model_hparams hp = {0};
    hp.n_expert = 4;
    hp.n_expert_used = 2;
    hp.gating_func = 2;
    hp.expert_weights_norm = true;
    hp.expert_weights_scale = 2.827f;
    float logits[4] = {4, 3, 2, 1}, bias[4] = {-10, 0, 0, 10}, probs[8], choice[8], w[2];
    int32_t sel[2];
    model_route(&hp, logits, bias, probs, choice, sel, w);
    float s1 = 1 / (1 + expf(-1.0f)), s3 = 1 / (1 + expf(-3.0f));
    CHECK(sel[0] == 3 && sel[1] == 1);
    CHECK(fabsf(w[0] - s1 / (s1 + s3) * 2.827f) < 1e-6f);
    CHECK(fabsf(w[1] - s3 / (s1 + s3) * 2.827f) < 1e-6f);
    /* Appendix B 6: G=8 groups of 2, keep 4: experts of the 4 weakest groups never chosen */
    k2_model_hparams g = {0};
    g.n_expert = 16;
    g.n_expert_used = 8;
    g.n_expert_groups = 8;
    g.n_expert_groups_used = 4;
    g.gating_func = 2;
    float lg[16], pr[32], ch[32], ww[8];
    int32_t ss[8];
    for (int e = 0; e < 16; e++) lg[e] = (float)((e * 7) % 16) - 8.0f;
    model_route(&g, lg, NULL, pr, ch, ss, ww);
    float gs[8];
    for (int k = 0; k < 8; k++) gs[k] = 1 / (1 + expf(-lg[2 * k])) + 1 / (1 + expf(-lg[2 * k + 1]));
    for (int k = 0; k < 8; k++) {
        int rank = 0;
        for (int j = 0; j < 8; j++) rank += gs[j] > gs[k];
        bool chosen = false;
        for (int j = 0; j < 8; j++) chosen |= ss[j] / 2 == k;
        CHECK_MSG(rank < 4 || !chosen, "group %d (rank %d) was used", k, rank);
    }
    /* ties go to the lowest index */
    k2_model_hparams t = hp;
    t.expert_weights_norm = false;
    t.expert_weights_scale = 0;
    float tl[4] = {1, 1, 1, 1};
    model_route(&t, tl, NULL, probs, choice, sel, w);
    CHECK(sel[0] == 0 && sel[1] == 1);
}

int main(void) {
    test_route();
    k2t_require_shared();
    k2_error err;
    char path[4096];
    snprintf(path, sizeof path, "%s", k2t_shared_path("fixtures/models/k2-tiny-f32.gguf"));
    k2_model *m = NULL;
    CHECK_OK(k2_model_load(path, NULL, &m, &err), &err);
    if (!m) return k2t_finish("test_model");
    const k2_model_hparams *hp = k2_model_get_hparams(m);
    CHECK(hp->n_vocab == 2048 && hp->n_layer == 3 && hp->n_layer_dense == 1 && hp->n_head == 4);
    CHECK(hp->q_lora_rank == 256 && hp->kv_lora_rank == 256 && hp->head_dim_k == 96 && hp->head_dim_v == 64);
    CHECK(hp->n_expert == 16 && hp->n_expert_used == 4 && hp->n_expert_shared == 1 && hp->gating_func == 2);
    CHECK(hp->yarn && hp->yarn_beta_fast == 1.0f && hp->yarn_beta_slow == 1.0f && hp->has_expert_bias);
    CHECK(fabsf(hp->yarn_mscale_all_dim - 1.0f) < 1e-6f);
    double g = 1 + 0.1 * log(32.0);
    CHECK(fabs(hp->kq_scale - g * g / sqrt(96.0)) < 1e-7);
    CHECK(k2_model_n_ctx_train(m) == 131072);

    enum { N = 16, SPLIT = 10 };
    int32_t toks[N];
    for (int i = 0; i < N; i++) toks[i] = (i * 131 + 7) % 2048;
    uint32_t V = k2_model_n_vocab(m);
    float *full = malloc(sizeof(float) * V * N), *part = malloc(sizeof(float) * V * N);
    k2_context_options co;
    k2_context_options_init(&co);
    co.n_ctx = 32;
    co.cache_type = K2_CACHE_F32;
    co.exact = true;
    co.n_threads = 1;
    k2_context *c1 = NULL, *c2 = NULL;
    CHECK_OK(k2_context_new(m, &co, &c1, &err), &err);
    co.n_threads = 2;
    CHECK_OK(k2_context_new(m, &co, &c2, &err), &err);
    if (!c1 || !c2) return k2t_finish("test_model");
    CHECK_OK(k2_eval(c1, toks, N, K2_ROWS_ALL, full, &err), &err);
    CHECK(k2_context_length(c1) == N);
    CHECK(k2_context_logits(c1) && maxdiff(k2_context_logits(c1), full + (N - 1) * V, V) == 0);
    /* the same tokens in two batches, the second attending to the cached first */
    CHECK_OK(k2_eval(c2, toks, SPLIT, K2_ROWS_ALL, part, &err), &err);
    CHECK_OK(k2_eval(c2, toks + SPLIT, N - SPLIT, K2_ROWS_ALL, part + SPLIT * V, &err), &err);
    float d = maxdiff(full, part, (size_t)V * N);
    CHECK_MSG(d <= 1e-5f, "split batch differs by %g", d);
    /* truncate and re-evaluate the tail */
    CHECK_OK(k2_context_truncate(c2, SPLIT, &err), &err);
    CHECK(k2_context_length(c2) == SPLIT);
    CHECK_OK(k2_eval(c2, toks + SPLIT, N - SPLIT, K2_ROWS_LAST, part, &err), &err);
    d = maxdiff(full + (N - 1) * V, part, V);
    CHECK_MSG(d <= 1e-5f, "after truncate: %g", d);
    /* errors: out-of-range tokens, context overflow, truncating past the end */
    int32_t bad[2] = {5, 2048};
    uint32_t len = k2_context_length(c2);
    CHECK(k2_eval(c2, bad, 2, K2_ROWS_LAST, NULL, &err) == K2_EINVAL && strstr(err.message, "2048"));
    bad[1] = -1;
    CHECK(k2_eval(c2, bad, 2, K2_ROWS_LAST, NULL, &err) == K2_EINVAL);
    int32_t many[40] = {0};
    CHECK(k2_eval(c2, many, 40, K2_ROWS_LAST, NULL, &err) == K2_ERANGE && strstr(err.message, "context"));
    CHECK(k2_context_length(c2) == len);
    CHECK(k2_context_truncate(c2, 100, &err) == K2_ERANGE);
    k2_context_reset(c2);
    CHECK(k2_context_length(c2) == 0);
    /* f16 cache: close to the f32 one */
    k2_context *c3 = NULL;
    co.cache_type = K2_CACHE_F16;
    CHECK_OK(k2_context_new(m, &co, &c3, &err), &err);
    if (c3) {
        CHECK_OK(k2_eval(c3, toks, N, K2_ROWS_ALL, part, &err), &err);
        d = maxdiff(full, part, (size_t)V * N);
        CHECK_MSG(d > 0 && d < 0.05f, "f16 cache differs by %g", d);
    }
    k2_context_free(c3);
    k2_context_free(c1);
    k2_context_free(c2);
    k2_model_free(m);
    free(full);
    free(part);

    /* load errors name what is wrong */
    k2_model *bad_m = NULL;
    CHECK(k2_model_load("/nonexistent/model.gguf", NULL, &bad_m, &err) != K2_OK && !bad_m);
    char dst[4096];
    snprintf(dst, sizeof dst, "%s/llama.gguf", k2t_tmpdir());
    CHECK(rewrite(path, dst, NULL, NULL, "llama"));
    CHECK(k2_model_load(dst, NULL, &bad_m, &err) == K2_EUNSUPPORTED && strstr(err.message, "llama"));
    snprintf(dst, sizeof dst, "%s/missing.gguf", k2t_tmpdir());
    CHECK(rewrite(path, dst, "blk.1.ffn_up_exps.weight", NULL, NULL));
    CHECK(k2_model_load(dst, NULL, &bad_m, &err) == K2_EFORMAT && strstr(err.message, "blk.1.ffn_up_exps.weight"));
    snprintf(dst, sizeof dst, "%s/shape.gguf", k2t_tmpdir());
    CHECK(rewrite(path, dst, NULL, "blk.2.attn_q_b.weight", NULL));
    CHECK(k2_model_load(dst, NULL, &bad_m, &err) == K2_EFORMAT && strstr(err.message, "blk.2.attn_q_b.weight") &&
          strstr(err.message, "shape"));
    CHECK(bad_m == NULL);
    return k2t_finish("test_model");
}
