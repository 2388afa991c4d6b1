/* k2 tokenize / k2 detokenize: text <-> token ids with any of the three vocabulary sources. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char TOKENIZE_HELP[] =
    "usage: k2 tokenize (-m MODEL.gguf | --tokenizer tokenizer.json | --tiktoken DIR) [--special]\n"
    "                   [--add-special] [--ids | --json] TEXT\n"
    "\n"
    "Prints the token ids of TEXT ('-' reads standard input).\n"
    "  -m, --model FILE      take the vocabulary from a GGUF file\n"
    "  --tokenizer FILE      a Hugging Face tokenizer.json\n"
    "  --tiktoken DIR|FILE   Kimi K2's tiktoken.model (+ special_tokens.json or tokenizer_config.json)\n"
    "  --special             recognise special-token strings such as <|im_end|> in TEXT\n"
    "  --add-special         add BOS/EOS when the vocabulary asks for them\n"
    "  --ids                 print only the ids, separated by spaces\n"
    "  --json                print a JSON array of ids\n"
    "Default output: one line per token, the id and the token's bytes.\n";

static const char DETOKENIZE_HELP[] =
    "usage: k2 detokenize (-m MODEL.gguf | --tokenizer tokenizer.json | --tiktoken DIR) [--skip-special] IDS...\n"
    "\n"
    "Prints the text of the token ids (separated by spaces or commas; '-' reads standard input;\n"
    "a JSON array is accepted too).\n"
    "  --skip-special        special tokens print nothing\n";

typedef struct tok_src {
    const char *gguf, *json, *tiktoken;
} tok_src;

/* Returns 1 when argv[*i] was a source option (consuming its value), 0 if not, -1 on usage error. */
static int parse_src(const char *cmd, int argc, char **argv, int *i, tok_src *s) {
    const char *a = argv[*i];
    const char **slot = NULL;
    if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) slot = &s->gguf;
    else if (strcmp(a, "--tokenizer") == 0) slot = &s->json;
    else if (strcmp(a, "--tiktoken") == 0) slot = &s->tiktoken;
    else return 0;
    if (*i + 1 >= argc) {
        cli_usage_error(cmd, "%s needs a value", a);
        return -1;
    }
    *slot = argv[++*i];
    return 1;
}

static int load_src(const char *cmd, const tok_src *s, k2_tokenizer **tok) {
    int n = (s->gguf != NULL) + (s->json != NULL) + (s->tiktoken != NULL);
    if (n != 1) return cli_usage_error(cmd, "give exactly one of -m, --tokenizer, --tiktoken");
    k2_error err;
    k2_status st;
    if (s->gguf) {
        k2_gguf *g;
        if (k2_gguf_open(s->gguf, &g, &err) != K2_OK) return cli_fail(cmd, &err);
        st = k2_tokenizer_from_gguf(g, tok, &err);
        k2_gguf_close(g);
    } else if (s->json) {
        st = k2_tokenizer_from_json(s->json, tok, &err);
    } else {
        struct stat sb;
        char *path = NULL;
        if (stat(s->tiktoken, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            size_t len = strlen(s->tiktoken) + 32;
            path = malloc(len);
            if (path) snprintf(path, len, "%s/tiktoken.model", s->tiktoken);
        }
        st = k2_tokenizer_from_tiktoken(path ? path : s->tiktoken, NULL, tok, &err);
        free(path);
    }
    if (st != K2_OK) return cli_fail(cmd, &err);
    return 0;
}

static char *read_stdin(size_t *len) {
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); return NULL; }
            buf = nb;
            cap *= 2;
        }
    }
    buf[n < cap ? n : cap - 1] = '\0';
    *len = n;
    return buf;
}

static void print_bytes(const char *p, size_t n) {
    putchar('\'');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\\' || c == '\'') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c < 0x20 || c == 0x7F) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('\'');
}

