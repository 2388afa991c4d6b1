/* Test helper for the Python oracles. Usage:
 *   tok_batch (--tiktoken MODEL [SPECIAL] | --json FILE | --gguf FILE) [--special]
 *     each stdin line: hex of the input bytes -> stdout line: ids separated by spaces
 *   tok_batch --chat
 *     each stdin line: {"messages": [...], "tools": [...]|null, "add_generation_prompt": bool}
 *     -> stdout line: hex of the rendered text (or "ERR message") */
#include "testutil.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static char *read_line(FILE *f, size_t *len) {
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    int c;
    while (b && (c = fgetc(f)) != EOF && c != '\n') {
        if (n + 1 >= cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); return NULL; }
            b = nb;
        }
        b[n++] = (char)c;
    }
    if (!b || (c == EOF && n == 0)) { free(b); return NULL; }
    b[n] = '\0';
    *len = n;
    return b;
}

static void put_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) printf("%02x", (unsigned char)s[i]);
    putchar('\n');
}

static char *dump_or_null(json_t *v) {
    if (!v || json_is_null(v)) return NULL;
    return json_dumps(v, JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
}

static int chat_mode(void) {
    size_t len;
    char *line;
    while ((line = read_line(stdin, &len))) {
        json_error_t je;
        json_t *req = json_loads(line, 0, &je);
        free(line);
        if (!req) { printf("ERR bad request\n"); continue; }
        json_t *msgs = json_object_get(req, "messages");
        size_t n = json_array_size(msgs);
        k2_chat_message *m = calloc(n ? n : 1, sizeof *m);
        char **owned = calloc(3 * (n ? n : 1), sizeof *owned);
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_array_get(msgs, i);
            m[i].role = json_string_value(json_object_get(o, "role"));
            json_t *c = json_object_get(o, "content");
            if (json_is_string(c)) m[i].content = json_string_value(c);
            else if (json_is_array(c)) m[i].content_json = owned[3 * i] = dump_or_null(c);
            m[i].name = json_string_value(json_object_get(o, "name"));
            m[i].tool_call_id = json_string_value(json_object_get(o, "tool_call_id"));
            m[i].tool_calls_json = owned[3 * i + 1] = dump_or_null(json_object_get(o, "tool_calls"));
        }
        char *tools = dump_or_null(json_object_get(req, "tools"));
        char *out = NULL;
        k2_error err;
        if (k2_chat_render(m, n, tools, json_is_true(json_object_get(req, "add_generation_prompt")), &out, &err) == K2_OK)
            put_hex(out, strlen(out));
        else printf("ERR %s\n", err.message);
        fflush(stdout);
        free(out);
        free(tools);
        for (size_t i = 0; i < 3 * n; i++) free(owned[i]);
        free(owned);
        free(m);
        json_decref(req);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "--chat") == 0) return chat_mode();
    k2_tokenizer *tok = NULL;
    k2_error err;
    k2_status st = K2_EINVAL;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--special") == 0) flags |= K2_TOKENIZE_PARSE_SPECIAL;
    if (argc >= 3 && strcmp(argv[1], "--tiktoken") == 0)
        st = k2_tokenizer_from_tiktoken(argv[2], argc >= 4 && argv[3][0] != '-' ? argv[3] : NULL, &tok, &err);
    else if (argc >= 3 && strcmp(argv[1], "--json") == 0)
        st = k2_tokenizer_from_json(argv[2], &tok, &err);
    else if (argc >= 3 && strcmp(argv[1], "--gguf") == 0) {
        k2_gguf *g;
        st = k2_gguf_open(argv[2], &g, &err);
        if (!st) {
            st = k2_tokenizer_from_gguf(g, &tok, &err);
            k2_gguf_close(g);
        }
    } else {
        fprintf(stderr, "usage: tok_batch (--tiktoken MODEL [SPECIAL] | --json FILE | --gguf FILE) [--special]\n");
        return 2;
    }
    if (st) {
        fprintf(stderr, "tok_batch: %s\n", err.message);
        return 1;
    }
    size_t len;
    char *line;
    while ((line = read_line(stdin, &len))) {
        size_t n = len / 2;
        char *bytes = malloc(n + 1);
        for (size_t i = 0; i < n; i++) {
            unsigned v;
            sscanf(line + 2 * i, "%2x", &v);
            bytes[i] = (char)v;
        }
        int32_t *ids = NULL;
        size_t nid = 0;
        if (k2_tokenize(tok, bytes, n, flags, &ids, &nid, &err) != K2_OK) printf("ERR %s\n", err.message);
        else {
            for (size_t i = 0; i < nid; i++) printf(i ? " %d" : "%d", ids[i]);
            putchar('\n');
        }
        fflush(stdout);
        free(ids);
        free(bytes);
        free(line);
    }
    k2_tokenizer_free(tok);
    return 0;
}
