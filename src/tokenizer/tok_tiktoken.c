/* Loader for Kimi K2's own files: tiktoken.model (spec §1.1, §1.2) and the special
 * tokens as a JSON map or a tokenizer_config.json (§1.4). */
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Strict RFC 4648 §4 decoding; returns the decoded length or -1. */
static long b64_decode(const char *s, size_t n, unsigned char *out) {
    if (n == 0 || n % 4) return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4], pad = 0;
        for (int k = 0; k < 4; k++) {
            unsigned char c = (unsigned char)s[i + k];
            if (c == '=') {
                if (i + 4 != n || k < 2) return -1;
                pad++;
                v[k] = 0;
                continue;
            }
            if (pad) return -1; /* data after padding */
            v[k] = b64_val(c);
            if (v[k] < 0) return -1;
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2) out[o++] = (unsigned char)(w >> 8);
        if (pad < 1) out[o++] = (unsigned char)w;
        if (pad == 2 && (v[1] & 0x0F)) return -1; /* unused bits must be zero */
        if (pad == 1 && (v[2] & 0x03)) return -1;
    }
    return (long)o;
}

typedef struct tt_line {
    uint32_t off, len; /* decoded bytes in a scratch buffer */
    int64_t rank;
} tt_line;

typedef struct tt_special {
    char *text;
    int64_t id;
} tt_special;

static void specials_free(tt_special *sp, size_t n) {
    for (size_t i = 0; i < n; i++) free(sp[i].text);
    free(sp);
}

static k2_status read_specials(const char *path, int64_t n_ranks, tt_special **out, size_t *n_out, k2_error *err) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    *out = NULL;
    *n_out = 0;
    if (!root)
        return k2_err(err, K2_EFORMAT, "%s: line %d: JSON error: %s", path, je.line, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return k2_err(err, K2_EFORMAT, "%s: expected a JSON object", path);
    }
    k2_status st = K2_OK;
    tt_special *sp = NULL;
    size_t n = 0;
    json_t *dec = json_object_get(root, "added_tokens_decoder");
    if (dec) {
        /* tokenizer_config.json: the reference names every id N..N+255 (§1.4). */
        if (!json_is_object(dec)) {
            st = k2_err(err, K2_EFORMAT, "%s: added_tokens_decoder: expected an object", path);
            goto done;
        }
        sp = k2_calloc(256, sizeof *sp);
        if (!sp) { st = k2_err(err, K2_ENOMEM, "out of memory"); goto done; }
        const char *key;
        json_t *v;
        json_object_foreach(dec, key, v) {
            char *end;
            long long id = strtoll(key, &end, 10);
            if (!*key || *end || id < n_ranks || id >= n_ranks + 256) {
                st = k2_err(err, K2_EFORMAT, "%s: added_tokens_decoder: key \"%s\" is not an id in %lld..%lld",
                            path, key, (long long)n_ranks, (long long)n_ranks + 255);
                goto done;
            }
            json_t *c = json_is_object(v) ? json_object_get(v, "content") : NULL;
            if (!json_is_string(c)) {
                st = k2_err(err, K2_EFORMAT, "%s: added_tokens_decoder.%s.content: expected a string", path, key);
                goto done;
            }
            sp[id - n_ranks].text = k2_strdup(json_string_value(c));
            sp[id - n_ranks].id = id;
        }
        for (int i = 0; i < 256; i++) {
            if (!sp[i].text) {
                sp[i].text = k2_asprintf("<|reserved_token_%lld|>", (long long)(n_ranks + i));
                sp[i].id = n_ranks + i;
            }
            if (!sp[i].text) { st = k2_err(err, K2_ENOMEM, "out of memory"); goto done; }
        }
        n = 256;
    } else {
        size_t cnt = json_object_size(root);
        sp = k2_calloc(cnt ? cnt : 1, sizeof *sp);
        if (!sp) { st = k2_err(err, K2_ENOMEM, "out of memory"); goto done; }
        const char *key;
        json_t *v;
        json_object_foreach(root, key, v) {
            if (!json_is_integer(v)) {
                st = k2_err(err, K2_EFORMAT, "%s: special token \"%s\": the id must be an integer", path, key);
                goto done;
            }
            sp[n].text = k2_strdup(key);
            sp[n].id = json_integer_value(v);
            n++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!sp[i].text[0]) {
            st = k2_err(err, K2_EFORMAT, "%s: special token with id %lld has an empty text", path, (long long)sp[i].id);
            goto done;
        }
        if (sp[i].id < n_ranks || sp[i].id >= (1 << 28)) {
            st = k2_err(err, K2_EFORMAT, "%s: special token \"%s\": id %lld %s", path, sp[i].text,
                        (long long)sp[i].id, sp[i].id < n_ranks ? "is also a rank of tiktoken.model" : "is too large");
            goto done;
        }
        for (size_t j = 0; j < i; j++) {
            if (sp[j].id == sp[i].id) {
                st = k2_err(err, K2_EFORMAT, "%s: special tokens \"%s\" and \"%s\" share the id %lld", path,
                            sp[j].text, sp[i].text, (long long)sp[i].id);
                goto done;
            }
            if (strcmp(sp[j].text, sp[i].text) == 0) {
                st = k2_err(err, K2_EFORMAT, "%s: special token \"%s\" appears twice", path, sp[i].text);
                goto done;
            }
        }
    }
