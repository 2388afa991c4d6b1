/* k2-quant-tool: test helper for the Python tests in tests/quant (not installed, not a test itself).
 *
 *   k2-quant-tool dequant DATA MANIFEST OUT
 *       MANIFEST: one line per tensor, "TYPE N_ELEMS BYTE_OFFSET" (decimal); for each line,
 *       N_ELEMS elements of TYPE starting at BYTE_OFFSET of DATA are dequantized with the
 *       public k2_dequantize() and appended to OUT as little-endian f32.
 *
 * Exit status 0 on success, 1 with a message on stderr otherwise. */
#include "testutil.h"
#include "base/base.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char *msg, const k2_error *err) {
    fprintf(stderr, "k2-quant-tool: %s%s%s\n", msg, err ? ": " : "", err ? err->message : "");
    return 1;
}

static int cmd_dequant(int argc, char **argv) {
    if (argc != 5) return fail("usage: dequant DATA MANIFEST OUT", NULL);
    k2_error err;
    k2_mapped_file mf;
    if (k2_map_file(argv[2], &mf, &err) != K2_OK) return fail("mapping data", &err);
    FILE *man = fopen(argv[3], "r");
    FILE *out = fopen(argv[4], "wb");
    if (!man || !out) return fail("cannot open manifest or output", NULL);
    unsigned type;
    int64_t n;
    uint64_t off;
    int rc = 0;
    float *buf = NULL;
    size_t cap = 0;
    while (fscanf(man, "%u %" SCNd64 " %" SCNu64, &type, &n, &off) == 3) {
        int64_t bytes = k2_type_row_bytes(type, n);
        if (bytes < 0 || off > mf.size || (uint64_t)bytes > mf.size - off) {
            fprintf(stderr, "k2-quant-tool: bad manifest entry %u %" PRId64 " %" PRIu64 "\n", type, n, off);
            rc = 1;
            break;
        }
        if ((size_t)n > cap) {
            free(buf);
            cap = (size_t)n;
            buf = malloc(cap * sizeof(float));
            if (!buf) { rc = fail("out of memory", NULL); break; }
        }
        if (k2_dequantize(type, (const uint8_t *)mf.data + off, buf, n, &err) != K2_OK) {
            rc = fail("k2_dequantize", &err);
            break;
        }
        if (fwrite(buf, sizeof(float), (size_t)n, out) != (size_t)n) { rc = fail("write failed", NULL); break; }
    }
    free(buf);
    fclose(man);
    if (fclose(out) != 0) rc = fail("closing output", NULL);
    k2_unmap_file(&mf);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "dequant") == 0) return cmd_dequant(argc, argv);
    return fail("usage: k2-quant-tool dequant ...", NULL);
}
