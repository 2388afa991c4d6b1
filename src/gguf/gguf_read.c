/* GGUF reader: mmap, strict validation, split shard sets (spec/quant-types.md §5,
 * spec/model-deepseek2.md §2). Every length and offset read from the file is checked
 * against the bytes that remain before it is used, so a hostile file can produce an
 * error but never an out-of-bounds read. */
#include "gguf/gguf.h"

#include <stdlib.h>
#include <string.h>

#define GGUF_MAX_ARRAY_DEPTH 8
#define GGUF_MAX_NAME 63

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    max_align_t data[];
} arena_block;

typedef struct gguf_shard {
    char *path;
    k2_mapped_file map;       /* unused for memory images */
    const uint8_t *data;
    uint64_t size;
    uint64_t data_offset;
    uint32_t version;
    uint32_t alignment;
} gguf_shard;

struct k2_gguf {
    gguf_shard *shards;
    uint32_t n_shards;
    /* metadata of the first shard */
    int64_t n_kv;
    const char **keys;
    k2_gguf_value *values;
    k2_strmap kv_map;
    int64_t n_tensors;
    k2_gguf_tensor *tensors;
    k2_strmap tensor_map;
    arena_block *arena;
};

/* ---- arena for names and array element tables (freed with the handle) ---- */

static void *arena_alloc(k2_gguf *g, size_t size) {
    size = (size + 15) & ~(size_t)15;
    arena_block *b = g->arena;
    if (!b || b->cap - b->used < size) {
        size_t cap = size > 65536 ? size : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = g->arena;
        b->used = 0;
        b->cap = cap;
        g->arena = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += size;
    return p;
}

/* ---- the byte cursor ---- */

typedef struct reader {
    const uint8_t *p;
    uint64_t size;
    uint64_t pos;
    const char *file;
    k2_error *err;
} reader;

static bool need(reader *r, uint64_t n, const char *what) {
    if (r->size - r->pos >= n) return true;
    k2_err(r->err, K2_EFORMAT,
           "%s: truncated file: %s at offset %llu needs %llu bytes but only %llu remain",
           r->file, what, (unsigned long long)r->pos, (unsigned long long)n,
           (unsigned long long)(r->size - r->pos));
    return false;
}

static bool rd_raw(reader *r, void *out, uint64_t n, const char *what) {
    if (!need(r, n, what)) return false;
    memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return true;
}
static bool rd_u32(reader *r, uint32_t *v, const char *what) { return rd_raw(r, v, 4, what); }
static bool rd_u64(reader *r, uint64_t *v, const char *what) { return rd_raw(r, v, 8, what); }

/* A GGUF string: u64 length (u32 in v1, which we reject earlier) then bytes. */
static bool rd_str(reader *r, k2_str *s, const char *what) {
    uint64_t len;
    if (!rd_u64(r, &len, what)) return false;
    if (len > r->size - r->pos) {
        k2_err(r->err, K2_EFORMAT, "%s: %s at offset %llu claims a length of %llu bytes, beyond the end of the file",
               r->file, what, (unsigned long long)(r->pos - 8), (unsigned long long)len);
        return false;
    }
    s->ptr = (const char *)r->p + r->pos;
    s->len = (size_t)len;
    r->pos += len;
    return true;
}

uint64_t gguf_scalar_size(uint32_t t) {
    switch (t) {
    case K2_GGUF_UINT8: case K2_GGUF_INT8: case K2_GGUF_BOOL: return 1;
    case K2_GGUF_UINT16: case K2_GGUF_INT16: return 2;
    case K2_GGUF_UINT32: case K2_GGUF_INT32: case K2_GGUF_FLOAT32: return 4;
    case K2_GGUF_UINT64: case K2_GGUF_INT64: case K2_GGUF_FLOAT64: return 8;
    default: return 0;
    }
}

const char *k2_gguf_type_name(k2_gguf_type t) {
    static const char *names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
                                  "bool", "string", "array", "uint64", "int64", "float64"};
    return (unsigned)t < K2_ARRAY_LEN(names) ? names[t] : "invalid";
}

static bool read_scalar(reader *r, uint32_t t, k2_gguf_value *v, const char *key) {
    uint8_t b[8] = {0};
    uint64_t n = gguf_scalar_size(t);
    if (!rd_raw(r, b, n, key)) return false;
    v->type = (k2_gguf_type)t;
    switch (t) {
    case K2_GGUF_UINT8: v->v.u64 = b[0]; break;
    case K2_GGUF_INT8: v->v.i64 = (int8_t)b[0]; break;
    case K2_GGUF_UINT16: { uint16_t x; memcpy(&x, b, 2); v->v.u64 = x; break; }
    case K2_GGUF_INT16: { int16_t x; memcpy(&x, b, 2); v->v.i64 = x; break; }
    case K2_GGUF_UINT32: { uint32_t x; memcpy(&x, b, 4); v->v.u64 = x; break; }
    case K2_GGUF_INT32: { int32_t x; memcpy(&x, b, 4); v->v.i64 = x; break; }
    case K2_GGUF_FLOAT32: { float x; memcpy(&x, b, 4); v->v.f64 = x; break; }
    case K2_GGUF_UINT64: memcpy(&v->v.u64, b, 8); break;
    case K2_GGUF_INT64: memcpy(&v->v.i64, b, 8); break;
    case K2_GGUF_FLOAT64: memcpy(&v->v.f64, b, 8); break;
    case K2_GGUF_BOOL:
        if (b[0] > 1) {
            k2_err(r->err, K2_EFORMAT, "%s: metadata key '%s': bool value %u is neither 0 nor 1", r->file, key, b[0]);
            return false;
        }
        v->v.b = b[0] != 0;
        break;
    }
    return true;
}

