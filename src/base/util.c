#include "base/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void *k2_malloc(size_t size) { return malloc(size ? size : 1); }
void *k2_calloc(size_t n, size_t size) { return calloc(n ? n : 1, size ? size : 1); }
void *k2_realloc(void *p, size_t size) { return realloc(p, size ? size : 1); }

char *k2_strdup(const char *s) { return s ? k2_strndup(s, strlen(s)) : NULL; }

char *k2_strndup(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = '\0';
    return r;
}

char *k2_asprintf(const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *r = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (r) vsnprintf(r, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return r;
}

k2_status k2_map_file(const char *path, k2_mapped_file *out, k2_error *err) {
    memset(out, 0, sizeof *out);
    out->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return k2_err(err, errno == ENOENT ? K2_ENOTFOUND : K2_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return k2_err(err, K2_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return k2_err(err, K2_EINVAL, "%s: not a regular file", path);
    }
    void *p = NULL;
    if (st.st_size > 0) {
        p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return k2_err(err, K2_EIO, "%s: cannot map %lld bytes: %s", path, (long long)st.st_size, strerror(e));
        }
    }
    out->data = p;
    out->size = (size_t)st.st_size;
    out->fd = fd;
    return K2_OK;
}

void k2_unmap_file(k2_mapped_file *m) {
    if (!m) return;
    if (m->data && m->size) munmap(m->data, m->size);
    if (m->fd >= 0) close(m->fd);
    m->data = NULL;
    m->size = 0;
    m->fd = -1;
}

k2_status k2_read_file(const char *path, char **out, size_t *size, k2_error *err) {
    *out = NULL;
    if (size) *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return k2_err(err, errno == ENOENT ? K2_ENOTFOUND : K2_EIO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 65536, len = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); return k2_err(err, K2_ENOMEM, "%s: out of memory", path); }
    for (;;) {
        if (len + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); return k2_err(err, K2_ENOMEM, "%s: out of memory", path); }
            buf = nb;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        len += n;
        if (n == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); return k2_err(err, K2_EIO, "%s: read error", path); }
    buf[len] = '\0';
    *out = buf;
    if (size) *size = len;
    return K2_OK;
}

uint64_t k2_hash_bytes(const void *data, size_t len) {
    /* FNV-1a, 64-bit: names are short and this is not adversarial-critical. */
    const unsigned char *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) { h ^= p[i]; h *= 1099511628211ull; }
    return h;
}

k2_status k2_strmap_init(k2_strmap *m, size_t expected, k2_error *err) {
    memset(m, 0, sizeof *m);
    size_t cap = 16;
    while (cap < expected * 2 + 1) cap <<= 1;
    m->keys = calloc(cap, sizeof *m->keys);
    m->key_lens = calloc(cap, sizeof *m->key_lens);
    m->values = calloc(cap, sizeof *m->values);
    if (!m->keys || !m->key_lens || !m->values) {
        k2_strmap_free(m);
        return k2_err(err, K2_ENOMEM, "out of memory for a name table of %zu entries", expected);
    }
    m->cap = cap;
    return K2_OK;
}

void k2_strmap_free(k2_strmap *m) {
    free(m->keys);
    free(m->key_lens);
    free(m->values);
    memset(m, 0, sizeof *m);
}

static bool strmap_grow(k2_strmap *m) {
    k2_strmap n;
    if (k2_strmap_init(&n, m->cap, NULL) != K2_OK) return false;
    for (size_t i = 0; i < m->cap; i++)
        if (m->keys[i]) k2_strmap_put(&n, m->keys[i], m->key_lens[i], m->values[i]);
    k2_strmap_free(m);
    *m = n;
    return true;
}

bool k2_strmap_put(k2_strmap *m, const char *key, size_t len, int64_t value) {
    if ((m->count + 1) * 2 > m->cap && !strmap_grow(m)) return false;
    size_t mask = m->cap - 1, i = (size_t)k2_hash_bytes(key, len) & mask;
    while (m->keys[i]) {
        if (m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0) return false;
        i = (i + 1) & mask;
    }
    m->keys[i] = key;
    m->key_lens[i] = len;
    m->values[i] = value;
    m->count++;
    return true;
}

int64_t k2_strmap_get(const k2_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    size_t mask = m->cap - 1, i = (size_t)k2_hash_bytes(key, len) & mask;
    while (m->keys[i]) {
        if (m->key_lens[i] == len && memcmp(m->keys[i], key, len) == 0) return m->values[i];
        i = (i + 1) & mask;
    }
    return -1;
}

uint64_t k2_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
