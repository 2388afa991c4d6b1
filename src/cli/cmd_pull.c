/* k2 pull / k2 ls: fetch a model from the Hugging Face Hub into the shared cache,
 * or list a repository's files, through the asynchronous k2_hub_fetch API. */
#include "cli/cli.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_interrupted;
static void on_sigint(int sig) { (void)sig; g_interrupted = 1; }

static void human(uint64_t b, char *out, size_t cap) {
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1000 && i < 4) { v /= 1000; i++; }
    if (i == 0) snprintf(out, cap, "%llu B", (unsigned long long)b);
    else snprintf(out, cap, "%.2f %s", v, u[i]);
}

typedef struct pull_ui {
    bool tty, quiet, list_only;
    double last_plain;
    bool bar_shown;
    char eta[32];
} pull_ui;

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void clear_bar(pull_ui *ui) {
    if (ui->bar_shown) { fputs("\r\033[K", stderr); ui->bar_shown = false; }
}

static void on_event(const k2_hub_event *ev, void *user) {
    pull_ui *ui = user;
    char a[32], b[32], r[32];
    switch (ev->kind) {
    case K2_HUB_EVENT_PLAN: {
        if (ui->list_only) return;
        uint64_t cached = 0;
        for (size_t i = 0; i < ev->n_files; i++) if (ev->files[i].cached) cached += ev->files[i].size;
        human(ev->total_size, a, sizeof a);
        human(ev->total_size - cached, b, sizeof b);
        fprintf(stderr, "%s @ %.12s: %zu file(s), %s (%s to download)\n", ev->repo, ev->commit, ev->n_files, a, b);
        if (!ui->quiet)
            for (size_t i = 0; i < ev->n_files; i++) {
                human(ev->files[i].size, a, sizeof a);
                fprintf(stderr, "  %12s  %s%s\n", a, ev->files[i].path, ev->files[i].cached ? "  (cached)" : "");
            }
        break;
    }
    case K2_HUB_EVENT_FILE_START:
        if (!ui->tty && !ui->quiet) fprintf(stderr, "downloading %s%s\n", ev->path, ev->message ? " (resuming)" : "");
        break;
    case K2_HUB_EVENT_FILE_DONE:
        if (ev->message) break;   /* already cached */
        clear_bar(ui);
        if (!ui->quiet) fprintf(stderr, "done %s\n", ev->path);
        break;
    case K2_HUB_EVENT_RETRY:
    case K2_HUB_EVENT_WAITING_LOCK:
        clear_bar(ui);
        fprintf(stderr, "%s%s%s\n", ev->path ? ev->path : "", ev->path ? ": " : "", ev->message ? ev->message : "");
        break;
    case K2_HUB_EVENT_PROGRESS: {
        if (ui->quiet || ev->total_size == 0) break;
        if (ev->file_index >= 0) {
            /* per-file lines only in plain (non-TTY) mode, at the same pace as the total */
            if (!ui->tty && mono_s() - ui->last_plain >= 2.0) {
                human(ev->file_done, a, sizeof a);
                human(ev->file_size, b, sizeof b);
                human((uint64_t)ev->file_rate_bps, r, sizeof r);
                fprintf(stderr, "  %s: %s / %s %s/s eta %s\n", ev->path, a, b, r,
                        ev->file_eta_s >= 0 ? (snprintf(ui->eta, sizeof ui->eta, "%ds", (int)ev->file_eta_s), ui->eta) : "--");
            }
            break;
        }
        human(ev->total_done, a, sizeof a);
        human(ev->total_size, b, sizeof b);
        human((uint64_t)ev->rate_bps, r, sizeof r);
        double pct = 100.0 * (double)ev->total_done / (double)ev->total_size;
        char eta[32] = "--";
        if (ev->eta_s >= 0) snprintf(eta, sizeof eta, "%dm%02ds", (int)(ev->eta_s / 60), (int)ev->eta_s % 60);
        if (ui->tty) {
            int w = 30, fill = (int)(pct / 100 * w);
            char bar[64];
            for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
            bar[w] = '\0';
            fprintf(stderr, "\r\033[K[%s] %5.1f%%  %s / %s  %s/s  ETA %s", bar, pct, a, b, r, eta);
            ui->bar_shown = true;
        } else {
            double t = mono_s();
            if (t - ui->last_plain >= 2.0 || ev->total_done == ev->total_size) {
                ui->last_plain = t;
                fprintf(stderr, "progress %.1f%% %s / %s %s/s eta %s\n", pct, a, b, r, eta);
            }
        }
        break;
    }
    }
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return -1;
    if (*end == 'k' || *end == 'K') { v <<= 10; end++; }
    else if (*end == 'm' || *end == 'M') { v <<= 20; end++; }
    else if (*end == 'g' || *end == 'G') { v <<= 30; end++; }
    if (*end) return -1;
    *out = v;
    return 0;
}

