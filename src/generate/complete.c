/* The completion loop and the generator.
 *
 * gen_run() is one request on one slot, in the calling thread: prompt check, prefill with
 * prefix reuse, then sample / detokenize / push until a stop token, a stop string,
 * max_tokens, the end of the context or cancellation. k2_generator runs each request on a
 * thread of its own and hands out slots (one model context each) so that a slot serves
 * one request at a time; the slots' evaluations meet in a batcher, so that concurrent
 * requests share one forward pass per step (continuous batching, k2_eval_batch). */
#include "generate/generate.h"

#include "base/base.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ======================================================================
 * Backends
 * ====================================================================== */

/* ======================================================================
 * The batcher: continuous batching across the generator's request threads
 * ====================================================================== */

/* Each request thread hands its evaluation to the batcher and waits. One waiting thread at
 * a time becomes the leader: it takes every pending evaluation and runs them as one
 * k2_eval_batch (every weight read once for all slots), then wakes the others. A leader
 * starts once every slot that is running a request has its evaluation pending, or after
 * BATCH_WAIT_NS (counted from the end of the previous batch, so that slots busy sampling
 * the previous step's token catch up instead of splitting the batch in two). Results equal
 * those of evaluating each slot alone. */
#define BATCH_WAIT_NS 5000000ull

typedef struct batch_entry {
    k2_context *ctx;
    const int32_t *ids;
    uint32_t n;
    bool want;
    bool done;
    k2_status st;
    k2_error err;
} batch_entry;

typedef struct gen_batcher {
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* CLOCK_MONOTONIC: an entry arrived, a batch ended, a slot left */
    batch_entry **pending, **taken;
    uint32_t n_pending, cap;
    uint32_t n_active;          /* slots running a request */
    bool running;               /* a leader is evaluating */
    uint64_t last_end;          /* k2_now_ns() when the last batch ended */
    uint64_t n_batches, n_evals; /* forward passes and the evaluations they held */
    k2_context **ctxs;
    const int32_t **toks;
    uint32_t *ns;
} gen_batcher;

static void batcher_free(gen_batcher *bt) {
    if (!bt) return;
    pthread_mutex_destroy(&bt->mu);
    pthread_cond_destroy(&bt->cv);
    free(bt->pending);
    free(bt->taken);
    free(bt->ctxs);
    free(bt->toks);
    free(bt->ns);
    free(bt);
}

static gen_batcher *batcher_new(uint32_t cap) {
    gen_batcher *bt = k2_calloc(1, sizeof *bt);
    if (!bt) return NULL;
    pthread_mutex_init(&bt->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&bt->cv, &ca);
    pthread_condattr_destroy(&ca);
    bt->cap = cap;
    bt->pending = k2_calloc(cap, sizeof *bt->pending);
    bt->taken = k2_calloc(cap, sizeof *bt->taken);
    bt->ctxs = k2_calloc(cap, sizeof *bt->ctxs);
    bt->toks = k2_calloc(cap, sizeof *bt->toks);
    bt->ns = k2_calloc(cap, sizeof *bt->ns);
    if (!bt->pending || !bt->taken || !bt->ctxs || !bt->toks || !bt->ns) {
        batcher_free(bt);
        return NULL;
    }
    return bt;
}

static void batcher_active(gen_batcher *bt, int delta) {
    if (!bt) return;
    pthread_mutex_lock(&bt->mu);
    bt->n_active = (uint32_t)((int)bt->n_active + delta);
    pthread_cond_broadcast(&bt->cv);
    pthread_mutex_unlock(&bt->mu);
}

/* The leader's work (no lock held): one forward pass for all taken entries; when that
 * fails, each alone, so that only the failing ones report an error. */
static void batcher_run(gen_batcher *bt, uint32_t nb) {
    bool any_want = false;
    for (uint32_t k = 0; k < nb; k++) {
        batch_entry *e = bt->taken[k];
        bt->ctxs[k] = e->ctx;
        bt->toks[k] = e->ids;
        bt->ns[k] = e->n;
        any_want |= e->want;
    }
    k2_error err;
    k2_status st = k2_eval_batch(bt->ctxs, bt->toks, bt->ns, (int)nb, any_want ? K2_ROWS_LAST : K2_ROWS_NONE, &err);
    for (uint32_t k = 0; k < nb; k++) {
        batch_entry *e = bt->taken[k];
        if (st == K2_OK) {
            e->st = K2_OK;
        } else if (nb == 1) {
            e->st = st;
            e->err = err;
        } else {
            e->st = k2_eval(e->ctx, e->ids, e->n, e->want ? K2_ROWS_LAST : K2_ROWS_NONE, NULL, &e->err);
        }
    }
}

