/* Loader for Hugging Face tokenizer.json, byte-level BPE subset (spec §5). Anything
 * outside the subset is refused with the JSON path of the offending element (§5.10). */
#include "tokenizer/tok_internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct hf_load {
    k2_tokenizer *t;
    const char *path;
    k2_error *err;
    bool byte_level;
} hf_load;

static k2_status bad(hf_load *L, k2_status st, const char *jpath, const char *fmt, const char *arg) {
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return k2_err(L->err, st, "%s: %s: %s", L->path, jpath, msg);
}

static const char *type_of(json_t *o) {
    json_t *ty = json_object_get(o, "type");
    return json_is_string(ty) ? json_string_value(ty) : NULL;
}

static k2_status add_split(hf_load *L, json_t *o, const char *jp) {
    char sub[256];
    json_t *pat = json_object_get(o, "pattern");
    json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
    json_t *str = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
    const char *beh = json_string_value(json_object_get(o, "behavior"));
    json_t *inv = json_object_get(o, "invert");
    int behavior;
    snprintf(sub, sizeof sub, "%s.behavior", jp);
    if (!beh) return bad(L, K2_EFORMAT, sub, "missing", NULL);
    if (strcmp(beh, "Isolated") == 0) behavior = TOK_SPLIT_ISOLATED;
    else if (strcmp(beh, "Removed") == 0) behavior = TOK_SPLIT_REMOVED;
    else return bad(L, K2_EUNSUPPORTED, sub, "split behavior \"%s\" is not supported (Isolated, Removed)", beh);
    if (inv && !json_is_boolean(inv)) {
        snprintf(sub, sizeof sub, "%s.invert", jp);
        return bad(L, K2_EFORMAT, sub, "expected a boolean", NULL);
    }
    char what[600];
    snprintf(what, sizeof what, "%s: %s.pattern", L->path, jp);
    if (json_is_string(re))
        return tok_add_regex_step(L->t, json_string_value(re), json_string_length(re), behavior, json_is_true(inv),
                                  what, L->err);
    if (json_is_string(str)) {
        /* A literal: quote every ASCII punctuation character. */
        tok_buf b = {0};
        const char *s = json_string_value(str);
        size_t n = json_string_length(str);
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c < 0x80 && !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
                tok_buf_addc(&b, '\\');
            if (c == 0) tok_buf_add(&b, "x{0}", 4);
            else tok_buf_addc(&b, (char)c);
        }
        if (!b.p) return bad(L, K2_EFORMAT, what, "empty split string", NULL);
        k2_status st = tok_add_regex_step(L->t, b.p, b.len, behavior, json_is_true(inv), what, L->err);
        tok_buf_free(&b);
        return st;
    }
    snprintf(sub, sizeof sub, "%s.pattern", jp);
    return bad(L, K2_EFORMAT, sub, "expected {\"Regex\": ...} or {\"String\": ...}", NULL);
}

