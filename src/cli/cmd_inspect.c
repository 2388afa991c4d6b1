/* k2 inspect FILE [--json] [--tensors]: describe a GGUF model (or shard set).
 * The JSON form is documented in docs/inspect-json.md and kept stable. */
#include "cli/cli.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *INSPECT_HELP =
    "usage: k2 inspect FILE [--json] [--tensors]\n\n"
    "Describe a GGUF model: architecture, hyperparameters, tokenizer, tensor types and sizes.\n"
    "FILE may be any shard of a split model; all shards are opened.\n\n"
    "  --json      machine-readable output (format: docs/inspect-json.md)\n"
    "  --tensors   list every tensor: name, type, shape, shard, offset, bytes\n";

/* Shortest decimal that reads back as the same float (f32 values print as 0.1, not 0.100000001). */
static double f32_shortest(double v) {
    float f = (float)v;
    char buf[64];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return strtod(buf, NULL);
}

static json_t *value_json(const k2_gguf_value *v, bool full_arrays);

static json_t *array_elem_json(const k2_gguf_value *v, uint64_t i) {
    const unsigned char *d = v->v.arr.data;
    switch (v->v.arr.type) {
    case K2_GGUF_UINT8: return json_integer(d[i]);
    case K2_GGUF_INT8: return json_integer((int8_t)d[i]);
    case K2_GGUF_UINT16: { uint16_t x; memcpy(&x, d + 2 * i, 2); return json_integer(x); }
    case K2_GGUF_INT16: { int16_t x; memcpy(&x, d + 2 * i, 2); return json_integer(x); }
    case K2_GGUF_UINT32: { uint32_t x; memcpy(&x, d + 4 * i, 4); return json_integer(x); }
    case K2_GGUF_INT32: { int32_t x; memcpy(&x, d + 4 * i, 4); return json_integer(x); }
    case K2_GGUF_UINT64: {
        uint64_t x;
        memcpy(&x, d + 8 * i, 8);
        return x > (uint64_t)INT64_MAX ? json_real((double)x) : json_integer((json_int_t)x);
    }
    case K2_GGUF_INT64: { int64_t x; memcpy(&x, d + 8 * i, 8); return json_integer(x); }
    case K2_GGUF_FLOAT32: { float x; memcpy(&x, d + 4 * i, 4); return json_real(f32_shortest(x)); }
    case K2_GGUF_FLOAT64: { double x; memcpy(&x, d + 8 * i, 8); return json_real(x); }
    case K2_GGUF_BOOL: return json_boolean(d[i]);
    case K2_GGUF_STRING: return json_stringn_nocheck(v->v.arr.strings[i].ptr, v->v.arr.strings[i].len);
    case K2_GGUF_ARRAY: return value_json(&v->v.arr.arrays[i], true);
    }
    return json_null();
}

/* Scalars print as themselves; arrays as {"type":"array","element_type":..,"length":..}
 * unless short (<= 16 elements) or full_arrays is set. */
static json_t *value_json(const k2_gguf_value *v, bool full_arrays) {
    switch (v->type) {
    case K2_GGUF_UINT8: case K2_GGUF_UINT16: case K2_GGUF_UINT32: case K2_GGUF_UINT64:
        /* JSON integers here are int64: larger uint64 values print as reals. */
        if (v->v.u64 > (uint64_t)INT64_MAX) return json_real((double)v->v.u64);
        return json_integer((json_int_t)v->v.u64);
    case K2_GGUF_INT8: case K2_GGUF_INT16: case K2_GGUF_INT32: case K2_GGUF_INT64:
        return json_integer(v->v.i64);
    case K2_GGUF_FLOAT32: return json_real(f32_shortest(v->v.f64));
    case K2_GGUF_FLOAT64: return json_real(v->v.f64);
    case K2_GGUF_BOOL: return json_boolean(v->v.b);
    case K2_GGUF_STRING: return json_stringn_nocheck(v->v.str.ptr, v->v.str.len);
    case K2_GGUF_ARRAY:
        if (full_arrays || v->v.arr.n <= 16) {
            json_t *a = json_array();
            for (uint64_t i = 0; i < v->v.arr.n; i++) json_array_append_new(a, array_elem_json(v, i));
            return a;
        } else {
            json_t *o = json_object();
            json_object_set_new(o, "type", json_string("array"));
            json_object_set_new(o, "element_type", json_string(k2_gguf_type_name(v->v.arr.type)));
            json_object_set_new(o, "length", json_integer((json_int_t)v->v.arr.n));
            return o;
        }
    }
    return json_null();
}