static k2_status batcher_eval(gen_batcher *bt, k2_context *ctx, const int32_t *ids, uint32_t n, bool want,
                              k2_error *err) {
    batch_entry e = {ctx, ids, n, want, false, K2_OK, {K2_OK, ""}};
    pthread_mutex_lock(&bt->mu);
    uint64_t arrived = k2_now_ns();
    bt->pending[bt->n_pending++] = &e;
    pthread_cond_broadcast(&bt->cv);
    while (!e.done) {
        uint64_t start = (arrived > bt->last_end ? arrived : bt->last_end) + BATCH_WAIT_NS;
        if (!bt->running && (bt->n_pending >= bt->n_active || k2_now_ns() >= start)) {
            uint32_t nb = bt->n_pending;
            memcpy(bt->taken, bt->pending, nb * sizeof *bt->taken);
            bt->n_pending = 0;
            bt->running = true;
            pthread_mutex_unlock(&bt->mu);
            batcher_run(bt, nb);
            pthread_mutex_lock(&bt->mu);
            for (uint32_t k = 0; k < nb; k++) bt->taken[k]->done = true;
            bt->running = false;
            bt->last_end = k2_now_ns();
            bt->n_batches++;
            bt->n_evals += nb;
            pthread_cond_broadcast(&bt->cv);
            continue;
        }
        if (bt->running) {
            pthread_cond_wait(&bt->cv, &bt->mu);
        } else {
            struct timespec dl;
            clock_gettime(CLOCK_MONOTONIC, &dl);
            uint64_t now = k2_now_ns(), left = start > now ? start - now : 0;
            uint64_t ns = (uint64_t)dl.tv_nsec + left;
            dl.tv_sec += (time_t)(ns / 1000000000ull);
            dl.tv_nsec = (long)(ns % 1000000000ull);
            pthread_cond_timedwait(&bt->cv, &bt->mu, &dl);
        }
    }
    pthread_mutex_unlock(&bt->mu);
    if (e.st != K2_OK && err) *err = e.err;
    return e.st;
}

typedef struct model_backend {
    gen_backend b;
    k2_context *ctx;
    gen_batcher *bat;   /* the generator's, or NULL: evaluate directly */
} model_backend;

static uint32_t mb_length(gen_backend *b) { return k2_context_length(((model_backend *)b)->ctx); }
static k2_status mb_truncate(gen_backend *b, uint32_t n_keep, k2_error *err) {
    return k2_context_truncate(((model_backend *)b)->ctx, n_keep, err);
}
static k2_status mb_eval(gen_backend *b, const int32_t *ids, uint32_t n, bool want_logits, k2_error *err) {
    model_backend *m = (model_backend *)b;
    if (m->bat && n > 0) return batcher_eval(m->bat, m->ctx, ids, n, want_logits, err);
    return k2_eval(m->ctx, ids, n, want_logits ? K2_ROWS_LAST : K2_ROWS_NONE, NULL, err);
}
static const float *mb_logits(gen_backend *b) { return k2_context_logits(((model_backend *)b)->ctx); }
static void mb_destroy(gen_backend *b) {
    k2_context_free(((model_backend *)b)->ctx);
    free(b);
}

k2_status gen_backend_model_new(k2_context *ctx, int32_t n_vocab, gen_backend **out, k2_error *err) {
    *out = NULL;
    model_backend *m = k2_calloc(1, sizeof *m);
    if (!m) return k2_err(err, K2_ENOMEM, "out of memory");
    m->ctx = ctx;
    m->b.n_ctx = k2_context_n_ctx(ctx);
    m->b.n_vocab = n_vocab;
    m->b.length = mb_length;
    m->b.truncate = mb_truncate;
    m->b.eval = mb_eval;
    m->b.logits = mb_logits;
    m->b.destroy = mb_destroy;
    *out = &m->b;
    return K2_OK;
}

typedef struct script_backend {
    gen_backend b;
    int32_t *script;
    size_t n, k;
    int32_t end_id;
    uint32_t len;
    float *logits;
    int32_t shown; /* id currently set to 0 in logits, -1 none */
} script_backend;

