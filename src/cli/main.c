/* The k2 command: dispatch to subcommands. Subcommands live in cmd_*.c; a
 * command whose file is not linked in is simply absent (weak symbols), so
 * modules can add commands without editing this table's neighbours. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define K2_COMMAND(name) int cmd_##name(int argc, char **argv) __attribute__((weak));
K2_COMMAND(inspect)
K2_COMMAND(tokenize)
K2_COMMAND(detokenize)
K2_COMMAND(pull)
K2_COMMAND(ls)
K2_COMMAND(cache)
K2_COMMAND(logits)
K2_COMMAND(generate)
K2_COMMAND(run)
K2_COMMAND(chat)
K2_COMMAND(serve)
K2_COMMAND(bench)
K2_COMMAND(mkmodel)

static const struct {
    const char *name;
    const char *summary;
} COMMANDS[] = {
    {"pull", "download a model from the Hugging Face Hub into the shared cache"},
    {"ls", "list the files of a Hub repository"},
    {"cache", "show or delete cached repositories"},
    {"run", "stream a completion for a prompt"},
    {"chat", "interactive chat"},
    {"serve", "OpenAI-compatible HTTP server"},
    {"tokenize", "text to token ids"},
    {"detokenize", "token ids to text"},
    {"inspect", "describe a GGUF model file"},
    {"logits", "evaluate tokens and write their logits"},
    {"generate", "greedy generation from token ids"},
    {"bench", "measure prefill and decode speed"},
    {"mkmodel", "write a random-weight Kimi K2 structured model (demo, benchmarks, tests)"},
};

static cli_command_fn command_fn(const char *name) {
#define K2_MATCH(n) if (strcmp(name, #n) == 0) return cmd_##n;
    K2_MATCH(inspect) K2_MATCH(tokenize) K2_MATCH(detokenize) K2_MATCH(pull) K2_MATCH(ls)
    K2_MATCH(cache) K2_MATCH(logits) K2_MATCH(generate) K2_MATCH(run) K2_MATCH(chat)
    K2_MATCH(serve) K2_MATCH(bench) K2_MATCH(mkmodel)
#undef K2_MATCH
    return NULL;
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    fprintf(stderr, "k2 %s: ", cmd);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'k2 %s --help')\n", cmd);
    return 2;
}

int cli_fail(const char *cmd, const k2_error *err) {
    fprintf(stderr, "k2 %s: %s\n", cmd, err->message[0] ? err->message : k2_status_name(err->status));
    return 1;
}

void cli_set_error(k2_error *err, k2_status st, const char *fmt, ...) {
    err->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

int cli_model_option(const char *cmd, int argc, char **argv, int *i, k2_model_options *mo, k2_context_options *co) {
    const char *a = argv[*i];
    bool has = *i + 1 < argc;
    if (!strcmp(a, "--llama-compat-beta")) { mo->llama_compat_beta = true; return 1; }
    if (!has) return 0;
    const char *v = argv[*i + 1];
    if (!strcmp(a, "--threads")) {
        co->n_threads = atoi(v);
        if (co->n_threads < 1) { cli_usage_error(cmd, "--threads must be >= 1"); return -1; }
    } else if (!strcmp(a, "--ctx")) {
        co->n_ctx = (uint32_t)strtoul(v, NULL, 10);
    } else if (!strcmp(a, "--cache")) {
        if (!strcmp(v, "f16")) co->cache_type = K2_CACHE_F16;
        else if (!strcmp(v, "f32")) co->cache_type = K2_CACHE_F32;
        else { cli_usage_error(cmd, "--cache must be f16 or f32, not '%s'", v); return -1; }
    } else if (!strcmp(a, "--yarn-beta-fast")) {
        mo->yarn_beta_fast = strtof(v, NULL);
    } else if (!strcmp(a, "--yarn-beta-slow")) {
        mo->yarn_beta_slow = strtof(v, NULL);
    } else {
        return 0;
    }
    (*i)++;
    return 1;
}

int cli_is_help(const char *arg) { return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0; }

static void print_help(FILE *f) {
    fprintf(f, "k2 %s — run Kimi K2 (deepseek2 GGUF) models locally\n\n"
               "usage: k2 COMMAND [ARGS...]\n\ncommands:\n", k2_version());
    for (size_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++)
        if (command_fn(COMMANDS[i].name)) fprintf(f, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
    fprintf(f, "\nRun 'k2 COMMAND --help' for a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_help(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (cli_is_help(cmd) || strcmp(cmd, "help") == 0) {
        print_help(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("k2 %s\n", k2_version());
        return 0;
    }
    cli_command_fn fn = command_fn(cmd);
    if (!fn) {
        if (cmd[0] == '-') fprintf(stderr, "k2: unknown option '%s' (see 'k2 --help')\n", cmd);
        else fprintf(stderr, "k2: unknown command '%s' (see 'k2 --help')\n", cmd);
        return 2;
    }
    return fn(argc - 1, argv + 1);
}