static json_t *build_report(const k2_gguf *g, bool with_tensors) {
    json_t *root = json_object();
    json_object_set_new(root, "format_version", json_integer(1));
    json_object_set_new(root, "gguf_version", json_integer(k2_gguf_version(g)));
    json_object_set_new(root, "alignment", json_integer(k2_gguf_alignment(g)));

    uint32_t n_shards = k2_gguf_shard_count(g);
    json_t *files = json_array();
    uint64_t total_file_bytes = 0;
    int64_t *shard_tensors = calloc(n_shards, sizeof *shard_tensors);
    for (int64_t i = 0; i < k2_gguf_tensor_count(g); i++) shard_tensors[k2_gguf_tensor_at(g, i)->shard]++;
    for (uint32_t s = 0; s < n_shards; s++) {
        json_t *f = json_object();
        json_object_set_new(f, "path", json_string(k2_gguf_shard_path(g, s)));
        json_object_set_new(f, "size", json_integer((json_int_t)k2_gguf_shard_size(g, s)));
        json_object_set_new(f, "data_offset", json_integer((json_int_t)k2_gguf_shard_data_offset(g, s)));
        json_object_set_new(f, "tensor_count", json_integer(shard_tensors[s]));
        json_array_append_new(files, f);
        total_file_bytes += k2_gguf_shard_size(g, s);
    }
    free(shard_tensors);
    json_object_set_new(root, "files", files);
    json_object_set_new(root, "file_bytes", json_integer((json_int_t)total_file_bytes));

    k2_str s;
    char arch[128] = "";
    if (k2_gguf_get_str(g, "general.architecture", &s, NULL) == K2_OK) {
        snprintf(arch, sizeof arch, "%.*s", (int)s.len, s.ptr);
        json_object_set_new(root, "architecture", json_stringn_nocheck(s.ptr, s.len));
    } else {
        json_object_set_new(root, "architecture", json_null());
    }
    if (k2_gguf_get_str(g, "general.name", &s, NULL) == K2_OK)
        json_object_set_new(root, "name", json_stringn_nocheck(s.ptr, s.len));
    else
        json_object_set_new(root, "name", json_null());

    /* Hyperparameters: every "<arch>." key, prefix stripped. */
    json_t *hp = json_object();
    size_t alen = strlen(arch);
    for (int64_t i = 0; i < k2_gguf_kv_count(g); i++) {
        const char *k = k2_gguf_kv_key(g, i);
        if (alen && strncmp(k, arch, alen) == 0 && k[alen] == '.')
            json_object_set_new(hp, k + alen + 1, value_json(k2_gguf_kv_value(g, i), false));
    }
    json_object_set_new(root, "hyperparameters", hp);

    /* Tokenizer summary. */
    json_t *tok = json_object();
    const k2_gguf_value *v;
    if (k2_gguf_get_str(g, "tokenizer.ggml.model", &s, NULL) == K2_OK) json_object_set_new(tok, "model", json_stringn_nocheck(s.ptr, s.len));
    if (k2_gguf_get_str(g, "tokenizer.ggml.pre", &s, NULL) == K2_OK) json_object_set_new(tok, "pre", json_stringn_nocheck(s.ptr, s.len));
    if ((v = k2_gguf_find(g, "tokenizer.ggml.tokens")) && v->type == K2_GGUF_ARRAY)
        json_object_set_new(tok, "vocab_size", json_integer((json_int_t)v->v.arr.n));
    if ((v = k2_gguf_find(g, "tokenizer.ggml.merges")) && v->type == K2_GGUF_ARRAY)
        json_object_set_new(tok, "merges", json_integer((json_int_t)v->v.arr.n));
    static const char *ids[][2] = {{"bos_token_id", "tokenizer.ggml.bos_token_id"}, {"eos_token_id", "tokenizer.ggml.eos_token_id"},
                                   {"eot_token_id", "tokenizer.ggml.eot_token_id"}, {"pad_token_id", "tokenizer.ggml.padding_token_id"},
                                   {"unknown_token_id", "tokenizer.ggml.unknown_token_id"}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        uint32_t id;
        if (k2_gguf_get_u32(g, ids[i][1], &id, NULL) == K2_OK) json_object_set_new(tok, ids[i][0], json_integer(id));
    }
    bool b;
    if (k2_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, NULL) == K2_OK) json_object_set_new(tok, "add_bos_token", json_boolean(b));
    json_object_set_new(tok, "chat_template", json_boolean(k2_gguf_find(g, "tokenizer.chat_template") != NULL));
    json_object_set_new(root, "tokenizer", tok);

    /* Other metadata (general.*, split.*, quantize.* ...): everything not reported above. */
    json_t *meta = json_object();
    for (int64_t i = 0; i < k2_gguf_kv_count(g); i++) {
        const char *k = k2_gguf_kv_key(g, i);
        if (alen && strncmp(k, arch, alen) == 0 && k[alen] == '.') continue;
        json_object_set_new(meta, k, value_json(k2_gguf_kv_value(g, i), false));
    }
    json_object_set_new(root, "metadata", meta);

    /* Tensors and the type histogram (in type-id order). */
    int64_t count[K2_TYPE_COUNT] = {0};
    uint64_t bytes[K2_TYPE_COUNT] = {0}, params[K2_TYPE_COUNT] = {0}, total_bytes = 0, total_params = 0;
    json_t *tl = json_array();
    for (int64_t i = 0; i < k2_gguf_tensor_count(g); i++) {
        const k2_gguf_tensor *t = k2_gguf_tensor_at(g, i);
        uint64_t n = (uint64_t)t->ne[0] * (uint64_t)t->ne[1] * (uint64_t)t->ne[2] * (uint64_t)t->ne[3];
        count[t->type]++;
        bytes[t->type] += t->nbytes;
        params[t->type] += n;
        total_bytes += t->nbytes;
        total_params += n;
        if (with_tensors) {
            json_t *o = json_object();
            json_object_set_new(o, "name", json_string(t->name));
            json_object_set_new(o, "type", json_string(k2_type_name(t->type)));
            json_t *shape = json_array();
            for (uint32_t d = 0; d < t->n_dims; d++) json_array_append_new(shape, json_integer(t->ne[d]));
            json_object_set_new(o, "shape", shape);
            json_object_set_new(o, "shard", json_integer(t->shard));
            json_object_set_new(o, "offset", json_integer((json_int_t)t->offset));
            json_object_set_new(o, "bytes", json_integer((json_int_t)t->nbytes));
            json_array_append_new(tl, o);
        }
    }
    json_object_set_new(root, "tensor_count", json_integer(k2_gguf_tensor_count(g)));
    json_object_set_new(root, "parameter_count", json_integer((json_int_t)total_params));
    json_object_set_new(root, "tensor_bytes", json_integer((json_int_t)total_bytes));
    json_t *types = json_object();
    for (uint32_t t = 0; t < K2_TYPE_COUNT; t++) {
        if (!count[t]) continue;
        json_t *o = json_object();
        json_object_set_new(o, "tensors", json_integer(count[t]));
        json_object_set_new(o, "parameters", json_integer((json_int_t)params[t]));
        json_object_set_new(o, "bytes", json_integer((json_int_t)bytes[t]));
        json_object_set_new(types, k2_type_name(t), o);
    }
    json_object_set_new(root, "types", types);
    if (with_tensors) json_object_set_new(root, "tensors", tl);
    else json_decref(tl);
    return root;
}

