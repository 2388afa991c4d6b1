/* k2 run: stream a completion of one prompt from a model reference (local file or folder,
 * or a Hub reference fetched with progress on stderr), through k2_complete_ref.
 * Text goes to stdout as it is generated; a one-line summary (tokens, finish reason,
 * load time, speeds) goes to stderr. Ctrl-C cancels generation (the summary is still
 * printed). */
#include "cli/cli.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: k2 run [REF] (-p PROMPT | -f FILE) [options]\n\n"
            "Streams the answer to a prompt. REF is a local GGUF file or folder, or a Hub\n"
            "reference org/repo[:QUANT][@REV] (downloaded into the Hugging Face cache, progress\n"
            "on stderr). The prompt is sent as a user message through the model's chat template\n"
            "(Kimi K2); with --raw it is completed as plain text. A one-line timing summary\n"
            "goes to stderr at the end; Ctrl-C stops generation.\n\n"
            "  -p, --prompt TEXT         the prompt (read from stdin when neither -p nor -f)\n"
            "  -f, --file FILE           read the prompt from FILE\n"
            "  --raw                     no chat template; special-token strings are parsed\n"
            "  --json                    JSON lines: {\"text\",\"ids\"} per chunk, then a final\n"
            "                            {\"finish_reason\",\"usage\",\"timings\"} (or {\"error\"})\n"
            "%s",
            CLI_GEN_HELP);
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static char *read_stdin(void) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t r;
    while ((r = fread(buf + n, 1, cap - n - 1, stdin)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    return buf;
}

static void print_json(json_t *j) {
    char *d = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (d) {
        fputs(d, stdout);
        fputc('\n', stdout);
        free(d);
    }
    json_decref(j);
}

static char *read_file_text(const char *path, k2_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_set_error(err, K2_EIO, "cannot read the prompt file %s", path);
        return NULL;
    }
    size_t cap = 4096, n = 0, r;
    char *buf = malloc(cap);
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        cli_set_error(err, K2_ENOMEM, "out of memory reading %s", path);
        return NULL;
    }
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    return buf;
}

