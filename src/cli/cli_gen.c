/* Shared by k2 run and k2 chat: the model reference (default, K2_MODEL), generation and
 * open options, and the progress of opening a model (download, load) on stderr. */
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *cli_default_model(void) {
    const char *e = getenv("K2_MODEL");
    return e && *e ? e : CLI_DEFAULT_MODEL;
}

void cli_gen_init(cli_gen *g) {
    memset(g, 0, sizeof *g);
    k2_completion_request_init(&g->req);
    k2_model_open_options_init(&g->open);
    g->progress.tty = isatty(2);
}

void cli_gen_free(cli_gen *g) { free(g->stops); }

static bool parse_f(const char *s, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v)) return false;
    *out = (float)v;
    return true;
}

static bool parse_i(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

int cli_gen_option(cli_gen *g, int argc, char **argv, int *pi) {
    int i = *pi;
    const char *a = argv[i];
    bool has = i + 1 < argc;
    const char *val = has ? argv[i + 1] : NULL;
    k2_completion_request *req = &g->req;
    k2_generator_options *go = &g->open.generator;
    long v;
#define OPT(name) (!strcmp(a, name) && has && (++*pi, true))
    if (OPT("-m") || OPT("--model")) g->model = val;
    else if (OPT("--system")) g->system = val;
    else if (OPT("--tokenizer")) g->open.tokenizer = val;
    else if (!strcmp(a, "--ignore-eos")) req->ignore_stop_tokens = true;
    else if (!strcmp(a, "--show-special")) req->detok_flags &= ~(unsigned)K2_DETOK_SKIP_SPECIAL;
    else if (!strcmp(a, "--exact")) go->context.exact = true;
    else if (!strcmp(a, "--offline")) g->open.hub.offline = true;
    else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) g->progress.quiet = true;
    else if (OPT("-n") || OPT("--max-tokens") || OPT("--n-predict")) {
        if (!parse_i(val, 0, INT32_MAX, &v)) return -1;
        req->max_tokens = (int32_t)v;
    } else if (OPT("--temp") || OPT("--temperature")) {
        if (!parse_f(val, &req->sampling.temperature)) return -1;
    } else if (OPT("--top-k")) {
        if (!parse_i(val, 0, INT32_MAX, &v)) return -1;
        req->sampling.top_k = (int32_t)v;
    } else if (OPT("--top-p")) {
        if (!parse_f(val, &req->sampling.top_p)) return -1;
    } else if (OPT("--min-p")) {
        if (!parse_f(val, &req->sampling.min_p)) return -1;
    } else if (OPT("--repeat-penalty")) {
        if (!parse_f(val, &req->sampling.repeat_penalty)) return -1;
    } else if (OPT("--repeat-last-n")) {
        if (!parse_i(val, -1, INT32_MAX, &v)) return -1;
        req->sampling.repeat_last_n = (int32_t)v;
    } else if (OPT("--frequency-penalty")) {
        if (!parse_f(val, &req->sampling.frequency_penalty)) return -1;
    } else if (OPT("--presence-penalty")) {
        if (!parse_f(val, &req->sampling.presence_penalty)) return -1;
    } else if (OPT("--seed")) {
        char *end;
        unsigned long long s = strtoull(val, &end, 10);
        if (end == val || *end) return -1;
        req->sampling.seed = s;
        req->sampling.has_seed = true;
    } else if (OPT("--stop")) {
        const char **ns = realloc(g->stops, (g->n_stops + 1) * sizeof *ns);
        if (!ns) return -1;
        g->stops = ns;
        g->stops[g->n_stops++] = val;
        req->stop = g->stops;
        req->n_stop = g->n_stops;
    } else if (OPT("--ctx") || OPT("--ctx-size") || OPT("-c")) {
        if (!parse_i(val, 1, INT32_MAX, &v)) return -1;
        go->context.n_ctx = (uint32_t)v;
    } else if (OPT("--threads") || OPT("-t")) {
        if (!parse_i(val, 1, 1024, &v)) return -1;
        go->context.n_threads = (int)v;
    } else if (OPT("--max-retries")) {
        if (!parse_i(val, 0, 1000, &v)) return -1;
        g->open.hub.max_retries = (int)v;
    } else if (OPT("--cache")) {
        if (!strcmp(val, "f16")) go->context.cache_type = K2_CACHE_F16;
        else if (!strcmp(val, "f32")) go->context.cache_type = K2_CACHE_F32;
        else return -1;
    } else {
        return 0;
    }
#undef OPT
    return 1;
}