static bool read_value(k2_gguf *g, reader *r, uint32_t t, k2_gguf_value *v, const char *key, int depth);

static bool read_array(k2_gguf *g, reader *r, k2_gguf_value *v, const char *key, int depth) {
    if (depth >= GGUF_MAX_ARRAY_DEPTH) {
        k2_err(r->err, K2_EFORMAT, "%s: metadata key '%s': arrays nested deeper than %d levels", r->file, key, GGUF_MAX_ARRAY_DEPTH);
        return false;
    }
    uint32_t et;
    uint64_t n;
    if (!rd_u32(r, &et, key) || !rd_u64(r, &n, key)) return false;
    if (et > K2_GGUF_FLOAT64) {
        k2_err(r->err, K2_EFORMAT, "%s: metadata key '%s': unknown array element type %u", r->file, key, et);
        return false;
    }
    /* Smallest possible encoding of one element, to bound n before allocating. */
    uint64_t min_elem = et == K2_GGUF_STRING ? 8 : et == K2_GGUF_ARRAY ? 12 : gguf_scalar_size(et);
    if (n > (r->size - r->pos) / min_elem) {
        k2_err(r->err, K2_EFORMAT, "%s: metadata key '%s': array of %llu %s elements does not fit in the %llu bytes left in the file",
               r->file, key, (unsigned long long)n, k2_gguf_type_name((k2_gguf_type)et), (unsigned long long)(r->size - r->pos));
        return false;
    }
    v->type = K2_GGUF_ARRAY;
    v->v.arr.type = (k2_gguf_type)et;
    v->v.arr.n = n;
    v->v.arr.data = NULL;
    v->v.arr.strings = NULL;
    v->v.arr.arrays = NULL;
    if (et == K2_GGUF_STRING) {
        k2_str *s = arena_alloc(g, n * sizeof *s);
        if (!s) { k2_err(r->err, K2_ENOMEM, "%s: out of memory for array '%s'", r->file, key); return false; }
        for (uint64_t i = 0; i < n; i++)
            if (!rd_str(r, &s[i], key)) return false;
        v->v.arr.strings = s;
    } else if (et == K2_GGUF_ARRAY) {
        k2_gguf_value *a = arena_alloc(g, n * sizeof *a);
        if (!a) { k2_err(r->err, K2_ENOMEM, "%s: out of memory for array '%s'", r->file, key); return false; }
        for (uint64_t i = 0; i < n; i++)
            if (!read_array(g, r, &a[i], key, depth + 1)) return false;
        v->v.arr.arrays = a;
    } else {
        v->v.arr.data = r->p + r->pos;
        if (et == K2_GGUF_BOOL) {
            for (uint64_t i = 0; i < n; i++)
                if (r->p[r->pos + i] > 1) {
                    k2_err(r->err, K2_EFORMAT, "%s: metadata key '%s': element %llu of a bool array is %u, neither 0 nor 1",
                           r->file, key, (unsigned long long)i, r->p[r->pos + i]);
                    return false;
                }
        }
        r->pos += n * min_elem;
    }
    return true;
}

static bool read_value(k2_gguf *g, reader *r, uint32_t t, k2_gguf_value *v, const char *key, int depth) {
    if (t == K2_GGUF_STRING) {
        v->type = K2_GGUF_STRING;
        return rd_str(r, &v->v.str, key);
    }
    if (t == K2_GGUF_ARRAY) return read_array(g, r, v, key, depth);
    if (gguf_scalar_size(t) == 0) {
        k2_err(r->err, K2_EFORMAT, "%s: metadata key '%s': unknown value type %u", r->file, key, t);
        return false;
    }
    return read_scalar(r, t, v, key);
}

/* ---- one file image ---- */

typedef struct image {
    int64_t n_kv;
    const char **keys;
    k2_gguf_value *values;
    int64_t n_tensors;
    k2_gguf_tensor *tensors;
    uint32_t version, alignment;
    uint64_t data_offset;
} image;

static const k2_gguf_value *image_find(const image *im, const char *key) {
    for (int64_t i = 0; i < im->n_kv; i++)
        if (strcmp(im->keys[i], key) == 0) return &im->values[i];
    return NULL;
}

static void image_free(image *im) {
    free(im->keys);
    free(im->values);
    free(im->tensors);
    memset(im, 0, sizeof *im);
}

