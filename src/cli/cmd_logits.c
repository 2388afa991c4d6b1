/* k2 logits: evaluate token ids and write their logits as float32 little-endian rows. */
#include "cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Shared by logits and generate: "1,2,3" -> ids. */
int cli_parse_ids(const char *s, int32_t **out, uint32_t *n);
int cli_parse_ids(const char *s, int32_t **out, uint32_t *n) {
    size_t cap = 16, len = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return -1;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return -1;
        }
        if (len == cap) {
            int32_t *nids = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!nids) {
                free(ids);
                return -1;
            }
            ids = nids;
        }
        ids[len++] = (int32_t)v;
        p = *end ? end + 1 : end;
    }
    if (len == 0) {
        free(ids);
        return -1;
    }
    *out = ids;
    *n = (uint32_t)len;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: k2 logits -m MODEL --tokens 1,2,3 --out FILE [options]\n"
               "  --rows all|last     positions whose logits are written (default all)\n"
               "  --exact             exact mode: dequantized weights, f32 activations\n"
               "  --decode            evaluate one token at a time (default: one batch)\n"
               "  --threads N         worker threads (default: physical cores)\n"
               "  --ctx N             context size (default: number of tokens)\n"
               "  --cache f16|f32     KV cache type (default f32)\n"
               "  --yarn-beta-fast X, --yarn-beta-slow X, --llama-compat-beta\n"
               "Writes n_vocab float32 little-endian values per requested position.\n");
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *tokens = NULL, *outp = NULL;
    bool all = true, decode = false;
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
        } else if ((!strcmp(a, "--out") || !strcmp(a, "-o")) && has) {
            outp = argv[++i];
        } else if (!strcmp(a, "--rows") && has) {
            const char *r = argv[++i];
            if (!strcmp(r, "all")) all = true;
            else if (!strcmp(r, "last")) all = false;
            else return cli_usage_error("logits", "--rows must be all or last, not '%s'", r);
        } else if (!strcmp(a, "--exact")) {
            co.exact = true;
        } else if (!strcmp(a, "--decode")) {
            decode = true;
        } else if ((used = cli_model_option("logits", argc, argv, &i, &mo, &co)) != 0) {
            if (used < 0) return 2;
        } else {
            return cli_usage_error("logits", "unknown or incomplete option '%s'", a);
        }
    }
    if (!model || !tokens || !outp) return cli_usage_error("logits", "-m, --tokens and --out are required");
    int32_t *ids;
    uint32_t n;
    if (cli_parse_ids(tokens, &ids, &n) != 0)
        return cli_usage_error("logits", "--tokens must be comma-separated integers");
    if (!co.n_ctx) co.n_ctx = n;

    k2_error err;
    k2_model *m = NULL;
    k2_context *ctx = NULL;
    float *lg = NULL;
    FILE *f = NULL;
    int rc = 1;
    if (k2_model_load(model, &mo, &m, &err) != K2_OK) goto fail;
    if (k2_model_warnings(m)[0]) fprintf(stderr, "k2 logits: warning: %s\n", k2_model_warnings(m));
    if (k2_context_new(m, &co, &ctx, &err) != K2_OK) goto fail;
    uint32_t V = k2_model_n_vocab(m), nrows = all ? n : 1;
    lg = malloc(sizeof(float) * (size_t)V * nrows);
    if (!lg) {
        err.status = K2_ENOMEM;
        snprintf(err.message, sizeof err.message, "out of memory for %u logit rows", nrows);
        goto fail;
    }
    if (decode) {
        for (uint32_t i = 0; i < n; i++) {
            bool want = all || i == n - 1;
            float *dst = all ? lg + (size_t)i * V : lg;
            if (k2_eval(ctx, ids + i, 1, want ? K2_ROWS_LAST : K2_ROWS_NONE, want ? dst : NULL, &err) != K2_OK)
                goto fail;
        }
    } else if (k2_eval(ctx, ids, n, all ? K2_ROWS_ALL : K2_ROWS_LAST, lg, &err) != K2_OK) {
        goto fail;
    }
    f = fopen(outp, "wb");
    if (!f || fwrite(lg, sizeof(float), (size_t)V * nrows, f) != (size_t)V * nrows || fclose(f) != 0) {
        f = NULL;
        fprintf(stderr, "k2 logits: cannot write %s: %s\n", outp, strerror(errno));
        goto out;
    }
    f = NULL;
    rc = 0;
    goto out;
fail:
    cli_fail("logits", &err);
out:
    free(ids);
    free(lg);
    k2_context_free(ctx);
    k2_model_free(m);
    return rc;
}
