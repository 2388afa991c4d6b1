/* Loading a deepseek2 model: metadata -> hyperparameters (spec §2), tensors bound in place with
 * their shapes checked (spec §3), the YaRN frequencies and softmax scale (spec §4.3, §4.4). */
#include "model/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ARCH "deepseek2"

typedef struct loader {
    k2_model *m;
    const char *file;
    k2_error *err;
    int64_t n_bound;     /* tensors bound, to report unused ones (§2.4) */
} loader;

/* ---- metadata ---- */

static k2_status get_u32(loader *ld, const char *key, bool required, uint32_t def, uint32_t *out) {
    char full[256];
    snprintf(full, sizeof full, ARCH ".%s", key);
    k2_error e;
    k2_status s = k2_gguf_get_u32(ld->m->gguf, full, out, &e);
    if (s == K2_ENOTFOUND && !required) {
        *out = def;
        return K2_OK;
    }
    if (s == K2_ENOTFOUND)
        return k2_err(ld->err, K2_EFORMAT, "%s: required metadata key %s is missing", ld->file, full);
    if (s != K2_OK)
        return k2_err(ld->err, s, "%s: metadata key %s: %s", ld->file, full, e.message);
    return K2_OK;
}

static k2_status get_f32(loader *ld, const char *key, float def, float *out, bool *present) {
    char full[256];
    snprintf(full, sizeof full, ARCH ".%s", key);
    k2_error e;
    k2_status s = k2_gguf_get_f32(ld->m->gguf, full, out, &e);
    if (present) *present = s == K2_OK;
    if (s == K2_ENOTFOUND) {
        *out = def;
        return K2_OK;
    }
    if (s != K2_OK) return k2_err(ld->err, s, "%s: metadata key %s: %s", ld->file, full, e.message);
    return K2_OK;
}

static k2_status get_bool(loader *ld, const char *key, bool def, bool *out) {
    char full[256];
    snprintf(full, sizeof full, ARCH ".%s", key);
    k2_error e;
    k2_status s = k2_gguf_get_bool(ld->m->gguf, full, out, &e);
    if (s == K2_ENOTFOUND) {
        *out = def;
        return K2_OK;
    }
    if (s != K2_OK) return k2_err(ld->err, s, "%s: metadata key %s: %s", ld->file, full, e.message);
    return K2_OK;
}

/* ---- tensors ---- */

/* Binds tensor `name` (printf-style) as a matrix with the expected {ne0, ne1, ne2}
 * (ne2 = 1 for 2-D, ne1 = ne2 = 1 for 1-D). Absent and !required: w->data = NULL. */
static k2_status bind(loader *ld, model_weight *w, bool required, int64_t ne0, int64_t ne1,
                      int64_t ne2, const char *fmt, ...) K2_PRINTF(7, 8);
static k2_status bind(loader *ld, model_weight *w, bool required, int64_t ne0, int64_t ne1,
                      int64_t ne2, const char *fmt, ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    memset(w, 0, sizeof *w);
    const k2_gguf_tensor *t = k2_gguf_find_tensor(ld->m->gguf, name);
    if (!t) {
        if (!required) return K2_OK;
        return k2_err(ld->err, K2_EFORMAT, "%s: required tensor %s is missing", ld->file, name);
    }
    if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != ne2 || t->ne[3] != 1)
        return k2_err(ld->err, K2_EFORMAT,
                      "%s: tensor %s has shape {%lld, %lld, %lld, %lld}, expected {%lld, %lld, %lld}",
                      ld->file, name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                      (long long)t->ne[3], (long long)ne0, (long long)ne1, (long long)ne2);
    int64_t bs = k2_type_block_size(t->type);
    if (bs <= 0 || ne0 % bs != 0)
        return k2_err(ld->err, K2_EFORMAT, "%s: tensor %s: type %s cannot hold rows of %lld elements",
                      ld->file, name, k2_type_name(t->type) ? k2_type_name(t->type) : "?", (long long)ne0);
    if (!model_type_supported(t->type))
        return k2_err(ld->err, K2_EUNSUPPORTED, "%s: tensor %s has type %s, which k2 cannot compute with",
                      ld->file, name, k2_type_name(t->type) ? k2_type_name(t->type) : "?");
    w->name = t->name;
    w->type = t->type;
    w->cols = ne0;
    w->rows = ne1;
    w->slices = ne2;
    w->row_bytes = (size_t)k2_type_row_bytes(t->type, ne0);
    w->slice_bytes = w->row_bytes * (size_t)ne1;
    if ((uint64_t)w->slice_bytes * (uint64_t)ne2 > t->nbytes)
        return k2_err(ld->err, K2_EFORMAT, "%s: tensor %s is truncated", ld->file, name);
    w->data = t->data;
    if (ne0 > ld->m->max_cols) ld->m->max_cols = ne0;
    ld->n_bound++;
    return K2_OK;
}

