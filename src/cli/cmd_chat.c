/* k2 chat: an interactive conversation with a model (local file or folder, or a Hub
 * reference). The model is opened once (k2_model_open_async, progress on stderr); each turn
 * renders the whole history through the chat template and runs on the model's generator,
 * whose slot keeps the previous turn's cache, so only the new part of the prompt is
 * evaluated (prefix reuse). Reads stdin, a terminal or a pipe.
 *
 * Input: a line is one message; a line ending in '\' continues on the next line; a line
 * starting with """ opens a block that ends at a line ending with """. Commands: /reset,
 * /system TEXT, /save FILE, /help, /exit. Ctrl-C stops the answer being generated (or
 * discards the line being typed), never the program; Ctrl-D (end of input) quits. */
#include "cli/cli.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: k2 chat [REF] [options]\n\n"
            "An interactive chat. REF is a local GGUF file or folder, or a Hub reference\n"
            "org/repo[:QUANT][@REV]. A line is a message; end a line with \\ to continue it,\n"
            "or wrap several lines in \"\"\" ... \"\"\". Commands:\n"
            "  /reset          forget the conversation (the system message stays)\n"
            "  /system TEXT    set the system message\n"
            "  /save FILE      write the conversation as JSON\n"
            "  /exit           quit (as does end of input)\n"
            "Ctrl-C stops the answer being generated; statistics of each answer go to stderr.\n\n"
            "%s",
            CLI_GEN_HELP);
}

typedef struct history {
    char **role, **content;
    size_t n, cap;
} history;

static bool hist_push(history *h, const char *role, const char *content) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        char **r = realloc(h->role, cap * sizeof *r);
        if (!r) return false;
        h->role = r;
        char **c = realloc(h->content, cap * sizeof *c);
        if (!c) return false;
        h->content = c;
        h->cap = cap;
    }
    h->role[h->n] = strdup(role);
    h->content[h->n] = strdup(content);
    h->n++;
    return true;
}

static void hist_pop(history *h) {
    if (!h->n) return;
    h->n--;
    free(h->role[h->n]);
    free(h->content[h->n]);
}

static void hist_clear(history *h) {
    while (h->n) hist_pop(h);
}

/* A growing string. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static bool sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

/* One line without its newline: 1 = got a line, 0 = end of input, -1 = interrupted. */
static int read_line(char **line, size_t *cap) {
    errno = 0;
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) {
        if (errno == EINTR || interrupted) {
            clearerr(stdin);
            interrupted = 0;
            return -1;
        }
        return 0;
    }
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = 0;
    return 1;
}

/* One message (several lines with '\' or """): 1 = message in *out, 0 = end of input,
 * -1 = interrupted (the partial message is dropped). */
static int read_message(bool tty, sbuf *out, char **line, size_t *cap) {
    out->n = 0;
    sb_add(out, "", 0);
    bool block = false, first = true;
    for (;;) {
        if (tty) {
            fputs(first ? ">>> " : "... ", stdout);
            fflush(stdout);
        }
        int r = read_line(line, cap);
        if (r <= 0) {
            if (r == 0 && out->n > 0) return 1; /* end of input after a continued line */
            return r;
        }
        char *l = *line;
        size_t n = strlen(l);
        if (first && !block && strncmp(l, "\"\"\"", 3) == 0) {
            block = true;
            l += 3;
            n -= 3;
            if (n >= 3 && strcmp(l + n - 3, "\"\"\"") == 0) { /* """one line""" */
                sb_add(out, l, n - 3);
                return 1;
            }
            if (n) {
                sb_add(out, l, n);
                sb_add(out, "\n", 1);
            }
            first = false;
            continue;
        }
        first = false;
        if (block) {
            if (n >= 3 && strcmp(l + n - 3, "\"\"\"") == 0) {
                sb_add(out, l, n - 3);
                while (out->n && out->p[out->n - 1] == '\n') out->p[--out->n] = 0;
                return 1;
            }
            sb_add(out, l, n);
            sb_add(out, "\n", 1);
            continue;
        }
        if (n && l[n - 1] == '\\') {
            sb_add(out, l, n - 1);
            sb_add(out, "\n", 1);
            continue;
        }
        sb_add(out, l, n);
        return 1;
    }
}