done:
    json_decref(root);
    if (st) {
        specials_free(sp, dec ? 256 : n);
        return st;
    }
    *out = sp;
    *n_out = n;
    return K2_OK;
}

static bool file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

k2_status k2_tokenizer_from_tiktoken(const char *model_path, const char *special_path, k2_tokenizer **out,
                                     k2_error *err) {
    *out = NULL;
    char *data = NULL;
    size_t size = 0;
    k2_status st = k2_read_file(model_path, &data, &size, err);
    if (st) return st;
    /* Pass 1: parse lines into a scratch buffer of decoded bytes. */
    size_t cap_lines = 1024, n_lines = 0;
    tt_line *lines = malloc(cap_lines * sizeof *lines);
    unsigned char *bytes = malloc(size + 4);
    size_t nbytes = 0;
    char *special_auto = NULL;
    tt_special *sp = NULL;
    size_t n_sp = 0;
    k2_tokenizer *t = NULL;
    uint8_t *seen = NULL;
    if (!lines || !bytes) { st = k2_err(err, K2_ENOMEM, "out of memory"); goto fail; }
    size_t pos = 0, line_no = 0;
    while (pos < size) {
        line_no++;
        const char *ls = data + pos;
        const char *nl = memchr(ls, '\n', size - pos);
        size_t len = nl ? (size_t)(nl - ls) : size - pos;
        pos += len + (nl ? 1 : 0);
        if (len && ls[len - 1] == '\r') len--;
        if (len == 0) continue;
        const char *sp1 = memchr(ls, ' ', len);
        if (!sp1 || sp1 == ls) {
            st = k2_err(err, K2_EFORMAT, "%s: line %zu: expected \"<base64> <rank>\"", model_path, line_no);
            goto fail;
        }
        size_t blen = (size_t)(sp1 - ls);
        const char *rs = sp1 + 1;
        size_t rlen = len - blen - 1;
        if (rlen == 0 || rlen > 10) {
            st = k2_err(err, K2_EFORMAT, "%s: line %zu: bad rank field", model_path, line_no);
            goto fail;
        }
        int64_t rank = 0;
        for (size_t i = 0; i < rlen; i++) {
            if (rs[i] < '0' || rs[i] > '9') {
                st = k2_err(err, K2_EFORMAT, "%s: line %zu: the rank \"%.*s\" is not a decimal number", model_path,
                            line_no, (int)rlen, rs);
                goto fail;
            }
            rank = rank * 10 + (rs[i] - '0');
        }
        if (rank >= ((int64_t)1 << 31)) {
            st = k2_err(err, K2_EFORMAT, "%s: line %zu: rank %lld is too large", model_path, line_no, (long long)rank);
            goto fail;
        }
        long dl = b64_decode(ls, blen, bytes + nbytes);
        if (dl <= 0) {
            st = k2_err(err, K2_EFORMAT, "%s: line %zu: invalid base64 \"%.*s\"", model_path, line_no,
                        (int)K2_MIN(blen, 64), ls);
            goto fail;
        }
        if (n_lines == cap_lines) {
            cap_lines *= 2;
            tt_line *nlp = realloc(lines, cap_lines * sizeof *lines);
            if (!nlp) { st = k2_err(err, K2_ENOMEM, "out of memory"); goto fail; }
            lines = nlp;
        }
        lines[n_lines++] = (tt_line){(uint32_t)nbytes, (uint32_t)dl, rank};
        nbytes += (size_t)dl;
    }
    if (n_lines == 0) { st = k2_err(err, K2_EFORMAT, "%s: no tokens", model_path); goto fail; }
    /* Ranks must be exactly 0..N-1 (§1.2). */
    seen = k2_calloc(n_lines, 1);
    if (!seen) { st = k2_err(err, K2_ENOMEM, "out of memory"); goto fail; }
    for (size_t i = 0; i < n_lines; i++) {
        if (lines[i].rank >= (int64_t)n_lines) {
            st = k2_err(err, K2_EFORMAT, "%s: rank %lld is outside 0..%zu (ranks must be 0..N-1)", model_path,
                        (long long)lines[i].rank, n_lines - 1);
            goto fail;
        }
        if (seen[lines[i].rank]) {
            st = k2_err(err, K2_EFORMAT, "%s: rank %lld appears twice", model_path, (long long)lines[i].rank);
            goto fail;
        }
        seen[lines[i].rank] = 1;
    }
    /* Special tokens. */
    if (!special_path) {
        const char *slash = strrchr(model_path, '/');
        size_t dirlen = slash ? (size_t)(slash - model_path + 1) : 0;
        special_auto = k2_asprintf("%.*sspecial_tokens.json", (int)dirlen, model_path);
        if (special_auto && !file_exists(special_auto)) {
            free(special_auto);
            special_auto = k2_asprintf("%.*stokenizer_config.json", (int)dirlen, model_path);
            if (special_auto && !file_exists(special_auto)) { free(special_auto); special_auto = NULL; }
        }
        special_path = special_auto;
    }
    if (special_path && (st = read_specials(special_path, (int64_t)n_lines, &sp, &n_sp, err))) goto fail;
    int64_t n_vocab = (int64_t)n_lines;
    for (size_t i = 0; i < n_sp; i++) n_vocab = K2_MAX(n_vocab, sp[i].id + 1);
    if ((st = tok_new((int32_t)n_vocab, model_path, &t, err))) goto fail;
    t->n_base = (int32_t)n_lines;
    for (size_t i = 0; i < n_lines; i++)
        if ((st = tok_set_token(t, (int32_t)lines[i].rank, bytes + lines[i].off, lines[i].len, TOK_NORMAL, err)))
            goto fail;
    for (size_t i = 0; i < n_sp; i++)
        if ((st = tok_set_token(t, (int32_t)sp[i].id, sp[i].text, strlen(sp[i].text), TOK_CONTROL, err))) goto fail;
    if ((st = tok_finish(t, err))) goto fail;
    if ((st = tok_merges_from_ranks(t, err))) goto fail;
    t->ignore_merges = true; /* tiktoken's whole-piece lookup (§3.1 step 4) */
    if ((st = tok_set_pre_by_name(t, "kimi-k2", err))) goto fail;
    t->bos = k2_token_find(t, "[BOS]", 5);
    t->eos = k2_token_find(t, "[EOS]", 5);
    t->eot = k2_token_find(t, "[EOT]", 5);
    if (t->bos >= 0 && t->type[t->bos] == TOK_NORMAL) t->bos = -1;
    if (t->eos >= 0 && t->type[t->eos] == TOK_NORMAL) t->eos = -1;
    if (t->eot >= 0 && t->type[t->eot] == TOK_NORMAL) t->eot = -1;
    tok_set_stops(t);
    free(data); free(lines); free(bytes); free(seen); free(special_auto);
    specials_free(sp, n_sp);
    *out = t;
    return K2_OK;
fail:
    k2_tokenizer_free(t);
    free(data); free(lines); free(bytes); free(seen); free(special_auto);
    specials_free(sp, n_sp);
    return st;
}