int cmd_run(int argc, char **argv) {
    const char *prompt = NULL, *prompt_file = NULL;
    bool raw = false, json = false;
    cli_gen g;
    cli_gen_init(&g);
    k2_completion_request *req = &g.req;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (cli_is_help(a)) {
            usage(stdout);
            cli_gen_free(&g);
            return 0;
        }
        int r = cli_gen_option(&g, argc, argv, &i);
        if (r < 0) {
            cli_gen_free(&g);
            return cli_usage_error("run", "bad value '%s' for %s", argv[i], a);
        }
        if (r > 0) continue;
        if ((!strcmp(a, "-p") || !strcmp(a, "--prompt")) && has) prompt = argv[++i];
        else if ((!strcmp(a, "-f") || !strcmp(a, "--file")) && has) prompt_file = argv[++i];
        else if (!strcmp(a, "--raw")) raw = true;
        else if (!strcmp(a, "--json")) json = true;
        else if (a[0] != '-' && !g.model) g.model = a;
        else {
            cli_gen_free(&g);
            return cli_usage_error("run", "unknown or incomplete option '%s'", a);
        }
    }
    if (prompt && prompt_file) {
        cli_gen_free(&g);
        return cli_usage_error("run", "give the prompt with -p or -f, not both");
    }
    const char *model = g.model ? g.model : cli_default_model();
    k2_error err;
    k2_error_clear(&err);
    char *owned_prompt = NULL;
    if (prompt_file) {
        owned_prompt = read_file_text(prompt_file, &err);
        if (!owned_prompt) {
            cli_gen_free(&g);
            return cli_fail("run", &err);
        }
        prompt = owned_prompt;
    } else if (!prompt) {
        owned_prompt = read_stdin();
        prompt = owned_prompt ? owned_prompt : "";
    }
    k2_chat_message msgs[2];
    size_t n_msgs = 0;
    if (raw) {
        req->prompt = prompt;
    } else {
        memset(msgs, 0, sizeof msgs);
        if (g.system) msgs[n_msgs++] = (k2_chat_message){.role = "system", .content = g.system};
        msgs[n_msgs++] = (k2_chat_message){.role = "user", .content = prompt};
        req->messages = msgs;
        req->n_messages = n_msgs;
    }
    g.open.on_event = cli_open_progress;
    g.open.user = &g.progress;

    k2_runtime *rt = NULL;
    k2_stream *s = NULL;
    int rc = 1;
    if (k2_runtime_new(NULL, &rt, &err) != K2_OK) goto fail;
    if (k2_complete_ref(rt, model, &g.open, req, &s, &err) != K2_OK) goto fail;

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    k2_chunk c;
    for (;;) {
        k2_status st = k2_stream_next(s, 100, &c);
        if (interrupted) k2_stream_cancel(s);
        if (st == K2_ETIMEOUT) continue;
        if (st != K2_OK) break;
        if (c.type == K2_CHUNK_DELTA) {
            if (json) {
                json_t *ids = json_array();
                for (size_t i = 0; i < c.n_ids; i++) json_array_append_new(ids, json_integer(c.ids[i]));
                print_json(json_pack("{s:s%,s:o}", "text", c.text, c.text_len, "ids", ids));
            } else {
                fwrite(c.text, 1, c.text_len, stdout);
            }
            fflush(stdout);
            continue;
        }
        cli_progress_done(&g.progress);
        if (c.type == K2_CHUNK_ERROR) {
            if (json) {
                print_json(json_pack("{s:{s:s,s:s,s:s}}", "error", "stage", k2_error_stage_name(c.stage), "status",
                                     k2_status_name(c.status), "message", c.message));
                fflush(stdout);
            }
            err.status = c.status;
            snprintf(err.message, sizeof err.message, "%s: %.1000s", k2_error_stage_name(c.stage), c.message);
            sigaction(SIGINT, &old, NULL);
            goto fail;
        }
        const k2_timings *t = &c.timings;
        if (json) {
            print_json(json_pack("{s:s,s:{s:i,s:i,s:i,s:i},s:{s:f,s:f,s:f,s:f,s:f,s:f}}", "finish_reason",
                                 k2_finish_reason_name(c.finish), "usage", "prompt_tokens", (int)c.usage.prompt_tokens,
                                 "completion_tokens", (int)c.usage.completion_tokens, "total_tokens",
                                 (int)(c.usage.prompt_tokens + c.usage.completion_tokens), "cached_tokens",
                                 (int)c.usage.cached_tokens, "timings", "load_s", g.progress.ready_s, "ttft_ms",
                                 t->ttft_ms, "prompt_ms", t->prompt_ms, "prompt_tps", t->prompt_tps, "gen_ms",
                                 t->gen_ms, "gen_tps", t->gen_tps));
        } else {
            fputc('\n', stdout);
        }
        fflush(stdout);
        fprintf(stderr,
                "k2 run: %u prompt + %u generated tokens (%s); load %.2f s, prompt %.1f ms (%.1f tok/s), "
                "first token %.1f ms, generation %.1f tok/s\n",
                c.usage.prompt_tokens, c.usage.completion_tokens, k2_finish_reason_name(c.finish), g.progress.ready_s,
                t->prompt_ms, t->prompt_tps, t->ttft_ms, t->gen_tps);
        rc = c.finish == K2_FINISH_CANCELLED ? 130 : 0;
        break;
    }
    sigaction(SIGINT, &old, NULL);
    goto out;
fail:
    cli_progress_done(&g.progress);
    cli_fail("run", &err);
    rc = 1;
out:
    k2_stream_free(s);
    k2_runtime_free(rt);
    free(owned_prompt);
    cli_gen_free(&g);
    return rc;
}