static uint32_t sb_length(gen_backend *b) { return ((script_backend *)b)->len; }
static k2_status sb_truncate(gen_backend *b, uint32_t n_keep, k2_error *err) {
    script_backend *s = (script_backend *)b;
    if (n_keep > s->len) return k2_err(err, K2_ERANGE, "scripted backend: cannot keep %u of %u tokens", n_keep, s->len);
    s->len = n_keep;
    s->k = 0;
    return K2_OK;
}
static k2_status sb_eval(gen_backend *b, const int32_t *ids, uint32_t n, bool want_logits, k2_error *err) {
    script_backend *s = (script_backend *)b;
    if (n > s->b.n_ctx - s->len)
        return k2_err(err, K2_ERANGE, "scripted backend: %u tokens do not fit (%u of %u used)", n, s->len, s->b.n_ctx);
    for (uint32_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= s->b.n_vocab)
            return k2_err(err, K2_EINVAL, "scripted backend: token id %d is outside [0, %d)", (int)ids[i], (int)s->b.n_vocab);
    s->len += n;
    if (want_logits) {
        int32_t id = s->k < s->n ? s->script[s->k] : s->end_id;
        s->k++;
        if (s->shown >= 0) s->logits[s->shown] = -1e9f;
        if (id >= 0 && id < s->b.n_vocab) s->logits[id] = 0.0f;
        s->shown = id;
    }
    return K2_OK;
}
static const float *sb_logits(gen_backend *b) { return ((script_backend *)b)->logits; }
static void sb_destroy(gen_backend *b) {
    script_backend *s = (script_backend *)b;
    free(s->script);
    free(s->logits);
    free(s);
}

k2_status gen_backend_scripted_new(const int32_t *script, size_t n, int32_t end_id, int32_t n_vocab, uint32_t n_ctx,
                                   gen_backend **out, k2_error *err) {
    *out = NULL;
    if (n_vocab <= 0 || n_ctx == 0) return k2_err(err, K2_EINVAL, "scripted backend: empty vocabulary or context");
    script_backend *s = k2_calloc(1, sizeof *s);
    if (!s) return k2_err(err, K2_ENOMEM, "out of memory");
    s->script = k2_malloc((n ? n : 1) * sizeof *script);
    s->logits = k2_malloc(sizeof(float) * (size_t)n_vocab);
    if (!s->script || !s->logits) {
        sb_destroy(&s->b);
        return k2_err(err, K2_ENOMEM, "out of memory");
    }
    if (n) memcpy(s->script, script, n * sizeof *script);
    for (int32_t i = 0; i < n_vocab; i++) s->logits[i] = -1e9f;
    s->n = n;
    s->end_id = end_id;
    s->shown = -1;
    s->b.n_ctx = n_ctx;
    s->b.n_vocab = n_vocab;
    s->b.length = sb_length;
    s->b.truncate = sb_truncate;
    s->b.eval = sb_eval;
    s->b.logits = sb_logits;
    s->b.destroy = sb_destroy;
    *out = &s->b;
    return K2_OK;
}

void gen_backend_free(gen_backend *b) {
    if (b) b->destroy(b);
}

void gen_slot_clear(gen_slot *slot) {
    gen_backend_free(slot->backend);
    free(slot->cached);
    memset(slot, 0, sizeof *slot);
}

/* ======================================================================
 * Requests
 * ====================================================================== */

void k2_completion_request_init(k2_completion_request *r) {
    memset(r, 0, sizeof *r);
    r->tokenize_flags = K2_TOKENIZE_PARSE_SPECIAL | K2_TOKENIZE_ADD_SPECIAL;
    r->detok_flags = K2_DETOK_SKIP_SPECIAL;
    k2_sampling_options_init(&r->sampling);
}

struct gen_request {
    k2_completion_request r;
    void **owned;
    size_t n_owned, cap_owned;
    bool oom;
};

static void *own(gen_request *q, void *p) {
    if (!p) {
        q->oom = true;
        return NULL;
    }
    if (q->n_owned == q->cap_owned) {
        size_t nc = q->cap_owned ? q->cap_owned * 2 : 16;
        void **np = realloc(q->owned, nc * sizeof *np);
        if (!np) {
            free(p);
            q->oom = true;
            return NULL;
        }
        q->owned = np;
        q->cap_owned = nc;
    }
    q->owned[q->n_owned++] = p;
    return p;
}

static const char *own_str(gen_request *q, const char *s) { return s ? own(q, k2_strdup(s)) : NULL; }

static void *own_copy(gen_request *q, const void *p, size_t bytes) {
    if (!p || !bytes) return NULL;
    void *c = own(q, k2_malloc(bytes));
    if (c) memcpy(c, p, bytes);
    return c;
}