static k2_status add_pretok(hf_load *L, json_t *o, const char *jp) {
    char sub[256];
    if (!o || json_is_null(o)) return K2_OK;
    const char *ty = type_of(o);
    snprintf(sub, sizeof sub, "%s.type", jp);
    if (!json_is_object(o) || !ty) return bad(L, K2_EFORMAT, sub, "missing", NULL);
    if (strcmp(ty, "Sequence") == 0) {
        json_t *arr = json_object_get(o, "pretokenizers");
        snprintf(sub, sizeof sub, "%s.pretokenizers", jp);
        if (!json_is_array(arr)) return bad(L, K2_EFORMAT, sub, "expected an array", NULL);
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) {
            snprintf(sub, sizeof sub, "%s.pretokenizers[%zu]", jp, i);
            k2_status st = add_pretok(L, e, sub);
            if (st) return st;
        }
        return K2_OK;
    }
    if (strcmp(ty, "Split") == 0) return add_split(L, o, jp);
    if (strcmp(ty, "Digits") == 0) {
        json_t *ind = json_object_get(o, "individual_digits");
        return tok_add_step(L->t, (tok_step){.kind = TOK_STEP_DIGITS, .individual = json_is_true(ind)}, L->err);
    }
    if (strcmp(ty, "ByteLevel") == 0) {
        L->byte_level = true;
        k2_status st = K2_OK;
        if (json_is_true(json_object_get(o, "add_prefix_space")))
            st = tok_add_step(L->t, (tok_step){.kind = TOK_STEP_PREFIX_SPACE}, L->err);
        json_t *ur = json_object_get(o, "use_regex");
        if (!st && (!ur || json_is_true(ur))) {
            static const char gpt2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
            char what[600];
            snprintf(what, sizeof what, "%s: %s (ByteLevel regex)", L->path, jp);
            st = tok_add_regex_step(L->t, gpt2, strlen(gpt2), TOK_SPLIT_ISOLATED, false, what, L->err);
        }
        return st;
    }
    return bad(L, K2_EUNSUPPORTED, sub, "pre-tokenizer \"%s\" is not supported (ByteLevel, Split, Sequence, Digits)", ty);
}

static k2_status add_norm(hf_load *L, json_t *o, const char *jp) {
    char sub[256];
    if (!o || json_is_null(o)) return K2_OK;
    const char *ty = type_of(o);
    snprintf(sub, sizeof sub, "%s.type", jp);
    if (!json_is_object(o) || !ty) return bad(L, K2_EFORMAT, sub, "missing", NULL);
    if (strcmp(ty, "Sequence") == 0) {
        json_t *arr = json_object_get(o, "normalizers");
        snprintf(sub, sizeof sub, "%s.normalizers", jp);
        if (!json_is_array(arr)) return bad(L, K2_EFORMAT, sub, "expected an array", NULL);
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) {
            snprintf(sub, sizeof sub, "%s.normalizers[%zu]", jp, i);
            k2_status st = add_norm(L, e, sub);
            if (st) return st;
        }
        return K2_OK;
    }
    tok_norm nm = {0};
    if (strcmp(ty, "NFC") == 0) nm.kind = TOK_NORM_NFC;
    else if (strcmp(ty, "NFKC") == 0) nm.kind = TOK_NORM_NFKC;
    else if (strcmp(ty, "NFD") == 0) nm.kind = TOK_NORM_NFD;
    else if (strcmp(ty, "NFKD") == 0) nm.kind = TOK_NORM_NFKD;
    else if (strcmp(ty, "Prepend") == 0) {
        json_t *p = json_object_get(o, "prepend");
        snprintf(sub, sizeof sub, "%s.prepend", jp);
        if (!json_is_string(p)) return bad(L, K2_EFORMAT, sub, "expected a string", NULL);
        nm.kind = TOK_NORM_PREPEND;
        nm.content = k2_strndup(json_string_value(p), json_string_length(p));
        nm.content_len = json_string_length(p);
    } else if (strcmp(ty, "Replace") == 0) {
        json_t *pat = json_object_get(o, "pattern"), *c = json_object_get(o, "content");
        json_t *re = json_is_object(pat) ? json_object_get(pat, "Regex") : NULL;
        json_t *str = json_is_object(pat) ? json_object_get(pat, "String") : NULL;
        snprintf(sub, sizeof sub, "%s.content", jp);
        if (!json_is_string(c)) return bad(L, K2_EFORMAT, sub, "expected a string", NULL);
        nm.kind = TOK_NORM_REPLACE;
        nm.content = k2_strndup(json_string_value(c), json_string_length(c));
        nm.content_len = json_string_length(c);
        if (json_is_string(str)) {
            nm.pattern = k2_strndup(json_string_value(str), json_string_length(str));
            nm.pattern_len = json_string_length(str);
        } else if (json_is_string(re)) {
            char what[600];
            snprintf(what, sizeof what, "%s: %s.pattern", L->path, jp);
            bool inter = strstr(json_string_value(re), "&&") != NULL;
            k2_status st = inter ? k2_err(L->err, K2_EUNSUPPORTED, "%s: class intersection (&&) is not supported", what)
                                 : tok_compile_regex(json_string_value(re), json_string_length(re), &nm.re, what, L->err);
            if (st) {
                free(nm.content);
                return st;
            }
        } else {
            free(nm.content);
            snprintf(sub, sizeof sub, "%s.pattern", jp);
            return bad(L, K2_EFORMAT, sub, "expected {\"Regex\": ...} or {\"String\": ...}", NULL);
        }
    } else
        return bad(L, K2_EUNSUPPORTED, sub,
                   "normalizer \"%s\" is not supported (NFC, NFKC, NFD, NFKD, Replace, Prepend, Sequence)", ty);
    tok_norm *nn = realloc(L->t->norms, (L->t->n_norms + 1) * sizeof *nn);
    if (!nn) {
        pcre2_code_free(nm.re); free(nm.pattern); free(nm.content);
        return k2_err(L->err, K2_ENOMEM, "out of memory");
    }
    L->t->norms = nn;
    L->t->norms[L->t->n_norms++] = nm;
    return K2_OK;
}

