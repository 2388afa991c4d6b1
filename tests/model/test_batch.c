/* k2_eval_batch (continuous batching): several sequences, each in its own context, through
 * one forward pass give the logits each would get alone, for prompt chunks and single-token
 * decode steps mixed in one batch, f32 and f16 caches, 1 and 2 threads, exact and fast mode
 * on k2-tiny f32 and q4_k_m; micro-batches that split a sequence; contexts of different
 * sizes (the driving context's attention scratch grows); and the error cases. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { NSEQ = 4, NSTEP = 6 };

static float maxdiff(const float *a, const float *b, size_t n) {
    float m = 0;
    for (size_t i = 0; i < n; i++) m = fmaxf(m, fabsf(a[i] - b[i]));
    return m;
}

static int32_t argmax(const float *v, uint32_t n) {
    uint32_t b = 0;
    for (uint32_t i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return (int32_t)b;
}

/* Tokens each sequence gets at each step: 0 = idle, 1 = decode, more = a prompt chunk. */
static const uint32_t plan[NSTEP][NSEQ] = {
    {5, 12, 1, 0},   /* three prompts of different lengths, one sequence idle */
    {1, 1, 7, 30},   /* two decode while two prefill */
    {1, 1, 1, 1},
    {0, 1, 1, 1},
    {1, 1, 1, 1},
    {1, 0, 2, 1},
};

static float g_worst_fast = 0;

/* Runs the plan batched and alone; returns the largest difference seen. */
static void run_plan(k2_model *m, bool exact, k2_cache_type ct, int threads, const char *what) {
    k2_error err;
    uint32_t V = k2_model_n_vocab(m);
    k2_context *b[NSEQ] = {0}, *r[NSEQ] = {0};
    for (int q = 0; q < NSEQ; q++) {
        k2_context_options co;
        k2_context_options_init(&co);
        co.cache_type = ct;
        co.exact = exact;
        /* different sizes and thread counts: the first (driving) context is the smallest */
        co.n_ctx = (uint32_t)(16 + 24 * q);
        co.n_threads = q == 0 ? threads : 1 + q % 2;
        CHECK_OK(k2_context_new(m, &co, &b[q], &err), &err);
        co.n_threads = threads;
        CHECK_OK(k2_context_new(m, &co, &r[q], &err), &err);
        if (!b[q] || !r[q]) goto done;
    }
    int32_t toks[NSEQ][64];
    uint32_t used[NSEQ] = {0};
    for (int q = 0; q < NSEQ; q++)
        for (int i = 0; i < 64; i++) toks[q][i] = (int32_t)((i * 131 + q * 977 + 7) % 2048);
    float worst = 0;
    for (int step = 0; step < NSTEP; step++) {
        const int32_t *tp[NSEQ];
        uint32_t n[NSEQ];
        for (int q = 0; q < NSEQ; q++) {
            n[q] = plan[step][q];
            /* a decode step feeds the greedy token of the batched run (both runs then agree) */
            if (n[q] == 1 && used[q] > 0 && k2_context_logits(b[q])) toks[q][used[q]] = argmax(k2_context_logits(b[q]), V);
            tp[q] = toks[q] + used[q];
        }
        CHECK_OK(k2_eval_batch(b, tp, n, NSEQ, K2_ROWS_LAST, &err), &err);
        for (int q = 0; q < NSEQ; q++) {
            if (n[q] == 0) continue;
            CHECK_OK(k2_eval(r[q], tp[q], n[q], K2_ROWS_LAST, NULL, &err), &err);
            used[q] += n[q];
            CHECK(k2_context_length(b[q]) == used[q] && k2_context_length(r[q]) == used[q]);
            const float *lb = k2_context_logits(b[q]), *lr = k2_context_logits(r[q]);
            CHECK(lb && lr);
            if (!lb || !lr) continue;
            float d = maxdiff(lb, lr, V);
            worst = fmaxf(worst, d);
            if (exact)
                CHECK_MSG(d == 0, "%s: step %d sequence %d: batched logits differ by %g (exact mode is bitwise)", what, step, q, d);
            else
                CHECK_MSG(d <= 0.15f && argmax(lb, V) == argmax(lr, V),
                          "%s: step %d sequence %d: batched logits differ by %g", what, step, q, d);
        }
    }
    if (!exact) g_worst_fast = fmaxf(g_worst_fast, worst);
    printf("%s: max |batched - alone| = %g\n", what, worst);
done:
    for (int q = 0; q < NSEQ; q++) {
        k2_context_free(b[q]);
        k2_context_free(r[q]);
    }
}