static k2_status parse_image(k2_gguf *g, const uint8_t *data, uint64_t size, const char *file,
                             uint32_t shard, image *im, k2_error *err) {
    memset(im, 0, sizeof *im);
    reader r = {data, size, 0, file, err};
    char magic[4];
    if (size < 4 || (memcpy(magic, data, 4), memcmp(magic, "GGUF", 4) != 0)) {
        if (size >= 4 && memcmp(data, "FUGG", 4) == 0)
            return k2_err(err, K2_EUNSUPPORTED, "%s: big-endian GGUF files are not supported", file);
        return k2_err(err, K2_EFORMAT, "%s: not a GGUF file (bad magic: expected \"GGUF\" at offset 0)", file);
    }
    r.pos = 4;
    uint32_t version;
    if (!rd_u32(&r, &version, "the version field")) return err ? err->status : K2_EFORMAT;
    if (version != 2 && version != 3) {
        uint32_t swapped = __builtin_bswap32(version);
        if (swapped == 2 || swapped == 3)
            return k2_err(err, K2_EUNSUPPORTED, "%s: big-endian GGUF files are not supported (version field reads %u byte-swapped)", file, swapped);
        return k2_err(err, K2_EUNSUPPORTED, "%s: unsupported GGUF version %u (k2 reads versions 2 and 3)", file, version);
    }
    im->version = version;
    uint64_t n_tensors, n_kv;
    if (!rd_u64(&r, &n_tensors, "the tensor count") || !rd_u64(&r, &n_kv, "the metadata count"))
        return err ? err->status : K2_EFORMAT;
    /* Each kv needs >= 8+0+4+1 bytes and each tensor info >= 8+4+8+4+8 bytes. */
    if (n_kv > (size - r.pos) / 13)
        return k2_err(err, K2_EFORMAT, "%s: header claims %llu metadata entries, more than the file can hold", file, (unsigned long long)n_kv);
    if (n_tensors > (size - r.pos) / 32)
        return k2_err(err, K2_EFORMAT, "%s: header claims %llu tensors, more than the file can hold", file, (unsigned long long)n_tensors);

    im->keys = calloc(n_kv ? n_kv : 1, sizeof *im->keys);
    im->values = calloc(n_kv ? n_kv : 1, sizeof *im->values);
    im->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *im->tensors);
    if (!im->keys || !im->values || !im->tensors) {
        image_free(im);
        return k2_err(err, K2_ENOMEM, "%s: out of memory for %llu metadata entries and %llu tensors", file,
                      (unsigned long long)n_kv, (unsigned long long)n_tensors);
    }
    k2_strmap seen;
    if (k2_strmap_init(&seen, n_kv, err) != K2_OK) { image_free(im); return K2_ENOMEM; }
    k2_status st = K2_OK;
    for (uint64_t i = 0; i < n_kv; i++) {
        k2_str key;
        if (!rd_str(&r, &key, "a metadata key")) { st = K2_EFORMAT; goto fail; }
        if (key.len == 0) { st = k2_err(err, K2_EFORMAT, "%s: metadata entry %llu has an empty key", file, (unsigned long long)i); goto fail; }
        if (memchr(key.ptr, '\0', key.len)) { st = k2_err(err, K2_EFORMAT, "%s: metadata entry %llu has a key containing a NUL byte", file, (unsigned long long)i); goto fail; }
        char *k = arena_alloc(g, key.len + 1);
        if (!k) { st = k2_err(err, K2_ENOMEM, "%s: out of memory", file); goto fail; }
        memcpy(k, key.ptr, key.len);
        k[key.len] = '\0';
        if (!k2_strmap_put(&seen, k, key.len, (int64_t)i)) {
            st = k2_err(err, K2_EFORMAT, "%s: duplicate metadata key '%s'", file, k);
            goto fail;
        }
        uint32_t t;
        if (!rd_u32(&r, &t, k)) { st = K2_EFORMAT; goto fail; }
        if (t > K2_GGUF_FLOAT64) { st = k2_err(err, K2_EFORMAT, "%s: metadata key '%s': unknown value type %u", file, k, t); goto fail; }
        if (!read_value(g, &r, t, &im->values[i], k, 0)) { st = err ? err->status : K2_EFORMAT; goto fail; }
        im->keys[i] = k;
        im->n_kv++;
    }
    k2_strmap_free(&seen);

    im->alignment = 32;
    const k2_gguf_value *al = image_find(im, "general.alignment");
    if (al) {
        if (al->type != K2_GGUF_UINT32) {
            st = k2_err(err, K2_EFORMAT, "%s: metadata key 'general.alignment' has type %s; it must be uint32", file, k2_gguf_type_name(al->type));
            goto fail_nomap;
        }
        if (al->v.u64 == 0 || (al->v.u64 & (al->v.u64 - 1))) {
            st = k2_err(err, K2_EFORMAT, "%s: general.alignment = %llu is not a power of two", file, (unsigned long long)al->v.u64);
            goto fail_nomap;
        }
        im->alignment = (uint32_t)al->v.u64;
    }

    if (k2_strmap_init(&seen, n_tensors, err) != K2_OK) { st = K2_ENOMEM; goto fail_nomap; }
    for (uint64_t i = 0; i < n_tensors; i++) {
        k2_gguf_tensor *t = &im->tensors[i];
        k2_str name;
        if (!rd_str(&r, &name, "a tensor name")) { st = K2_EFORMAT; goto fail; }
        if (name.len == 0 || name.len > GGUF_MAX_NAME || memchr(name.ptr, '\0', name.len)) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor %llu has an invalid name (%zu bytes; names must be 1..%d bytes without NUL)",
                        file, (unsigned long long)i, name.len, GGUF_MAX_NAME);
            goto fail;
        }
        char *nm = arena_alloc(g, name.len + 1);
        if (!nm) { st = k2_err(err, K2_ENOMEM, "%s: out of memory", file); goto fail; }
        memcpy(nm, name.ptr, name.len);
        nm[name.len] = '\0';
        t->name = nm;
        if (!k2_strmap_put(&seen, nm, name.len, (int64_t)i)) {
            st = k2_err(err, K2_EFORMAT, "%s: duplicate tensor name '%s'", file, nm);
            goto fail;
        }
        if (!rd_u32(&r, &t->n_dims, nm)) { st = K2_EFORMAT; goto fail; }
        if (t->n_dims < 1 || t->n_dims > 4) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s' has %u dimensions (must be 1 to 4)", file, nm, t->n_dims);
            goto fail;
        }
        for (int d = 0; d < 4; d++) t->ne[d] = 1;
        uint64_t nelem = 1;
        for (uint32_t d = 0; d < t->n_dims; d++) {
            uint64_t ne;
            if (!rd_u64(&r, &ne, nm)) { st = K2_EFORMAT; goto fail; }
            if ((int64_t)ne < 0) {
                st = k2_err(err, K2_EFORMAT, "%s: tensor '%s' dimension %u is negative (%lld)", file, nm, d, (long long)ne);
                goto fail;
            }
            if (!k2_mul_u64(nelem, ne, &nelem) || nelem > (uint64_t)INT64_MAX) {
                st = k2_err(err, K2_EFORMAT, "%s: tensor '%s': the product of its dimensions overflows 64 bits", file, nm);
                goto fail;
            }
            t->ne[d] = (int64_t)ne;
        }
        if (!rd_u32(&r, &t->type, nm) || !rd_u64(&r, &t->offset, nm)) { st = K2_EFORMAT; goto fail; }
        const char *tname = k2_type_name(t->type);
        if (!tname) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s' has type id %u, which is %s", file, nm, t->type,
                        t->type < K2_TYPE_COUNT ? "a removed type" : "unknown");
            goto fail;
        }
        int64_t bs = k2_type_block_size(t->type);
        if (t->ne[0] % bs) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s': row length %lld is not a multiple of the %s block size %lld",
                        file, nm, (long long)t->ne[0], tname, (long long)bs);
            goto fail;
        }
        uint64_t rows = nelem / (t->ne[0] ? (uint64_t)t->ne[0] : 1), nbytes;
        if (t->ne[0] == 0) rows = 0;
        if (!k2_mul_u64((uint64_t)(t->ne[0] / bs), (uint64_t)k2_type_block_bytes(t->type), &nbytes) ||
            !k2_mul_u64(nbytes, rows, &nbytes)) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s': its byte size overflows 64 bits", file, nm);
            goto fail;
        }
        t->nbytes = nbytes;
        t->shard = shard;
        im->n_tensors++;
    }
    k2_strmap_free(&seen);

    /* Data section: first multiple of the alignment after the tensor infos. */
    uint64_t a = im->alignment;
    uint64_t data_offset = (r.pos + a - 1) / a * a;
    im->data_offset = data_offset;
    uint64_t expect = 0;
    for (int64_t i = 0; i < im->n_tensors; i++) {
        k2_gguf_tensor *t = &im->tensors[i];
        if (t->offset % a) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s' offset %llu is not a multiple of the alignment %llu",
                        file, t->name, (unsigned long long)t->offset, (unsigned long long)a);
            goto fail_nomap;
        }
        if (t->offset < expect) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s' at offset %llu overlaps the previous tensor, which ends at %llu",
                        file, t->name, (unsigned long long)t->offset, (unsigned long long)expect);
            goto fail_nomap;
        }
        if (t->offset > expect) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s' at offset %llu leaves a gap after the previous tensor (expected offset %llu)",
                        file, t->name, (unsigned long long)t->offset, (unsigned long long)expect);
            goto fail_nomap;
        }
        uint64_t end, padded;
        if (!k2_add_u64(t->offset, t->nbytes, &end) || !k2_add_u64(end, a - 1, &padded)) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s': offset plus size overflows 64 bits", file, t->name);
            goto fail_nomap;
        }
        uint64_t abs_end;
        if (data_offset > size || !k2_add_u64(data_offset, end, &abs_end) || abs_end > size) {
            st = k2_err(err, K2_EFORMAT, "%s: tensor '%s' (%llu bytes at data offset %llu) extends beyond the end of the file (%llu bytes)",
                        file, t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset, (unsigned long long)size);
            goto fail_nomap;
        }
        t->data = data + data_offset + t->offset;
        expect = padded / a * a;
    }
    return K2_OK;