static k2_status check_post(hf_load *L, json_t *o, const char *jp) {
    char sub[256];
    if (json_is_null(o) || !o) return K2_OK;
    const char *ty = type_of(o);
    snprintf(sub, sizeof sub, "%s.type", jp);
    if (!ty) return bad(L, K2_EFORMAT, sub, "missing", NULL);
    if (strcmp(ty, "ByteLevel") == 0) return K2_OK;
    if (strcmp(ty, "Sequence") == 0) {
        json_t *arr = json_object_get(o, "processors");
        size_t i;
        json_t *e;
        json_array_foreach(arr, i, e) {
            snprintf(sub, sizeof sub, "%s.processors[%zu]", jp, i);
            k2_status st = check_post(L, e, sub);
            if (st) return st;
        }
        return K2_OK;
    }
    if (strcmp(ty, "TemplateProcessing") == 0) {
        /* BOS/EOS from `single`: a leading/trailing SpecialToken (§5.6). */
        json_t *single = json_object_get(o, "single"), *sp = json_object_get(o, "special_tokens");
        size_t n = json_array_size(single);
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_object_get(json_array_get(single, i), "SpecialToken");
            if (!e || (i != 0 && i != n - 1)) continue;
            const char *name = json_string_value(json_object_get(e, "id"));
            json_t *ids = json_object_get(json_object_get(sp, name ? name : ""), "ids");
            if (json_array_size(ids) != 1) {
                snprintf(sub, sizeof sub, "%s.special_tokens", jp);
                return bad(L, K2_EUNSUPPORTED, sub, "special token \"%s\" must map to exactly one id", name);
            }
            int32_t id = (int32_t)json_integer_value(json_array_get(ids, 0));
            if (i == 0) { L->t->bos = id; L->t->add_bos = true; }
            else { L->t->eos = id; L->t->add_eos = true; }
        }
        return K2_OK;
    }
    return bad(L, K2_EUNSUPPORTED, sub, "post-processor \"%s\" is not supported", ty);
}

static const char *token_content(json_t *v) {
    if (json_is_string(v)) return json_string_value(v);
    if (json_is_object(v)) return json_string_value(json_object_get(v, "content"));
    return NULL;
}