static void human_bytes(uint64_t b, char *out, size_t n) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)b;
    int i = 0;
    while (x >= 1024 && i < 4) { x /= 1024; i++; }
    if (i == 0) snprintf(out, n, "%llu B", (unsigned long long)b);
    else snprintf(out, n, "%.2f %s", x, u[i]);
}

static void print_scalar(FILE *f, json_t *v) {
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len > 60 || memchr(s, '\n', len)) fprintf(f, "(string, %zu bytes)", len);
        else fprintf(f, "%s", s);
    } else {
        char *d = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
        fprintf(f, "%s", d ? d : "?");
        free(d);
    }
}

static void print_text(FILE *f, json_t *r) {
    char buf[64];
    json_t *files = json_object_get(r, "files");
    size_t i;
    json_t *x;
    json_array_foreach(files, i, x) {
        human_bytes((uint64_t)json_integer_value(json_object_get(x, "size")), buf, sizeof buf);
        fprintf(f, "%s %s (%s, %lld tensors)\n", json_array_size(files) > 1 ? "shard" : "file ", json_string_value(json_object_get(x, "path")),
                buf, (long long)json_integer_value(json_object_get(x, "tensor_count")));
    }
    human_bytes((uint64_t)json_integer_value(json_object_get(r, "file_bytes")), buf, sizeof buf);
    fprintf(f, "total size:    %s in %zu file%s\n", buf, json_array_size(files), json_array_size(files) == 1 ? "" : "s");
    fprintf(f, "gguf version:  %lld (alignment %lld)\n", (long long)json_integer_value(json_object_get(r, "gguf_version")),
            (long long)json_integer_value(json_object_get(r, "alignment")));
    json_t *a = json_object_get(r, "architecture"), *nm = json_object_get(r, "name");
    fprintf(f, "architecture:  %s\n", json_is_string(a) ? json_string_value(a) : "(none)");
    fprintf(f, "name:          %s\n", json_is_string(nm) ? json_string_value(nm) : "(none)");
    fprintf(f, "\nhyperparameters:\n");
    const char *k;
    json_object_foreach(json_object_get(r, "hyperparameters"), k, x) {
        fprintf(f, "  %-40s ", k);
        print_scalar(f, x);
        fputc('\n', f);
    }
    fprintf(f, "\ntokenizer:\n");
    json_object_foreach(json_object_get(r, "tokenizer"), k, x) {
        fprintf(f, "  %-40s ", k);
        print_scalar(f, x);
        fputc('\n', f);
    }
    human_bytes((uint64_t)json_integer_value(json_object_get(r, "tensor_bytes")), buf, sizeof buf);
    fprintf(f, "\ntensors: %lld, %lld parameters, %s\n", (long long)json_integer_value(json_object_get(r, "tensor_count")),
            (long long)json_integer_value(json_object_get(r, "parameter_count")), buf);
    fprintf(f, "  %-10s %8s %16s %12s\n", "type", "tensors", "parameters", "size");
    json_object_foreach(json_object_get(r, "types"), k, x) {
        human_bytes((uint64_t)json_integer_value(json_object_get(x, "bytes")), buf, sizeof buf);
        fprintf(f, "  %-10s %8lld %16lld %12s\n", k, (long long)json_integer_value(json_object_get(x, "tensors")),
                (long long)json_integer_value(json_object_get(x, "parameters")), buf);
    }
    json_t *tl = json_object_get(r, "tensors");
    if (tl) {
        fprintf(f, "\n  %-40s %-8s %-24s %5s %14s\n", "name", "type", "shape", "shard", "offset");
        json_array_foreach(tl, i, x) {
            char shape[96] = "";
            size_t j;
            json_t *d;
            json_array_foreach(json_object_get(x, "shape"), j, d) {
                size_t len = strlen(shape);
                snprintf(shape + len, sizeof shape - len, "%s%lld", j ? " x " : "", (long long)json_integer_value(d));
            }
            fprintf(f, "  %-40s %-8s %-24s %5lld %14lld\n", json_string_value(json_object_get(x, "name")),
                    json_string_value(json_object_get(x, "type")), shape, (long long)json_integer_value(json_object_get(x, "shard")),
                    (long long)json_integer_value(json_object_get(x, "offset")));
        }
    }
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool as_json = false, tensors = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) { fputs(INSPECT_HELP, stdout); return 0; }
        if (strcmp(argv[i], "--json") == 0) as_json = true;
        else if (strcmp(argv[i], "--tensors") == 0) tensors = true;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (path) return cli_usage_error("inspect", "more than one FILE given ('%s' and '%s')", path, argv[i]);
        else path = argv[i];
    }
    if (!path) return cli_usage_error("inspect", "missing FILE");
    k2_error err;
    k2_gguf *g;
    if (k2_gguf_open(path, &g, &err) != K2_OK) return cli_fail("inspect", &err);
    json_t *r = build_report(g, tensors);
    if (as_json) {
        char *s = json_dumps(r, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
        if (s) puts(s);
        free(s);
    } else {
        print_text(stdout, r);
    }
    json_decref(r);
    k2_gguf_close(g);
    return 0;
}
