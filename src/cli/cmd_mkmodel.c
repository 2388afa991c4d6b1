/* k2 mkmodel: writes a random-weight deepseek2 (Kimi K2 structure) GGUF with k2's own
 * GGUF writer — the demo model of `make run`, the benchmark's K2-slice model, and
 * test models. Quantized tensors are random but valid blocks: random payload bytes
 * with finite, moderate fp16 scales (no quantizer needed). The vocabulary is a small
 * byte-level BPE trained on an embedded text, with Kimi K2's special tokens at the end. */
#include "cli/cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *MKMODEL_HELP =
    "usage: k2 mkmodel --out FILE [--preset tiny|k2-slice] [--type TYPE] [options]\n\n"
    "Write a random-weight Kimi K2 (deepseek2) model with valid blocks of the chosen type.\n\n"
    "  --preset P        tiny (default: k2-tiny's sizes) or k2-slice (Kimi K2's real layer\n"
    "                    sizes, 2 layers, 16 experts, 32k vocab)\n"
    "  --type T          weight type of the matrices: f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1\n"
    "                    q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs iq2_xxs iq2_xs iq2_s iq3_xxs\n"
    "                    iq3_s iq1_s iq1_m, or a mix: q4_k_m (Q4_K, Q6_K for down\n"
    "                    projections and the output head), q2_k_mix, iq_mix (default q4_k_m)\n"
    "  --layers N        number of blocks (first is dense)\n"
    "  --experts N       routed experts; --experts-used N\n"
    "  --vocab N         vocabulary size (>= 512)\n"
    "  --seed N          random seed (default 1)\n"
    "  --name NAME       general.name\n";

typedef struct mk_params {
    uint32_t d, layers, dense_layers, heads, q_lora, kv_lora, d_nope, d_rope, d_v;
    uint32_t ffn_dense, ffn_expert, experts, experts_used, shared, vocab, ctx;
} mk_params;

static const mk_params PRESET_TINY = {256, 3, 1, 4, 256, 256, 64, 32, 64, 512, 256, 16, 4, 1, 2048, 131072};
static const mk_params PRESET_SLICE = {7168, 2, 1, 64, 1536, 512, 128, 64, 128, 18432, 2048, 16, 8, 1, 32768, 131072};

