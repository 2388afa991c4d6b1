/* libFuzzer target for the GGUF reader: any byte string must either parse or
 * give an error — never crash, leak, or read out of bounds. On success, walk
 * every value and tensor so that lazily wrong pointers would be caught by ASan. */
#include "k2.h"

#include <stdint.h>
#include <string.h>

static volatile uint64_t sink;

static void touch_value(const k2_gguf_value *v) {
    if (v->type == K2_GGUF_STRING) {
        for (size_t i = 0; i < v->v.str.len; i++) sink += (uint8_t)v->v.str.ptr[i];
    } else if (v->type == K2_GGUF_ARRAY) {
        if (v->v.arr.type == K2_GGUF_STRING)
            for (uint64_t i = 0; i < v->v.arr.n; i++) sink += v->v.arr.strings[i].len ? (uint8_t)v->v.arr.strings[i].ptr[v->v.arr.strings[i].len - 1] : 0;
        else if (v->v.arr.type == K2_GGUF_ARRAY)
            for (uint64_t i = 0; i < v->v.arr.n; i++) touch_value(&v->v.arr.arrays[i]);
        else if (v->v.arr.n)
            sink += ((const uint8_t *)v->v.arr.data)[0];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    k2_gguf *g = NULL;
    k2_error err;
    if (k2_gguf_open_memory(data, size, "fuzz.gguf", &g, &err) != K2_OK) {
        if (!err.message[0]) __builtin_trap();  /* every error must carry a message */
        return 0;
    }
    for (int64_t i = 0; i < k2_gguf_kv_count(g); i++) {
        touch_value(k2_gguf_kv_value(g, i));
        uint32_t u;
        k2_gguf_get_u32(g, k2_gguf_kv_key(g, i), &u, NULL);
    }
    for (int64_t i = 0; i < k2_gguf_tensor_count(g); i++) {
        const k2_gguf_tensor *t = k2_gguf_tensor_at(g, i);
        if (t->nbytes) sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->nbytes - 1];
        if (k2_gguf_find_tensor(g, t->name) == NULL) __builtin_trap();
        /* Dequantize the first row when small: exercises the type table on hostile shapes. */
        int64_t rb = k2_type_row_bytes(t->type, t->ne[0]);
        if (rb > 0 && (uint64_t)rb <= t->nbytes && t->ne[0] <= 4096) {
            static float row[4096];
            k2_dequantize(t->type, t->data, row, t->ne[0], NULL);
        }
    }
    k2_gguf_close(g);
    return 0;
}