fail:
    k2_strmap_free(&seen);
fail_nomap:
    image_free(im);
    return st;
}

/* ---- handles ---- */

static void gguf_free_partial(k2_gguf *g) {
    if (!g) return;
    for (uint32_t i = 0; i < g->n_shards; i++) {
        k2_unmap_file(&g->shards[i].map);
        free(g->shards[i].path);
    }
    free(g->shards);
    free(g->keys);
    free(g->values);
    free(g->tensors);
    k2_strmap_free(&g->kv_map);
    k2_strmap_free(&g->tensor_map);
    while (g->arena) {
        arena_block *n = g->arena->next;
        free(g->arena);
        g->arena = n;
    }
    free(g);
}

void k2_gguf_close(k2_gguf *g) { gguf_free_partial(g); }

static k2_status index_names(k2_gguf *g, k2_error *err) {
    if (k2_strmap_init(&g->kv_map, (size_t)g->n_kv, err) != K2_OK) return K2_ENOMEM;
    for (int64_t i = 0; i < g->n_kv; i++) k2_strmap_put(&g->kv_map, g->keys[i], strlen(g->keys[i]), i);
    if (k2_strmap_init(&g->tensor_map, (size_t)g->n_tensors, err) != K2_OK) return K2_ENOMEM;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const char *name = g->tensors[i].name;
        if (!k2_strmap_put(&g->tensor_map, name, strlen(name), i))
            return k2_err(err, K2_EFORMAT, "%s: tensor '%s' appears in more than one shard",
                          g->shards[g->tensors[i].shard].path, name);
    }
    return K2_OK;
}

