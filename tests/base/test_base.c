#include "testutil.h"
#include "base/base.h"

#include <string.h>

int main(void) {
    k2_error err;
    k2_error_clear(&err);
    CHECK(err.status == K2_OK && err.message[0] == '\0');
    CHECK(k2_err(&err, K2_EFORMAT, "%s: bad %d", "x.gguf", 3) == K2_EFORMAT);
    CHECK(strcmp(err.message, "x.gguf: bad 3") == 0);
    k2_err_prefix(&err, "loading: ");
    CHECK(strcmp(err.message, "loading: x.gguf: bad 3") == 0);
    CHECK(strcmp(k2_status_name(K2_ETYPE), "ETYPE") == 0);

    k2_strmap m;
    CHECK_OK(k2_strmap_init(&m, 2, &err), &err);
    char keys[200][16];
    for (int i = 0; i < 200; i++) {
        snprintf(keys[i], sizeof keys[i], "k%d", i);
        CHECK(k2_strmap_put(&m, keys[i], strlen(keys[i]), i));
    }
    CHECK(!k2_strmap_put(&m, "k7", 2, 99));
    for (int i = 0; i < 200; i++) CHECK(k2_strmap_get(&m, keys[i], strlen(keys[i])) == i);
    CHECK(k2_strmap_get(&m, "nope", 4) == -1);
    k2_strmap_free(&m);

    uint64_t r;
    CHECK(!k2_mul_u64(UINT64_MAX / 2, 3, &r));
    CHECK(k2_add_u64(1, 2, &r) && r == 3);

    CHECK(k2_map_file("/nonexistent/file", &(k2_mapped_file){0}, &err) == K2_ENOTFOUND);
    CHECK(strstr(err.message, "/nonexistent/file") != NULL);
    return k2t_finish("test_base");
}
