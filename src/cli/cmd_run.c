/* k2 run: stream a completion of one prompt from a local GGUF file.
 * Text goes to stdout as it is generated; a one-line summary (tokens, finish reason,
 * speeds) goes to stderr. Ctrl-C cancels generation (the summary is still printed). */
#include "cli/cli.h"

#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: k2 run -m MODEL.gguf -p PROMPT [options]\n\n"
            "The prompt is sent as a user message through the model's chat template\n"
            "(Kimi K2); with --raw it is completed as plain text.\n\n"
            "  -m, --model PATH          local GGUF file (first shard of a split set)\n"
            "  -p, --prompt TEXT         the prompt (read from stdin when absent)\n"
            "  --system TEXT             a system message (chat mode)\n"
            "  --raw                     no chat template; special-token strings are parsed\n"
            "  -n, --max-tokens N        tokens to generate (default: until the context is full)\n"
            "  --temp T                  temperature (default 0.6; 0 = greedy)\n"
            "  --top-k K, --top-p P, --min-p P       (defaults 0, 1, 0: off)\n"
            "  --repeat-penalty R, --repeat-last-n N (defaults 1, 64)\n"
            "  --frequency-penalty F, --presence-penalty P (defaults 0)\n"
            "  --seed S                  PRNG seed (default: random)\n"
            "  --stop TEXT               stop string (repeatable)\n"
            "  --ignore-eos              do not stop at end-of-turn tokens\n"
            "  --show-special            print control tokens\n"
            "  --ctx N                   context size (default min(training context, 4096))\n"
            "  --threads N               worker threads (default: physical cores)\n"
            "  --exact                   exact mode (dequantized weights, f32 activations)\n"
            "  --cache f16|f32           KV cache type (default f16)\n"
            "  --json                    JSON lines: {\"text\",\"ids\"} per token, then a final\n"
            "                            {\"finish_reason\",\"usage\",\"timings\"} (or {\"error\"})\n");
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

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