k2_status k2_gguf_open_memory(const void *data, size_t size, const char *name, k2_gguf **out, k2_error *err) {
    *out = NULL;
    k2_gguf *g = calloc(1, sizeof *g);
    if (!g) return k2_err(err, K2_ENOMEM, "out of memory");
    g->shards = calloc(1, sizeof *g->shards);
    if (!g->shards) { gguf_free_partial(g); return k2_err(err, K2_ENOMEM, "out of memory"); }
    g->n_shards = 1;
    g->shards[0].map.fd = -1;
    g->shards[0].path = k2_strdup(name ? name : "<memory>");
    g->shards[0].data = data;
    g->shards[0].size = size;
    image im;
    k2_status st = parse_image(g, data, size, g->shards[0].path, 0, &im, err);
    if (st != K2_OK) { gguf_free_partial(g); return st; }
    g->shards[0].version = im.version;
    g->shards[0].alignment = im.alignment;
    g->shards[0].data_offset = im.data_offset;
    g->n_kv = im.n_kv; g->keys = im.keys; g->values = im.values;
    g->n_tensors = im.n_tensors; g->tensors = im.tensors;
    if ((st = index_names(g, err)) != K2_OK) { gguf_free_partial(g); return st; }
    *out = g;
    return K2_OK;
}

/* Recognises "<prefix>-NNNNN-of-MMMMM.gguf"; fills the prefix length, number and count. */
static bool parse_split_name(const char *path, size_t *prefix_len, unsigned *no, unsigned *count) {
    size_t n = strlen(path);
    const char *tail = "-00000-of-00000.gguf";
    size_t tl = strlen(tail);
    if (n < tl) return false;
    const char *s = path + n - tl;
    unsigned a = 0, b = 0;
    for (size_t i = 0; i < tl; i++) {
        char c = s[i], p = tail[i];
        if (p == '0') {
            if (c < '0' || c > '9') return false;
            if (i < 6) a = a * 10 + (unsigned)(c - '0');
            else b = b * 10 + (unsigned)(c - '0');
        } else if (c != p) {
            return false;
        }
    }
    *prefix_len = n - tl;
    *no = a;
    *count = b;
    return true;
}

static k2_status split_u16(const image *im, const char *file, const char *key, uint64_t *out, bool *present, k2_error *err) {
    const k2_gguf_value *v = image_find(im, key);
    *present = v != NULL;
    if (!v) return K2_OK;
    if (v->type == K2_GGUF_UINT8 || v->type == K2_GGUF_UINT16 || v->type == K2_GGUF_UINT32 || v->type == K2_GGUF_UINT64) {
        *out = v->v.u64;
    } else if (v->type == K2_GGUF_INT8 || v->type == K2_GGUF_INT16 || v->type == K2_GGUF_INT32 || v->type == K2_GGUF_INT64) {
        if (v->v.i64 < 0) return k2_err(err, K2_EFORMAT, "%s: metadata key '%s' is negative", file, key);
        *out = (uint64_t)v->v.i64;
    } else {
        return k2_err(err, K2_EFORMAT, "%s: metadata key '%s' has type %s; expected an integer", file, key, k2_gguf_type_name(v->type));
    }
    return K2_OK;
}

