/* GGUF writer: metadata of every type, tensors of any type, alignment. Files are
 * laid out as the reader demands (spec/quant-types.md §5): tensor offsets are the
 * running sum of sizes padded to the alignment, in insertion order. */
#include "gguf/gguf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct writer_kv {
    char *key;
    k2_gguf_value value;  /* deep-owned: strings and arrays are heap copies */
} writer_kv;

typedef struct writer_tensor {
    char *name;
    uint32_t type, n_dims;
    int64_t ne[4];
    uint64_t nbytes;
    const void *data;
} writer_tensor;

struct k2_gguf_writer {
    uint32_t version;
    writer_kv *kvs;
    size_t n_kv, cap_kv;
    writer_tensor *tensors;
    size_t n_tensors, cap_tensors;
};

k2_gguf_writer *k2_gguf_writer_new(void) {
    k2_gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->version = 3;
    return w;
}

static void value_free(k2_gguf_value *v) {
    if (v->type == K2_GGUF_STRING) {
        free((void *)v->v.str.ptr);
    } else if (v->type == K2_GGUF_ARRAY) {
        if (v->v.arr.strings)
            for (uint64_t i = 0; i < v->v.arr.n; i++) free((void *)v->v.arr.strings[i].ptr);
        if (v->v.arr.arrays)
            for (uint64_t i = 0; i < v->v.arr.n; i++) value_free((k2_gguf_value *)&v->v.arr.arrays[i]);
        free((void *)v->v.arr.strings);
        free((void *)v->v.arr.arrays);
        free((void *)v->v.arr.data);
    }
}

void k2_gguf_writer_free(k2_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kvs[i].key);
        value_free(&w->kvs[i].value);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

void k2_gguf_writer_set_version(k2_gguf_writer *w, uint32_t version) { w->version = version; }

static bool value_copy(k2_gguf_value *dst, const k2_gguf_value *src) {
    *dst = *src;
    if (src->type == K2_GGUF_STRING) {
        char *s = malloc(src->v.str.len + 1);
        if (!s) return false;
        memcpy(s, src->v.str.ptr, src->v.str.len);
        s[src->v.str.len] = '\0';
        dst->v.str.ptr = s;
        return true;
    }
    if (src->type != K2_GGUF_ARRAY) return true;
    uint64_t n = src->v.arr.n;
    dst->v.arr.data = NULL;
    dst->v.arr.strings = NULL;
    dst->v.arr.arrays = NULL;
    if (src->v.arr.type == K2_GGUF_STRING) {
        k2_str *s = calloc(n ? n : 1, sizeof *s);
        if (!s) return false;
        dst->v.arr.strings = s;
        for (uint64_t i = 0; i < n; i++) {
            char *c = malloc(src->v.arr.strings[i].len + 1);
            if (!c) { dst->v.arr.n = i; return false; }
            memcpy(c, src->v.arr.strings[i].ptr, src->v.arr.strings[i].len);
            c[src->v.arr.strings[i].len] = '\0';
            s[i].ptr = c;
            s[i].len = src->v.arr.strings[i].len;
        }
    } else if (src->v.arr.type == K2_GGUF_ARRAY) {
        k2_gguf_value *a = calloc(n ? n : 1, sizeof *a);
        if (!a) return false;
        dst->v.arr.arrays = a;
        for (uint64_t i = 0; i < n; i++)
            if (!value_copy(&a[i], &src->v.arr.arrays[i])) { dst->v.arr.n = i + 1; return false; }
    } else {
        uint64_t bytes = n * gguf_scalar_size(src->v.arr.type);
        void *d = malloc(bytes ? bytes : 1);
        if (!d) return false;
        if (bytes) memcpy(d, src->v.arr.data, bytes);
        dst->v.arr.data = d;
    }
    return true;
}

k2_status k2_gguf_writer_set_value(k2_gguf_writer *w, const char *key, const k2_gguf_value *v) {
    k2_gguf_value copy;
    if (!value_copy(&copy, v)) { value_free(&copy); return K2_ENOMEM; }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) {
            value_free(&w->kvs[i].value);
            w->kvs[i].value = copy;
            return K2_OK;
        }
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
        writer_kv *n = realloc(w->kvs, cap * sizeof *n);
        if (!n) { value_free(&copy); return K2_ENOMEM; }
        w->kvs = n;
        w->cap_kv = cap;
    }
    char *k = k2_strdup(key);
    if (!k) { value_free(&copy); return K2_ENOMEM; }
    w->kvs[w->n_kv].key = k;
    w->kvs[w->n_kv].value = copy;
    w->n_kv++;
    return K2_OK;
}

#define SCALAR_SETTER(fname, ctype, gtype, field)                                   \
    k2_status fname(k2_gguf_writer *w, const char *key, ctype x) {                  \
        k2_gguf_value v;                                                            \
        memset(&v, 0, sizeof v);                                                    \
        v.type = gtype;                                                             \
        v.v.field = x;                                                              \
        return k2_gguf_writer_set_value(w, key, &v);                                \
    }
