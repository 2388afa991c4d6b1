/* k2 generate: greedy generation from token ids (prints the generated ids). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

int cli_parse_ids(const char *s, int32_t **out, uint32_t *n);

static void usage(FILE *f) {
    fprintf(f, "usage: k2 generate -m MODEL --tokens 1,2,3 -n N --greedy --ids [options]\n"
               "  -n N                tokens to generate (default 16)\n"
               "  --greedy            argmax decoding (the only mode of this command)\n"
               "  --ids               print generated token ids, comma-separated\n"
               "  --exact             exact mode (dequantized weights, f32 activations)\n"
               "  --threads N, --ctx N, --cache f16|f32 (default f32)\n"
               "  --yarn-beta-fast X, --yarn-beta-slow X, --llama-compat-beta\n");
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *tokens = NULL;
    long n_gen = 16;
    k2_context_options co;
    k2_context_options_init(&co);
    co.cache_type = K2_CACHE_F32;
    k2_model_options mo;
    k2_model_options_init(&mo);
    int used;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (cli_is_help(a)) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && has) {
            model = argv[++i];
        } else if (!strcmp(a, "--tokens") && has) {
            tokens = argv[++i];
        } else if (!strcmp(a, "-n") && has) {
            n_gen = strtol(argv[++i], NULL, 10);
            if (n_gen < 0 || n_gen > 1000000) return cli_usage_error("generate", "-n is out of range");
        } else if (!strcmp(a, "--greedy") || !strcmp(a, "--ids")) {
            /* greedy decoding and id output are this command's only modes */
        } else if (!strcmp(a, "--exact")) {
            co.exact = true;
        } else if ((used = cli_model_option("generate", argc, argv, &i, &mo, &co)) != 0) {
            if (used < 0) return 2;
        } else {
            return cli_usage_error("generate", "unknown or incomplete option '%s'", a);
        }
    }
    if (!model || !tokens) return cli_usage_error("generate", "-m and --tokens are required");
    int32_t *ids;
    uint32_t n;
    if (cli_parse_ids(tokens, &ids, &n) != 0)
        return cli_usage_error("generate", "--tokens must be comma-separated integers");
    if (!co.n_ctx) co.n_ctx = n + (uint32_t)n_gen;

    k2_error err;
    k2_model *m = NULL;
    k2_context *ctx = NULL;
    int rc = 1;
    if (k2_model_load(model, &mo, &m, &err) != K2_OK) goto fail;
    if (k2_model_warnings(m)[0]) fprintf(stderr, "k2 generate: warning: %s\n", k2_model_warnings(m));
    if (k2_context_new(m, &co, &ctx, &err) != K2_OK) goto fail;
    if (k2_eval(ctx, ids, n, K2_ROWS_LAST, NULL, &err) != K2_OK) goto fail;
    uint32_t V = k2_model_n_vocab(m);
    for (long k = 0; k < n_gen; k++) {
        const float *lg = k2_context_logits(ctx);
        int32_t best = 0;
        for (uint32_t v = 1; v < V; v++)
            if (lg[v] > lg[best]) best = (int32_t)v;
        printf(k ? ",%d" : "%d", best);
        fflush(stdout);
        if (k + 1 < n_gen && k2_eval(ctx, &best, 1, K2_ROWS_LAST, NULL, &err) != K2_OK) {
            printf("\n");
            goto fail;
        }
    }
    printf("\n");
    rc = 0;
    goto out;
fail:
    cli_fail("generate", &err);
out:
    free(ids);
    k2_context_free(ctx);
    k2_model_free(m);
    return rc;
}