/* tokenizer_config.json beside the file: add_bos_token / add_eos_token override (§5.6). */
static void read_config(hf_load *L) {
    const char *slash = strrchr(L->path, '/');
    size_t dirlen = slash ? (size_t)(slash - L->path + 1) : 0;
    char *cfg = k2_asprintf("%.*stokenizer_config.json", (int)dirlen, L->path);
    if (!cfg) return;
    json_t *c = json_load_file(cfg, 0, NULL);
    free(cfg);
    if (!json_is_object(c)) {
        json_decref(c);
        return;
    }
    const char *bos = token_content(json_object_get(c, "bos_token"));
    const char *eos = token_content(json_object_get(c, "eos_token"));
    if (bos) {
        int32_t id = k2_token_find(L->t, bos, strlen(bos));
        if (id >= 0) L->t->bos = id;
    }
    if (eos) {
        int32_t id = k2_token_find(L->t, eos, strlen(eos));
        if (id >= 0) L->t->eos = id;
    }
    json_t *ab = json_object_get(c, "add_bos_token"), *ae = json_object_get(c, "add_eos_token");
    if (json_is_boolean(ab)) L->t->add_bos = json_is_true(ab);
    if (json_is_boolean(ae)) L->t->add_eos = json_is_true(ae);
    json_decref(c);
}

