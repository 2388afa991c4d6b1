/* base/: errors, small allocation and string helpers, file mapping, hashing of names.
 * Everything here may be used by every other module; it calls only libc and the OS. */
#ifndef K2_BASE_H
#define K2_BASE_H

#include "k2.h"

#include <stdarg.h>
#include <stdio.h>

#define K2_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define K2_MIN(a, b) ((a) < (b) ? (a) : (b))
#define K2_MAX(a, b) ((a) > (b) ? (a) : (b))

#if defined(__GNUC__)
#define K2_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define K2_PRINTF(f, a)
#endif

/* Sets err (if not NULL) to `status` with a formatted message and returns `status`,
 * so callers can write `return k2_err(err, K2_EFORMAT, "...", ...);`. */
k2_status k2_err(k2_error *err, k2_status status, const char *fmt, ...) K2_PRINTF(3, 4);
k2_status k2_verr(k2_error *err, k2_status status, const char *fmt, va_list ap);
/* Prepends context ("loading x.gguf: ") to an existing error message. */
void k2_err_prefix(k2_error *err, const char *fmt, ...) K2_PRINTF(2, 3);

/* Allocation that reports failure through k2_error rather than aborting. */
void *k2_malloc(size_t size);
void *k2_calloc(size_t n, size_t size);
void *k2_realloc(void *p, size_t size);
char *k2_strdup(const char *s);
char *k2_strndup(const char *s, size_t n);
char *k2_asprintf(const char *fmt, ...) K2_PRINTF(1, 2);

/* Overflow-checked arithmetic: return false on overflow. */
static inline bool k2_mul_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool k2_add_u64(uint64_t a, uint64_t b, uint64_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* A read-only mapping of a whole file. */
typedef struct k2_mapped_file {
    void *data;
    size_t size;
    int fd;
} k2_mapped_file;

k2_status k2_map_file(const char *path, k2_mapped_file *out, k2_error *err);
void k2_unmap_file(k2_mapped_file *m);

/* Reads a whole file into a NUL-terminated heap buffer. */
k2_status k2_read_file(const char *path, char **out, size_t *size, k2_error *err);

/* An open-addressing map from string keys (not owned) to int64 values. */
typedef struct k2_strmap {
    const char **keys;
    size_t *key_lens;
    int64_t *values;
    size_t cap;   /* power of two */
    size_t count;
} k2_strmap;

k2_status k2_strmap_init(k2_strmap *m, size_t expected, k2_error *err);
void k2_strmap_free(k2_strmap *m);
/* Inserts; returns false (and keeps the old value) if the key is already present. */
bool k2_strmap_put(k2_strmap *m, const char *key, size_t len, int64_t value);
/* Returns -1 when absent. */
int64_t k2_strmap_get(const k2_strmap *m, const char *key, size_t len);

uint64_t k2_hash_bytes(const void *data, size_t len);

/* Monotonic time in nanoseconds. */
uint64_t k2_now_ns(void);

#endif