static k2_status open_shard(k2_gguf *g, uint32_t idx, const char *path, image *im, k2_error *err) {
    gguf_shard *s = &g->shards[idx];
    s->path = k2_strdup(path);
    if (!s->path) return k2_err(err, K2_ENOMEM, "out of memory");
    k2_status st = k2_map_file(path, &s->map, err);
    if (st != K2_OK) return st;
    s->data = s->map.data;
    s->size = s->map.size;
    st = parse_image(g, s->data, s->size, path, idx, im, err);
    if (st != K2_OK) return st;
    s->version = im->version;
    s->alignment = im->alignment;
    s->data_offset = im->data_offset;
    return K2_OK;
}

k2_status k2_gguf_open(const char *path, k2_gguf **out, k2_error *err) {
    *out = NULL;
    k2_gguf *g = calloc(1, sizeof *g);
    if (!g) return k2_err(err, K2_ENOMEM, "out of memory");
    g->shards = calloc(1, sizeof *g->shards);
    if (!g->shards) { free(g); return k2_err(err, K2_ENOMEM, "out of memory"); }
    g->shards[0].map.fd = -1;
    g->n_shards = 1;
    image first;
    k2_status st = open_shard(g, 0, path, &first, err);
    if (st != K2_OK) { gguf_free_partial(g); return st; }

    uint64_t split_count = 1, split_no = 0, split_tensors = 0;
    bool has_count, has_no, has_tensors;
    if ((st = split_u16(&first, path, "split.count", &split_count, &has_count, err)) != K2_OK ||
        (st = split_u16(&first, path, "split.no", &split_no, &has_no, err)) != K2_OK ||
        (st = split_u16(&first, path, "split.tensors.count", &split_tensors, &has_tensors, err)) != K2_OK) {
        image_free(&first);
        gguf_free_partial(g);
        return st;
    }
    size_t prefix_len = 0;
    unsigned name_no = 0, name_count = 0;
    bool named_split = parse_split_name(path, &prefix_len, &name_no, &name_count);
    if (!has_count || split_count <= 1) {
        /* A single file (possibly a one-shard "split"). */
        g->n_kv = first.n_kv; g->keys = first.keys; g->values = first.values;
        g->n_tensors = first.n_tensors; g->tensors = first.tensors;
        if ((st = index_names(g, err)) != K2_OK) { gguf_free_partial(g); return st; }
        *out = g;
        return K2_OK;
    }
    if (!named_split) {
        image_free(&first);
        gguf_free_partial(g);
        return k2_err(err, K2_EFORMAT, "%s: the file is shard %llu of %llu (split.count) but its name does not follow '<prefix>-NNNNN-of-MMMMM.gguf', so the other shards cannot be found",
                      path, (unsigned long long)split_no + 1, (unsigned long long)split_count);
    }
    if (name_count != split_count || !has_no || split_no + 1 != name_no) {
        image_free(&first);
        gguf_free_partial(g);
        return k2_err(err, K2_EFORMAT, "%s: split metadata (split.no = %llu, split.count = %llu) disagrees with the file name",
                      path, has_no ? (unsigned long long)split_no : 0ull, (unsigned long long)split_count);
    }
    if (split_count > 99999) {
        image_free(&first);
        gguf_free_partial(g);
        return k2_err(err, K2_EFORMAT, "%s: split.count %llu is out of range", path, (unsigned long long)split_count);
    }
    /* Re-open as a set, starting from shard 1 (which carries the model metadata). */
    image_free(&first);
    gguf_free_partial(g);
    g = calloc(1, sizeof *g);
    if (!g) return k2_err(err, K2_ENOMEM, "out of memory");
    g->shards = calloc(split_count, sizeof *g->shards);
    if (!g->shards) { free(g); return k2_err(err, K2_ENOMEM, "out of memory"); }
    for (uint64_t i = 0; i < split_count; i++) g->shards[i].map.fd = -1;
    char *shard_path = malloc(prefix_len + 32);
    if (!shard_path) { gguf_free_partial(g); return k2_err(err, K2_ENOMEM, "out of memory"); }
    k2_gguf_tensor *all = NULL;
    int64_t n_all = 0;
    image im0 = {0};
    for (uint64_t i = 0; i < split_count; i++) {
        snprintf(shard_path, prefix_len + 32, "%.*s-%05llu-of-%05llu.gguf", (int)prefix_len, path,
                 (unsigned long long)i + 1, (unsigned long long)split_count);
        image im;
        g->n_shards = (uint32_t)i + 1;
        st = open_shard(g, (uint32_t)i, shard_path, &im, err);
        if (st != K2_OK) {
            if (st == K2_ENOTFOUND)
                k2_err(err, K2_ENOTFOUND, "%s: missing shard %llu of %llu (%s)", path, (unsigned long long)i + 1,
                       (unsigned long long)split_count, shard_path);
            goto fail;
        }
        uint64_t c = 0, no = 0, tc = 0;
        bool hc, hn, ht;
        if ((st = split_u16(&im, shard_path, "split.count", &c, &hc, err)) != K2_OK ||
            (st = split_u16(&im, shard_path, "split.no", &no, &hn, err)) != K2_OK ||
            (st = split_u16(&im, shard_path, "split.tensors.count", &tc, &ht, err)) != K2_OK) {
            image_free(&im);
            goto fail;
        }
        if (!hc || !hn || c != split_count || no != i) {
            image_free(&im);
            st = k2_err(err, K2_EFORMAT, "%s: expected shard %llu of %llu but its split.no/split.count say %llu of %llu",
                        shard_path, (unsigned long long)i + 1, (unsigned long long)split_count,
                        hn ? (unsigned long long)no + 1 : 0ull, hc ? (unsigned long long)c : 0ull);
            goto fail;
        }
        if (i == 0) {
            if (!ht) {
                image_free(&im);
                st = k2_err(err, K2_EFORMAT, "%s: first shard lacks split.tensors.count", shard_path);
                goto fail;
            }
            split_tensors = tc;
        }
        k2_gguf_tensor *na = realloc(all, (size_t)(n_all + im.n_tensors + 1) * sizeof *all);
        if (!na) { image_free(&im); st = k2_err(err, K2_ENOMEM, "out of memory"); goto fail; }
        all = na;
        memcpy(all + n_all, im.tensors, (size_t)im.n_tensors * sizeof *all);
        n_all += im.n_tensors;
        if (i == 0) {
            im0 = im;
            free(im0.tensors);
            im0.tensors = NULL;
        } else {
            image_free(&im);
        }
    }
    if ((uint64_t)n_all != split_tensors) {
        st = k2_err(err, K2_EFORMAT, "%s: the shards hold %lld tensors but split.tensors.count says %llu",
                    path, (long long)n_all, (unsigned long long)split_tensors);
        goto fail;
    }
    free(shard_path);
    g->n_kv = im0.n_kv; g->keys = im0.keys; g->values = im0.values;
    g->n_tensors = n_all; g->tensors = all;
    if ((st = index_names(g, err)) != K2_OK) { gguf_free_partial(g); return st; }
    *out = g;
    return K2_OK;
fail:
    free(shard_path);
    free(all);
    image_free(&im0);
    gguf_free_partial(g);
    return st;
}

