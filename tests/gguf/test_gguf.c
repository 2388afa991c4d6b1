/* GGUF reader/writer: round trips of every metadata type, split shard sets, and one
 * test per validation error, on files corrupted on purpose. Also every prefix of a
 * valid file (truncation at each byte) must fail cleanly. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a raw GGUF byte builder, independent of k2's writer ---- */
typedef struct buf { uint8_t *p; size_t n, cap; } buf;
static void b_put(buf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) { b->cap = (b->n + n) * 2 + 64; b->p = realloc(b->p, b->cap); }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void b_u32(buf *b, uint32_t v) { b_put(b, &v, 4); }
static void b_u64(buf *b, uint64_t v) { b_put(b, &v, 8); }
static void b_str(buf *b, const char *s) { b_u64(b, strlen(s)); b_put(b, s, strlen(s)); }
static void b_pad(buf *b, size_t a) { uint8_t z = 0; while (b->n % a) b_put(b, &z, 1); }

static k2_status open_buf(const buf *b, k2_error *err) {
    k2_gguf *g = NULL;
    k2_status st = k2_gguf_open_memory(b->p, b->n, "corrupt.gguf", &g, err);
    if (st == K2_OK) k2_gguf_close(g);
    return st;
}

/* A minimal valid file: one u32 key and one F32 tensor [8 x 2]. */
typedef struct tinyopts {
    const char *magic;
    uint32_t version;
    uint64_t n_tensors_claim;
    uint32_t n_dims;
    uint64_t ne0, ne1;
    uint32_t type;
    uint64_t offset;
    int dup_tensor;
    int dup_key;
    int truncate_data;
    int bad_alignment;  /* 0 none, 1 = 48, 2 = string type */
} tinyopts;

static tinyopts tiny_defaults(void) {
    tinyopts o = {"GGUF", 3, 1, 2, 8, 2, K2_TYPE_F32, 0, 0, 0, 0, 0};
    return o;
}

static buf tiny(tinyopts o) {
    buf b = {0};
    b_put(&b, o.magic, 4);
    b_u32(&b, o.version);
    uint64_t nt = o.dup_tensor ? 2 : o.n_tensors_claim;
    b_u64(&b, nt);
    b_u64(&b, 1 + (o.dup_key ? 1 : 0) + (o.bad_alignment ? 1 : 0));
    b_str(&b, "general.architecture");
    b_u32(&b, K2_GGUF_STRING);
    b_str(&b, "deepseek2");
    if (o.dup_key) { b_str(&b, "general.architecture"); b_u32(&b, K2_GGUF_STRING); b_str(&b, "llama"); }
    if (o.bad_alignment == 1) { b_str(&b, "general.alignment"); b_u32(&b, K2_GGUF_UINT32); b_u32(&b, 48); }
    if (o.bad_alignment == 2) { b_str(&b, "general.alignment"); b_u32(&b, K2_GGUF_STRING); b_str(&b, "32"); }
    for (uint64_t t = 0; t < (o.dup_tensor ? 2u : 1u); t++) {
        b_str(&b, "w");
        b_u32(&b, o.n_dims);
        b_u64(&b, o.ne0);
        if (o.n_dims > 1) b_u64(&b, o.ne1);
        for (uint32_t d = 2; d < o.n_dims; d++) b_u64(&b, 1);
        b_u32(&b, o.type);
        b_u64(&b, o.offset + t * 64);
    }
    b_pad(&b, 32);
    float data[16];
    for (int i = 0; i < 16; i++) data[i] = (float)i;
    b_put(&b, data, o.truncate_data ? 40 : sizeof data);
    if (o.dup_tensor) b_put(&b, data, sizeof data);
    return b;
}

