/* k2-quant-tool: test helper for the Python tests in tests/quant (not installed, not a test itself).
 *
 *   k2-quant-tool dequant DATA MANIFEST OUT
 *       MANIFEST: one line per tensor, "TYPE N_ELEMS BYTE_OFFSET" (decimal); for each line,
 *       N_ELEMS elements of TYPE starting at BYTE_OFFSET of DATA are dequantized with the
 *       public k2_dequantize() and appended to OUT as little-endian f32.
 *
 *   k2-quant-tool quantize KIND IN.f32 OUT
 *       Converts the f32 values of IN.f32 with an activation quantizer, KIND one of
 *       f16 bf16 q8_0 q8_0_ref q8_1 q8_1_ref q8_k, and writes the row bytes to OUT.
 *
 * Exit status 0 on success, 1 with a message on stderr otherwise. */
#include "testutil.h"
#include "base/base.h"
#include "quant/quant.h"

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

static float *read_f32(const char *path, int64_t *n) {
    char *data;
    size_t size;
    k2_error err;
    if (k2_read_file(path, &data, &size, &err) != K2_OK) { fail("reading input", &err); return NULL; }
    float *x = malloc(size + sizeof(float));
    if (x) memcpy(x, data, size);
    free(data);
    *n = (int64_t)(size / sizeof(float));
    return x;
}

static int write_all(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return fail("cannot open output", NULL);
    size_t w = fwrite(p, 1, n, f);
    if (fclose(f) != 0 || w != n) return fail("write failed", NULL);
    return 0;
}

static int cmd_quantize(int argc, char **argv) {
    if (argc != 5) return fail("usage: quantize KIND IN.f32 OUT", NULL);
    static const struct { const char *name; uint32_t type; void (*fn)(const float *, void *, int64_t); } KINDS[] = {
        {"f16", K2_TYPE_F16, quant_quantize_row_f16}, {"bf16", K2_TYPE_BF16, quant_quantize_row_bf16},
        {"q8_0", K2_TYPE_Q8_0, quant_quantize_row_q8_0}, {"q8_0_ref", K2_TYPE_Q8_0, quant_quantize_row_q8_0_ref},
        {"q8_1", K2_TYPE_Q8_1, quant_quantize_row_q8_1}, {"q8_1_ref", K2_TYPE_Q8_1, quant_quantize_row_q8_1_ref},
        {"q8_k", K2_TYPE_Q8_K, quant_quantize_row_q8_k},
    };
    size_t k = 0;
    while (k < K2_ARRAY_LEN(KINDS) && strcmp(KINDS[k].name, argv[2]) != 0) k++;
    if (k == K2_ARRAY_LEN(KINDS)) return fail("unknown quantizer kind", NULL);
    int64_t n;
    float *x = read_f32(argv[3], &n);
    if (!x) return 1;
    int64_t bytes = k2_type_row_bytes(KINDS[k].type, n);
    if (bytes < 0) { free(x); return fail("input is not a whole number of blocks", NULL); }
    void *y = malloc((size_t)bytes + 1);
    if (!y) { free(x); return fail("out of memory", NULL); }
    KINDS[k].fn(x, y, n);
    int rc = write_all(argv[4], y, (size_t)bytes);
    free(x);
    free(y);
    return rc;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "dequant") == 0) return cmd_dequant(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "quantize") == 0) return cmd_quantize(argc, argv);
    return fail("usage: k2-quant-tool dequant|quantize ...", NULL);
}
