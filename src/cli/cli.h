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
/* True when arg is "-h" or "--help". */
int cli_is_help(const char *arg);

#endif
