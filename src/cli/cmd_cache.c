/* k2 cache ls|rm: inspect and prune the shared Hugging Face cache. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

int cmd_cache(int argc, char **argv) {
    const char *dir = NULL;
    const char *sub = NULL;
    int first_arg = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            printf("usage: k2 cache ls [--dir D]\n       k2 cache rm ORG/REPO... [--dir D]\n"
                   "  The cache is HF_HUB_CACHE (or HF_HOME/hub), shared with huggingface_hub.\n");
            return 0;
        }
        if (!strcmp(argv[i], "--dir")) {
            if (i + 1 >= argc) return cli_usage_error("cache", "--dir needs a path");
            dir = argv[++i];
        } else if (!sub) {
            sub = argv[i];
            first_arg = i + 1;
        }
    }
    if (!sub) return cli_usage_error("cache", "expected 'ls' or 'rm'");
    k2_error err;
    char *d = dir ? strdup(dir) : k2_hub_cache_dir();
    int rc = 0;
    if (!strcmp(sub, "ls")) {
        k2_hub_cached_repo *repos;
        size_t n;
        if (k2_hub_cache_scan(d, &repos, &n, &err) != K2_OK) {
            free(d);
            return cli_fail("cache", &err);
        }
        printf("# %s\n", d);
        printf("%-48s %12s %5s %4s  %s\n", "REPO", "SIZE", "SNAPS", "PART", "REFS");
        uint64_t total = 0;
        for (size_t i = 0; i < n; i++) {
            printf("%-48s %12.2fM %5d %4d  %s\n", repos[i].repo_id, repos[i].size / 1e6, repos[i].n_snapshots,
                   repos[i].n_incomplete, repos[i].refs);
            total += repos[i].size;
        }
        printf("# %zu repo(s), %.2f MB\n", n, total / 1e6);
        k2_hub_cache_scan_free(repos, n);
    } else if (!strcmp(sub, "rm")) {
        int count = 0;
        for (int i = first_arg; i < argc; i++) {
            if (!strcmp(argv[i], "--dir")) { i++; continue; }
            count++;
            if (k2_hub_cache_remove(d, argv[i], &err) != K2_OK) rc = cli_fail("cache", &err);
            else printf("removed %s\n", argv[i]);
        }
        if (!count) { free(d); return cli_usage_error("cache", "rm needs ORG/REPO"); }
    } else {
        rc = cli_usage_error("cache", "unknown subcommand '%s'", sub);
    }
    free(d);
    return rc;
}
