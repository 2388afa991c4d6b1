/* make_variants OUTDIR: writes tiny random-weight deepseek2 models, one per variant the spec
 * describes beyond k2-tiny (spec §2.3, §3, §4.3, §5), with k2's own GGUF writer:
 *
 *   base      q-LoRA, split k_b/v_b, sigmoid + bias, YaRN (beta 1/1), 1 shared expert
 *   noqlora   plain attn_q (no q-LoRA)
 *   legacy    unsplit attn_kv_b, pre-MLA metadata (key/value_length = d_k/d_v)
 *   softmax   softmax gating, no bias, no renormalisation, no scale
 *   grouped   expert groups: G = 4, G_k = 2 (group-limited routing)
 *   shared2   two shared experts
 *   noyarn    plain RoPE (no rope.scaling), no dense block
 *   yarn32    YaRN without beta keys (defaults 32/1) and with yarn_log_multiplier 0.0707
 *   tied      no output.weight (head tied to token_embd)
 *
 * each in F32, F16 and Q8_0 (`<variant>-<type>.gguf`). Deterministic (fixed seed). */
#include "k2.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 64, H = 2, RQ = 32, DC = 32, DN = 32, DR = 16, DV = 32, FD = 96, FE = 32, E = 8, V = 160,
       NL = 3, CTX = 4096 };

typedef struct variant {
    const char *name;
    bool q_lora, legacy, softmax, bias, grouped, tied, yarn, beta_keys;
    int shared, n_dense;
    float log_mul;
} variant;

static const variant VARIANTS[] = {
    {"base", true, false, false, true, false, false, true, true, 1, 1, 0.1f},
    {"noqlora", false, false, false, true, false, false, true, true, 1, 1, 0.1f},
    {"legacy", true, true, false, true, false, false, true, true, 1, 1, 0.1f},
    {"softmax", true, false, true, false, false, false, true, true, 1, 1, 0.1f},
    {"grouped", true, false, false, true, true, false, true, true, 1, 1, 0.1f},
    {"shared2", true, false, false, true, false, false, true, true, 2, 1, 0.1f},
    {"noyarn", false, false, false, true, false, false, false, false, 1, 0, 0.1f},
    {"yarn32", true, false, false, true, false, false, true, false, 1, 1, 0.0707f},
    {"tied", true, false, false, true, false, true, true, true, 1, 1, 0.1f},
};

static uint64_t rng_state;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((rng_state >> 11) + 0.5) / 9007199254740992.0;
}
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand())) * cos(2.0 * M_PI * urand())); }

/* All tensors of one model are kept alive until the write. */
typedef struct buf_list {
    void *p[256];
    int n;
} buf_list;

static void *keep(buf_list *b, void *p) {
    b->p[b->n++] = p;
    return p;
}

static void quant_q8_0(const float *x, uint8_t *out, int64_t n) {
    for (int64_t b = 0; b < n / 32; b++) {
        float amax = 0;
        for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[b * 32 + i]));
        float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        uint16_t h = model_f32_to_f16(d);
        memcpy(out + b * 34, &h, 2);
        for (int i = 0; i < 32; i++) out[b * 34 + 2 + i] = (uint8_t)(int8_t)roundf(x[b * 32 + i] * id);
    }
}

/* Adds a tensor of shape ne (n_dims) with random values of scale `sc` around `mean`,
 * stored as `type` (norms/router/bias always F32). */
static k2_status add(k2_gguf_writer *w, buf_list *bl, const char *name, uint32_t type, int nd,
                     int64_t ne0, int64_t ne1, int64_t ne2, float mean, float sc) {
    int64_t ne[3] = {ne0, ne1, ne2};
    size_t n = (size_t)ne0 * (size_t)ne1 * (size_t)ne2;
    float *f = malloc(sizeof(float) * n);
    if (!f) return K2_ENOMEM;
    for (size_t i = 0; i < n; i++) f[i] = mean + sc * nrand();
    void *data = f;
    if (type == K2_TYPE_F16) {
        uint16_t *h = malloc(2 * n);
        if (!h) return K2_ENOMEM;
        for (size_t i = 0; i < n; i++) h[i] = model_f32_to_f16(f[i]);
        free(f);
        data = h;
    } else if (type == K2_TYPE_Q8_0) {
        uint8_t *q = malloc(n / 32 * 34);
        if (!q) return K2_ENOMEM;
        quant_q8_0(f, q, (int64_t)n);
        free(f);
        data = q;
    }
    keep(bl, data);
    k2_error err;
    k2_status s = k2_gguf_writer_add_tensor(w, name, type, (uint32_t)nd, ne, data, &err);
    if (s != K2_OK) fprintf(stderr, "make_variants: %s: %s\n", name, err.message);
    return s;
}