k2_status gen_request_copy(const k2_completion_request *req, gen_request **out, k2_error *err) {
    *out = NULL;
    gen_request *q = k2_calloc(1, sizeof *q);
    if (!q) return k2_err(err, K2_ENOMEM, "out of memory copying a request");
    k2_completion_request *r = &q->r;
    *r = *req;
    if (req->n_messages) {
        k2_chat_message *m = own(q, k2_calloc(req->n_messages, sizeof *m));
        if (m)
            for (size_t i = 0; i < req->n_messages; i++) {
                const k2_chat_message *s = &req->messages[i];
                m[i].role = own_str(q, s->role);
                m[i].content = own_str(q, s->content);
                m[i].content_json = own_str(q, s->content_json);
                m[i].name = own_str(q, s->name);
                m[i].tool_call_id = own_str(q, s->tool_call_id);
                m[i].tool_calls_json = own_str(q, s->tool_calls_json);
            }
        r->messages = m;
    }
    r->tools_json = own_str(q, req->tools_json);
    r->prompt = own_str(q, req->prompt);
    r->prompt_ids = own_copy(q, req->prompt_ids, req->n_prompt_ids * sizeof *req->prompt_ids);
    r->stop_ids = own_copy(q, req->stop_ids, req->n_stop_ids * sizeof *req->stop_ids);
    r->sampling.logit_bias =
        own_copy(q, req->sampling.logit_bias, req->sampling.n_logit_bias * sizeof *req->sampling.logit_bias);
    if (req->n_stop) {
        const char **st = own(q, k2_calloc(req->n_stop, sizeof *st));
        if (st)
            for (size_t i = 0; i < req->n_stop; i++) st[i] = own_str(q, req->stop[i]);
        r->stop = st;
    }
    if (q->oom) {
        gen_request_free(q);
        return k2_err(err, K2_ENOMEM, "out of memory copying a request");
    }
    *out = q;
    return K2_OK;
}

void gen_request_free(gen_request *q) {
    if (!q) return;
    for (size_t i = 0; i < q->n_owned; i++) free(q->owned[i]);
    free(q->owned);
    free(q);
}

const k2_completion_request *gen_request_view(const gen_request *q) { return &q->r; }

k2_status gen_request_validate(const k2_completion_request *req, int32_t n_vocab, k2_error *err) {
    if (!req) return k2_err(err, K2_EINVAL, "completion request: none given");
    int forms = (req->messages != NULL || req->n_messages > 0) + (req->prompt != NULL) +
                (req->prompt_ids != NULL || req->n_prompt_ids > 0);
    if (forms != 1)
        return k2_err(err, K2_EINVAL, "completion request: give exactly one of messages, prompt and prompt_ids (%d given)",
                      forms);
    if ((req->messages == NULL) != (req->n_messages == 0))
        return k2_err(err, K2_EINVAL, "completion request: messages and n_messages disagree");
    if ((req->prompt_ids == NULL) != (req->n_prompt_ids == 0))
        return k2_err(err, K2_EINVAL, "completion request: prompt_ids and n_prompt_ids disagree");
    for (size_t i = 0; i < req->n_messages; i++)
        if (!req->messages[i].role)
            return k2_err(err, K2_EINVAL, "completion request: messages[%zu] has no role", i);
    if (req->n_stop && !req->stop) return k2_err(err, K2_EINVAL, "completion request: stop is NULL but n_stop is %zu", req->n_stop);
    for (size_t i = 0; i < req->n_stop; i++)
        if (!req->stop[i]) return k2_err(err, K2_EINVAL, "completion request: stop[%zu] is NULL", i);
    if (req->n_stop_ids && !req->stop_ids)
        return k2_err(err, K2_EINVAL, "completion request: stop_ids is NULL but n_stop_ids is %zu", req->n_stop_ids);
    for (size_t i = 0; i < req->n_stop_ids; i++)
        if (req->stop_ids[i] < 0 || req->stop_ids[i] >= n_vocab)
            return k2_err(err, K2_EINVAL, "completion request: stop_ids[%zu] = %d is outside the vocabulary (size %d)", i,
                          (int)req->stop_ids[i], (int)n_vocab);
    k2_sampler *probe;
    k2_sampling_options so = req->sampling;
    so.has_seed = true; /* no need to draw a seed just to check the options */
    k2_status st = k2_sampler_new(&so, n_vocab, &probe, err);
    if (st != K2_OK) return st;
    k2_sampler_free(probe);
    return K2_OK;
}

