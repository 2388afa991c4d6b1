#include "testutil.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int k2t_failures = 0;
int k2t_checks = 0;

const char *k2t_shared_dir(void) {
    static char buf[4096];
    const char *d = getenv("K2_SHARED_DIR");
    if (!d || !*d) d = "../shared";
    struct stat st;
    if (stat(d, &st) != 0 || !S_ISDIR(st.st_mode)) return NULL;
    snprintf(buf, sizeof buf, "%s", d);
    return buf;
}

void k2t_require_shared(void) {
    if (k2t_shared_dir()) return;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "FAIL: shared/ fixtures are missing (K2_SHARED_DIR) and CI=true\n");
        exit(1);
    }
    fprintf(stderr, "SKIP: shared/ fixtures not found (set K2_SHARED_DIR)\n");
    exit(77);
}

bool k2t_have_shared(const char *part) {
    if (k2t_shared_dir()) return true;
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        fprintf(stderr, "FAIL: %s needs shared/ fixtures (K2_SHARED_DIR) and CI=true\n", part);
        k2t_failures++;
    } else {
        fprintf(stderr, "SKIP part: %s (shared/ fixtures not found)\n", part);
    }
    return false;
}

const char *k2t_shared_path(const char *rel) {
    static char buf[4096];
    const char *d = k2t_shared_dir();
    if (!d) return NULL;
    snprintf(buf, sizeof buf, "%s/%s", d, rel);
    return buf;
}

const char *k2t_tmpdir(void) {
    static char buf[4096];
    if (buf[0]) return buf;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(buf, sizeof buf, "%s/k2test.XXXXXX", base);
    if (!mkdtemp(buf)) { perror("mkdtemp"); exit(1); }
    return buf;
}

int k2t_finish(const char *name) {
    fprintf(stderr, "%s: %d checks, %d failed\n", name, k2t_checks, k2t_failures);
    return k2t_failures ? 1 : 0;
}
