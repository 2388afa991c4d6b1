/* Single-thread encode throughput of k2's tokenizer (used by bench/tokenizer_bench.py).
 * usage: tok_bench TIKTOKEN_MODEL SPECIAL_JSON TEXT_FILE [SECONDS]
 * prints: bytes tokens seconds MB/s */
#include "k2.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: tok_bench TIKTOKEN_MODEL SPECIAL_JSON TEXT_FILE [SECONDS]\n");
        return 2;
    }
    double budget = argc > 4 ? atof(argv[4]) : 3.0;
    k2_error err;
    k2_tokenizer *tok;
    if (k2_tokenizer_from_tiktoken(argv[1], argv[2], &tok, &err) != K2_OK) {
        fprintf(stderr, "tok_bench: %s\n", err.message);
        return 1;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) { perror(argv[3]); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "read error\n"); return 1; }
    fclose(f);
    int32_t *ids = NULL;
    size_t nid = 0;
    /* warm-up (page faults, Unicode table) */
    if (k2_tokenize(tok, text, (size_t)n, 0, &ids, &nid, &err) != K2_OK) { fprintf(stderr, "%s\n", err.message); return 1; }
    free(ids);
    double best = 1e30, t_end = now() + budget;
    int reps = 0;
    do {
        double t0 = now();
        k2_tokenize(tok, text, (size_t)n, 0, &ids, &nid, &err);
        double dt = now() - t0;
        free(ids);
        if (dt < best) best = dt;
        reps++;
    } while (now() < t_end || reps < 3);
    printf("%ld %zu %.6f %.3f\n", n, nid, best, n / best / 1e6);
    free(text);
    k2_tokenizer_free(tok);
    return 0;
}
