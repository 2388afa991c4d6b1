/* k2 bench: prefill and decode speed of a model on this machine (the k2 side of
 * bench/model_bench.py, which runs llama.cpp on the same file in the same run). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *BENCH_HELP =
    "usage: k2 bench -m MODEL [-p N] [-n N] [--parallel N] [--threads N] [--ctx-size N] [--exact] [--json]\n\n"
    "Measure prompt processing (one batch of N tokens) and decoding (N single-token steps).\n"
    "With --parallel N, N sequences (one context each) are prefilled together and then decode\n"
    "together, one k2_eval_batch per step (continuous batching); speeds are aggregates over all\n"
    "sequences.\n\n"
    "  -m, --model FILE   GGUF model\n"
    "  -p, --prompt N     prompt tokens (default 512)\n"
    "  -n, --decode N     decoded tokens (default 32)\n"
    "  --threads N        compute threads (default: physical cores)\n"
    "  --parallel N       sequences evaluated together (default 1)\n"
    "  --ctx-size N       context size per sequence (default: prompt + decode)\n"
    "  --exact            exact mode (f32 activations, dequantized weights)\n"
    "  --repeat N         repetitions; the best is reported (default 1)\n"
    "  --json             one JSON line\n";

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL;
    long n_prompt = 512, n_decode = 32, threads = 0, ctx = 0, repeat = 1, parallel = 1;
    bool json = false, exact = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(BENCH_HELP, stdout); return 0; }
        if (strcmp(a, "--json") == 0) { json = true; continue; }
        if (strcmp(a, "--exact") == 0) { exact = true; continue; }
        if (i + 1 >= argc) return cli_usage_error("bench", "option '%s' needs a value or is unknown", a);
        const char *v = argv[++i];
        char *end;
        long x = strtol(v, &end, 10);
        bool num = *v && !*end;
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) { model_path = v; continue; }
        if (!num || x < 0) return cli_usage_error("bench", "'%s' needs a non-negative number, got '%s'", a, v);
        if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) n_prompt = x;
        else if (strcmp(a, "-n") == 0 || strcmp(a, "--decode") == 0) n_decode = x;
        else if (strcmp(a, "--threads") == 0) threads = x;
        else if (strcmp(a, "--ctx-size") == 0) ctx = x;
        else if (strcmp(a, "--repeat") == 0) repeat = x < 1 ? 1 : x;
        else if (strcmp(a, "--parallel") == 0 || strcmp(a, "-np") == 0) parallel = x;
        else return cli_usage_error("bench", "unknown option '%s'", a);
    }
    if (!model_path) return cli_usage_error("bench", "missing -m MODEL");
    if (n_prompt < 1) return cli_usage_error("bench", "-p must be at least 1");
    if (parallel < 1 || parallel > 256) return cli_usage_error("bench", "--parallel must be 1..256");
    k2_error err;
    k2_model *m = NULL;
    double t0 = now_s();
    if (k2_model_load(model_path, NULL, &m, &err) != K2_OK) return cli_fail("bench", &err);
    double load_s = now_s() - t0;
    k2_context_options co;
    k2_context_options_init(&co);
    co.n_ctx = (uint32_t)(ctx ? ctx : n_prompt + n_decode + 1);
    co.n_threads = (int)threads;
    co.exact = exact;
    int np = (int)parallel;
    k2_context **c = calloc((size_t)np, sizeof *c);
    const int32_t **tp = calloc((size_t)np, sizeof *tp);
    uint32_t *nt = calloc((size_t)np, sizeof *nt);
    uint32_t nv = k2_model_n_vocab(m);
    uint32_t span = nv > 256 ? nv - 64 : nv;
    long per = n_prompt + n_decode;
    int32_t *toks = malloc(sizeof *toks * (size_t)(per * np));
    int rc = 0;
    if (!c || !tp || !nt || !toks) {
        rc = cli_fail("bench", &(k2_error){K2_ENOMEM, "out of memory"});
        goto done;
    }
    for (int q = 0; q < np; q++)
        if (k2_context_new(m, &co, &c[q], &err) != K2_OK) {
            rc = cli_fail("bench", &err);
            goto done;
        }
    /* every sequence its own tokens (sequence 0's are those of a single-sequence run) */
    for (long i = 0; i < per * np; i++) toks[i] = (int32_t)((uint64_t)(i * 7919 + 13) % span);
    double best_p = 1e30, best_d = 1e30;
    for (long r = 0; r < repeat && rc == 0; r++) {
        for (int q = 0; q < np; q++) {
            k2_context_reset(c[q]);
            tp[q] = toks + q * per;
            nt[q] = (uint32_t)n_prompt;
        }
        double a = now_s();
        if (k2_eval_batch(c, tp, nt, np, K2_ROWS_LAST, &err) != K2_OK) { rc = cli_fail("bench", &err); break; }
        double b = now_s();
        for (long i = 0; i < n_decode && rc == 0; i++) {
            for (int q = 0; q < np; q++) {
                tp[q] = toks + q * per + n_prompt + i;
                nt[q] = 1;
            }
            if (k2_eval_batch(c, tp, nt, np, K2_ROWS_LAST, &err) != K2_OK) rc = cli_fail("bench", &err);
        }
        double d = now_s();
        if (b - a < best_p) best_p = b - a;
        if (d - b < best_d) best_d = d - b;
    }
    if (rc == 0) {
        double pt = (double)(n_prompt * np) / best_p, dt = n_decode ? (double)(n_decode * np) / best_d : 0;
        if (json)
            printf("{\"model\": \"%s\", \"threads\": %d, \"parallel\": %d, \"prompt\": %ld, \"decode\": %ld, "
                   "\"load_s\": %.4f, \"prefill_tps\": %.4f, \"decode_tps\": %.4f, \"decode_tps_per_seq\": %.4f}\n",
                   model_path, k2_context_n_threads(c[0]), np, n_prompt, n_decode, load_s, pt, dt, dt / np);
        else if (np > 1)
            printf("%s: %d threads; load %.3f s; %d sequences: prefill %ld tokens each: %.2f tok/s; "
                   "decode %ld tokens each: %.2f tok/s in all (%.2f per sequence)\n",
                   model_path, k2_context_n_threads(c[0]), load_s, np, n_prompt, pt, n_decode, dt, dt / np);
        else
            printf("%s: %d threads; load %.3f s; prefill %ld tokens: %.2f tok/s; decode %ld tokens: %.2f tok/s\n",
                   model_path, k2_context_n_threads(c[0]), load_s, n_prompt, pt, n_decode, dt);
    }
done:
    free(toks);
    if (c)
        for (int q = 0; q < np; q++) k2_context_free(c[q]);
    free(c);
    free(tp);
    free(nt);
    k2_model_free(m);
    return rc;
}