k2_status gen_prompt_ids(const k2_tokenizer *tok, const k2_completion_request *req, int32_t n_vocab, int32_t **ids,
                         size_t *n, k2_error_stage *stage, k2_error *err) {
    *ids = NULL;
    *n = 0;
    *stage = K2_STAGE_TOKENIZE;
    if (req->n_messages) {
        k2_status st = k2_chat_tokenize(tok, req->messages, req->n_messages, req->tools_json, true, ids, n, err);
        if (st != K2_OK) k2_err_prefix(err, "rendering the chat prompt: ");
        return st;
    }
    if (req->prompt) {
        k2_status st = k2_tokenize(tok, req->prompt, strlen(req->prompt), req->tokenize_flags, ids, n, err);
        if (st != K2_OK) k2_err_prefix(err, "tokenizing the prompt: ");
        return st;
    }
    *stage = K2_STAGE_PROMPT;
    for (size_t i = 0; i < req->n_prompt_ids; i++)
        if (req->prompt_ids[i] < 0 || req->prompt_ids[i] >= n_vocab)
            return k2_err(err, K2_EINVAL, "prompt_ids[%zu] = %d is outside the vocabulary (size %d)", i,
                          (int)req->prompt_ids[i], (int)n_vocab);
    if (req->n_prompt_ids) {
        *ids = k2_malloc(req->n_prompt_ids * sizeof **ids);
        if (!*ids) return k2_err(err, K2_ENOMEM, "out of memory copying the prompt");
        memcpy(*ids, req->prompt_ids, req->n_prompt_ids * sizeof **ids);
    }
    *n = req->n_prompt_ids;
    return K2_OK;
}

size_t gen_common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t n = K2_MIN(na, nb), i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* ======================================================================
 * The loop
 * ====================================================================== */

static bool slot_push(gen_slot *slot, const int32_t *ids, size_t n) {
    if (slot->n_cached + n > slot->cap_cached) {
        size_t nc = slot->cap_cached ? slot->cap_cached : 256;
        while (nc < slot->n_cached + n) nc *= 2;
        int32_t *p = realloc(slot->cached, nc * sizeof *p);
        if (!p) return false;
        slot->cached = p;
        slot->cap_cached = nc;
    }
    memcpy(slot->cached + slot->n_cached, ids, n * sizeof *ids);
    slot->n_cached += n;
    return true;
}

static double ms_since(uint64_t t0, uint64_t t1) { return (double)(t1 - t0) / 1e6; }