const char *CLI_GEN_HELP =
    "  -m, --model REF           a local GGUF file or folder, or a Hub reference\n"
    "                            org/repo[:QUANT][@REV] (default: $K2_MODEL, else\n"
    "                            " CLI_DEFAULT_MODEL ")\n"
    "  --system TEXT             a system message\n"
    "  -n, --max-tokens N        tokens to generate (default: until the context is full)\n"
    "  --temp T                  temperature (default 0.6; 0 = greedy)\n"
    "  --top-k K, --top-p P, --min-p P       (defaults 0, 1, 0: off)\n"
    "  --repeat-penalty R, --repeat-last-n N (defaults 1, 64)\n"
    "  --frequency-penalty F, --presence-penalty P (defaults 0)\n"
    "  --seed S                  PRNG seed (default: random)\n"
    "  --stop TEXT               stop string (repeatable)\n"
    "  --ignore-eos              do not stop at end-of-turn tokens\n"
    "  --show-special            print control tokens\n"
    "  -c, --ctx-size N          context size (default min(training context, 4096)); also --ctx\n"
    "  -t, --threads N           worker threads (default: physical cores)\n"
    "  --exact                   exact mode (dequantized weights, f32 activations)\n"
    "  --cache f16|f32           KV cache type (default f16)\n"
    "  --tokenizer SRC           use this tokenizer instead of the GGUF's: a tokenizer.json,\n"
    "                            tiktoken.model, a folder, or a Hub repo (org/repo)\n"
    "  --offline                 use the Hub cache only (also HF_HUB_OFFLINE=1)\n"
    "  --max-retries N           download attempts without progress before failing (default 5)\n"
    "  -q, --quiet               no download/load progress on stderr\n";

/* ---- progress ---- */

static void human(uint64_t b, char *out, size_t cap) {
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    double v = (double)b;
    int i = 0;
    while (v >= 1000 && i < 4) {
        v /= 1000;
        i++;
    }
    if (i == 0) snprintf(out, cap, "%llu B", (unsigned long long)b);
    else snprintf(out, cap, "%.1f %s", v, u[i]);
}

static double mono_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void clear_bar(cli_progress *p) {
    if (p->bar_shown) {
        fputs("\r\033[K", stderr);
        p->bar_shown = false;
    }
}

void cli_progress_done(cli_progress *p) { clear_bar(p); }

void cli_open_progress(const k2_open_event *ev, void *user) {
    cli_progress *p = user;
    if (p->quiet && ev->stage != K2_OPEN_READY) return;
    char a[32], b[32], r[32];
    switch (ev->stage) {
    case K2_OPEN_SHARED: break;
    case K2_OPEN_LOAD:
        clear_bar(p);
        fprintf(stderr, "k2: loading %s\n", ev->path);
        break;
    case K2_OPEN_READY:
        clear_bar(p);
        p->ready_s = ev->seconds;
        if (!p->quiet) fprintf(stderr, "k2: model ready (%.2f s)\n", ev->seconds);
        break;
    case K2_OPEN_DOWNLOAD: {
        const k2_hub_event *h = ev->hub;
        const char *what = ev->tokenizer ? "tokenizer " : "";
        switch (h->kind) {
        case K2_HUB_EVENT_PLAN: {
            uint64_t cached = 0;
            for (size_t i = 0; i < h->n_files; i++)
                if (h->files[i].cached) cached += h->files[i].size;
            human(h->total_size, a, sizeof a);
            human(h->total_size - cached, b, sizeof b);
            fprintf(stderr, "k2: %s%s @ %.12s: %zu file(s), %s (%s to download)\n", what, h->repo, h->commit,
                    h->n_files, a, b);
            break;
        }
        case K2_HUB_EVENT_FILE_START:
            p->downloading = true;
            if (!p->tty) fprintf(stderr, "k2: downloading %s\n", h->path);
            break;
        case K2_HUB_EVENT_FILE_DONE:
            if (h->message) break; /* already cached */
            clear_bar(p);
            human(h->file_size, a, sizeof a);
            fprintf(stderr, "k2: downloaded %s (%s)\n", h->path, a);
            break;
        case K2_HUB_EVENT_RETRY:
        case K2_HUB_EVENT_WAITING_LOCK:
            clear_bar(p);
            fprintf(stderr, "k2: %s%s%s\n", h->path ? h->path : "", h->path ? ": " : "", h->message ? h->message : "");
            break;
        case K2_HUB_EVENT_PROGRESS: {
            if (h->file_index >= 0 || h->total_size == 0 || !p->downloading) break;
            if (h->total_done == p->last_done) break;
            p->last_done = h->total_done;
            human(h->total_done, a, sizeof a);
            human(h->total_size, b, sizeof b);
            if (h->rate_bps > 0) human((uint64_t)h->rate_bps, r, sizeof r);
            else snprintf(r, sizeof r, "--");
            double pct = 100.0 * (double)h->total_done / (double)h->total_size;
            char eta[32] = "--";
            if (h->eta_s >= 0) snprintf(eta, sizeof eta, "%dm%02ds", (int)(h->eta_s / 60), (int)h->eta_s % 60);
            if (p->tty) {
                fprintf(stderr, "\r\033[Kk2: %5.1f%%  %s / %s  %s%s  ETA %s", pct, a, b, r, h->rate_bps > 0 ? "/s" : "", eta);
                p->bar_shown = true;
            } else {
                double t = mono_s();
                if (t - p->last_plain >= 1.0 || h->total_done == h->total_size) {
                    p->last_plain = t;
                    fprintf(stderr, "k2: %.1f%% %s / %s %s%s eta %s\n", pct, a, b, r, h->rate_bps > 0 ? "/s" : "", eta);
                }
            }
            break;
        }
        }
        break;
    }
    }
}