/* ---- random numbers (xorshift64*) ---- */
static uint64_t rng_state = 1;
static uint64_t rng_u64(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static float rng_uniform(void) { return (float)((rng_u64() >> 40) + 0.5) / (float)(1ull << 24); }
static float rng_normal(void) {
    float u = rng_uniform(), v = rng_uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static uint16_t f32_to_f16(float f) {
    /* Only for moderate positive/negative normal values (scales): round to nearest. */
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t e = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t m = x & 0x7fffff;
    if (e <= 0) return (uint16_t)sign;
    if (e >= 31) return (uint16_t)(sign | 0x7bff);
    uint32_t h = sign | ((uint32_t)e << 10) | (m >> 13);
    if ((m >> 12) & 1) h++;
    return (uint16_t)h;
}
static uint16_t f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    return (uint16_t)((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

static void put_f16(uint8_t *p, float v) {
    uint16_t h = f32_to_f16(v);
    memcpy(p, &h, 2);
}

/* Fills `n_rows` rows of `n_cols` elements of `type` with random valid data whose
 * dequantized values have a standard deviation of roughly `scale`. */
static bool fill_random(uint32_t type, uint8_t *dst, int64_t n_cols, int64_t n_rows, float scale) {
    int64_t bs = k2_type_block_size(type), bb = k2_type_block_bytes(type);
    int64_t nblocks = n_cols / bs * n_rows;
    if (type == K2_TYPE_F32 || type == K2_TYPE_F16 || type == K2_TYPE_BF16) {
        for (int64_t i = 0; i < n_cols * n_rows; i++) {
            float v = rng_normal() * scale;
            if (type == K2_TYPE_F32) memcpy(dst + 4 * i, &v, 4);
            else if (type == K2_TYPE_F16) put_f16(dst + 2 * i, v);
            else { uint16_t h = f32_to_bf16(v); memcpy(dst + 2 * i, &h, 2); }
        }
        return true;
    }
    for (int64_t b = 0; b < nblocks; b++) {
        uint8_t *p = dst + b * bb;
        for (int64_t i = 0; i < bb; i += 8) {
            uint64_t r = rng_u64();
            memcpy(p + i, &r, (size_t)(bb - i < 8 ? bb - i : 8));
        }
        /* Scale fields (spec/quant-types.md §3): value magnitudes are roughly d * (code range). */
        switch (type) {
        case K2_TYPE_Q4_0: case K2_TYPE_Q5_0: case K2_TYPE_IQ4_NL: put_f16(p, scale / 5.0f); break;
        case K2_TYPE_Q8_0: put_f16(p, scale / 70.0f); break;
        case K2_TYPE_Q4_1: case K2_TYPE_Q5_1: put_f16(p, scale / 5.0f); put_f16(p + 2, -scale); break;
        case K2_TYPE_Q2_K: put_f16(p + 80, scale / 12.0f); put_f16(p + 82, scale / 12.0f); break;
        case K2_TYPE_Q3_K: put_f16(p + 108, scale / 60.0f); break;
        case K2_TYPE_Q4_K: case K2_TYPE_Q5_K: put_f16(p, scale / 150.0f); put_f16(p + 2, scale / 150.0f); break;
        case K2_TYPE_Q6_K: put_f16(p + 208, scale / 600.0f); break;
        case K2_TYPE_IQ4_XS: case K2_TYPE_IQ2_XXS: case K2_TYPE_IQ2_XS: case K2_TYPE_IQ2_S:
        case K2_TYPE_IQ3_XXS: case K2_TYPE_IQ3_S: case K2_TYPE_IQ1_S:
            put_f16(p, scale / 40.0f);
            break;
        case K2_TYPE_IQ1_M: {
            /* The super-scale is an fp16 spread over the top nibbles of four 16-bit words at 48. */
            uint16_t h = f32_to_f16(scale / 40.0f), w[4];
            memcpy(w, p + 48, 8);
            for (int k = 0; k < 4; k++) w[k] = (uint16_t)((w[k] & 0x0fff) | (((h >> (4 * k)) & 0xf) << 12));
            memcpy(p + 48, w, 8);
            break;
        }
        default: return false;
        }
    }
    return true;
}

/* ---- the demo vocabulary: byte-level BPE trained on an embedded text ---- */
static const char *TRAINING_TEXT =
    "k2 is a small engine that runs Kimi K2 on your own machine. It reads the model from GGUF files, "
    "maps the weights into memory without copying them, and streams the answer token by token. "
    "The model is a mixture of experts: every token is routed to a few experts chosen by a router, "
    "and a shared expert sees every token. Attention uses a compressed latent cache, so long "
    "conversations fit in memory. Hello! How are you today? I am fine, thank you. What is the "
    "weather like? The sun is shining and the sky is blue. Let us write some code together: "
    "int main(void) { return 0; } The quick brown fox jumps over the lazy dog. 0123456789 "
    "Numbers, names and places: Paris, Tokyo, Nairobi, Lima. Bonjour, comment allez-vous? "
    "Guten Tag! ¿Qué tal? Привет, как дела? 你好，世界。こんにちは。안녕하세요. "
    "This is the end of the training text for the demo vocabulary of k2.";

static const char *KIMI_SPECIALS[21] = {
    "[BOS]", "[EOS]", "<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|reserved_token_0|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|reserved_token_1|>", "[EOT]", "<|im_system|>",
    "<|reserved_token_2|>", "<|reserved_token_3|>", "<|reserved_token_4|>", "<|tool_calls_section_begin|>",
    "<|tool_calls_section_end|>", "<|tool_call_begin|>", "<|tool_call_argument_begin|>", "<|tool_call_end|>",
    "<|reserved_token_5|>", "<|im_middle|>"};

/* GPT-2's byte-to-unicode mapping, as UTF-8 strings. */
static void byte_token(int b, char out[8]) {
    int cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xc0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3f)); out[2] = 0; }
}

typedef struct vocab {
    char **tokens;
    int32_t *types;
    char **merges;
    uint32_t n_tokens, n_merges;
} vocab;

static void vocab_free(vocab *v) {
    for (uint32_t i = 0; i < v->n_tokens; i++) free(v->tokens[i]);
    for (uint32_t i = 0; i < v->n_merges; i++) free(v->merges[i]);
    free(v->tokens);
    free(v->types);
    free(v->merges);
}

/* Trains up to max_merges merges on the words of TRAINING_TEXT (a word = optional
 * leading space + non-space bytes), most frequent pair first, ties by first seen. */
static void build_vocab(vocab *v, uint32_t n_vocab) {
    uint32_t n_special = 21, max_merges = n_vocab - 256 - n_special;
    v->tokens = calloc(n_vocab, sizeof *v->tokens);
    v->types = calloc(n_vocab, sizeof *v->types);
    v->merges = calloc(4 * max_merges + 1, sizeof *v->merges);
    for (int b = 0; b < 256; b++) {
        char t[8];
        byte_token(b, t);
        v->tokens[b] = strdup(t);
        v->types[b] = 1;
    }
    v->n_tokens = 256;
    /* token id sequences per word */
    size_t tl = strlen(TRAINING_TEXT);
    int32_t *seq = malloc(tl * sizeof *seq);
    size_t *word_start = malloc((tl + 1) * sizeof *word_start);
    size_t n = 0, nw = 0;
    for (size_t i = 0; i < tl; i++) {
        unsigned char c = (unsigned char)TRAINING_TEXT[i];
        if (i == 0 || c == ' ') word_start[nw++] = n;
        seq[n++] = c;
    }
    word_start[nw] = n;
    int32_t *pa = malloc(n * sizeof *pa), *pb = malloc(n * sizeof *pb);
    int *cnt = malloc(n * sizeof *cnt);
    while (v->n_tokens < 256 + max_merges && v->n_merges < 4 * max_merges) {
        /* count adjacent pairs within words */
        size_t np = 0;
        for (size_t w = 0; w < nw; w++) {
            for (size_t i = word_start[w]; i + 1 < word_start[w + 1]; i++) {
                if (seq[i] < 0 || seq[i + 1] < 0) continue;
                size_t j = i + 1;
                size_t k;
                for (k = 0; k < np; k++) if (pa[k] == seq[i] && pb[k] == seq[j]) break;
                if (k == np) { pa[np] = seq[i]; pb[np] = seq[j]; cnt[np] = 0; np++; }
                cnt[k]++;
            }
        }
        size_t best = np;
        for (size_t k = 0; k < np; k++) if (cnt[k] >= 2 && (best == np || cnt[k] > cnt[best])) best = k;
        if (best == np) break;
        int32_t a = pa[best], b = pb[best], id = (int32_t)v->n_tokens;
        size_t la = strlen(v->tokens[a]), lb = strlen(v->tokens[b]);
        char *t = malloc(la + lb + 1);
        memcpy(t, v->tokens[a], la);
        memcpy(t + la, v->tokens[b], lb + 1);
        /* Two merges may spell the same token ("a"+"bc", "ab"+"c"): reuse its id. */
        for (uint32_t k = 256; k < v->n_tokens; k++)
            if (strcmp(v->tokens[k], t) == 0) { id = (int32_t)k; break; }
        if (id == (int32_t)v->n_tokens) {
            v->tokens[v->n_tokens] = t;
            v->types[v->n_tokens++] = 1;
        } else {
            free(t);
        }
        char *m = malloc(la + lb + 2);
        memcpy(m, v->tokens[a], la);
        m[la] = ' ';
        memcpy(m + la + 1, v->tokens[b], lb + 1);
        v->merges[v->n_merges++] = m;
        /* apply the merge; merged-away slots are marked -1 and skipped */
        for (size_t w = 0; w < nw; w++) {
            size_t out = word_start[w];
            for (size_t i = word_start[w]; i < word_start[w + 1]; i++) {
                if (seq[i] < 0) continue;
                size_t j = i + 1;
                while (j < word_start[w + 1] && seq[j] < 0) j++;
                if (seq[i] == a && j < word_start[w + 1] && seq[j] == b) { seq[out++] = id; seq[j] = -1; i = j; }
                else seq[out++] = seq[i];
            }
            for (size_t i = out; i < word_start[w + 1]; i++) seq[i] = -1;
        }
    }
    free(seq); free(word_start); free(pa); free(pb); free(cnt);
    for (uint32_t r = 0; v->n_tokens < n_vocab - n_special; r++) {
        char buf[64];
        snprintf(buf, sizeof buf, "<|reserved_fill_%u|>", r);
        v->tokens[v->n_tokens] = strdup(buf);
        v->types[v->n_tokens++] = 3;
    }
    for (uint32_t i = 0; i < n_special; i++) {
        v->tokens[v->n_tokens] = strdup(KIMI_SPECIALS[i]);
        v->types[v->n_tokens++] = 3;
    }
}

/* ---- tensors ---- */
typedef struct mk_ctx {
    k2_gguf_writer *w;
    void **buffers;
    size_t n_buffers, cap_buffers;
    k2_error *err;
    bool failed;
} mk_ctx;

static void add(mk_ctx *c, const char *name, uint32_t type, int64_t ne0, int64_t ne1, int64_t ne2, float scale) {
    if (c->failed) return;
    int64_t ne[3] = {ne0, ne1, ne2};
    uint32_t nd = ne2 > 1 ? 3 : ne1 > 1 ? 2 : 1;
    if (k2_type_row_bytes(type, ne0) < 0) type = ne0 % 32 == 0 ? K2_TYPE_Q8_0 : K2_TYPE_F32;  /* block does not fit: fall back */
    int64_t bytes = k2_type_row_bytes(type, ne0) * ne1 * ne2;
    uint8_t *buf = malloc((size_t)bytes);
    if (!buf) { cli_set_error(c->err, K2_ENOMEM, "out of memory for tensor %s", name); c->failed = true; return; }
    if (c->n_buffers == c->cap_buffers) {
        c->cap_buffers = c->cap_buffers ? c->cap_buffers * 2 : 64;
        c->buffers = realloc(c->buffers, c->cap_buffers * sizeof *c->buffers);
    }
    c->buffers[c->n_buffers++] = buf;
    if (strstr(name, "norm")) {
        for (int64_t i = 0; i < ne0 * ne1 * ne2; i++) { float v = 1.0f + 0.1f * rng_normal(); memcpy(buf + 4 * i, &v, 4); }
    } else if (!fill_random(type, buf, ne0, ne1 * ne2, scale)) {
        cli_set_error(c->err, K2_EINVAL, "k2 mkmodel cannot make random blocks of type %s", k2_type_name(type));
        c->failed = true;
        return;
    }
    if (k2_gguf_writer_add_tensor(c->w, name, type, nd, ne, buf, c->err) != K2_OK) c->failed = true;
}

static int parse_type(const char *s, uint32_t *big, uint32_t *down, uint32_t *attn) {
    if (strcmp(s, "q4_k_m") == 0) { *big = K2_TYPE_Q4_K; *down = K2_TYPE_Q6_K; *attn = K2_TYPE_Q4_K; return 0; }
    if (strcmp(s, "q2_k_mix") == 0) { *big = K2_TYPE_Q2_K; *down = K2_TYPE_Q3_K; *attn = K2_TYPE_Q4_K; return 0; }
    if (strcmp(s, "iq_mix") == 0) { *big = K2_TYPE_IQ2_XXS; *down = K2_TYPE_IQ3_XXS; *attn = K2_TYPE_IQ4_XS; return 0; }
    for (uint32_t t = 0; t < K2_TYPE_COUNT; t++) {
        const char *n = k2_type_name(t);
        if (n && strcasecmp(n, s) == 0) { *big = *down = *attn = t; return 0; }
    }
    return -1;
}

int cmd_mkmodel(int argc, char **argv) {
    const char *out = NULL, *type_name = "q4_k_m", *name = NULL;
    mk_params p = PRESET_TINY;
    bool slice = false;
    long layers = -1, experts = -1, used = -1, vocab_n = -1;
    unsigned long long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) { fputs(MKMODEL_HELP, stdout); return 0; }
        if (i + 1 >= argc) return cli_usage_error("mkmodel", "option '%s' needs a value or is unknown", a);
        const char *v = argv[++i];
        if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0) out = v;
        else if (strcmp(a, "--preset") == 0) {
            if (strcmp(v, "tiny") == 0) { p = PRESET_TINY; slice = false; }
            else if (strcmp(v, "k2-slice") == 0) { p = PRESET_SLICE; slice = true; }
            else return cli_usage_error("mkmodel", "unknown preset '%s' (tiny or k2-slice)", v);
        } else if (strcmp(a, "--type") == 0) type_name = v;
        else if (strcmp(a, "--layers") == 0) layers = strtol(v, NULL, 10);
        else if (strcmp(a, "--experts") == 0) experts = strtol(v, NULL, 10);
        else if (strcmp(a, "--experts-used") == 0) used = strtol(v, NULL, 10);
        else if (strcmp(a, "--vocab") == 0) vocab_n = strtol(v, NULL, 10);
        else if (strcmp(a, "--seed") == 0) seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--name") == 0) name = v;
        else return cli_usage_error("mkmodel", "unknown option '%s'", a);
    }
    if (!out) return cli_usage_error("mkmodel", "missing --out FILE");
    if (layers >= 0) { if (layers < 1 || layers > 256) return cli_usage_error("mkmodel", "--layers must be 1..256"); p.layers = (uint32_t)layers; }
    if (experts >= 0) { if (experts < 1 || experts > 512) return cli_usage_error("mkmodel", "--experts must be 1..512"); p.experts = (uint32_t)experts; }
    if (used >= 0) p.experts_used = (uint32_t)used;
    if (p.experts_used < 1 || p.experts_used > p.experts) return cli_usage_error("mkmodel", "--experts-used must be 1..experts");
    if (vocab_n >= 0) { if (vocab_n < 512 || vocab_n > 1000000) return cli_usage_error("mkmodel", "--vocab must be 512..1000000"); p.vocab = (uint32_t)vocab_n; }
    if (p.dense_layers > p.layers) p.dense_layers = p.layers;
    uint32_t t_big, t_down, t_attn;
    if (parse_type(type_name, &t_big, &t_down, &t_attn) != 0) return cli_usage_error("mkmodel", "unknown --type '%s'", type_name);
    rng_state = seed * 0x9E3779B97F4A7C15ull + 1;

    k2_error err;
    k2_error_clear(&err);
    mk_ctx c = {k2_gguf_writer_new(), NULL, 0, 0, &err, false};
    k2_gguf_writer *w = c.w;
    k2_gguf_writer_set_str(w, "general.architecture", "deepseek2");
    k2_gguf_writer_set_str(w, "general.name", name ? name : slice ? "k2-slice" : "k2-demo");
    k2_gguf_writer_set_u32(w, "deepseek2.block_count", p.layers);
    k2_gguf_writer_set_u32(w, "deepseek2.context_length", p.ctx);
    k2_gguf_writer_set_u32(w, "deepseek2.embedding_length", p.d);
    k2_gguf_writer_set_u32(w, "deepseek2.feed_forward_length", p.ffn_dense);
    k2_gguf_writer_set_u32(w, "deepseek2.attention.head_count", p.heads);
    k2_gguf_writer_set_u32(w, "deepseek2.attention.head_count_kv", 1);
    k2_gguf_writer_set_f32(w, "deepseek2.rope.freq_base", 50000.0f);
    k2_gguf_writer_set_f32(w, "deepseek2.attention.layer_norm_rms_epsilon", 1e-6f);
    k2_gguf_writer_set_u32(w, "deepseek2.expert_count", p.experts);
    k2_gguf_writer_set_u32(w, "deepseek2.expert_used_count", p.experts_used);
    k2_gguf_writer_set_u32(w, "deepseek2.expert_gating_func", 2);
    k2_gguf_writer_set_u32(w, "deepseek2.leading_dense_block_count", p.dense_layers);
    k2_gguf_writer_set_u32(w, "deepseek2.vocab_size", p.vocab);
    k2_gguf_writer_set_u32(w, "deepseek2.attention.q_lora_rank", p.q_lora);
    k2_gguf_writer_set_u32(w, "deepseek2.attention.kv_lora_rank", p.kv_lora);
    k2_gguf_writer_set_u32(w, "deepseek2.attention.key_length", p.kv_lora + p.d_rope);
    k2_gguf_writer_set_u32(w, "deepseek2.attention.value_length", p.kv_lora);
    k2_gguf_writer_set_u32(w, "deepseek2.attention.key_length_mla", p.d_nope + p.d_rope);
    k2_gguf_writer_set_u32(w, "deepseek2.attention.value_length_mla", p.d_v);
    k2_gguf_writer_set_u32(w, "deepseek2.expert_feed_forward_length", p.ffn_expert);
    k2_gguf_writer_set_u32(w, "deepseek2.expert_shared_count", p.shared);
    k2_gguf_writer_set_u32(w, "deepseek2.expert_group_count", 1);
    k2_gguf_writer_set_u32(w, "deepseek2.expert_group_used_count", 1);
    k2_gguf_writer_set_f32(w, "deepseek2.expert_weights_scale", 2.827f);
    k2_gguf_writer_set_bool(w, "deepseek2.expert_weights_norm", true);
    k2_gguf_writer_set_u32(w, "deepseek2.rope.dimension_count", p.d_rope);
    k2_gguf_writer_set_str(w, "deepseek2.rope.scaling.type", "yarn");
    k2_gguf_writer_set_f32(w, "deepseek2.rope.scaling.factor", 32.0f);
    k2_gguf_writer_set_u32(w, "deepseek2.rope.scaling.original_context_length", 4096);
    k2_gguf_writer_set_f32(w, "deepseek2.rope.scaling.yarn_beta_fast", 1.0f);
    k2_gguf_writer_set_f32(w, "deepseek2.rope.scaling.yarn_beta_slow", 1.0f);
    k2_gguf_writer_set_f32(w, "deepseek2.rope.scaling.yarn_log_multiplier", 0.1f);

    vocab voc = {0};
    build_vocab(&voc, p.vocab);
    k2_gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    k2_gguf_writer_set_str(w, "tokenizer.ggml.pre", "kimi-k2");
    k2_gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)voc.tokens, voc.n_tokens);
    k2_gguf_writer_set_array(w, "tokenizer.ggml.token_type", K2_GGUF_INT32, voc.types, voc.n_tokens);
    k2_gguf_writer_set_str_array(w, "tokenizer.ggml.merges", (const char *const *)voc.merges, voc.n_merges);
    uint32_t first_special = voc.n_tokens - 21;
    k2_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", first_special + 0);
    k2_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", first_special + 2);
    k2_gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);

    uint32_t d = p.d, H = p.heads, dk = p.d_nope + p.d_rope;
    float sd = 1.0f / sqrtf((float)d);
    add(&c, "token_embd.weight", t_attn, d, p.vocab, 1, 1.0f);
    add(&c, "output_norm.weight", K2_TYPE_F32, d, 1, 1, 0);
    add(&c, "output.weight", t_down, d, p.vocab, 1, sd);
    for (uint32_t l = 0; l < p.layers; l++) {
        char n[64];
#define T(suffix) (snprintf(n, sizeof n, "blk.%u." suffix, l), n)
        add(&c, T("attn_norm.weight"), K2_TYPE_F32, d, 1, 1, 0);
        add(&c, T("attn_q_a.weight"), t_attn, d, p.q_lora, 1, sd);
        add(&c, T("attn_q_a_norm.weight"), K2_TYPE_F32, p.q_lora, 1, 1, 0);
        add(&c, T("attn_q_b.weight"), t_attn, p.q_lora, H * dk, 1, 1.0f / sqrtf((float)p.q_lora));
        add(&c, T("attn_kv_a_mqa.weight"), t_attn, d, p.kv_lora + p.d_rope, 1, sd);
        add(&c, T("attn_kv_a_norm.weight"), K2_TYPE_F32, p.kv_lora, 1, 1, 0);
        add(&c, T("attn_k_b.weight"), t_attn, p.d_nope, p.kv_lora, H, 1.0f / sqrtf((float)p.d_nope));
        add(&c, T("attn_v_b.weight"), t_attn, p.kv_lora, p.d_v, H, 1.0f / sqrtf((float)p.kv_lora));
        add(&c, T("attn_output.weight"), t_attn, H * p.d_v, d, 1, 1.0f / sqrtf((float)(H * p.d_v)));
        add(&c, T("ffn_norm.weight"), K2_TYPE_F32, d, 1, 1, 0);
        if (l < p.dense_layers) {
            add(&c, T("ffn_gate.weight"), t_big, d, p.ffn_dense, 1, sd);
            add(&c, T("ffn_up.weight"), t_big, d, p.ffn_dense, 1, sd);
            add(&c, T("ffn_down.weight"), t_down, p.ffn_dense, d, 1, 1.0f / sqrtf((float)p.ffn_dense));
        } else {
            add(&c, T("ffn_gate_inp.weight"), K2_TYPE_F32, d, p.experts, 1, sd);
            add(&c, T("exp_probs_b.bias"), K2_TYPE_F32, p.experts, 1, 1, 0.01f);
            add(&c, T("ffn_gate_exps.weight"), t_big, d, p.ffn_expert, p.experts, sd);
            add(&c, T("ffn_up_exps.weight"), t_big, d, p.ffn_expert, p.experts, sd);
            add(&c, T("ffn_down_exps.weight"), t_down, p.ffn_expert, d, p.experts, 1.0f / sqrtf((float)p.ffn_expert));
            add(&c, T("ffn_gate_shexp.weight"), t_big, d, p.shared * p.ffn_expert, 1, sd);
            add(&c, T("ffn_up_shexp.weight"), t_big, d, p.shared * p.ffn_expert, 1, sd);
            add(&c, T("ffn_down_shexp.weight"), t_down, p.shared * p.ffn_expert, d, 1, 1.0f / sqrtf((float)(p.shared * p.ffn_expert)));
        }
#undef T
    }
    int rc = 0;
    if (c.failed || k2_gguf_writer_write(w, out, &err) != K2_OK) rc = cli_fail("mkmodel", &err);
    for (size_t i = 0; i < c.n_buffers; i++) free(c.buffers[i]);
    free(c.buffers);
    vocab_free(&voc);
    k2_gguf_writer_free(w);
    return rc;
}