/* A batch of more rows than one micro-batch: sequence 0's prompt is split across two, and
 * the decode rows of the others land after it. */
static void run_long(k2_model *m) {
    k2_error err;
    uint32_t V = k2_model_n_vocab(m);
    enum { P = 300 };
    k2_context *b[3] = {0}, *r = NULL;
    k2_context_options co;
    k2_context_options_init(&co);
    co.exact = true;
    co.n_threads = 2;
    co.n_ctx = 320;
    for (int q = 0; q < 3; q++) CHECK_OK(k2_context_new(m, &co, &b[q], &err), &err);
    CHECK_OK(k2_context_new(m, &co, &r, &err), &err);
    int32_t *toks = malloc(sizeof(int32_t) * P);
    if (!b[0] || !b[1] || !b[2] || !r || !toks) goto done;
    for (int i = 0; i < P; i++) toks[i] = (int32_t)((i * 37 + 11) % 2048);
    /* sequences 1 and 2 first get short prompts */
    const int32_t *tp[3] = {toks, toks + 5, toks + 9};
    uint32_t n[3] = {0, 3, 4};
    CHECK_OK(k2_eval_batch(b, tp, n, 3, K2_ROWS_NONE, &err), &err);
    CHECK(k2_context_logits(b[1]) == NULL && k2_context_length(b[2]) == 4);
    n[0] = P;
    n[1] = 1;
    n[2] = 1;
    CHECK_OK(k2_eval_batch(b, tp, n, 3, K2_ROWS_LAST, &err), &err);
    CHECK_OK(k2_eval(r, toks, P, K2_ROWS_LAST, NULL, &err), &err);
    float d = k2_context_logits(b[0]) ? maxdiff(k2_context_logits(b[0]), k2_context_logits(r), V) : 1;
    CHECK_MSG(d <= 1e-5f, "300-token prompt in a batch differs by %g", d);
    for (int q = 1; q < 3; q++) {
        k2_context_reset(r);
        int32_t seq[8];
        memcpy(seq, tp[q], sizeof(int32_t) * (q == 1 ? 3 : 4));
        seq[q == 1 ? 3 : 4] = tp[q][0];
        CHECK_OK(k2_eval(r, seq, q == 1 ? 4 : 5, K2_ROWS_LAST, NULL, &err), &err);
        d = k2_context_logits(b[q]) ? maxdiff(k2_context_logits(b[q]), k2_context_logits(r), V) : 1;
        CHECK_MSG(d <= 1e-5f, "decode row of sequence %d after a split prompt differs by %g", q, d);
    }
done:
    free(toks);
    for (int q = 0; q < 3; q++) k2_context_free(b[q]);
    k2_context_free(r);
}