void gen_run(gen_slot *slot, const k2_tokenizer *tok, const k2_completion_request *req, const int32_t *ids,
             size_t n_ids, const gen_run_options *o, k2_stream *s) {
    gen_run_options defo = {0};
    if (!o) o = &defo;
    uint64_t t0 = k2_now_ns();
    gen_backend *b = slot->backend;
    k2_error err;
    k2_error_clear(&err);
    k2_usage usage = {0};
    k2_timings tm = {0};
    tm.queue_ms = o->queue_ms;
    k2_sampler *smp = NULL;
    k2_detok *dt = NULL;
    k2_error_stage stage = K2_STAGE_PROMPT;
    k2_finish_reason finish = K2_FINISH_NONE;
    k2_status st;
    const uint32_t C = b->n_ctx;
    /* Ids the tokenizer lacks (a model vocabulary padded beyond it) are never sampled. */
    const int32_t n_vocab = K2_MIN(b->n_vocab, k2_tokenizer_n_vocab(tok));
    usage.prompt_tokens = (uint32_t)K2_MIN(n_ids, (size_t)UINT32_MAX);

    if (n_ids == 0) {
        st = k2_err(&err, K2_EINVAL, "the prompt is empty");
        goto fail;
    }
    if (n_ids >= C) {
        st = k2_err(&err, K2_ERANGE, "This model's maximum context length is %u tokens, but the request has %zu prompt tokens.",
                    C, n_ids);
        goto fail;
    }
    const uint32_t P = (uint32_t)n_ids;
    for (uint32_t i = 0; i < P; i++)
        if (ids[i] < 0 || ids[i] >= b->n_vocab) {
            st = k2_err(&err, K2_EINVAL, "prompt token %u (id %d) is outside the vocabulary (size %d)", i, (int)ids[i],
                        (int)b->n_vocab);
            goto fail;
        }
    if ((st = k2_sampler_new(&req->sampling, n_vocab, &smp, &err)) != K2_OK) goto fail;
    if ((st = k2_detok_new(tok, req->detok_flags, &dt, &err)) != K2_OK) goto fail;
    for (size_t i = 0; i < req->n_stop; i++) {
        size_t L = strlen(req->stop[i]);
        if (L && (st = k2_detok_add_stop(dt, req->stop[i], L, &err)) != K2_OK) goto fail;
    }

    /* Prefix reuse: keep the common prefix of what the cache holds and the new prompt, but
     * evaluate at least the last prompt token, whose logits start generation. */
    uint32_t have = b->length(b);
    if (slot->n_cached > have) slot->n_cached = have; /* a failed eval may have left fewer */
    size_t common = gen_common_prefix(slot->cached, slot->n_cached, ids, P);
    uint32_t keep = (uint32_t)K2_MIN(common, (size_t)P - 1);
    if ((st = b->truncate(b, keep, &err)) != K2_OK) goto fail;
    slot->n_cached = keep;
    usage.cached_tokens = keep;

    uint32_t chunk = o->prefill_chunk ? o->prefill_chunk : 512;
    uint64_t tp0 = k2_now_ns();
    for (uint32_t off = keep; off < P; off += chunk) {
        if (k2_stream_cancelled(s)) {
            finish = K2_FINISH_CANCELLED;
            break;
        }
        uint32_t m = K2_MIN(chunk, P - off);
        if ((st = b->eval(b, ids + off, m, off + m == P, &err)) != K2_OK) {
            k2_err_prefix(&err, "evaluating the prompt: ");
            goto fail;
        }
        if (!slot_push(slot, ids + off, m)) {
            st = k2_err(&err, K2_ENOMEM, "out of memory");
            goto fail;
        }
    }
    uint64_t tp1 = k2_now_ns();
    tm.prompt_ms = ms_since(tp0, tp1);
    if (P > keep && tm.prompt_ms > 0) tm.prompt_tps = (double)(P - keep) * 1000.0 / tm.prompt_ms;
    for (uint32_t i = 0; i < P; i++) k2_sampler_accept(smp, ids[i], false);

    /* Generation. */
    stage = K2_STAGE_GENERATE;
    const int32_t *stops = NULL;
    size_t n_stops = req->ignore_stop_tokens ? 0 : k2_tokenizer_stop_ids(tok, &stops);
    uint32_t max_gen = C - P;
    if (req->max_tokens > 0 && (uint32_t)req->max_tokens < max_gen) max_gen = (uint32_t)req->max_tokens;
    uint32_t n_gen = 0;
    uint64_t tfirst = 0;
    while (finish == K2_FINISH_NONE) {
        if (k2_stream_cancelled(s)) {
            finish = K2_FINISH_CANCELLED;
            break;
        }
        const float *lg = b->logits(b);
        if (!lg) {
            st = k2_err(&err, K2_EINTERNAL, "no logits after evaluation");
            goto fail;
        }
        if (o->on_logits) o->on_logits(lg, b->n_vocab, o->user);
        int32_t t;
        if ((st = k2_sampler_sample(smp, lg, &t, &err)) != K2_OK) goto fail;
        if (++n_gen == 1) {
            tfirst = k2_now_ns();
            tm.ttft_ms = ms_since(t0, tfirst);
        }
        k2_sampler_accept(smp, t, true);
        bool is_stop = false;
        for (size_t i = 0; i < n_stops && !is_stop; i++) is_stop = stops[i] == t;
        for (size_t i = 0; i < req->n_stop_ids && !is_stop; i++) is_stop = req->stop_ids[i] == t;
        if (is_stop) {
            finish = K2_FINISH_STOP;
            break;
        }
        k2_str text;
        bool stopped = false;
        if ((st = k2_detok_push(dt, t, &text, &stopped, &err)) != K2_OK) goto fail;
        if (gen_stream_push_delta(s, text.ptr, text.len, &t, 1) != K2_OK) {
            st = k2_err(&err, K2_ENOMEM, "out of memory queueing a chunk");
            goto fail;
        }
        if (stopped) {
            finish = K2_FINISH_STOP;
            break;
        }
        if (n_gen >= max_gen) {
            finish = K2_FINISH_LENGTH;
            break;
        }
        if ((st = b->eval(b, &t, 1, true, &err)) != K2_OK) goto fail;
        if (!slot_push(slot, &t, 1)) {
            st = k2_err(&err, K2_ENOMEM, "out of memory");
            goto fail;
        }
    }
    usage.completion_tokens = n_gen;
    if (dt) {
        k2_str text;
        if (k2_detok_flush(dt, &text, &err) == K2_OK && text.len)
            gen_stream_push_delta(s, text.ptr, text.len, NULL, 0);
    }
    uint64_t tend = k2_now_ns();
    if (n_gen) {
        tm.gen_ms = ms_since(tfirst, tend);
        if (n_gen > 1 && tm.gen_ms > 0) tm.gen_tps = (double)(n_gen - 1) * 1000.0 / tm.gen_ms;
    }
    k2_sampler_free(smp);
    k2_detok_free(dt);
    gen_stream_push_done(s, finish, &usage, &tm);
    return;
fail:
    k2_sampler_free(smp);
    k2_detok_free(dt);
    gen_stream_push_error(s, stage, st, err.message);
}