/* A 1-D F32 vector of n elements (norm gains, biases). */
static k2_status bind_vec(loader *ld, const float **out, bool required, int64_t n, const char *fmt,
                          ...) K2_PRINTF(5, 6);
static k2_status bind_vec(loader *ld, const float **out, bool required, int64_t n, const char *fmt,
                          ...) {
    char name[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    *out = NULL;
    const k2_gguf_tensor *t = k2_gguf_find_tensor(ld->m->gguf, name);
    if (!t) {
        if (!required) return K2_OK;
        return k2_err(ld->err, K2_EFORMAT, "%s: required tensor %s is missing", ld->file, name);
    }
    if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
        return k2_err(ld->err, K2_EFORMAT, "%s: tensor %s has shape {%lld, %lld}, expected {%lld}",
                      ld->file, name, (long long)t->ne[0], (long long)t->ne[1], (long long)n);
    if (t->type != K2_TYPE_F32)
        return k2_err(ld->err, K2_EFORMAT, "%s: tensor %s has type %s, expected F32", ld->file, name,
                      k2_type_name(t->type) ? k2_type_name(t->type) : "?");
    if (((uintptr_t)t->data & 3) != 0)
        return k2_err(ld->err, K2_EFORMAT, "%s: tensor %s is not 4-byte aligned", ld->file, name);
    *out = t->data;
    ld->n_bound++;
    return K2_OK;
}

/* §4.3.2: omega_m = theta_m (gamma_m + (1 - gamma_m) / s), ext_factor = 1. */
void model_yarn_freqs(double base, int d_r, double s, double L0, double beta_fast, double beta_slow,
                      double *omega) {
    double dr = d_r;
    double corr_f = dr * log(L0 / (2.0 * M_PI * beta_fast)) / (2.0 * log(base));
    double corr_s = dr * log(L0 / (2.0 * M_PI * beta_slow)) / (2.0 * log(base));
    double lo = K2_MAX(0.0, floor(corr_f));
    double hi = K2_MIN(dr - 1, ceil(corr_s));
    for (int i = 0; i < d_r / 2; i++) {
        double ramp = (i - lo) / K2_MAX(hi - lo, 0.001);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        double gamma = 1.0 - ramp, theta = pow(base, -2.0 * i / dr);
        omega[i] = theta * (gamma + (1.0 - gamma) / s);
    }
}

#define TRY(expr) do { k2_status s_ = (expr); if (s_ != K2_OK) return s_; } while (0)

/* Legacy files (spec §2.3 item 1, §3.2): split attn_kv_b {d_c, H(d_n+d_v)} into f32
 * k_b {d_n, d_c, H} and v_b {d_c, d_v, H} so the absorbed attention runs on them too. */
static k2_status split_kv_b(loader *ld, model_layer *ly, const model_weight *kvb, float *kb, float *vb) {
    const k2_model_hparams *hp = &ld->m->hp;
    int64_t H = hp->n_head, d_c = hp->kv_lora_rank, d_n = ld->m->d_n, d_v = hp->head_dim_v;
    float *row = malloc(sizeof(float) * (size_t)d_c);
    if (!row) return k2_err(ld->err, K2_ENOMEM, "%s: out of memory splitting %s", ld->file, kvb->name);
    for (int64_t i = 0; i < H; i++) {
        for (int64_t j = 0; j < d_n + d_v; j++) {
            const uint8_t *src = kvb->data + (size_t)(i * (d_n + d_v) + j) * kvb->row_bytes;
            k2_error e;
            if (k2_dequantize(kvb->type, src, row, d_c, &e) != K2_OK) {
                free(row);
                return k2_err(ld->err, e.status, "%s: tensor %s: %s", ld->file, kvb->name, e.message);
            }
            if (j < d_n) {
                for (int64_t c = 0; c < d_c; c++) kb[i * d_c * d_n + c * d_n + j] = row[c];
            } else {
                memcpy(vb + i * d_v * d_c + (j - d_n) * d_c, row, sizeof(float) * (size_t)d_c);
            }
        }
    }
    free(row);
    model_weight k = {kvb->name, K2_TYPE_F32, d_n, d_c, H, sizeof(float) * (size_t)d_n,
                      sizeof(float) * (size_t)(d_n * d_c), (const uint8_t *)kb};
    model_weight v = {kvb->name, K2_TYPE_F32, d_c, d_v, H, sizeof(float) * (size_t)d_c,
                      sizeof(float) * (size_t)(d_c * d_v), (const uint8_t *)vb};
    ly->k_b = k;
    ly->v_b = v;
    return K2_OK;
}

static k2_status load_hparams(loader *ld, const k2_model_options *opt) {
    k2_model *m = ld->m;
    k2_model_hparams *hp = &m->hp;
    k2_str arch = {0};
    if (k2_gguf_get_str(m->gguf, "general.architecture", &arch, NULL) != K2_OK)
        return k2_err(ld->err, K2_EFORMAT, "%s: general.architecture is missing", ld->file);
    if (arch.len != strlen(ARCH) || memcmp(arch.ptr, ARCH, arch.len) != 0)
        return k2_err(ld->err, K2_EUNSUPPORTED,
                      "%s: architecture '%.*s' is not supported (k2 runs only '" ARCH "' models)",
                      ld->file, (int)K2_MIN(arch.len, 64), arch.ptr);

    uint32_t block_count, nextn, head_kv, key_len, val_len, key_mla, val_mla;
    TRY(get_u32(ld, "context_length", true, 0, &hp->n_ctx_train));
    TRY(get_u32(ld, "embedding_length", true, 0, &hp->n_embd));
    TRY(get_u32(ld, "block_count", true, 0, &block_count));
    TRY(get_u32(ld, "nextn_predict_layers", false, 0, &nextn));
    TRY(get_u32(ld, "feed_forward_length", false, 0, &hp->n_ff));
    TRY(get_u32(ld, "attention.head_count", true, 0, &hp->n_head));
    TRY(get_u32(ld, "attention.head_count_kv", false, hp->n_head, &head_kv));
    TRY(get_u32(ld, "attention.key_length_mla", false, 0, &key_mla));
    TRY(get_u32(ld, "attention.value_length_mla", false, 0, &val_mla));
    TRY(get_u32(ld, "attention.key_length", false, 0, &key_len));
    TRY(get_u32(ld, "attention.value_length", false, 0, &val_len));
    TRY(get_u32(ld, "attention.q_lora_rank", false, 0, &hp->q_lora_rank));
    TRY(get_u32(ld, "attention.kv_lora_rank", true, 0, &hp->kv_lora_rank));
    TRY(get_u32(ld, "rope.dimension_count", true, 0, &hp->rope_dim));
    TRY(get_u32(ld, "leading_dense_block_count", false, 0, &hp->n_layer_dense));
    TRY(get_u32(ld, "expert_count", false, 0, &hp->n_expert));
    TRY(get_u32(ld, "expert_used_count", false, 0, &hp->n_expert_used));
    TRY(get_u32(ld, "expert_shared_count", false, 0, &hp->n_expert_shared));
    TRY(get_u32(ld, "expert_feed_forward_length", false, 0, &hp->n_ff_exp));
    TRY(get_u32(ld, "expert_group_count", false, 0, &hp->n_expert_groups));
    TRY(get_u32(ld, "expert_group_used_count", false, 0, &hp->n_expert_groups_used));
    TRY(get_u32(ld, "expert_gating_func", false, 0, &hp->gating_func));
    TRY(get_bool(ld, "expert_weights_norm", false, &hp->expert_weights_norm));
    TRY(get_f32(ld, "expert_weights_scale", 0.0f, &hp->expert_weights_scale, NULL));
    bool have_eps;
    TRY(get_f32(ld, "attention.layer_norm_rms_epsilon", 0.0f, &hp->rms_eps, &have_eps));
    if (!have_eps)
        return k2_err(ld->err, K2_EFORMAT, "%s: required metadata key " ARCH
                      ".attention.layer_norm_rms_epsilon is missing", ld->file);
    TRY(get_f32(ld, "rope.freq_base", 10000.0f, &hp->rope_freq_base, NULL));

    if (nextn >= block_count)
        return k2_err(ld->err, K2_EFORMAT, "%s: nextn_predict_layers (%u) >= block_count (%u)",
                      ld->file, nextn, block_count);
    hp->n_layer = block_count - nextn;
    if (hp->n_layer_dense > hp->n_layer)
        return k2_err(ld->err, K2_EFORMAT, "%s: leading_dense_block_count %u exceeds the %u blocks",
                      ld->file, hp->n_layer_dense, hp->n_layer);
    if (hp->n_embd == 0 || hp->n_head == 0 || hp->kv_lora_rank == 0)
        return k2_err(ld->err, K2_EFORMAT, "%s: embedding_length, head_count and kv_lora_rank must be > 0",
                      ld->file);

    /* §2.3 item 1: MLA format iff both *_mla keys present and non-zero. */
    bool is_mla = key_mla > 0 && val_mla > 0;
    hp->head_dim_k = is_mla ? key_mla : key_len;
    hp->head_dim_v = is_mla ? val_mla : val_len;
    if (hp->rope_dim == 0 || hp->rope_dim % 2 != 0)
        return k2_err(ld->err, K2_EFORMAT, "%s: rope.dimension_count %u must be even and > 0",
                      ld->file, hp->rope_dim);
    if (hp->head_dim_k <= hp->rope_dim || hp->head_dim_v == 0)
        return k2_err(ld->err, K2_EFORMAT, "%s: key length %u must exceed rope.dimension_count %u "
                      "(and value length %u must be > 0)", ld->file, hp->head_dim_k, hp->rope_dim,
                      hp->head_dim_v);
    if (is_mla && key_len && key_len != hp->kv_lora_rank + hp->rope_dim)
        return k2_err(ld->err, K2_EFORMAT, "%s: attention.key_length %u != kv_lora_rank + rope dims (%u)",
                      ld->file, key_len, hp->kv_lora_rank + hp->rope_dim);
    (void)head_kv;
    m->d_n = hp->head_dim_k - hp->rope_dim;

    /* vocabulary: the token list length (§1.2), else the embedding rows */
    const k2_gguf_value *toks = NULL;
    const k2_gguf_tensor *te = k2_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) return k2_err(ld->err, K2_EFORMAT, "%s: required tensor token_embd.weight is missing", ld->file);
    if (k2_gguf_get_array(m->gguf, "tokenizer.ggml.tokens", K2_GGUF_STRING, &toks, NULL) == K2_OK)
        hp->n_vocab = (uint32_t)toks->v.arr.n;
    else
        hp->n_vocab = (uint32_t)te->ne[1];
    if (hp->n_vocab == 0) return k2_err(ld->err, K2_EFORMAT, "%s: empty vocabulary", ld->file);

    /* MoE validation (§2.4) */
    if (hp->n_layer > hp->n_layer_dense) {
        if (hp->n_expert == 0 || hp->n_expert_used == 0 || hp->n_expert_used > hp->n_expert)
            return k2_err(ld->err, K2_EFORMAT, "%s: MoE blocks need 0 < expert_used_count (%u) <= "
                          "expert_count (%u)", ld->file, hp->n_expert_used, hp->n_expert);
        if (hp->n_ff_exp == 0)
            return k2_err(ld->err, K2_EFORMAT, "%s: expert_feed_forward_length is missing or 0", ld->file);
        if (hp->n_expert_groups > 512)
            return k2_err(ld->err, K2_EUNSUPPORTED, "%s: expert_group_count %u exceeds k2's limit of 512",
                          ld->file, hp->n_expert_groups);
        if (hp->n_expert_groups > 1) {
            if (hp->n_expert % hp->n_expert_groups != 0 || hp->n_expert_groups_used == 0 ||
                hp->n_expert_groups_used >= hp->n_expert_groups)
                return k2_err(ld->err, K2_EFORMAT, "%s: expert groups: expert_count %u must be a multiple "
                              "of expert_group_count %u and 0 < expert_group_used_count %u < it",
                              ld->file, hp->n_expert, hp->n_expert_groups, hp->n_expert_groups_used);
            if (hp->n_expert / hp->n_expert_groups < 2)
                return k2_err(ld->err, K2_EFORMAT, "%s: expert groups need at least 2 experts each", ld->file);
            if (hp->n_expert_groups_used * (hp->n_expert / hp->n_expert_groups) < hp->n_expert_used)
                return k2_err(ld->err, K2_EFORMAT, "%s: the kept expert groups hold fewer experts than "
                              "expert_used_count", ld->file);
        }
        if (hp->gating_func == 0) hp->gating_func = 1; /* §2.1: absent -> softmax */
        if (hp->gating_func > 4)
            return k2_err(ld->err, K2_EUNSUPPORTED, "%s: expert_gating_func %u is unknown", ld->file,
                          hp->gating_func);
    }
    if (hp->n_layer_dense > 0 && hp->n_ff == 0)
        return k2_err(ld->err, K2_EFORMAT, "%s: feed_forward_length is missing for the dense blocks", ld->file);

    /* RoPE / YaRN (§2.3 item 6, §4.3, §4.4) */
    char rtype[32] = "none";
    k2_str rs;
    if (k2_gguf_get_str(m->gguf, ARCH ".rope.scaling.type", &rs, NULL) == K2_OK)
        snprintf(rtype, sizeof rtype, "%.*s", (int)K2_MIN(rs.len, 31), rs.ptr);
    float factor;
    bool have_factor;
    TRY(get_f32(ld, "rope.scaling.factor", 0.0f, &factor, &have_factor));
    if (!have_factor) TRY(get_f32(ld, "rope.scale_linear", 0.0f, &factor, NULL));
    if (factor == 0.0f) factor = 1.0f;
    hp->rope_scale = factor;
    hp->rope_mag = 1.0f;
    double d_k = hp->head_dim_k;
    hp->kq_scale = (float)(1.0 / sqrt(d_k));
    int nfreq = (int)hp->rope_dim / 2;
    m->rope_freq = malloc(sizeof(double) * (size_t)nfreq);
    if (!m->rope_freq) return k2_err(ld->err, K2_ENOMEM, "%s: out of memory", ld->file);
    double base = hp->rope_freq_base;
    for (int i = 0; i < nfreq; i++) m->rope_freq[i] = pow(base, -2.0 * i / hp->rope_dim);

    if (strcmp(rtype, "yarn") == 0) {
        hp->yarn = true;
        TRY(get_u32(ld, "rope.scaling.original_context_length", false, 0, &hp->yarn_orig_ctx));
        if (hp->yarn_orig_ctx == 0)
            return k2_err(ld->err, K2_EFORMAT, "%s: YaRN needs " ARCH ".rope.scaling.original_context_length "
                          "(spec §2.4)", ld->file);
        bool have_bf, have_bs, have_mul;
        TRY(get_f32(ld, "rope.scaling.yarn_beta_fast", 32.0f, &hp->yarn_beta_fast, &have_bf));
        TRY(get_f32(ld, "rope.scaling.yarn_beta_slow", 1.0f, &hp->yarn_beta_slow, &have_bs));
        if (opt && opt->yarn_beta_fast >= 0) hp->yarn_beta_fast = opt->yarn_beta_fast;
        if (opt && opt->yarn_beta_slow >= 0) hp->yarn_beta_slow = opt->yarn_beta_slow;
        if (opt && opt->llama_compat_beta) {
            hp->yarn_beta_fast = 32.0f;
            hp->yarn_beta_slow = 1.0f;
        }
        if ((!have_bf || !have_bs) && hp->rope_freq_base == 50000.0f && hp->n_vocab == 163840)
            snprintf(m->warnings, sizeof m->warnings,
                     "%s looks like Kimi K2 but has no rope.scaling.yarn_beta_fast/slow keys: using "
                     "%g/%g; the model's own values are 1/1 (spec §4.3.4)", ld->file,
                     hp->yarn_beta_fast, hp->yarn_beta_slow);
        float logmul;
        TRY(get_f32(ld, "rope.scaling.yarn_log_multiplier", 0.0f, &logmul, &have_mul));
        double s = factor;
        model_yarn_freqs(base, (int)hp->rope_dim, s, hp->yarn_orig_ctx, hp->yarn_beta_fast,
                         hp->yarn_beta_slow, m->rope_freq);
        /* g(s, x) = 1 + 0.1 x ln s (§4.4) */
        double g1 = s > 1 ? 1.0 + 0.1 * log(s) : 1.0;
        if (have_mul) {
            double mu = logmul / 0.1;
            hp->yarn_mscale_all_dim = (float)mu;
            if (mu != 0.0) {
                double g = s > 1 ? 1.0 + 0.1 * mu * log(s) : 1.0;
                hp->kq_scale = (float)(g * g / sqrt(d_k));
            } else {
                hp->rope_mag = (float)g1;
            }
        } else {
            /* reference semantics (§9 item 3): tau = 1/sqrt(d_k), r = g(s, 1) */
            hp->rope_mag = (float)g1;
            size_t used = strlen(m->warnings);
            snprintf(m->warnings + used, sizeof m->warnings - used,
                     "%s%s: YaRN without yarn_log_multiplier: using the reference semantics "
                     "(llama.cpp differs, spec §7.4 item 6)", used ? "; " : "", ld->file);
        }
    } else if (strcmp(rtype, "linear") == 0) {
        for (int i = 0; i < nfreq; i++) m->rope_freq[i] /= factor;
    } else if (strcmp(rtype, "none") != 0) {
        return k2_err(ld->err, K2_EUNSUPPORTED, "%s: rope.scaling.type '%s' is not supported", ld->file, rtype);
    } else {
        hp->rope_scale = 1.0f;
    }
    return K2_OK;
}