static void run_errors(k2_model *m, k2_model *m2) {
    k2_error err;
    k2_context_options co;
    k2_context_options_init(&co);
    co.n_ctx = 16;
    co.n_threads = 1;
    co.exact = true;
    k2_context *a = NULL, *b = NULL, *fast = NULL, *other = NULL;
    CHECK_OK(k2_context_new(m, &co, &a, &err), &err);
    CHECK_OK(k2_context_new(m, &co, &b, &err), &err);
    CHECK_OK(k2_context_new(m2, &co, &other, &err), &err);
    co.exact = false;
    CHECK_OK(k2_context_new(m, &co, &fast, &err), &err);
    if (!a || !b || !fast || !other) goto done;
    int32_t t[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    const int32_t *tp[2] = {t, t};
    uint32_t n[2] = {3, 2};
    CHECK_OK(k2_eval_batch((k2_context *[]){a, b}, tp, n, 2, K2_ROWS_LAST, &err), &err);
    const float *la = k2_context_logits(a);
    float keep = la ? la[7] : 0;
    /* a sequence overflowing its context: named, nothing evaluated */
    n[1] = 15;
    CHECK(k2_eval_batch((k2_context *[]){a, b}, tp, n, 2, K2_ROWS_LAST, &err) == K2_ERANGE &&
          strstr(err.message, "sequence 1") && strstr(err.message, "context"));
    CHECK(k2_context_length(a) == 3 && k2_context_length(b) == 2);
    CHECK(k2_context_logits(a) && k2_context_logits(a)[7] == keep);
    n[1] = 2;
    /* duplicated context */
    CHECK(k2_eval_batch((k2_context *[]){a, a}, tp, n, 2, K2_ROWS_LAST, &err) == K2_EINVAL &&
          strstr(err.message, "share"));
    /* other model, other mode */
    CHECK(k2_eval_batch((k2_context *[]){a, other}, tp, n, 2, K2_ROWS_LAST, &err) == K2_EINVAL &&
          strstr(err.message, "model"));
    CHECK(k2_eval_batch((k2_context *[]){a, fast}, tp, n, 2, K2_ROWS_LAST, &err) == K2_EINVAL &&
          strstr(err.message, "mode"));
    /* bad token in the second sequence */
    int32_t bad[2] = {4, 2048};
    const int32_t *tb[2] = {t, bad};
    CHECK(k2_eval_batch((k2_context *[]){a, b}, tb, n, 2, K2_ROWS_LAST, &err) == K2_EINVAL &&
          strstr(err.message, "sequence 1") && strstr(err.message, "2048"));
    /* missing pieces, all-rows mode */
    CHECK(k2_eval_batch(NULL, tp, n, 2, K2_ROWS_LAST, &err) == K2_EINVAL);
    CHECK(k2_eval_batch((k2_context *[]){a, b}, tp, n, 0, K2_ROWS_LAST, &err) == K2_EINVAL);
    CHECK(k2_eval_batch((k2_context *[]){a, NULL}, tp, n, 2, K2_ROWS_LAST, &err) == K2_EINVAL);
    CHECK(k2_eval_batch((k2_context *[]){a, b}, (const int32_t *[]){t, NULL}, n, 2, K2_ROWS_LAST, &err) ==
          K2_EINVAL);
    CHECK(k2_eval_batch((k2_context *[]){a, b}, tp, n, 2, K2_ROWS_ALL, &err) == K2_EINVAL);
    CHECK(k2_context_length(a) == 3 && k2_context_length(b) == 2);
    /* zero tokens everywhere is a no-op; a context given no tokens keeps its logits */
    uint32_t z[2] = {0, 0};
    CHECK_OK(k2_eval_batch((k2_context *[]){a, b}, (const int32_t *[]){NULL, NULL}, z, 2, K2_ROWS_LAST, &err), &err);
    CHECK(k2_context_length(a) == 3 && k2_context_logits(a) && k2_context_logits(a)[7] == keep);
    z[1] = 1;
    CHECK_OK(k2_eval_batch((k2_context *[]){a, b}, (const int32_t *[]){NULL, t}, z, 2, K2_ROWS_LAST, &err), &err);
    CHECK(k2_context_length(a) == 3 && k2_context_length(b) == 3 && k2_context_logits(a)[7] == keep);
done:
    k2_context_free(a);
    k2_context_free(b);
    k2_context_free(fast);
    k2_context_free(other);
}

int main(void) {
    k2t_require_shared();
    k2_error err;
    const char *names[2] = {"f32", "q4_k_m"};
    k2_model *models[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        char rel[128], path[4096];
        snprintf(rel, sizeof rel, "fixtures/models/k2-tiny-%s.gguf", names[i]);
        snprintf(path, sizeof path, "%s", k2t_shared_path(rel));
        CHECK_OK(k2_model_load(path, NULL, &models[i], &err), &err);
        if (!models[i]) return k2t_finish("test_batch");
    }
    for (int i = 0; i < 2; i++)
        for (int exact = 1; exact >= 0; exact--)
            for (int ct = 0; ct < 2; ct++)
                for (int th = 1; th <= 2; th++) {
                    char what[128];
                    snprintf(what, sizeof what, "%s %s %s cache %d thread%s", names[i], exact ? "exact" : "fast",
                             ct ? "f32" : "f16", th, th > 1 ? "s" : "");
                    run_plan(models[i], exact, ct ? K2_CACHE_F32 : K2_CACHE_F16, th, what);
                }
    printf("fast mode: largest difference %g\n", g_worst_fast);
    run_long(models[0]);
    run_errors(models[0], models[1]);
    k2_model_free(models[0]);
    k2_model_free(models[1]);
    return k2t_finish("test_batch");
}