int cmd_run(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *system_msg = NULL;
    bool raw = false, json = false;
    const char **stops = NULL;
    size_t n_stops = 0;
    k2_completion_request req;
    k2_completion_request_init(&req);
    k2_generator_options go;
    k2_generator_options_init(&go);
    long v;
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        const char *val = has ? argv[i + 1] : NULL;
#define OPT(name) (!strcmp(a, name) && has && (++i, true))
        if (cli_is_help(a)) {
            usage(stdout);
            free(stops);
            return 0;
        } else if (OPT("-m") || OPT("--model")) {
            model = val;
        } else if (OPT("-p") || OPT("--prompt")) {
            prompt = val;
        } else if (OPT("--system")) {
            system_msg = val;
        } else if (!strcmp(a, "--raw")) {
            raw = true;
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--ignore-eos")) {
            req.ignore_stop_tokens = true;
        } else if (!strcmp(a, "--show-special")) {
            req.detok_flags &= ~(unsigned)K2_DETOK_SKIP_SPECIAL;
        } else if (!strcmp(a, "--exact")) {
            go.context.exact = true;
        } else if (OPT("-n") || OPT("--max-tokens")) {
            if (!parse_i(val, 0, INT32_MAX, &v)) goto bad_value;
            req.max_tokens = (int32_t)v;
        } else if (OPT("--temp") || OPT("--temperature")) {
            if (!parse_f(val, &req.sampling.temperature)) goto bad_value;
        } else if (OPT("--top-k")) {
            if (!parse_i(val, 0, INT32_MAX, &v)) goto bad_value;
            req.sampling.top_k = (int32_t)v;
        } else if (OPT("--top-p")) {
            if (!parse_f(val, &req.sampling.top_p)) goto bad_value;
        } else if (OPT("--min-p")) {
            if (!parse_f(val, &req.sampling.min_p)) goto bad_value;
        } else if (OPT("--repeat-penalty")) {
            if (!parse_f(val, &req.sampling.repeat_penalty)) goto bad_value;
        } else if (OPT("--repeat-last-n")) {
            if (!parse_i(val, -1, INT32_MAX, &v)) goto bad_value;
            req.sampling.repeat_last_n = (int32_t)v;
        } else if (OPT("--frequency-penalty")) {
            if (!parse_f(val, &req.sampling.frequency_penalty)) goto bad_value;
        } else if (OPT("--presence-penalty")) {
            if (!parse_f(val, &req.sampling.presence_penalty)) goto bad_value;
        } else if (OPT("--seed")) {
            char *end;
            unsigned long long s = strtoull(val, &end, 10);
            if (end == val || *end) goto bad_value;
            req.sampling.seed = s;
            req.sampling.has_seed = true;
        } else if (OPT("--stop")) {
            const char **ns = realloc(stops, (n_stops + 1) * sizeof *ns);
            if (!ns) goto bad_value;
            stops = ns;
            stops[n_stops++] = val;
        } else if (OPT("--ctx")) {
            if (!parse_i(val, 1, INT32_MAX, &v)) goto bad_value;
            go.context.n_ctx = (uint32_t)v;
        } else if (OPT("--threads")) {
            if (!parse_i(val, 1, 1024, &v)) goto bad_value;
            go.context.n_threads = (int)v;
        } else if (OPT("--cache")) {
            if (!strcmp(val, "f16")) go.context.cache_type = K2_CACHE_F16;
            else if (!strcmp(val, "f32")) go.context.cache_type = K2_CACHE_F32;
            else goto bad_value;
        } else {
            free(stops);
            return cli_usage_error("run", "unknown or incomplete option '%s' (see k2 run --help)", a);
        }
        continue;
    bad_value:
        free(stops);
        return cli_usage_error("run", "bad value '%s' for %s", val ? val : "", a);
#undef OPT
    }
    if (!model) {
        free(stops);
        return cli_usage_error("run", "-m MODEL is required (see k2 run --help)");
    }
    char *stdin_prompt = NULL;
    if (!prompt) {
        stdin_prompt = read_stdin();
        prompt = stdin_prompt ? stdin_prompt : "";
    }
    req.stop = stops;
    req.n_stop = n_stops;
    k2_chat_message msgs[2];
    size_t n_msgs = 0;
    if (raw) {
        req.prompt = prompt;
    } else {
        memset(msgs, 0, sizeof msgs);
        if (system_msg) msgs[n_msgs++] = (k2_chat_message){.role = "system", .content = system_msg};
        msgs[n_msgs++] = (k2_chat_message){.role = "user", .content = prompt};
        req.messages = msgs;
        req.n_messages = n_msgs;
    }

    k2_error err;
    k2_model *m = NULL;
    k2_tokenizer *tok = NULL;
    k2_generator *g = NULL;
    k2_stream *s = NULL;
    rc = 1;
    if (k2_model_load(model, NULL, &m, &err) != K2_OK) {
        k2_error e2 = err;
        snprintf(err.message, sizeof err.message, "load: %.1000s", e2.message);
        goto fail;
    }
    if (k2_tokenizer_from_gguf(k2_model_gguf(m), &tok, &err) != K2_OK) goto fail;
    if (k2_generator_new(m, tok, &go, &g, &err) != K2_OK) goto fail;
    if (k2_generate(g, &req, &s, &err) != K2_OK) goto fail;

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
            print_json(json_pack("{s:s,s:{s:i,s:i,s:i,s:i},s:{s:f,s:f,s:f,s:f,s:f}}", "finish_reason",
                                 k2_finish_reason_name(c.finish), "usage", "prompt_tokens", (int)c.usage.prompt_tokens,
                                 "completion_tokens", (int)c.usage.completion_tokens, "total_tokens",
                                 (int)(c.usage.prompt_tokens + c.usage.completion_tokens), "cached_tokens",
                                 (int)c.usage.cached_tokens, "timings", "ttft_ms", t->ttft_ms, "prompt_ms",
                                 t->prompt_ms, "prompt_tps", t->prompt_tps, "gen_ms", t->gen_ms, "gen_tps", t->gen_tps));
        } else {
            fputc('\n', stdout);
        }
        fflush(stdout);
        fprintf(stderr,
                "k2 run: %u prompt + %u generated tokens (%s); prompt %.1f ms (%.1f tok/s), "
                "first token %.1f ms, generation %.1f tok/s\n",
                c.usage.prompt_tokens, c.usage.completion_tokens, k2_finish_reason_name(c.finish), t->prompt_ms,
                t->prompt_tps, t->ttft_ms, t->gen_tps);
        rc = c.finish == K2_FINISH_CANCELLED ? 130 : 0;
        break;
    }
    sigaction(SIGINT, &old, NULL);
    goto out;
fail:
    cli_fail("run", &err);
    rc = 1;
out:
    k2_stream_free(s);
    k2_generator_free(g);
    k2_tokenizer_free(tok);
    k2_model_free(m);
    free(stdin_prompt);
    free(stops);
    return rc;
}