static k2_status load_tensors(loader *ld) {
    k2_model *m = ld->m;
    k2_model_hparams *hp = &m->hp;
    int64_t d = hp->n_embd, V = hp->n_vocab, H = hp->n_head, d_c = hp->kv_lora_rank,
            d_r = hp->rope_dim, d_k = hp->head_dim_k, d_v = hp->head_dim_v, d_n = m->d_n;
    TRY(bind(ld, &m->tok_embd, true, d, V, 1, "token_embd.weight"));
    TRY(bind_vec(ld, &m->output_norm, true, d, "output_norm.weight"));
    TRY(bind(ld, &m->output, false, d, V, 1, "output.weight"));
    hp->tied_output = m->output.data == NULL;
    if (hp->tied_output) m->output = m->tok_embd;

    /* §2.3 item 3: q-LoRA iff q_lora_rank > 0 and blk.0.attn_q_a exists */
    bool q_lora = hp->q_lora_rank > 0 && k2_gguf_find_tensor(m->gguf, "blk.0.attn_q_a.weight");
    if (!q_lora) hp->q_lora_rank = 0;
    hp->legacy_kv_b = k2_gguf_find_tensor(m->gguf, "blk.0.attn_kv_b.weight") != NULL;
    hp->has_expert_bias = false;

    m->layers = calloc(hp->n_layer, sizeof *m->layers);
    if (!m->layers) return k2_err(ld->err, K2_ENOMEM, "%s: out of memory", ld->file);
    if (hp->legacy_kv_b) {
        size_t per = (size_t)(H * d_c * (d_n + d_v));
        m->owned = malloc(sizeof(float) * per * hp->n_layer);
        if (!m->owned) return k2_err(ld->err, K2_ENOMEM, "%s: out of memory splitting attn_kv_b", ld->file);
    }
    int64_t E = hp->n_expert, fe = hp->n_ff_exp, fs = (int64_t)hp->n_expert_shared * fe;
    for (uint32_t l = 0; l < hp->n_layer; l++) {
        model_layer *ly = &m->layers[l];
        TRY(bind_vec(ld, &ly->attn_norm, true, d, "blk.%u.attn_norm.weight", l));
        if (q_lora) {
            TRY(bind(ld, &ly->q_a, true, d, hp->q_lora_rank, 1, "blk.%u.attn_q_a.weight", l));
            TRY(bind_vec(ld, &ly->q_a_norm, true, hp->q_lora_rank, "blk.%u.attn_q_a_norm.weight", l));
            TRY(bind(ld, &ly->q_b, true, hp->q_lora_rank, H * d_k, 1, "blk.%u.attn_q_b.weight", l));
        } else {
            TRY(bind(ld, &ly->q, true, d, H * d_k, 1, "blk.%u.attn_q.weight", l));
        }
        TRY(bind(ld, &ly->kv_a, true, d, d_c + d_r, 1, "blk.%u.attn_kv_a_mqa.weight", l));
        TRY(bind_vec(ld, &ly->kv_a_norm, true, d_c, "blk.%u.attn_kv_a_norm.weight", l));
        if (hp->legacy_kv_b) {
            model_weight kvb;
            TRY(bind(ld, &kvb, true, d_c, H * (d_n + d_v), 1, "blk.%u.attn_kv_b.weight", l));
            float *kb = m->owned + (size_t)l * (size_t)(H * d_c * (d_n + d_v));
            TRY(split_kv_b(ld, ly, &kvb, kb, kb + H * d_c * d_n));
            if (d_n > m->max_cols) m->max_cols = d_n;
        } else {
            TRY(bind(ld, &ly->k_b, true, d_n, d_c, H, "blk.%u.attn_k_b.weight", l));
            TRY(bind(ld, &ly->v_b, true, d_c, d_v, H, "blk.%u.attn_v_b.weight", l));
        }
        TRY(bind(ld, &ly->out, true, H * d_v, d, 1, "blk.%u.attn_output.weight", l));
        TRY(bind_vec(ld, &ly->out_scale, false, 1, "blk.%u.attn_output.scale", l));
        TRY(bind_vec(ld, &ly->ffn_norm, true, d, "blk.%u.ffn_norm.weight", l));
        if (l < hp->n_layer_dense) {
            TRY(bind(ld, &ly->ffn_gate, true, d, hp->n_ff, 1, "blk.%u.ffn_gate.weight", l));
            TRY(bind(ld, &ly->ffn_up, true, d, hp->n_ff, 1, "blk.%u.ffn_up.weight", l));
            TRY(bind(ld, &ly->ffn_down, true, hp->n_ff, d, 1, "blk.%u.ffn_down.weight", l));
            continue;
        }
        TRY(bind(ld, &ly->gate_inp, true, d, E, 1, "blk.%u.ffn_gate_inp.weight", l));
        if (ly->gate_inp.type != K2_TYPE_F32)
            return k2_err(ld->err, K2_EFORMAT, "%s: tensor blk.%u.ffn_gate_inp.weight must be F32", ld->file, l);
        TRY(bind_vec(ld, &ly->exp_bias, false, E, "blk.%u.exp_probs_b.bias", l));
        if (ly->exp_bias) hp->has_expert_bias = true;
        char fused[64];
        snprintf(fused, sizeof fused, "blk.%u.ffn_gate_up_exps.weight", l);
        if (k2_gguf_find_tensor(m->gguf, fused)) {
            ly->fused_gate_up = true;
            TRY(bind(ld, &ly->gate_exps, true, d, 2 * fe, E, "blk.%u.ffn_gate_up_exps.weight", l));
        } else {
            TRY(bind(ld, &ly->gate_exps, true, d, fe, E, "blk.%u.ffn_gate_exps.weight", l));
            TRY(bind(ld, &ly->up_exps, true, d, fe, E, "blk.%u.ffn_up_exps.weight", l));
        }
        TRY(bind(ld, &ly->down_exps, true, fe, d, E, "blk.%u.ffn_down_exps.weight", l));
        if (fs > 0) {
            TRY(bind(ld, &ly->gate_sh, true, d, fs, 1, "blk.%u.ffn_gate_shexp.weight", l));
            TRY(bind(ld, &ly->up_sh, true, d, fs, 1, "blk.%u.ffn_up_shexp.weight", l));
            TRY(bind(ld, &ly->down_sh, true, fs, d, 1, "blk.%u.ffn_down_shexp.weight", l));
        }
    }
    return K2_OK;
}