static int save_json(const char *path, const char *model, const char *system, const history *h) {
    json_t *msgs = json_array();
    if (system) json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
    for (size_t i = 0; i < h->n; i++)
        json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", h->role[i], "content", h->content[i]));
    json_t *doc = json_pack("{s:s,s:o}", "model", model, "messages", msgs);
    int rc = json_dump_file(doc, path, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(doc);
    return rc;
}

/* Opens the model, cancelling on Ctrl-C. */
static k2_status open_model(k2_runtime *rt, const char *ref, cli_gen *g, k2_model **out, k2_error *err) {
    *out = NULL;
    k2_future *f = k2_model_open_async(rt, ref, &g->open);
    if (!f) {
        cli_set_error(err, K2_ENOMEM, "out of memory");
        return K2_ENOMEM;
    }
    k2_status st;
    while ((st = k2_future_wait(f, 100)) == K2_ETIMEOUT)
        if (interrupted) k2_future_cancel(f);
    if (st == K2_OK) *out = k2_model_open_result(f);
    else *err = *k2_future_error(f);
    k2_future_free(f);
    return st;
}

int cmd_chat(int argc, char **argv) {
    cli_gen g;
    cli_gen_init(&g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            cli_gen_free(&g);
            return 0;
        }
        int r = cli_gen_option(&g, argc, argv, &i);
        if (r < 0) {
            cli_gen_free(&g);
            return cli_usage_error("chat", "bad value '%s' for %s", argv[i], a);
        }
        if (r > 0) continue;
        if (a[0] != '-' && !g.model) g.model = a;
        else {
            cli_gen_free(&g);
            return cli_usage_error("chat", "unknown or incomplete option '%s'", a);
        }
    }
    const char *model = g.model ? g.model : cli_default_model();
    g.open.on_event = cli_open_progress;
    g.open.user = &g.progress;
    bool tty = isatty(0);

    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: a Ctrl-C interrupts the read */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);

    k2_error err;
    k2_error_clear(&err);
    k2_runtime *rt = NULL;
    k2_model *m = NULL;
    int rc = 1;
    char *system = g.system ? strdup(g.system) : NULL;
    history h = {0};
    sbuf msg = {0}, answer = {0};
    char *line = NULL;
    size_t line_cap = 0;
    k2_chat_message *msgs = NULL;
    if (k2_runtime_new(NULL, &rt, &err) != K2_OK || open_model(rt, model, &g, &m, &err) != K2_OK) {
        cli_progress_done(&g.progress);
        cli_fail("chat", &err);
        goto out;
    }
    interrupted = 0;
    if (tty) fprintf(stderr, "k2 chat: %s — /help for commands, Ctrl-D to quit\n", model);
    rc = 0;
    for (;;) {
        int r = read_message(tty, &msg, &line, &line_cap);
        if (r == 0) break;
        if (r < 0) {
            if (tty) fputc('\n', stdout);
            continue;
        }
        const char *text = msg.p;
        if (text[0] == '/') {
            if (!strcmp(text, "/exit") || !strcmp(text, "/quit") || !strcmp(text, "/bye")) break;
            if (!strcmp(text, "/reset")) {
                hist_clear(&h);
                fprintf(stderr, "[conversation reset]\n");
            } else if (!strncmp(text, "/system", 7) && (text[7] == ' ' || text[7] == 0)) {
                const char *s = text + 7;
                while (*s == ' ') s++;
                free(system);
                system = *s ? strdup(s) : NULL;
                fprintf(stderr, "[system message %s]\n", system ? "set" : "cleared");
            } else if (!strncmp(text, "/save ", 6)) {
                const char *path = text + 6;
                while (*path == ' ') path++;
                if (save_json(path, model, system, &h) == 0) fprintf(stderr, "[saved %zu messages to %s]\n", h.n, path);
                else fprintf(stderr, "k2 chat: cannot write %s\n", path);
            } else if (!strcmp(text, "/help")) {
                fprintf(stderr, "/reset, /system TEXT, /save FILE, /exit; end a line with \\ or use \"\"\" for "
                                "several lines; Ctrl-C stops an answer\n");
            } else {
                fprintf(stderr, "k2 chat: unknown command %s (/help lists them)\n", text);
            }
            continue;
        }
        if (!text[0]) continue;
        if (!hist_push(&h, "user", text)) break;
        size_t n = h.n + (system ? 1 : 0);
        k2_chat_message *nm = realloc(msgs, n * sizeof *nm);
        if (!nm) break;
        msgs = nm;
        memset(msgs, 0, n * sizeof *msgs);
        size_t k = 0;
        if (system) msgs[k++] = (k2_chat_message){.role = "system", .content = system};
        for (size_t i = 0; i < h.n; i++) msgs[k++] = (k2_chat_message){.role = h.role[i], .content = h.content[i]};
        g.req.messages = msgs;
        g.req.n_messages = n;
        k2_stream *s = NULL;
        if (k2_complete(m, &g.req, &s, &err) != K2_OK) {
            cli_fail("chat", &err);
            hist_pop(&h);
            continue;
        }
        answer.n = 0;
        sb_add(&answer, "", 0);
        k2_chunk c;
        interrupted = 0;
        for (;;) {
            k2_status st = k2_stream_next(s, 50, &c);
            if (interrupted) k2_stream_cancel(s);
            if (st == K2_ETIMEOUT) continue;
            if (st != K2_OK) break;
            if (c.type == K2_CHUNK_DELTA) {
                fwrite(c.text, 1, c.text_len, stdout);
                fflush(stdout);
                sb_add(&answer, c.text, c.text_len);
                continue;
            }
            fputc('\n', stdout);
            fflush(stdout);
            if (c.type == K2_CHUNK_ERROR) {
                fprintf(stderr, "k2 chat: %s: %s\n", k2_error_stage_name(c.stage), c.message);
                hist_pop(&h);
            } else {
                if (c.finish == K2_FINISH_CANCELLED) fprintf(stderr, "[interrupted]\n");
                hist_push(&h, "assistant", answer.p);
                fprintf(stderr,
                        "[%u prompt tokens (%u cached): %.1f ms, %.1f tok/s; %u generated: %.1f tok/s; %s]\n",
                        c.usage.prompt_tokens, c.usage.cached_tokens, c.timings.prompt_ms, c.timings.prompt_tps,
                        c.usage.completion_tokens, c.timings.gen_tps, k2_finish_reason_name(c.finish));
            }
            break;
        }
        interrupted = 0;
        k2_stream_free(s);
    }
out:
    sigaction(SIGINT, &old, NULL);
    k2_model_free(m);
    k2_runtime_free(rt);
    hist_clear(&h);
    free(h.role);
    free(h.content);
    free(msg.p);
    free(answer.p);
    free(line);
    free(msgs);
    free(system);
    cli_gen_free(&g);
    return rc;
}