static int run_fetch(const char *cmd, int argc, char **argv, bool list_only) {
    k2_hub_options o;
    k2_hub_options_init(&o);
    const char *ref = NULL;
    const char *includes[65];
    size_t n_inc = 0;
    pull_ui ui = {.tty = isatty(2), .list_only = list_only};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t x;
        if (cli_is_help(a)) {
            if (list_only)
                printf("usage: k2 ls REF [--include GLOB]... [--revision R]\n"
                       "  REF = org/repo[:QUANT][@REVISION]; lists the remote files and their sizes\n");
            else
                printf("usage: k2 pull REF [--include GLOB]... [--revision R] [--connections N] [--no-verify] [--all]\n"
                       "              [--chunk-size BYTES] [--parallel-files N] [--offline] [--max-retries N] [--quiet]\n"
                       "  REF = org/repo[:QUANT][@REVISION]. Downloads into the Hugging Face cache (HF_HUB_CACHE/HF_HOME)\n"
                       "  and prints the local paths. Interrupt with Ctrl-C: the next pull resumes.\n");
            return 0;
        }
        if (!strcmp(a, "--include") || !strcmp(a, "-i")) {
            if (!v) return cli_usage_error(cmd, "--include needs a glob");
            if (n_inc >= 64) return cli_usage_error(cmd, "too many --include");
            includes[n_inc++] = v;
            i++;
        } else if (!strcmp(a, "--revision")) {
            if (!v) return cli_usage_error(cmd, "--revision needs a value");
            o.revision = v;
            i++;
        } else if (!strcmp(a, "--connections")) {
            if (!v || parse_u64(v, &x) || x < 1 || x > 16) return cli_usage_error(cmd, "--connections needs 1..16");
            o.connections = (int)x;
            i++;
        } else if (!strcmp(a, "--parallel-files")) {
            if (!v || parse_u64(v, &x) || x < 1 || x > 64) return cli_usage_error(cmd, "--parallel-files needs 1..64");
            o.parallel_files = (int)x;
            i++;
        } else if (!strcmp(a, "--chunk-size")) {
            if (!v || parse_u64(v, &x) || x < 65536) return cli_usage_error(cmd, "--chunk-size needs >= 64K");
            o.chunk_size = x;
            i++;
        } else if (!strcmp(a, "--max-retries")) {
            if (!v || parse_u64(v, &x) || x > 100) return cli_usage_error(cmd, "--max-retries needs 0..100");
            o.max_retries = (int)x;
            i++;
        } else if (!strcmp(a, "--retry-base-ms")) {
            if (!v || parse_u64(v, &x) || x < 1 || x > 60000) return cli_usage_error(cmd, "--retry-base-ms needs 1..60000");
            o.retry_base_ms = (int)x;
            i++;
        } else if (!strcmp(a, "--stall-timeout")) {
            if (!v || parse_u64(v, &x) || x < 1 || x > 3600) return cli_usage_error(cmd, "--stall-timeout needs seconds");
            o.stall_timeout_s = (int)x;
            i++;
        } else if (!strcmp(a, "--no-verify")) {
            o.verify = false;
        } else if (!strcmp(a, "--no-space-check")) {
            o.check_space = false;
        } else if (!strcmp(a, "--all")) {
            o.all = true;
        } else if (!strcmp(a, "--offline")) {
            o.offline = true;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            ui.quiet = true;
        } else if (a[0] == '-' && a[1]) {
            return cli_usage_error(cmd, "unknown option '%s'", a);
        } else if (!ref) {
            ref = a;
        } else {
            return cli_usage_error(cmd, "unexpected argument '%s'", a);
        }
    }
    if (!ref) return cli_usage_error(cmd, "missing REF (org/repo[:QUANT][@REVISION])");
    includes[n_inc] = NULL;
    if (n_inc) o.include = includes;
    if (list_only) { o.list_only = true; o.all = true; }
    o.on_event = on_event;
    o.user = &ui;

    k2_error err;
    k2_runtime *rt;
    if (k2_runtime_new(NULL, &rt, &err) != K2_OK) return cli_fail(cmd, &err);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    k2_future *f = k2_hub_fetch(rt, ref, &o);
    bool cancelled = false;
    while (k2_future_wait(f, 100) == K2_ETIMEOUT) {
        if (g_interrupted && !cancelled) {
            cancelled = true;
            k2_future_cancel(f);
        }
    }
    clear_bar(&ui);
    int rc = 0;
    const k2_hub_result *res = k2_hub_fetch_result(f);
    if (!res) {
        rc = cli_fail(cmd, k2_future_error(f));
        if (cancelled) rc = 130;
    } else if (list_only) {
        uint64_t total = 0;
        printf("# %s @ %s\n", res->repo, res->commit);
        for (size_t i = 0; i < res->n_files; i++) {
            printf("%14llu  %s\n", (unsigned long long)res->files[i].size, res->files[i].path);
            total += res->files[i].size;
        }
        char h[32];
        human(total, h, sizeof h);
        printf("# %zu file(s), %s\n", res->n_files, h);
    } else {
        if (res->from_cache_only) fprintf(stderr, "(served from the local cache without network)\n");
        for (size_t i = 0; i < res->n_absent; i++)
            fprintf(stderr, "%s: not in %s at %.12s (skipped)\n", res->absent[i], res->repo, res->commit);
        for (size_t i = 0; i < res->n_files; i++) printf("%s\n", res->paths[i]);
    }
    k2_future_free(f);
    k2_runtime_free(rt);
    return rc;
}

int cmd_pull(int argc, char **argv) { return run_fetch("pull", argc, argv, false); }
int cmd_ls(int argc, char **argv) { return run_fetch("ls", argc, argv, true); }