void k2_model_options_init(k2_model_options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->yarn_beta_fast = -1.0f;
    opt->yarn_beta_slow = -1.0f;
}

k2_status k2_model_from_gguf(k2_gguf *g, const k2_model_options *opt, k2_model **out, k2_error *err) {
    *out = NULL;
    if (!g) return k2_err(err, K2_EINVAL, "k2_model_from_gguf: no GGUF handle");
    k2_model *m = calloc(1, sizeof *m);
    if (!m) {
        k2_gguf_close(g);
        return k2_err(err, K2_ENOMEM, "out of memory loading a model");
    }
    m->gguf = g;
    atomic_init(&m->refs, 1);
    loader ld = {m, k2_gguf_shard_path(g, 0) ? k2_gguf_shard_path(g, 0) : "model", err, 0};
    k2_status s = load_hparams(&ld, opt);
    if (s == K2_OK) s = load_tensors(&ld);
    if (s == K2_OK) {
        size_t used = strlen(m->warnings);
        int64_t total = k2_gguf_tensor_count(g);
        if (ld.n_bound < total)
            snprintf(m->warnings + used, sizeof m->warnings - used, "%s%s: %lld of %lld tensors are not used "
                     "by the deepseek2 forward pass", used ? "; " : "", ld.file, (long long)(total - ld.n_bound),
                     (long long)total);
        used = strlen(m->warnings);
        if (k2_gguf_find(g, ARCH ".attention.temperature_scale"))
            snprintf(m->warnings + used, sizeof m->warnings - used, "%s%s: attention.temperature_scale is "
                     "ignored (spec §4.7)", used ? "; " : "", ld.file);
    }
    if (s != K2_OK) {
        model_destroy(m);
        return s;
    }
    *out = m;
    return K2_OK;
}