/* ======================================================================
 * The generator
 * ====================================================================== */

typedef struct gen_job {
    struct gen_job *prev, *next;
    k2_generator *g;
    gen_request *req;
    k2_stream *s;
    uint64_t t_submit;
} gen_job;

struct k2_generator {
    k2_model *model;
    const k2_tokenizer *tok;
    k2_generator_options o;
    int32_t n_vocab;
    gen_slot *slots;
    bool *busy;
    uint32_t n_slots;
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* a slot was freed or a job ended */
    gen_job *jobs;       /* running or waiting */
    uint32_t n_jobs;
    uint64_t clock;      /* slot-use counter (LRU) */
    bool closing;
    gen_batcher *bat;    /* with several slots: their evaluations are batched */
};

void k2_generator_options_init(k2_generator_options *o) {
    memset(o, 0, sizeof *o);
    o->n_slots = 1;
    k2_context_options_init(&o->context);
    o->prefill_chunk = 512;
}

k2_status k2_generator_new(k2_model *m, const k2_tokenizer *tok, const k2_generator_options *o, k2_generator **out,
                           k2_error *err) {
    *out = NULL;
    k2_generator_options def;
    if (!o) {
        k2_generator_options_init(&def);
        o = &def;
    }
    if (!m || !tok) return k2_err(err, K2_EINVAL, "k2_generator_new: a model and a tokenizer are required");
    if (o->n_slots == 0 || o->n_slots > 1024)
        return k2_err(err, K2_EINVAL, "k2_generator_new: n_slots %u must be between 1 and 1024", o->n_slots);
    k2_generator *g = k2_calloc(1, sizeof *g);
    if (!g) return k2_err(err, K2_ENOMEM, "out of memory");
    g->model = m;
    g->tok = tok;
    g->o = *o;
    g->n_vocab = (int32_t)k2_model_n_vocab(m);
    g->n_slots = o->n_slots;
    g->slots = k2_calloc(o->n_slots, sizeof *g->slots);
    g->busy = k2_calloc(o->n_slots, sizeof *g->busy);
    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (o->n_slots > 1) g->bat = batcher_new(o->n_slots);
    if (!g->slots || !g->busy || (o->n_slots > 1 && !g->bat)) {
        k2_generator_free(g);
        return k2_err(err, K2_ENOMEM, "out of memory");
    }
    for (uint32_t i = 0; i < o->n_slots; i++) {
        k2_context *ctx;
        k2_status st = k2_context_new(m, &o->context, &ctx, err);
        if (st == K2_OK) {
            st = gen_backend_model_new(ctx, g->n_vocab, &g->slots[i].backend, err);
            if (st != K2_OK) k2_context_free(ctx);
            else ((model_backend *)g->slots[i].backend)->bat = g->bat;
        }
        if (st != K2_OK) {
            k2_err_prefix(err, "generator slot %u: ", i);
            k2_generator_free(g);
            return st;
        }
    }
    *out = g;
    return K2_OK;
}