int cmd_tokenize(int argc, char **argv) {
    tok_src src = {0};
    const char *text = NULL;
    unsigned flags = 0;
    int mode = 0; /* 0 table, 1 ids, 2 json */
    for (int i = 1; i < argc; i++) {
        int r = parse_src("tokenize", argc, argv, &i, &src);
        if (r < 0) return 2;
        if (r) continue;
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(TOKENIZE_HELP, stdout); return 0; }
        if (strcmp(a, "--special") == 0) flags |= K2_TOKENIZE_PARSE_SPECIAL;
        else if (strcmp(a, "--add-special") == 0) flags |= K2_TOKENIZE_ADD_SPECIAL;
        else if (strcmp(a, "--ids") == 0) mode = 1;
        else if (strcmp(a, "--json") == 0) mode = 2;
        else if (a[0] == '-' && a[1]) return cli_usage_error("tokenize", "unknown option '%s'", a);
        else if (text) return cli_usage_error("tokenize", "more than one TEXT given");
        else text = a;
    }
    if (!text) return cli_usage_error("tokenize", "missing TEXT");
    k2_tokenizer *tok = NULL;
    int rc = load_src("tokenize", &src, &tok);
    if (rc) return rc;
    char *owned = NULL;
    size_t len;
    if (strcmp(text, "-") == 0) {
        owned = read_stdin(&len);
        if (!owned) {
            k2_tokenizer_free(tok);
            fprintf(stderr, "k2 tokenize: cannot read standard input\n");
            return 1;
        }
        text = owned;
    } else len = strlen(text);
    int32_t *ids = NULL;
    size_t n = 0;
    k2_error err;
    if (k2_tokenize(tok, text, len, flags, &ids, &n, &err) != K2_OK) {
        free(owned);
        k2_tokenizer_free(tok);
        return cli_fail("tokenize", &err);
    }
    if (mode == 1 || mode == 2) {
        if (mode == 2) putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? (mode == 2 ? ", %d" : " %d") : "%d", ids[i]);
        if (mode == 2) putchar(']');
        putchar('\n');
    } else {
        for (size_t i = 0; i < n; i++) {
            k2_str b;
            k2_token_bytes(tok, ids[i], &b, NULL);
            printf("%8d  ", ids[i]);
            print_bytes(b.ptr, b.len);
            if (k2_token_is_special(tok, ids[i])) fputs("  (special)", stdout);
            putchar('\n');
        }
    }
    free(ids);
    free(owned);
    k2_tokenizer_free(tok);
    return 0;
}

static int parse_ids(const char *s, int32_t **ids, size_t *n, size_t *cap) {
    while (*s) {
        if (*s == ' ' || *s == ',' || *s == '\n' || *s == '\t' || *s == '\r' || *s == '[' || *s == ']') {
            s++;
            continue;
        }
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX) return -1;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 64;
            int32_t *nv = realloc(*ids, *cap * sizeof **ids);
            if (!nv) return -1;
            *ids = nv;
        }
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    tok_src src = {0};
    unsigned flags = 0;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    bool any = false;
    for (int i = 1; i < argc; i++) {
        int r = parse_src("detokenize", argc, argv, &i, &src);
        if (r < 0) { free(ids); return 2; }
        if (r) continue;
        const char *a = argv[i];
        if (cli_is_help(a)) { free(ids); fputs(DETOKENIZE_HELP, stdout); return 0; }
        if (strcmp(a, "--skip-special") == 0) { flags |= K2_DETOK_SKIP_SPECIAL; continue; }
        if (a[0] == '-' && a[1]) { free(ids); return cli_usage_error("detokenize", "unknown option '%s'", a); }
        any = true;
        int bad;
        if (strcmp(a, "-") == 0) {
            size_t len;
            char *in = read_stdin(&len);
            bad = !in || parse_ids(in, &ids, &n, &cap);
            free(in);
        } else bad = parse_ids(a, &ids, &n, &cap);
        if (bad) { free(ids); return cli_usage_error("detokenize", "'%s' is not a list of token ids", a); }
    }
    if (!any) { free(ids); return cli_usage_error("detokenize", "missing IDS"); }
    k2_tokenizer *tok = NULL;
    int rc = load_src("detokenize", &src, &tok);
    if (rc) { free(ids); return rc; }
    char *text = NULL;
    size_t len = 0;
    k2_error err;
    if (k2_detokenize(tok, ids, n, flags, &text, &len, &err) != K2_OK) {
        free(ids);
        k2_tokenizer_free(tok);
        return cli_fail("detokenize", &err);
    }
    fwrite(text, 1, len, stdout);
    putchar('\n');
    free(text);
    free(ids);
    k2_tokenizer_free(tok);
    return 0;
}