k2_status k2_model_load(const char *path, const k2_model_options *opt, k2_model **out, k2_error *err) {
    *out = NULL;
    k2_gguf *g = NULL;
    k2_status s = k2_gguf_open(path, &g, err);
    if (s != K2_OK) return s;
    return k2_model_from_gguf(g, opt, out, err);
}

void k2_model_free(k2_model *m) {
    if (!m) return;
    if (m->release) {
        m->release(m);
        return;
    }
    if (atomic_fetch_sub(&m->refs, 1) != 1) return;
    model_destroy(m);
}

k2_model *k2_model_ref(k2_model *m) {
    if (m) atomic_fetch_add(&m->refs, 1);
    return m;
}

void model_destroy(k2_model *m) {
    if (!m) return;
    if (m->ext_free) m->ext_free(m->ext);
    k2_gguf_close(m->gguf);
    free(m->layers);
    free(m->rope_freq);
    free(m->owned);
    free(m);
}

const k2_model_hparams *k2_model_get_hparams(const k2_model *m) { return &m->hp; }
const k2_gguf *k2_model_gguf(const k2_model *m) { return m->gguf; }
uint32_t k2_model_n_vocab(const k2_model *m) { return m->hp.n_vocab; }
uint32_t k2_model_n_ctx_train(const k2_model *m) { return m->hp.n_ctx_train; }
const char *k2_model_warnings(const k2_model *m) { return m->warnings; }