static void expect_error(tinyopts o, k2_status want, const char *needle, const char *what) {
    buf b = tiny(o);
    k2_error err;
    k2_error_clear(&err);
    k2_status st = open_buf(&b, &err);
    CHECK_MSG(st == want, "%s: got %s (%s), want %s", what, k2_status_name(st), err.message, k2_status_name(want));
    CHECK_MSG(strstr(err.message, needle) != NULL, "%s: message '%s' lacks '%s'", what, err.message, needle);
    CHECK_MSG(strstr(err.message, "corrupt.gguf") != NULL, "%s: message '%s' does not name the file", what, err.message);
    free(b.p);
}

static void test_validation(void) {
    tinyopts o = tiny_defaults();
    buf b = tiny(o);
    k2_error err;
    CHECK_OK(open_buf(&b, &err), &err);

    /* Every strict prefix of a valid file is an error, never a crash or an over-read. */
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        buf p = {malloc(n ? n : 1), n, n};
        memcpy(p.p, b.p, n);
        if (open_buf(&p, &err) == K2_OK) bad++;
        free(p.p);
    }
    CHECK_MSG(bad == 0, "%d truncated prefixes were accepted", bad);
    free(b.p);

    o = tiny_defaults(); o.magic = "GGML"; expect_error(o, K2_EFORMAT, "bad magic", "bad magic");
    o = tiny_defaults(); o.version = 4; expect_error(o, K2_EUNSUPPORTED, "unsupported GGUF version 4", "version 4");
    o = tiny_defaults(); o.version = 1; expect_error(o, K2_EUNSUPPORTED, "unsupported GGUF version 1", "version 1");
    o = tiny_defaults(); o.version = 0x03000000; expect_error(o, K2_EUNSUPPORTED, "big-endian", "big-endian version");
    o = tiny_defaults(); o.magic = "FUGG"; expect_error(o, K2_EUNSUPPORTED, "big-endian", "big-endian magic");
    o = tiny_defaults(); o.n_tensors_claim = 1ull << 40; expect_error(o, K2_EFORMAT, "tensors", "tensor count");
    o = tiny_defaults(); o.n_dims = 5; expect_error(o, K2_EFORMAT, "tensor 'w' has 5 dimensions", "n_dims");
    o = tiny_defaults(); o.ne0 = 1ull << 40; o.ne1 = 1ull << 40; expect_error(o, K2_EFORMAT, "overflows", "dims overflow");
    o = tiny_defaults(); o.ne0 = (uint64_t)-8; expect_error(o, K2_EFORMAT, "negative", "negative dim");
    o = tiny_defaults(); o.type = K2_TYPE_Q4_0; expect_error(o, K2_EFORMAT, "not a multiple of the Q4_0 block size 32", "block size");
    o = tiny_defaults(); o.type = 4; expect_error(o, K2_EFORMAT, "type id 4, which is a removed type", "removed type");
    o = tiny_defaults(); o.type = 99; expect_error(o, K2_EFORMAT, "type id 99, which is unknown", "unknown type");
    o = tiny_defaults(); o.type = K2_TYPE_Q8_K; o.ne0 = 256; o.ne1 = 1;
    expect_error(o, K2_EFORMAT, "beyond the end of the file", "tensor data out of range");
    o = tiny_defaults(); o.offset = 32; expect_error(o, K2_EFORMAT, "leaves a gap", "gap");
    o = tiny_defaults(); o.offset = 3; expect_error(o, K2_EFORMAT, "not a multiple of the alignment", "unaligned offset");
    o = tiny_defaults(); o.truncate_data = 1; expect_error(o, K2_EFORMAT, "beyond the end of the file", "truncated data");
    o = tiny_defaults(); o.dup_tensor = 1; expect_error(o, K2_EFORMAT, "duplicate tensor name 'w'", "duplicate tensor");
    o = tiny_defaults(); o.dup_key = 1; expect_error(o, K2_EFORMAT, "duplicate metadata key 'general.architecture'", "duplicate key");
    o = tiny_defaults(); o.bad_alignment = 1; expect_error(o, K2_EFORMAT, "general.alignment = 48 is not a power of two", "alignment");
    o = tiny_defaults(); o.bad_alignment = 2; expect_error(o, K2_EFORMAT, "'general.alignment' has type string", "alignment type");

    /* Overlap: two tensors where the second starts inside the first. */
    {
        buf c = {0};
        b_put(&c, "GGUF", 4); b_u32(&c, 3); b_u64(&c, 2); b_u64(&c, 0);
        b_str(&c, "a"); b_u32(&c, 1); b_u64(&c, 16); b_u32(&c, K2_TYPE_F32); b_u64(&c, 0);
        b_str(&c, "b"); b_u32(&c, 1); b_u64(&c, 16); b_u32(&c, K2_TYPE_F32); b_u64(&c, 32);
        b_pad(&c, 32);
        float z[32] = {0};
        b_put(&c, z, sizeof z);
        k2_status st = open_buf(&c, &err);
        CHECK(st == K2_EFORMAT && strstr(err.message, "overlaps the previous tensor"));
        free(c.p);
    }
    /* A string whose length runs past the end; an array that claims too many elements. */
    {
        buf c = {0};
        b_put(&c, "GGUF", 4); b_u32(&c, 3); b_u64(&c, 0); b_u64(&c, 1);
        b_str(&c, "general.name"); b_u32(&c, K2_GGUF_STRING); b_u64(&c, 1000); b_put(&c, "abc", 3);
        CHECK(open_buf(&c, &err) == K2_EFORMAT && strstr(err.message, "beyond the end of the file"));
        free(c.p);
        c = (buf){0};
        b_put(&c, "GGUF", 4); b_u32(&c, 3); b_u64(&c, 0); b_u64(&c, 1);
        b_str(&c, "tokenizer.ggml.tokens"); b_u32(&c, K2_GGUF_ARRAY); b_u32(&c, K2_GGUF_STRING); b_u64(&c, 1ull << 60);
        CHECK(open_buf(&c, &err) == K2_EFORMAT && strstr(err.message, "tokenizer.ggml.tokens") && strstr(err.message, "does not fit"));
        free(c.p);
        c = (buf){0};
        b_put(&c, "GGUF", 4); b_u32(&c, 3); b_u64(&c, 0); b_u64(&c, 1);
        b_str(&c, "x"); b_u32(&c, 77); b_u32(&c, 0);
        CHECK(open_buf(&c, &err) == K2_EFORMAT && strstr(err.message, "unknown value type 77"));
        free(c.p);
        c = (buf){0};
        b_put(&c, "GGUF", 4); b_u32(&c, 3); b_u64(&c, 0); b_u64(&c, 1);
        b_str(&c, "flag"); b_u32(&c, K2_GGUF_BOOL); uint8_t two = 2; b_put(&c, &two, 1);
        CHECK(open_buf(&c, &err) == K2_EFORMAT && strstr(err.message, "neither 0 nor 1"));
        free(c.p);
    }
}

