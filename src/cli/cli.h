/* cli/: the k2 command. Written against include/k2.h only, as any user would be. */
#ifndef K2_CLI_H
#define K2_CLI_H

#include "k2.h"
#include <stdio.h>

/* Each subcommand is `int cmd_NAME(int argc, char **argv)` with argv[0] the
 * command name; returns the process exit status (2 for usage errors). */
typedef int (*cli_command_fn)(int argc, char **argv);

/* Prints "k2 CMD: message" to stderr and returns 2 (usage error). */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "k2 CMD: message" to stderr and returns 1 (runtime failure). */
int cli_fail(const char *cmd, const k2_error *err);
/* Fills a k2_error (the CLI's own failures use the same reporting path). */
void cli_set_error(k2_error *err, k2_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Shared model/context flags of the model commands (--threads N, --ctx N, --cache f16|f32,
 * --yarn-beta-fast X, --yarn-beta-slow X, --llama-compat-beta) at argv[*i]: returns 1 when
 * consumed (advancing *i past a value), 0 when not one of them, -1 after printing a usage
 * error. */
int cli_model_option(const char *cmd, int argc, char **argv, int *i, k2_model_options *mo, k2_context_options *co);
/* True when arg is "-h" or "--help". */
int cli_is_help(const char *arg);

/* ---- k2 run / k2 chat (cli_gen.c) ---- */

/* The model when none is named (K2_MODEL overrides it). */
#define CLI_DEFAULT_MODEL "unsloth/Kimi-K2-Instruct-GGUF:UD-Q2_K_XL"
const char *cli_default_model(void);

/* Download / load progress on stderr (the open options' on_event). */
typedef struct cli_progress {
    bool tty, quiet, bar_shown, downloading;
    double last_plain;
    uint64_t last_done;
    double ready_s;        /* load time reported by READY */
} cli_progress;
void cli_open_progress(const k2_open_event *ev, void *user);
void cli_progress_done(cli_progress *p);

/* Options shared by run and chat. */
typedef struct cli_gen {
    const char *model;
    const char *system;
    k2_completion_request req;      /* sampling, max_tokens, stops */
    const char **stops;
    size_t n_stops;
    k2_model_open_options open;     /* generator context, tokenizer, Hub */
    cli_progress progress;
} cli_gen;

void cli_gen_init(cli_gen *g);
void cli_gen_free(cli_gen *g);
/* Consumes argv[*pi] (and its value, advancing *pi) when it is a shared option: 1; not a
 * shared option: 0; a bad value: -1. */
int cli_gen_option(cli_gen *g, int argc, char **argv, int *pi);
extern const char *CLI_GEN_HELP;

#endif