SCALAR_SETTER(k2_gguf_writer_set_u8, uint8_t, K2_GGUF_UINT8, u64)
SCALAR_SETTER(k2_gguf_writer_set_u16, uint16_t, K2_GGUF_UINT16, u64)
SCALAR_SETTER(k2_gguf_writer_set_u32, uint32_t, K2_GGUF_UINT32, u64)
SCALAR_SETTER(k2_gguf_writer_set_u64, uint64_t, K2_GGUF_UINT64, u64)
SCALAR_SETTER(k2_gguf_writer_set_i8, int8_t, K2_GGUF_INT8, i64)
SCALAR_SETTER(k2_gguf_writer_set_i16, int16_t, K2_GGUF_INT16, i64)
SCALAR_SETTER(k2_gguf_writer_set_i32, int32_t, K2_GGUF_INT32, i64)
SCALAR_SETTER(k2_gguf_writer_set_i64, int64_t, K2_GGUF_INT64, i64)
SCALAR_SETTER(k2_gguf_writer_set_f32, float, K2_GGUF_FLOAT32, f64)
SCALAR_SETTER(k2_gguf_writer_set_f64, double, K2_GGUF_FLOAT64, f64)
SCALAR_SETTER(k2_gguf_writer_set_bool, bool, K2_GGUF_BOOL, b)

k2_status k2_gguf_writer_set_str(k2_gguf_writer *w, const char *key, const char *s) {
    k2_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = K2_GGUF_STRING;
    v.v.str.ptr = s;
    v.v.str.len = strlen(s);
    return k2_gguf_writer_set_value(w, key, &v);
}

k2_status k2_gguf_writer_set_array(k2_gguf_writer *w, const char *key, k2_gguf_type elem_type, const void *data, uint64_t n) {
    if (gguf_scalar_size(elem_type) == 0) return K2_EINVAL;
    k2_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = K2_GGUF_ARRAY;
    v.v.arr.type = elem_type;
    v.v.arr.n = n;
    v.v.arr.data = data;
    return k2_gguf_writer_set_value(w, key, &v);
}

k2_status k2_gguf_writer_set_str_array(k2_gguf_writer *w, const char *key, const char *const *strs, uint64_t n) {
    k2_str *s = calloc(n ? n : 1, sizeof *s);
    if (!s) return K2_ENOMEM;
    for (uint64_t i = 0; i < n; i++) {
        s[i].ptr = strs[i];
        s[i].len = strlen(strs[i]);
    }
    k2_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = K2_GGUF_ARRAY;
    v.v.arr.type = K2_GGUF_STRING;
    v.v.arr.n = n;
    v.v.arr.strings = s;
    k2_status st = k2_gguf_writer_set_value(w, key, &v);
    free(s);
    return st;
}

k2_status k2_gguf_writer_add_tensor(k2_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                    const int64_t *ne, const void *data, k2_error *err) {
    if (!name || !*name || strlen(name) > 63)
        return k2_err(err, K2_EINVAL, "tensor name '%s' must be 1 to 63 bytes", name ? name : "");
    if (!k2_type_is_valid(type)) return k2_err(err, K2_EINVAL, "tensor '%s': type id %u is unknown or removed", name, type);
    if (n_dims < 1 || n_dims > 4) return k2_err(err, K2_EINVAL, "tensor '%s': %u dimensions (must be 1 to 4)", name, n_dims);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return k2_err(err, K2_EINVAL, "tensor '%s' added twice", name);
    writer_tensor t;
    memset(&t, 0, sizeof t);
    uint64_t rows = 1;
    for (int d = 0; d < 4; d++) t.ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0) return k2_err(err, K2_EINVAL, "tensor '%s': negative dimension", name);
        t.ne[d] = ne[d];
        if (d > 0 && !k2_mul_u64(rows, (uint64_t)ne[d], &rows)) return k2_err(err, K2_EINVAL, "tensor '%s': size overflows", name);
    }
    int64_t rb = k2_type_row_bytes(type, t.ne[0]);
    if (rb < 0)
        return k2_err(err, K2_EINVAL, "tensor '%s': row length %lld is not a multiple of the %s block size", name,
                      (long long)t.ne[0], k2_type_name(type));
    if (!k2_mul_u64((uint64_t)rb, rows, &t.nbytes)) return k2_err(err, K2_EINVAL, "tensor '%s': size overflows", name);
    t.type = type;
    t.n_dims = n_dims;
    t.data = data;
    t.name = k2_strdup(name);
    if (!t.name) return k2_err(err, K2_ENOMEM, "out of memory");
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        writer_tensor *n = realloc(w->tensors, cap * sizeof *n);
        if (!n) { free(t.name); return k2_err(err, K2_ENOMEM, "out of memory"); }
        w->tensors = n;
        w->cap_tensors = cap;
    }
    w->tensors[w->n_tensors++] = t;
    return K2_OK;
}

/* ---- serialisation ---- */