/* ---- accessors ---- */

uint32_t k2_gguf_version(const k2_gguf *g) { return g->shards[0].version; }
uint32_t k2_gguf_alignment(const k2_gguf *g) { return g->shards[0].alignment; }
uint32_t k2_gguf_shard_count(const k2_gguf *g) { return g->n_shards; }
const char *k2_gguf_shard_path(const k2_gguf *g, uint32_t i) { return i < g->n_shards ? g->shards[i].path : NULL; }
uint64_t k2_gguf_shard_size(const k2_gguf *g, uint32_t i) { return i < g->n_shards ? g->shards[i].size : 0; }
uint64_t k2_gguf_shard_data_offset(const k2_gguf *g, uint32_t i) { return i < g->n_shards ? g->shards[i].data_offset : 0; }

int64_t k2_gguf_kv_count(const k2_gguf *g) { return g->n_kv; }
const char *k2_gguf_kv_key(const k2_gguf *g, int64_t i) { return i >= 0 && i < g->n_kv ? g->keys[i] : NULL; }
const k2_gguf_value *k2_gguf_kv_value(const k2_gguf *g, int64_t i) { return i >= 0 && i < g->n_kv ? &g->values[i] : NULL; }

const k2_gguf_value *k2_gguf_find(const k2_gguf *g, const char *key) {
    int64_t i = k2_strmap_get(&g->kv_map, key, strlen(key));
    return i < 0 ? NULL : &g->values[i];
}

int64_t k2_gguf_tensor_count(const k2_gguf *g) { return g->n_tensors; }
const k2_gguf_tensor *k2_gguf_tensor_at(const k2_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}
const k2_gguf_tensor *k2_gguf_find_tensor(const k2_gguf *g, const char *name) {
    int64_t i = k2_strmap_get(&g->tensor_map, name, strlen(name));
    return i < 0 ? NULL : &g->tensors[i];
}

static const k2_gguf_value *find_or_err(const k2_gguf *g, const char *key, k2_error *err) {
    const k2_gguf_value *v = k2_gguf_find(g, key);
    if (!v) k2_err(err, K2_ENOTFOUND, "%s: metadata key '%s' is missing", g->shards[0].path, key);
    return v;
}

static bool is_unsigned(k2_gguf_type t) {
    return t == K2_GGUF_UINT8 || t == K2_GGUF_UINT16 || t == K2_GGUF_UINT32 || t == K2_GGUF_UINT64;
}
static bool is_signed(k2_gguf_type t) {
    return t == K2_GGUF_INT8 || t == K2_GGUF_INT16 || t == K2_GGUF_INT32 || t == K2_GGUF_INT64;
}