static int write_variant(const variant *v, uint32_t type, const char *tname, const char *dir) {
    rng_state = 0x9e3779b97f4a7c15ull ^ (uint64_t)(v - VARIANTS) * 1315423911u;
    k2_gguf_writer *w = k2_gguf_writer_new();
    buf_list bl = {{0}, 0};
    k2_gguf_writer_set_str(w, "general.architecture", "deepseek2");
    k2_gguf_writer_set_str(w, "general.name", v->name);
    const char *P = "deepseek2.";
    char key[128];
#define U32(k, val) (snprintf(key, sizeof key, "%s%s", P, k), k2_gguf_writer_set_u32(w, key, (val)))
#define F32(k, val) (snprintf(key, sizeof key, "%s%s", P, k), k2_gguf_writer_set_f32(w, key, (val)))
    U32("block_count", NL);
    U32("context_length", CTX * 32);
    U32("embedding_length", D);
    U32("feed_forward_length", FD);
    U32("attention.head_count", H);
    U32("attention.head_count_kv", v->legacy ? H : 1);
    F32("rope.freq_base", 10000.0f);
    F32("attention.layer_norm_rms_epsilon", 1e-6f);
    U32("expert_count", E);
    U32("expert_used_count", v->grouped ? 3 : 2);
    U32("expert_gating_func", v->softmax ? 1 : 2);
    U32("leading_dense_block_count", (uint32_t)v->n_dense);
    U32("vocab_size", V);
    if (v->q_lora) U32("attention.q_lora_rank", RQ);
    U32("attention.kv_lora_rank", DC);
    if (v->legacy) {
        U32("attention.key_length", DN + DR);
        U32("attention.value_length", DV);
    } else {
        U32("attention.key_length", DC + DR);
        U32("attention.value_length", DC);
        U32("attention.key_length_mla", DN + DR);
        U32("attention.value_length_mla", DV);
    }
    U32("expert_feed_forward_length", FE);
    U32("expert_shared_count", (uint32_t)v->shared);
    if (!v->softmax) {
        F32("expert_weights_scale", 2.5f);
        snprintf(key, sizeof key, "%sexpert_weights_norm", P);
        k2_gguf_writer_set_bool(w, key, true);
    }
    if (v->grouped) {
        U32("expert_group_count", 4);
        U32("expert_group_used_count", 2);
    }
    U32("rope.dimension_count", DR);
    if (v->yarn) {
        snprintf(key, sizeof key, "%srope.scaling.type", P);
        k2_gguf_writer_set_str(w, key, "yarn");
        F32("rope.scaling.factor", 40.0f);
        U32("rope.scaling.original_context_length", CTX);
        F32("rope.scaling.yarn_log_multiplier", v->log_mul);
        if (v->beta_keys) {
            F32("rope.scaling.yarn_beta_fast", 1.0f);
            F32("rope.scaling.yarn_beta_slow", 1.0f);
        }
    }
#undef U32
#undef F32
    const char *toks[V];
    char tokbuf[V][16];
    for (int i = 0; i < V; i++) {
        snprintf(tokbuf[i], sizeof tokbuf[i], "t%d", i);
        toks[i] = tokbuf[i];
    }
    k2_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    k2_gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", toks, V);

    k2_status s = K2_OK;
    const float inD = 1.0f / sqrtf(D);
    s |= add(w, &bl, "token_embd.weight", type, 2, D, V, 1, 0.0f, 1.0f);
    s |= add(w, &bl, "output_norm.weight", K2_TYPE_F32, 1, D, 1, 1, 1.0f, 0.1f);
    if (!v->tied) s |= add(w, &bl, "output.weight", type, 2, D, V, 1, 0.0f, inD);
    for (int l = 0; l < NL; l++) {
        char n[96];
#define T(suffix) (snprintf(n, sizeof n, "blk.%d.%s", l, suffix), n)
        s |= add(w, &bl, T("attn_norm.weight"), K2_TYPE_F32, 1, D, 1, 1, 1.0f, 0.1f);
        if (v->q_lora) {
            s |= add(w, &bl, T("attn_q_a.weight"), type, 2, D, RQ, 1, 0.0f, inD);
            s |= add(w, &bl, T("attn_q_a_norm.weight"), K2_TYPE_F32, 1, RQ, 1, 1, 1.0f, 0.1f);
            s |= add(w, &bl, T("attn_q_b.weight"), type, 2, RQ, H * (DN + DR), 1, 0.0f, 1.0f / sqrtf(RQ));
        } else {
            s |= add(w, &bl, T("attn_q.weight"), type, 2, D, H * (DN + DR), 1, 0.0f, inD);
        }
        s |= add(w, &bl, T("attn_kv_a_mqa.weight"), type, 2, D, DC + DR, 1, 0.0f, inD);
        s |= add(w, &bl, T("attn_kv_a_norm.weight"), K2_TYPE_F32, 1, DC, 1, 1, 1.0f, 0.1f);
        if (v->legacy) {
            s |= add(w, &bl, T("attn_kv_b.weight"), type, 2, DC, H * (DN + DV), 1, 0.0f, 1.0f / sqrtf(DC));
        } else {
            s |= add(w, &bl, T("attn_k_b.weight"), type, 3, DN, DC, H, 0.0f, 1.0f / sqrtf(DC));
            s |= add(w, &bl, T("attn_v_b.weight"), type, 3, DC, DV, H, 0.0f, 1.0f / sqrtf(DC));
        }
        s |= add(w, &bl, T("attn_output.weight"), type, 2, H * DV, D, 1, 0.0f, 1.0f / sqrtf(H * DV));
        s |= add(w, &bl, T("ffn_norm.weight"), K2_TYPE_F32, 1, D, 1, 1, 1.0f, 0.1f);
        if (l < v->n_dense) {
            s |= add(w, &bl, T("ffn_gate.weight"), type, 2, D, FD, 1, 0.0f, inD);
            s |= add(w, &bl, T("ffn_up.weight"), type, 2, D, FD, 1, 0.0f, inD);
            s |= add(w, &bl, T("ffn_down.weight"), type, 2, FD, D, 1, 0.0f, 1.0f / sqrtf(FD));
            continue;
        }
        s |= add(w, &bl, T("ffn_gate_inp.weight"), K2_TYPE_F32, 2, D, E, 1, 0.0f, inD);
        if (v->bias) s |= add(w, &bl, T("exp_probs_b.bias"), K2_TYPE_F32, 1, E, 1, 1, 0.0f, 0.05f);
        s |= add(w, &bl, T("ffn_gate_exps.weight"), type, 3, D, FE, E, 0.0f, inD);
        s |= add(w, &bl, T("ffn_up_exps.weight"), type, 3, D, FE, E, 0.0f, inD);
        s |= add(w, &bl, T("ffn_down_exps.weight"), type, 3, FE, D, E, 0.0f, 1.0f / sqrtf(FE));
        int fs = FE * v->shared;
        s |= add(w, &bl, T("ffn_gate_shexp.weight"), type, 2, D, fs, 1, 0.0f, inD);
        s |= add(w, &bl, T("ffn_up_shexp.weight"), type, 2, D, fs, 1, 0.0f, inD);
        s |= add(w, &bl, T("ffn_down_shexp.weight"), type, 2, fs, D, 1, 0.0f, 1.0f / sqrtf(fs));
#undef T
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%s.gguf", dir, v->name, tname);
    k2_error err;
    if (s == K2_OK && k2_gguf_writer_write(w, path, &err) != K2_OK) {
        fprintf(stderr, "make_variants: %s\n", err.message);
        s = K2_EIO;
    }
    for (int i = 0; i < bl.n; i++) free(bl.p[i]);
    k2_gguf_writer_free(w);
    return s == K2_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_variants OUTDIR\n");
        return 2;
    }
    static const struct { uint32_t type; const char *name; } TYPES[] = {
        {K2_TYPE_F32, "f32"}, {K2_TYPE_F16, "f16"}, {K2_TYPE_Q8_0, "q8_0"}};
    int rc = 0;
    for (size_t v = 0; v < sizeof VARIANTS / sizeof VARIANTS[0]; v++)
        for (size_t t = 0; t < 3; t++) rc |= write_variant(&VARIANTS[v], TYPES[t].type, TYPES[t].name, argv[1]);
    return rc;
}