/* ---- round trip through k2's writer ---- */
static void test_roundtrip(uint32_t version, uint32_t alignment) {
    k2_gguf_writer *w = k2_gguf_writer_new();
    k2_gguf_writer_set_version(w, version);
    if (alignment != 32) k2_gguf_writer_set_u32(w, "general.alignment", alignment);
    k2_gguf_writer_set_str(w, "general.architecture", "deepseek2");
    k2_gguf_writer_set_u8(w, "t.u8", 200);
    k2_gguf_writer_set_i8(w, "t.i8", -100);
    k2_gguf_writer_set_u16(w, "t.u16", 60000);
    k2_gguf_writer_set_i16(w, "t.i16", -30000);
    k2_gguf_writer_set_u32(w, "t.u32", 4000000000u);
    k2_gguf_writer_set_i32(w, "t.i32", -2000000000);
    k2_gguf_writer_set_u64(w, "t.u64", 18000000000000000000ull);
    k2_gguf_writer_set_i64(w, "t.i64", -9000000000000000000ll);
    k2_gguf_writer_set_f32(w, "t.f32", 0.1f);
    k2_gguf_writer_set_f64(w, "t.f64", 0.1);
    k2_gguf_writer_set_bool(w, "t.bool", true);
    k2_gguf_writer_set_str(w, "t.str", "héllo\nwörld");
    k2_gguf_writer_set_str(w, "t.replaced", "old");
    k2_gguf_writer_set_str(w, "t.replaced", "new");
    int32_t ints[5] = {1, -2, 3, -4, 5};
    k2_gguf_writer_set_array(w, "t.arr_i32", K2_GGUF_INT32, ints, 5);
    float fl[3] = {1.5f, -2.25f, 1e-7f};
    k2_gguf_writer_set_array(w, "t.arr_f32", K2_GGUF_FLOAT32, fl, 3);
    k2_gguf_writer_set_array(w, "t.arr_empty", K2_GGUF_UINT8, NULL, 0);
    const char *strs[3] = {"a", "", "ccc"};
    k2_gguf_writer_set_str_array(w, "t.arr_str", strs, 3);
    /* nested: [[1,2],[3]] of u16 */
    uint16_t n1[2] = {1, 2}, n2[1] = {3};
    k2_gguf_value inner[2];
    memset(inner, 0, sizeof inner);
    inner[0].type = inner[1].type = K2_GGUF_ARRAY;
    inner[0].v.arr.type = inner[1].v.arr.type = K2_GGUF_UINT16;
    inner[0].v.arr.n = 2; inner[0].v.arr.data = n1;
    inner[1].v.arr.n = 1; inner[1].v.arr.data = n2;
    k2_gguf_value outer;
    memset(&outer, 0, sizeof outer);
    outer.type = K2_GGUF_ARRAY;
    outer.v.arr.type = K2_GGUF_ARRAY;
    outer.v.arr.n = 2;
    outer.v.arr.arrays = inner;
    k2_gguf_writer_set_value(w, "t.nested", &outer);

    uint8_t q4k[2 * 144];
    for (size_t i = 0; i < sizeof q4k; i++) q4k[i] = (uint8_t)(i * 7 + 3);
    float f[3 * 5];
    for (int i = 0; i < 15; i++) f[i] = (float)i * 0.5f;
    uint8_t q80[34 * 3];
    for (size_t i = 0; i < sizeof q80; i++) q80[i] = (uint8_t)(i * 13);
    k2_error err;
    CHECK_OK(k2_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight", K2_TYPE_Q4_K, 2, (int64_t[]){256, 2}, q4k, &err), &err);
    CHECK_OK(k2_gguf_writer_add_tensor(w, "f", K2_TYPE_F32, 2, (int64_t[]){5, 3}, f, &err), &err);
    CHECK_OK(k2_gguf_writer_add_tensor(w, "q8", K2_TYPE_Q8_0, 3, (int64_t[]){32, 3, 1}, q80, &err), &err);
    CHECK(k2_gguf_writer_add_tensor(w, "f", K2_TYPE_F32, 1, (int64_t[]){4}, f, &err) == K2_EINVAL);
    CHECK(k2_gguf_writer_add_tensor(w, "bad", K2_TYPE_Q4_K, 1, (int64_t[]){100}, q4k, &err) == K2_EINVAL);
    CHECK(k2_gguf_writer_add_tensor(w, "bad", 4, 1, (int64_t[]){100}, q4k, &err) == K2_EINVAL);

    char path[4200];
    snprintf(path, sizeof path, "%s/rt-v%u-a%u.gguf", k2t_tmpdir(), version, alignment);
    CHECK_OK(k2_gguf_writer_write(w, path, &err), &err);
    k2_gguf_writer_free(w);

    k2_gguf *g;
    CHECK_OK(k2_gguf_open(path, &g, &err), &err);
    if (!g) return;
    CHECK(k2_gguf_version(g) == version);
    CHECK(k2_gguf_alignment(g) == alignment);
    uint32_t u32; int32_t i32; uint64_t u64; int64_t i64; float f32; double f64; bool bl; k2_str s;
    CHECK(k2_gguf_get_u32(g, "t.u8", &u32, &err) == K2_OK && u32 == 200);
    CHECK(k2_gguf_get_i32(g, "t.i8", &i32, &err) == K2_OK && i32 == -100);
    CHECK(k2_gguf_get_u32(g, "t.u16", &u32, &err) == K2_OK && u32 == 60000);
    CHECK(k2_gguf_get_i32(g, "t.i16", &i32, &err) == K2_OK && i32 == -30000);
    CHECK(k2_gguf_get_u32(g, "t.u32", &u32, &err) == K2_OK && u32 == 4000000000u);
    CHECK(k2_gguf_get_i32(g, "t.i32", &i32, &err) == K2_OK && i32 == -2000000000);
    CHECK(k2_gguf_get_u64(g, "t.u64", &u64, &err) == K2_OK && u64 == 18000000000000000000ull);
    CHECK(k2_gguf_get_i64(g, "t.i64", &i64, &err) == K2_OK && i64 == -9000000000000000000ll);
    CHECK(k2_gguf_get_f32(g, "t.f32", &f32, &err) == K2_OK && f32 == 0.1f);
    CHECK(k2_gguf_get_f64(g, "t.f64", &f64, &err) == K2_OK && f64 == 0.1);
    CHECK(k2_gguf_get_bool(g, "t.bool", &bl, &err) == K2_OK && bl);
    CHECK(k2_gguf_get_str(g, "t.str", &s, &err) == K2_OK && s.len == strlen("héllo\nwörld") && memcmp(s.ptr, "héllo\nwörld", s.len) == 0);
    CHECK(k2_gguf_get_str(g, "t.replaced", &s, &err) == K2_OK && s.len == 3 && memcmp(s.ptr, "new", 3) == 0);
    /* Wrong types and ranges are errors that name the key. */
    CHECK(k2_gguf_get_u32(g, "t.str", &u32, &err) == K2_ETYPE && strstr(err.message, "'t.str' has type string"));
    CHECK(k2_gguf_get_u32(g, "t.i8", &u32, &err) == K2_ETYPE && strstr(err.message, "does not fit in uint32"));
    CHECK(k2_gguf_get_i32(g, "t.u32", &i32, &err) == K2_ETYPE);
    CHECK(k2_gguf_get_f32(g, "t.u32", &f32, &err) == K2_ETYPE);
    CHECK(k2_gguf_get_bool(g, "t.u8", &bl, &err) == K2_ETYPE);
    CHECK(k2_gguf_get_str(g, "missing.key", &s, &err) == K2_ENOTFOUND && strstr(err.message, "'missing.key' is missing"));
    const k2_gguf_value *a;
    CHECK(k2_gguf_get_array(g, "t.arr_i32", K2_GGUF_INT32, &a, &err) == K2_OK && a->v.arr.n == 5 &&
          memcmp(a->v.arr.data, ints, sizeof ints) == 0);
    CHECK(k2_gguf_get_array(g, "t.arr_i32", K2_GGUF_STRING, &a, &err) == K2_ETYPE);
    CHECK(k2_gguf_get_array(g, "t.u8", -1, &a, &err) == K2_ETYPE);
    CHECK(k2_gguf_get_array(g, "t.arr_f32", K2_GGUF_FLOAT32, &a, &err) == K2_OK && a->v.arr.n == 3 &&
          memcmp(a->v.arr.data, fl, sizeof fl) == 0);
    CHECK(k2_gguf_get_array(g, "t.arr_empty", K2_GGUF_UINT8, &a, &err) == K2_OK && a->v.arr.n == 0);
    CHECK(k2_gguf_get_array(g, "t.arr_str", K2_GGUF_STRING, &a, &err) == K2_OK && a->v.arr.n == 3 &&
          a->v.arr.strings[0].len == 1 && a->v.arr.strings[1].len == 0 && memcmp(a->v.arr.strings[2].ptr, "ccc", 3) == 0);
    CHECK(k2_gguf_get_array(g, "t.nested", K2_GGUF_ARRAY, &a, &err) == K2_OK && a->v.arr.n == 2 &&
          a->v.arr.arrays[0].v.arr.n == 2 && a->v.arr.arrays[1].v.arr.n == 1 &&
          memcmp(a->v.arr.arrays[0].v.arr.data, n1, 4) == 0 && memcmp(a->v.arr.arrays[1].v.arr.data, n2, 2) == 0);
    /* keys keep insertion order (alignment key first when present) */
    CHECK(strcmp(k2_gguf_kv_key(g, alignment != 32 ? 1 : 0), "general.architecture") == 0);

    CHECK(k2_gguf_tensor_count(g) == 3);
    const k2_gguf_tensor *t = k2_gguf_find_tensor(g, "blk.0.ffn_up.weight");
    CHECK(t && t->type == K2_TYPE_Q4_K && t->n_dims == 2 && t->ne[0] == 256 && t->ne[1] == 2 && t->ne[2] == 1 &&
          t->nbytes == sizeof q4k && memcmp(t->data, q4k, sizeof q4k) == 0 && t->offset == 0);
    t = k2_gguf_find_tensor(g, "f");
    CHECK(t && t->type == K2_TYPE_F32 && t->nbytes == sizeof f && memcmp(t->data, f, sizeof f) == 0 &&
          t->offset % alignment == 0 && ((uintptr_t)t->data - (uintptr_t)k2_gguf_tensor_at(g, 0)->data) % alignment == 0);
    t = k2_gguf_find_tensor(g, "q8");
    CHECK(t && t->n_dims == 3 && t->ne[1] == 3 && memcmp(t->data, q80, sizeof q80) == 0);
    CHECK(k2_gguf_find_tensor(g, "nope") == NULL);
    k2_gguf_close(g);
}

/* ---- split shard sets ---- */
static void write_shard(const char *dir, const char *prefix, int no, int count, int total, int first_tensor, int n_tensors, int lie_no) {
    k2_gguf_writer *w = k2_gguf_writer_new();
    if (no == 0) k2_gguf_writer_set_str(w, "general.architecture", "deepseek2");
    k2_gguf_writer_set_u16(w, "split.no", (uint16_t)(lie_no >= 0 ? lie_no : no));
    k2_gguf_writer_set_u16(w, "split.count", (uint16_t)count);
    k2_gguf_writer_set_i32(w, "split.tensors.count", total);
    static float data[64][8];
    k2_error err;
    for (int i = 0; i < n_tensors; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", first_tensor + i);
        for (int j = 0; j < 8; j++) data[first_tensor + i][j] = (float)(first_tensor + i) * 100 + (float)j;
        k2_gguf_writer_add_tensor(w, name, K2_TYPE_F32, 1, (int64_t[]){8}, data[first_tensor + i], &err);
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/%s-%05d-of-%05d.gguf", dir, prefix, no + 1, count);
    CHECK_OK(k2_gguf_writer_write(w, path, &err), &err);
    k2_gguf_writer_free(w);
}

static void test_split(void) {
    const char *dir = k2t_tmpdir();
    write_shard(dir, "m", 0, 3, 6, 0, 2, -1);
    write_shard(dir, "m", 1, 3, 6, 2, 3, -1);
    write_shard(dir, "m", 2, 3, 6, 5, 1, -1);
    char path[4200];
    k2_error err;
    for (int start = 1; start <= 3; start++) {
        snprintf(path, sizeof path, "%s/m-%05d-of-00003.gguf", dir, start);
        k2_gguf *g = NULL;
        CHECK_OK(k2_gguf_open(path, &g, &err), &err);
        if (!g) continue;
        CHECK(k2_gguf_shard_count(g) == 3);
        CHECK(k2_gguf_tensor_count(g) == 6);
        k2_str s;
        CHECK(k2_gguf_get_str(g, "general.architecture", &s, &err) == K2_OK);
        for (int i = 0; i < 6; i++) {
            char name[16];
            snprintf(name, sizeof name, "t%d", i);
            const k2_gguf_tensor *t = k2_gguf_find_tensor(g, name);
            CHECK(t && ((const float *)t->data)[3] == (float)i * 100 + 3);
            CHECK(t && t->shard == (uint32_t)(i < 2 ? 0 : i < 5 ? 1 : 2));
        }
        k2_gguf_close(g);
    }
    /* A missing shard names the file that is missing. */
    write_shard(dir, "gap", 0, 3, 6, 0, 2, -1);
    write_shard(dir, "gap", 2, 3, 6, 5, 1, -1);
    snprintf(path, sizeof path, "%s/gap-00001-of-00003.gguf", dir);
    k2_gguf *g = NULL;
    CHECK(k2_gguf_open(path, &g, &err) == K2_ENOTFOUND && strstr(err.message, "missing shard 2 of 3") &&
          strstr(err.message, "gap-00002-of-00003.gguf"));
    /* Tensor totals must agree with split.tensors.count. */
    write_shard(dir, "cnt", 0, 2, 5, 0, 2, -1);
    write_shard(dir, "cnt", 1, 2, 5, 2, 2, -1);
    snprintf(path, sizeof path, "%s/cnt-00002-of-00002.gguf", dir);
    CHECK(k2_gguf_open(path, &g, &err) == K2_EFORMAT && strstr(err.message, "split.tensors.count"));
    /* A shard whose split.no disagrees with its name. */
    write_shard(dir, "lie", 0, 2, 4, 0, 2, -1);
    write_shard(dir, "lie", 1, 2, 4, 2, 2, 0);
    snprintf(path, sizeof path, "%s/lie-00001-of-00002.gguf", dir);
    CHECK(k2_gguf_open(path, &g, &err) == K2_EFORMAT && strstr(err.message, "lie-00002-of-00002.gguf"));
    /* Duplicate names across shards. */
    write_shard(dir, "dup", 0, 2, 4, 0, 2, -1);
    write_shard(dir, "dup", 1, 2, 4, 0, 2, -1);
    snprintf(path, sizeof path, "%s/dup-00001-of-00002.gguf", dir);
    CHECK(k2_gguf_open(path, &g, &err) == K2_EFORMAT && strstr(err.message, "more than one shard"));
}

static void test_fixtures(void) {
    if (!k2t_have_shared("fixture models")) return;
    const char *dir = k2t_shared_path("fixtures/models/k2-tiny-q4_k_m.gguf");
    k2_gguf *g;
    k2_error err;
    CHECK_OK(k2_gguf_open(dir, &g, &err), &err);
    if (!g) return;
    uint32_t n;
    CHECK(k2_gguf_get_u32(g, "deepseek2.block_count", &n, &err) == K2_OK && n == 3);
    CHECK(k2_gguf_tensor_count(g) == 52);
    const k2_gguf_tensor *t = k2_gguf_find_tensor(g, "token_embd.weight");
    CHECK(t && t->ne[0] == 256 && t->ne[1] == 2048);
    k2_gguf_close(g);
}

int main(void) {
    test_validation();
    test_roundtrip(3, 32);
    test_roundtrip(2, 32);
    test_roundtrip(3, 64);
    test_roundtrip(3, 1);
    test_split();
    test_fixtures();
    return k2t_finish("test_gguf");
}