void k2_generator_free(k2_generator *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->closing = true;
    for (gen_job *j = g->jobs; j; j = j->next) k2_stream_cancel(j->s);
    while (g->n_jobs > 0) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
    if (g->slots)
        for (uint32_t i = 0; i < g->n_slots; i++) gen_slot_clear(&g->slots[i]);
    free(g->slots);
    free(g->busy);
    batcher_free(g->bat);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

void gen_generator_batch_stats(k2_generator *g, uint64_t *batches, uint64_t *evals) {
    *batches = *evals = 0;
    if (!g->bat) return;
    pthread_mutex_lock(&g->bat->mu);
    *batches = g->bat->n_batches;
    *evals = g->bat->n_evals;
    pthread_mutex_unlock(&g->bat->mu);
}

uint32_t k2_generator_n_ctx(const k2_generator *g) {
    return g->n_slots && g->slots[0].backend ? g->slots[0].backend->n_ctx : 0;
}

/* Picks the free slot sharing the longest prefix with the prompt (least recently used on
 * ties); waits while every slot is busy. Returns -1 when cancelled or closing. */
static int acquire_slot(k2_generator *g, k2_stream *s, const int32_t *ids, size_t n) {
    pthread_mutex_lock(&g->mu);
    int best = -1;
    while (!g->closing && !k2_stream_cancelled(s)) {
        size_t best_common = 0;
        for (uint32_t i = 0; i < g->n_slots; i++) {
            if (g->busy[i]) continue;
            gen_slot *sl = &g->slots[i];
            size_t c = gen_common_prefix(sl->cached, sl->n_cached, ids, n);
            if (best < 0 || c > best_common || (c == best_common && sl->last_used < g->slots[best].last_used)) {
                best = (int)i;
                best_common = c;
            }
        }
        if (best >= 0) {
            g->busy[best] = true;
            g->slots[best].last_used = ++g->clock;
            break;
        }
        /* Wake up now and then to notice cancellation (nobody signals it here). */
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_nsec += 20 * 1000000L;
        if (dl.tv_nsec >= 1000000000L) {
            dl.tv_sec++;
            dl.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&g->cv, &g->mu, &dl);
    }
    pthread_mutex_unlock(&g->mu);
    return best;
}

static void *job_main(void *arg) {
    gen_job *j = arg;
    k2_generator *g = j->g;
    const k2_completion_request *req = gen_request_view(j->req);
    int32_t *ids = NULL;
    size_t n = 0;
    k2_error err;
    k2_error_stage stage;
    if (gen_prompt_ids(g->tok, req, g->n_vocab, &ids, &n, &stage, &err) != K2_OK) {
        gen_stream_push_error(j->s, stage, err.status, err.message);
    } else {
        int si = acquire_slot(g, j->s, ids, n);
        if (si < 0) {
            k2_usage u = {.prompt_tokens = (uint32_t)n};
            k2_timings tm = {.queue_ms = ms_since(j->t_submit, k2_now_ns())};
            gen_stream_push_done(j->s, K2_FINISH_CANCELLED, &u, &tm);
        } else {
            gen_run_options ro = {.prefill_chunk = g->o.prefill_chunk,
                                  .queue_ms = ms_since(j->t_submit, k2_now_ns())};
            batcher_active(g->bat, +1);
            gen_run(&g->slots[si], g->tok, req, ids, n, &ro, j->s);
            batcher_active(g->bat, -1);
            pthread_mutex_lock(&g->mu);
            g->busy[si] = false;
            pthread_cond_broadcast(&g->cv);
            pthread_mutex_unlock(&g->mu);
        }
    }
    free(ids);
    gen_request_free(j->req);
    pthread_mutex_lock(&g->mu);
    /* released under the generator's lock, with the job still listed: k2_generator_free
     * cancels listed jobs' streams under that lock, and the stream may be freed right here
     * (found by ThreadSanitizer) */
    gen_stream_release(j->s);
    if (j->prev) j->prev->next = j->next;
    else g->jobs = j->next;
    if (j->next) j->next->prev = j->prev;
    g->n_jobs--;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
    free(j);
    return NULL;
}

k2_status k2_generate(k2_generator *g, const k2_completion_request *req, k2_stream **out, k2_error *err) {
    *out = NULL;
    k2_status st = gen_request_validate(req, g->n_vocab, err);
    if (st != K2_OK) return st;
    gen_job *j = k2_calloc(1, sizeof *j);
    if (!j) return k2_err(err, K2_ENOMEM, "out of memory");
    j->g = g;
    j->t_submit = k2_now_ns();
    if ((st = gen_request_copy(req, &j->req, err)) != K2_OK) {
        free(j);
        return st;
    }
    /* A request without a seed gets one now, so that each request's draws differ. */
    if (!j->req->r.sampling.has_seed) {
        j->req->r.sampling.seed = gen_random_seed();
        j->req->r.sampling.has_seed = true;
    }
    if ((st = gen_stream_new(&j->s, err)) != K2_OK) {
        gen_request_free(j->req);
        free(j);
        return st;
    }
    pthread_mutex_lock(&g->mu);
    if (g->closing) {
        pthread_mutex_unlock(&g->mu);
        gen_stream_release(j->s);
        k2_stream_free(j->s);
        gen_request_free(j->req);
        free(j);
        return k2_err(err, K2_ECANCELLED, "the generator is shutting down");
    }
    j->next = g->jobs;
    if (g->jobs) g->jobs->prev = j;
    g->jobs = j;
    g->n_jobs++;
    pthread_mutex_unlock(&g->mu);

    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    k2_stream *s = j->s;
    int rc = pthread_create(&th, &attr, job_main, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_lock(&g->mu);
        if (j->prev) j->prev->next = j->next;
        else g->jobs = j->next;
        if (j->next) j->next->prev = j->prev;
        g->n_jobs--;
        pthread_cond_broadcast(&g->cv);
        pthread_mutex_unlock(&g->mu);
        gen_stream_release(s);
        k2_stream_free(s);
        gen_request_free(j->req);
        free(j);
        return k2_err(err, K2_ENOMEM, "could not start a generation thread");
    }
    *out = s;
    return K2_OK;
}
