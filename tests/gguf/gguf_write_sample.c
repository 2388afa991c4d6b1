/* Writes a GGUF with every metadata type and a few tensor types using k2's writer,
 * for tests/gguf/test_gguf_interop.py to read back with the PyPI gguf package. */
#include "k2.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 2) { fprintf(stderr, "usage: gguf_write_sample OUT.gguf\n"); return 2; }
    k2_gguf_writer *w = k2_gguf_writer_new();
    k2_gguf_writer_set_str(w, "general.architecture", "deepseek2");
    k2_gguf_writer_set_str(w, "general.name", "sample ünïcode");
    k2_gguf_writer_set_u8(w, "s.u8", 255);
    k2_gguf_writer_set_i8(w, "s.i8", -128);
    k2_gguf_writer_set_u16(w, "s.u16", 65535);
    k2_gguf_writer_set_i16(w, "s.i16", -32768);
    k2_gguf_writer_set_u32(w, "s.u32", 4294967295u);
    k2_gguf_writer_set_i32(w, "s.i32", -2147483647 - 1);
    k2_gguf_writer_set_u64(w, "s.u64", 18446744073709551615ull);
    k2_gguf_writer_set_i64(w, "s.i64", -9223372036854775807ll - 1);
    k2_gguf_writer_set_f32(w, "s.f32", 3.25f);
    k2_gguf_writer_set_f64(w, "s.f64", -1.0e300);
    k2_gguf_writer_set_bool(w, "s.bool", false);
    int16_t a16[4] = {-1, 2, -3, 4};
    k2_gguf_writer_set_array(w, "s.arr_i16", K2_GGUF_INT16, a16, 4);
    double a64[2] = {0.5, -2.5};
    k2_gguf_writer_set_array(w, "s.arr_f64", K2_GGUF_FLOAT64, a64, 2);
    const char *toks[4] = {"[BOS]", "hello", "", "\xe4\xb8\xad"};
    k2_gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", toks, 4);
    float emb[4 * 64];
    for (int i = 0; i < 4 * 64; i++) emb[i] = (float)i / 7.0f;
    uint8_t q6k[3 * 210];
    for (size_t i = 0; i < sizeof q6k; i++) q6k[i] = (uint8_t)(i * 31 + 1);
    q6k[208] = 0x00; q6k[209] = 0x3c;  /* finite fp16 scale */
    q6k[418] = 0x00; q6k[419] = 0x3c;
    q6k[628] = 0x00; q6k[629] = 0x3c;
    uint16_t bf[2 * 32];
    for (int i = 0; i < 64; i++) bf[i] = (uint16_t)(0x3f80 + i);
    k2_error err;
    if (k2_gguf_writer_add_tensor(w, "token_embd.weight", K2_TYPE_F32, 2, (int64_t[]){64, 4}, emb, &err) ||
        k2_gguf_writer_add_tensor(w, "blk.0.ffn_down.weight", K2_TYPE_Q6_K, 2, (int64_t[]){256, 3}, q6k, &err) ||
        k2_gguf_writer_add_tensor(w, "output_norm.weight", K2_TYPE_BF16, 3, (int64_t[]){32, 2, 1}, bf, &err) ||
        k2_gguf_writer_write(w, argv[1], &err)) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    k2_gguf_writer_free(w);
    return 0;
}
