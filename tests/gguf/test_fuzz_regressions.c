/* Replays every input the fuzzers ever found crashing (fuzz/regressions/gguf/) through
 * the GGUF reader and the row-size arithmetic: each must now fail or parse cleanly
 * (this test also runs in the ASan/UBSan build). */
#include "testutil.h"
#include "base/base.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *src = getenv("K2_SOURCE_DIR");
    if (!src) src = ".";
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/fuzz/regressions/gguf", src);
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "cannot open %s", dir);
    if (!d) return k2t_finish("test_fuzz_regressions");
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[8192];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        char *data;
        size_t size;
        k2_error err;
        if (k2_read_file(path, &data, &size, &err) != K2_OK) { CHECK_MSG(0, "%s", err.message); continue; }
        k2_gguf *g = NULL;
        k2_status st = k2_gguf_open_memory(data, size, e->d_name, &g, &err);
        CHECK_MSG(st == K2_OK || err.message[0], "%s: error without a message", e->d_name);
        if (g) {
            for (int64_t i = 0; i < k2_gguf_tensor_count(g); i++) {
                const k2_gguf_tensor *t = k2_gguf_tensor_at(g, i);
                int64_t rb = k2_type_row_bytes(t->type, t->ne[0]);
                CHECK(rb >= -1);
            }
            k2_gguf_close(g);
        }
        free(data);
        n++;
    }
    closedir(d);
    CHECK(n >= 1);
    return k2t_finish("test_fuzz_regressions");
}
