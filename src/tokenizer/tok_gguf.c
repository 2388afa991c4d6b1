/* Loader for GGUF-embedded vocabularies (tokenizer.ggml.*, spec §4, checklist §4.7). */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

static k2_status opt_id(const k2_gguf *g, const char *key, const k2_tokenizer *t, int32_t *out, k2_error *err) {
    *out = -1; /* a missing key means "no such token" (§4.4) */
    if (!k2_gguf_find(g, key)) return K2_OK;
    uint32_t v;
    k2_status st = k2_gguf_get_u32(g, key, &v, err);
    if (st) return st;
    if (v >= (uint32_t)t->n_vocab)
        return k2_err(err, K2_EFORMAT, "%s: %s = %u is outside the vocabulary (%d tokens)", t->source, key, v,
                      (int)t->n_vocab);
    *out = (int32_t)v;
    return K2_OK;
}

static k2_status opt_bool(const k2_gguf *g, const char *key, bool *out, k2_error *err) {
    if (!k2_gguf_find(g, key)) return K2_OK;
    return k2_gguf_get_bool(g, key, out, err);
}

k2_status k2_tokenizer_from_gguf(const k2_gguf *g, k2_tokenizer **out, k2_error *err) {
    *out = NULL;
    const char *src = k2_gguf_shard_path(g, 0);
    if (!src) src = "GGUF";
    k2_str model, pre = {"default", 7};
    k2_status st = k2_gguf_get_str(g, "tokenizer.ggml.model", &model, err);
    if (st == K2_ENOTFOUND) return k2_err(err, K2_ENOTFOUND, "%s: no tokenizer (tokenizer.ggml.model is missing)", src);
    if (st) return st;
    if (!(model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0))
        return k2_err(err, K2_EUNSUPPORTED, "%s: tokenizer.ggml.model \"%.*s\" is not supported (only gpt2 byte-level BPE)",
                      src, (int)K2_MIN(model.len, 64), model.ptr);
    if (k2_gguf_find(g, "tokenizer.ggml.pre") && (st = k2_gguf_get_str(g, "tokenizer.ggml.pre", &pre, err))) return st;
    const k2_gguf_value *tokens, *types, *merges = NULL;
    if ((st = k2_gguf_get_array(g, "tokenizer.ggml.tokens", K2_GGUF_STRING, &tokens, err))) return st;
    if (!k2_gguf_find(g, "tokenizer.ggml.token_type"))
        return k2_err(err, K2_EFORMAT, "%s: tokenizer.ggml.token_type is missing", src);
    if ((st = k2_gguf_get_array(g, "tokenizer.ggml.token_type", K2_GGUF_INT32, &types, err))) return st;
    uint64_t n = tokens->v.arr.n;
    if (n == 0 || n > (1u << 28)) return k2_err(err, K2_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries", src,
                                                 (unsigned long long)n);
    if (types->v.arr.n < n)
        return k2_err(err, K2_EFORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %llu tokens", src,
                      (unsigned long long)types->v.arr.n, (unsigned long long)n);
    if (k2_gguf_find(g, "tokenizer.ggml.merges") &&
        (st = k2_gguf_get_array(g, "tokenizer.ggml.merges", K2_GGUF_STRING, &merges, err)))
        return st;
    char name[128];
    snprintf(name, sizeof name, "%.*s", (int)K2_MIN(pre.len, sizeof name - 1), pre.ptr);
    bool kimi = strcmp(name, "kimi-k2") == 0;
    if (!merges && !kimi) return k2_err(err, K2_EFORMAT, "%s: tokenizer.ggml.merges is missing", src);

    k2_tokenizer *t = NULL;
    k2_strmap texts = {0};
    tok_buf b = {0}, cat = {0};
    if ((st = tok_new((int32_t)n, src, &t, err))) return st;
    if ((st = tok_set_pre_by_name(t, name, err))) goto fail;
    if ((st = k2_strmap_init(&texts, (size_t)n, err))) goto fail;
    const k2_str *strs = tokens->v.arr.strings;
    const unsigned char *tv = types->v.arr.data;
    for (uint64_t i = 0; i < n; i++) {
        int32_t ty;
        memcpy(&ty, tv + 4 * i, 4);
        if (ty < 0 || ty > 6) ty = TOK_UNDEFINED;
        if (ty == TOK_NORMAL) {
            b.len = 0;
            if (!tok_unbyte(strs[i].ptr, strs[i].len, &b)) {
                st = k2_err(err, K2_EFORMAT, "%s: tokenizer.ggml.tokens[%llu] \"%.*s\" has a character outside the "
                            "byte-level alphabet", src, (unsigned long long)i, (int)K2_MIN(strs[i].len, 64), strs[i].ptr);
                goto fail;
            }
            if ((st = tok_set_token(t, (int32_t)i, b.p, b.len, ty, err))) goto fail;
            k2_strmap_put(&texts, strs[i].ptr, strs[i].len, (int64_t)i);
        } else if ((st = tok_set_token(t, (int32_t)i, strs[i].ptr, strs[i].len, ty, err)))
            goto fail;
    }
    if ((st = tok_finish(t, err))) goto fail;
    if (merges) {
        for (uint64_t i = 0; i < merges->v.arr.n; i++) {
            const k2_str *m = &merges->v.arr.strings[i];
            const char *sp = m->len ? memchr(m->ptr, ' ', m->len) : NULL;
            size_t al = sp ? (size_t)(sp - m->ptr) : 0;
            if (!sp || al == 0 || al + 1 >= m->len || memchr(sp + 1, ' ', m->len - al - 1)) {
                st = k2_err(err, K2_EFORMAT, "%s: tokenizer.ggml.merges[%llu] \"%.*s\" is not \"A B\"", src,
                            (unsigned long long)i, (int)K2_MIN(m->len, 64), m->ptr);
                goto fail;
            }
            cat.len = 0;
            tok_buf_add(&cat, m->ptr, al);
            tok_buf_add(&cat, sp + 1, m->len - al - 1);
            int64_t a = k2_strmap_get(&texts, m->ptr, al), c = k2_strmap_get(&texts, sp + 1, m->len - al - 1);
            int64_t ab = k2_strmap_get(&texts, cat.p, cat.len);
            if (a < 0 || c < 0 || ab < 0) {
                st = k2_err(err, K2_EFORMAT, "%s: tokenizer.ggml.merges[%llu] \"%.*s\": %s is not a normal token", src,
                            (unsigned long long)i, (int)K2_MIN(m->len, 64), m->ptr,
                            a < 0 ? "the left part" : c < 0 ? "the right part" : "the merged text");
                goto fail;
            }
            bool dup;
            if (tok_pmap_put(&t->merges, (int32_t)a, (int32_t)c, (uint32_t)i, (int32_t)ab, &dup)) {
                st = k2_err(err, K2_ENOMEM, "out of memory");
                goto fail;
            }
        }
    } else if ((st = tok_merges_from_ranks(t, err)))
        goto fail; /* kimi-k2 without merges: rank = id (§3.3) */
    /* For kimi-k2 the whole-piece shortcut never changes the result (§3.2); it is fast. */
    if (kimi) t->ignore_merges = true;
    if ((st = opt_id(g, "tokenizer.ggml.bos_token_id", t, &t->bos, err)) ||
        (st = opt_id(g, "tokenizer.ggml.eos_token_id", t, &t->eos, err)) ||
        (st = opt_id(g, "tokenizer.ggml.eot_token_id", t, &t->eot, err)) ||
        (st = opt_id(g, "tokenizer.ggml.eom_token_id", t, &t->eom, err)) ||
        (st = opt_id(g, "tokenizer.ggml.padding_token_id", t, &t->pad, err)))
        goto fail;
    {
        /* Default add_bos (§4.4); the GGUF key overrides it. */
        char key[140];
        snprintf(key, sizeof key, " %s ", name);
        if (strstr(" llama3 llama-v3 llama-bpe falcon3 falcon-h1 pixtral midm-2.0 lfm2 jina-v5-nano tekken chameleon ", key))
            t->add_bos = true;
    }
    if ((st = opt_bool(g, "tokenizer.ggml.add_bos_token", &t->add_bos, err)) ||
        (st = opt_bool(g, "tokenizer.ggml.add_eos_token", &t->add_eos, err)))
        goto fail;
    if (kimi && t->eot < 0) {
        int32_t id = k2_token_find(t, "[EOT]", 5);
        if (id >= 0 && t->type[id] != TOK_NORMAL) t->eot = id;
    }
    if (k2_gguf_find(g, "tokenizer.chat_template")) {
        k2_str tmpl;
        if ((st = k2_gguf_get_str(g, "tokenizer.chat_template", &tmpl, err))) goto fail;
        t->chat_template = k2_strndup(tmpl.ptr, tmpl.len);
    }
    tok_set_stops(t);
    k2_strmap_free(&texts);
    tok_buf_free(&b);
    tok_buf_free(&cat);
    *out = t;
    return K2_OK;
fail:
    k2_strmap_free(&texts);
    tok_buf_free(&b);
    tok_buf_free(&cat);
    k2_tokenizer_free(t);
    return st;
}