typedef struct out_file {
    FILE *f;
    uint64_t pos;
    bool failed;
} out_file;

static void put(out_file *o, const void *p, size_t n) {
    if (o->failed || n == 0) return;
    if (fwrite(p, 1, n, o->f) != n) o->failed = true;
    o->pos += n;
}
static void put_u32(out_file *o, uint32_t v) { put(o, &v, 4); }
static void put_u64(out_file *o, uint64_t v) { put(o, &v, 8); }
static void put_str(out_file *o, const char *s, size_t n) { put_u64(o, n); put(o, s, n); }
static void put_zeros(out_file *o, uint64_t n) {
    static const char z[256];
    while (n) { size_t k = n > sizeof z ? sizeof z : (size_t)n; put(o, z, k); n -= k; }
}

static void put_scalar(out_file *o, const k2_gguf_value *v) {
    uint8_t b[8];
    switch (v->type) {
    case K2_GGUF_UINT8: b[0] = (uint8_t)v->v.u64; put(o, b, 1); break;
    case K2_GGUF_INT8: { int8_t x = (int8_t)v->v.i64; put(o, &x, 1); break; }
    case K2_GGUF_UINT16: { uint16_t x = (uint16_t)v->v.u64; put(o, &x, 2); break; }
    case K2_GGUF_INT16: { int16_t x = (int16_t)v->v.i64; put(o, &x, 2); break; }
    case K2_GGUF_UINT32: { uint32_t x = (uint32_t)v->v.u64; put(o, &x, 4); break; }
    case K2_GGUF_INT32: { int32_t x = (int32_t)v->v.i64; put(o, &x, 4); break; }
    case K2_GGUF_FLOAT32: { float x = (float)v->v.f64; put(o, &x, 4); break; }
    case K2_GGUF_BOOL: b[0] = v->v.b ? 1 : 0; put(o, b, 1); break;
    case K2_GGUF_UINT64: put(o, &v->v.u64, 8); break;
    case K2_GGUF_INT64: put(o, &v->v.i64, 8); break;
    case K2_GGUF_FLOAT64: put(o, &v->v.f64, 8); break;
    default: break;
    }
}

static void put_value_body(out_file *o, const k2_gguf_value *v) {
    if (v->type == K2_GGUF_STRING) {
        put_str(o, v->v.str.ptr, v->v.str.len);
    } else if (v->type == K2_GGUF_ARRAY) {
        put_u32(o, v->v.arr.type);
        put_u64(o, v->v.arr.n);
        if (v->v.arr.type == K2_GGUF_STRING) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) put_str(o, v->v.arr.strings[i].ptr, v->v.arr.strings[i].len);
        } else if (v->v.arr.type == K2_GGUF_ARRAY) {
            for (uint64_t i = 0; i < v->v.arr.n; i++) put_value_body(o, &v->v.arr.arrays[i]);
        } else {
            put(o, v->v.arr.data, v->v.arr.n * gguf_scalar_size(v->v.arr.type));
        }
    } else {
        put_scalar(o, v);
    }
}

k2_status k2_gguf_writer_write(k2_gguf_writer *w, const char *path, k2_error *err) {
    uint64_t align = 32;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") == 0) {
            const k2_gguf_value *v = &w->kvs[i].value;
            if (v->type != K2_GGUF_UINT32 || v->v.u64 == 0 || (v->v.u64 & (v->v.u64 - 1)))
                return k2_err(err, K2_EINVAL, "%s: general.alignment must be a uint32 power of two", path);
            align = v->v.u64;
        }
    }
    char *tmp = k2_asprintf("%s.tmp.%d", path, (int)getpid());
    if (!tmp) return k2_err(err, K2_ENOMEM, "out of memory");
    out_file o = {fopen(tmp, "wb"), 0, false};
    if (!o.f) {
        k2_status st = k2_err(err, K2_EIO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    put(&o, "GGUF", 4);
    put_u32(&o, w->version);
    put_u64(&o, w->n_tensors);
    put_u64(&o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str(&o, w->kvs[i].key, strlen(w->kvs[i].key));
        put_u32(&o, w->kvs[i].value.type);
        put_value_body(&o, &w->kvs[i].value);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        put_str(&o, t->name, strlen(t->name));
        put_u32(&o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++) put_u64(&o, (uint64_t)t->ne[d]);
        put_u32(&o, t->type);
        put_u64(&o, off);
        off += (t->nbytes + align - 1) / align * align;
    }
    put_zeros(&o, (align - o.pos % align) % align);
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        if (t->data) put(&o, t->data, t->nbytes);
        else put_zeros(&o, t->nbytes);
        put_zeros(&o, (align - t->nbytes % align) % align);
    }
    bool ok = !o.failed && fflush(o.f) == 0;
    ok = (fclose(o.f) == 0) && ok;
    if (!ok || rename(tmp, path) != 0) {
        k2_status st = k2_err(err, K2_EIO, "%s: write failed: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return st;
    }
    free(tmp);
    return K2_OK;
}