/* Reads any integer key as a signed 128-bit-safe pair (sign flag + magnitude range checks). */
static k2_status get_int(const k2_gguf *g, const char *key, int64_t lo, uint64_t hi, const char *want,
                         uint64_t *u, int64_t *s, k2_error *err) {
    const k2_gguf_value *v = find_or_err(g, key, err);
    if (!v) return K2_ENOTFOUND;
    if (is_unsigned(v->type)) {
        if (v->v.u64 > hi) goto range;
        *u = v->v.u64;
        *s = (int64_t)v->v.u64;
        return K2_OK;
    }
    if (is_signed(v->type)) {
        if (v->v.i64 < lo || (v->v.i64 > 0 && (uint64_t)v->v.i64 > hi)) goto range;
        *s = v->v.i64;
        *u = (uint64_t)v->v.i64;
        return K2_OK;
    }
    return k2_err(err, K2_ETYPE, "%s: metadata key '%s' has type %s; expected %s", g->shards[0].path, key,
                  k2_gguf_type_name(v->type), want);
range:
    return k2_err(err, K2_ETYPE, "%s: metadata key '%s' = %s%llu does not fit in %s", g->shards[0].path, key,
                  is_signed(v->type) && v->v.i64 < 0 ? "-" : "",
                  is_signed(v->type) && v->v.i64 < 0 ? (unsigned long long)(-(v->v.i64 + 1)) + 1 : (unsigned long long)v->v.u64,
                  want);
}

k2_status k2_gguf_get_u32(const k2_gguf *g, const char *key, uint32_t *out, k2_error *err) {
    uint64_t u = 0; int64_t s = 0;
    k2_status st = get_int(g, key, 0, UINT32_MAX, "uint32", &u, &s, err);
    if (st == K2_OK) *out = (uint32_t)u;
    return st;
}
k2_status k2_gguf_get_i32(const k2_gguf *g, const char *key, int32_t *out, k2_error *err) {
    uint64_t u = 0; int64_t s = 0;
    k2_status st = get_int(g, key, INT32_MIN, INT32_MAX, "int32", &u, &s, err);
    if (st == K2_OK) *out = (int32_t)s;
    return st;
}
k2_status k2_gguf_get_u64(const k2_gguf *g, const char *key, uint64_t *out, k2_error *err) {
    uint64_t u = 0; int64_t s = 0;
    k2_status st = get_int(g, key, 0, UINT64_MAX, "uint64", &u, &s, err);
    if (st == K2_OK) *out = u;
    return st;
}
k2_status k2_gguf_get_i64(const k2_gguf *g, const char *key, int64_t *out, k2_error *err) {
    uint64_t u = 0; int64_t s = 0;
    k2_status st = get_int(g, key, INT64_MIN, INT64_MAX, "int64", &u, &s, err);
    if (st == K2_OK) *out = s;
    return st;
}

k2_status k2_gguf_get_f64(const k2_gguf *g, const char *key, double *out, k2_error *err) {
    const k2_gguf_value *v = find_or_err(g, key, err);
    if (!v) return K2_ENOTFOUND;
    if (v->type != K2_GGUF_FLOAT32 && v->type != K2_GGUF_FLOAT64)
        return k2_err(err, K2_ETYPE, "%s: metadata key '%s' has type %s; expected a float", g->shards[0].path, key,
                      k2_gguf_type_name(v->type));
    *out = v->v.f64;
    return K2_OK;
}
k2_status k2_gguf_get_f32(const k2_gguf *g, const char *key, float *out, k2_error *err) {
    double d = 0;
    k2_status st = k2_gguf_get_f64(g, key, &d, err);
    if (st == K2_OK) *out = (float)d;
    return st;
}
k2_status k2_gguf_get_bool(const k2_gguf *g, const char *key, bool *out, k2_error *err) {
    const k2_gguf_value *v = find_or_err(g, key, err);
    if (!v) return K2_ENOTFOUND;
    if (v->type != K2_GGUF_BOOL)
        return k2_err(err, K2_ETYPE, "%s: metadata key '%s' has type %s; expected bool", g->shards[0].path, key,
                      k2_gguf_type_name(v->type));
    *out = v->v.b;
    return K2_OK;
}
k2_status k2_gguf_get_str(const k2_gguf *g, const char *key, k2_str *out, k2_error *err) {
    const k2_gguf_value *v = find_or_err(g, key, err);
    if (!v) return K2_ENOTFOUND;
    if (v->type != K2_GGUF_STRING)
        return k2_err(err, K2_ETYPE, "%s: metadata key '%s' has type %s; expected string", g->shards[0].path, key,
                      k2_gguf_type_name(v->type));
    *out = v->v.str;
    return K2_OK;
}
k2_status k2_gguf_get_array(const k2_gguf *g, const char *key, int elem_type, const k2_gguf_value **out, k2_error *err) {
    const k2_gguf_value *v = find_or_err(g, key, err);
    if (!v) return K2_ENOTFOUND;
    if (v->type != K2_GGUF_ARRAY)
        return k2_err(err, K2_ETYPE, "%s: metadata key '%s' has type %s; expected an array", g->shards[0].path, key,
                      k2_gguf_type_name(v->type));
    if (elem_type >= 0 && (int)v->v.arr.type != elem_type)
        return k2_err(err, K2_ETYPE, "%s: metadata key '%s' is an array of %s; expected an array of %s", g->shards[0].path,
                      key, k2_gguf_type_name(v->v.arr.type), k2_gguf_type_name((k2_gguf_type)elem_type));
    *out = v;
    return K2_OK;
}