k2_status k2_tokenizer_from_json(const char *path, k2_tokenizer **out, k2_error *err) {
    *out = NULL;
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        if (je.line < 0) return k2_err(err, K2_EIO, "%s: %s", path, je.text);
        return k2_err(err, K2_EFORMAT, "%s: line %d column %d: JSON error: %s", path, je.line, je.column, je.text);
    }
    hf_load L = {NULL, path, err, false};
    k2_status st = K2_OK;
    k2_strmap vmap = {0};
    char **texts = NULL;
    int32_t n_vocab = 0;
    if (!json_is_object(root)) { st = bad(&L, K2_EFORMAT, "(top level)", "expected an object", NULL); goto done; }
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) { st = bad(&L, K2_EFORMAT, "model", "missing or not an object", NULL); goto done; }
    const char *mty = type_of(model);
    if (mty && strcmp(mty, "BPE") != 0) {
        st = bad(&L, K2_EUNSUPPORTED, "model.type", "model \"%s\" is not supported (only BPE)", mty);
        goto done;
    }
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout) && json_number_value(dropout) != 0.0) {
        st = bad(&L, K2_EUNSUPPORTED, "model.dropout", "BPE dropout is not supported", NULL);
        goto done;
    }
    const char *fields[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        json_t *f = json_object_get(model, fields[i]);
        if (f && !json_is_null(f) && !(json_is_string(f) && json_string_length(f) == 0)) {
            char jp[64];
            snprintf(jp, sizeof jp, "model.%s", fields[i]);
            st = bad(&L, K2_EUNSUPPORTED, jp, "must be null or empty", NULL);
            goto done;
        }
    }
    if (json_is_true(json_object_get(model, "byte_fallback"))) {
        st = bad(&L, K2_EUNSUPPORTED, "model.byte_fallback", "byte fallback is not supported for byte-level BPE", NULL);
        goto done;
    }
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) { st = bad(&L, K2_EFORMAT, "model.vocab", "missing or not an object", NULL); goto done; }
    if (!json_is_array(merges)) { st = bad(&L, K2_EFORMAT, "model.merges", "missing or not an array", NULL); goto done; }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_array(added) && !json_is_null(added)) {
        st = bad(&L, K2_EFORMAT, "added_tokens", "expected an array", NULL);
        goto done;
    }
    /* Size: the largest id in vocab and added_tokens. */
    {
        const char *key;
        json_t *v;
        json_object_foreach(vocab, key, v) {
            json_int_t id = json_integer_value(v);
            if (!json_is_integer(v) || id < 0 || id >= (1 << 28)) {
                char jp[300];
                snprintf(jp, sizeof jp, "model.vocab[\"%.200s\"]", key);
                st = bad(&L, K2_EFORMAT, jp, "expected an id (a non-negative integer)", NULL);
                goto done;
            }
            if (id + 1 > n_vocab) n_vocab = (int32_t)id + 1;
        }
        size_t i;
        json_array_foreach(added, i, v) {
            json_t *id = json_object_get(v, "id"), *c = json_object_get(v, "content");
            if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) >= (1 << 28) ||
                !json_is_string(c) || json_string_length(c) == 0) {
                char jp[64];
                snprintf(jp, sizeof jp, "added_tokens[%zu]", i);
                st = bad(&L, K2_EFORMAT, jp, "expected {\"id\": n, \"content\": non-empty string, ...}", NULL);
                goto done;
            }
            if (json_integer_value(id) + 1 > n_vocab) n_vocab = (int32_t)json_integer_value(id) + 1;
        }
    }
    if ((st = tok_new(n_vocab, path, &L.t, err))) goto done;
    k2_tokenizer *t = L.t;
    t->pre_name = k2_strdup("tokenizer.json");
    /* Pre-tokenizer and normalizer first: they decide whether the file is byte-level. */
    if ((st = add_norm(&L, json_object_get(root, "normalizer"), "normalizer"))) goto done;
    if ((st = add_pretok(&L, json_object_get(root, "pre_tokenizer"), "pre_tokenizer"))) goto done;
    if (!L.byte_level) {
        st = bad(&L, K2_EUNSUPPORTED, "pre_tokenizer", "no ByteLevel pre-tokenizer: only byte-level BPE is supported", NULL);
        goto done;
    }
    {
        json_t *dec = json_object_get(root, "decoder");
        const char *dty = json_is_object(dec) ? type_of(dec) : NULL;
        if (dec && !json_is_null(dec) && (!dty || strcmp(dty, "ByteLevel") != 0)) {
            st = bad(&L, K2_EUNSUPPORTED, "decoder.type", "decoder \"%s\" is not supported (ByteLevel)", dty ? dty : "?");
            goto done;
        }
    }
    /* Vocabulary: texts in the byte alphabet become bytes. */
    texts = k2_calloc((size_t)n_vocab, sizeof *texts);
    if (!texts || (st = k2_strmap_init(&vmap, json_object_size(vocab), err))) {
        if (!st) st = k2_err(err, K2_ENOMEM, "out of memory");
        goto done;
    }
    {
        const char *key;
        json_t *v;
        tok_buf b = {0};
        json_object_foreach(vocab, key, v) {
            int32_t id = (int32_t)json_integer_value(v);
            if (texts[id]) {
                char jp[300];
                snprintf(jp, sizeof jp, "model.vocab[\"%.200s\"]", key);
                st = bad(&L, K2_EFORMAT, jp, "the id is used twice%s", "");
                tok_buf_free(&b);
                goto done;
            }
            texts[id] = (char *)key;
            k2_strmap_put(&vmap, key, strlen(key), id);
            b.len = 0;
            if (tok_unbyte(key, strlen(key), &b)) st = tok_set_token(t, id, b.p, b.len, TOK_NORMAL, err);
            else st = tok_set_token(t, id, key, strlen(key), TOK_USER, err); /* decodes to its own text */
            if (st) {
                tok_buf_free(&b);
                goto done;
            }
        }
        tok_buf_free(&b);
    }
    /* Added tokens win over the vocabulary (§5.2). */
    {
        size_t na = json_array_size(added), i;
        json_t *v;
        t->added = k2_calloc(na ? na : 1, sizeof *t->added);
        if (!t->added) { st = k2_err(err, K2_ENOMEM, "out of memory"); goto done; }
        json_array_foreach(added, i, v) {
            int32_t id = (int32_t)json_integer_value(json_object_get(v, "id"));
            json_t *c = json_object_get(v, "content");
            bool special = json_is_true(json_object_get(v, "special"));
            if ((st = tok_set_token(t, id, json_string_value(c), json_string_length(c), special ? TOK_CONTROL : TOK_USER, err)))
                goto done;
            tok_added *a = &t->added[t->n_added++];
            *a = (tok_added){.id = id, .off = t->off[id], .len = t->len[id], .control = special,
                             .lstrip = json_is_true(json_object_get(v, "lstrip")),
                             .rstrip = json_is_true(json_object_get(v, "rstrip")),
                             .single_word = json_is_true(json_object_get(v, "single_word")),
                             .normalized = json_is_true(json_object_get(v, "normalized"))};
            for (size_t j = 0; j + 1 < t->n_added; j++)
                if (t->added[j].id == id) {
                    char jp[64];
                    snprintf(jp, sizeof jp, "added_tokens[%zu]", i);
                    st = bad(&L, K2_EFORMAT, jp, "id already used by an earlier added token", NULL);
                    goto done;
                }
        }
    }
    if ((st = tok_finish(t, err))) goto done;
    /* Merges, "A B" or ["A", "B"] (§5.5); index = priority, first occurrence wins. */
    {
        size_t i;
        json_t *m;
        tok_buf cat = {0};
        json_array_foreach(merges, i, m) {
            const char *a = NULL, *b = NULL;
            size_t al = 0, bl = 0;
            char jp[64];
            snprintf(jp, sizeof jp, "model.merges[%zu]", i);
            if (json_is_string(m)) {
                const char *s = json_string_value(m);
                const char *sp = strchr(s, ' ');
                if (!sp || sp == s || !sp[1] || strchr(sp + 1, ' ')) {
                    tok_buf_free(&cat);
                    st = bad(&L, K2_EFORMAT, jp, "expected \"A B\" with exactly one space, got \"%s\"", s);
                    goto done;
                }
                a = s; al = (size_t)(sp - s); b = sp + 1; bl = strlen(b);
            } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                       json_is_string(json_array_get(m, 1))) {
                a = json_string_value(json_array_get(m, 0)); al = json_string_length(json_array_get(m, 0));
                b = json_string_value(json_array_get(m, 1)); bl = json_string_length(json_array_get(m, 1));
            } else {
                tok_buf_free(&cat);
                st = bad(&L, K2_EFORMAT, jp, "expected \"A B\" or [\"A\", \"B\"]", NULL);
                goto done;
            }
            cat.len = 0;
            tok_buf_add(&cat, a, al);
            tok_buf_add(&cat, b, bl);
            int64_t ia = k2_strmap_get(&vmap, a, al), ib = k2_strmap_get(&vmap, b, bl);
            int64_t ic = k2_strmap_get(&vmap, cat.p, cat.len);
            if (ia < 0 || ib < 0 || ic < 0) {
                tok_buf_free(&cat);
                st = bad(&L, K2_EFORMAT, jp, "a part or the merged token (%s) is not in model.vocab", "");
                goto done;
            }
            bool dup;
            if (tok_pmap_put(&t->merges, (int32_t)ia, (int32_t)ib, (uint32_t)i, (int32_t)ic, &dup)) {
                tok_buf_free(&cat);
                st = k2_err(err, K2_ENOMEM, "out of memory");
                goto done;
            }
        }
        tok_buf_free(&cat);
    }
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    {
        json_t *unk = json_object_get(model, "unk_token");
        if (json_is_string(unk)) {
            int64_t id = k2_strmap_get(&vmap, json_string_value(unk), json_string_length(unk));
            if (id < 0) {
                st = bad(&L, K2_EFORMAT, "model.unk_token", "\"%s\" is not in model.vocab", json_string_value(unk));
                goto done;
            }
            t->unk_id = (int32_t)id;
            t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
        }
    }
    if ((st = check_post(&L, json_object_get(root, "post_processor"), "post_processor"))) goto done;
    read_config(&L);
    if (t->bos >= t->n_vocab || t->eos >= t->n_vocab) {
        st = bad(&L, K2_EFORMAT, "post_processor", "BOS/EOS id outside the vocabulary", NULL);
        goto done;
    }
    tok_set_stops(t);
done:
    k2_strmap_free(&vmap);
    free(texts);
    json_decref(root);
    if (st) {
        k2_tokenizer_free(L.t);
        return st;
    }
    *out = L.t;
    return K2_OK;
}
