/* k2_complete_ref: one stream over opening a model and completing on it.
 *
 * A detached thread per request waits for the (shared) open, starts the completion on the
 * model's generator and copies the inner stream's chunks to the caller's stream. Copying
 * (rather than handing out the inner stream) lets the stream report download and load
 * failures as ERROR chunks, and lets the thread drop its model reference before it pushes
 * the final chunk: releasing the last reference frees the generator, which waits for the
 * generator's own threads, so it must not happen on one of them. */
#include "runtime/runtime.h"

#include "base/base.h"
#include "generate/generate.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct fwd {
    k2_stream *outer;             /* producer reference */
    gen_request *req;
    k2_future *open;
    k2_error_stage stage;
    pthread_mutex_t mu;           /* guards open / inner for the cancel hook */
    k2_stream *inner;
    bool cancelled;
} fwd;

static void fwd_cancel(void *user) {
    fwd *w = user;
    pthread_mutex_lock(&w->mu);
    w->cancelled = true;
    if (w->inner) k2_stream_cancel(w->inner);
    else if (w->open) k2_future_cancel(w->open);
    pthread_mutex_unlock(&w->mu);
}

/* Final chunk saved until the model is released. */
typedef struct final_chunk {
    k2_chunk c;
    char *msg;
} final_chunk;

static void *fwd_main(void *arg) {
    fwd *w = arg;
    final_chunk fin;
    memset(&fin, 0, sizeof fin);
    k2_model *m = NULL;
    k2_future_wait(w->open, -1);
    k2_future_state fs = k2_future_state_of(w->open);
    if (fs == K2_FUTURE_DONE) {
        m = k2_model_open_result(w->open);
    } else if (fs == K2_FUTURE_CANCELLED) {
        fin.c.type = K2_CHUNK_DONE;
        fin.c.finish = K2_FINISH_CANCELLED;
    } else {
        const k2_error *e = k2_future_error(w->open);
        fin.c.type = K2_CHUNK_ERROR;
        fin.c.stage = w->stage;
        fin.c.status = e->status;
        fin.msg = k2_strdup(e->message);
    }
    pthread_mutex_lock(&w->mu);
    k2_future *open = w->open;
    w->open = NULL;
    pthread_mutex_unlock(&w->mu);
    k2_future_free(open);

    if (m) {
        k2_stream *inner = NULL;
        k2_error err;
        k2_status st = K2_OK;
        pthread_mutex_lock(&w->mu);
        bool cancelled = w->cancelled;
        pthread_mutex_unlock(&w->mu);
        if (cancelled) {
            fin.c.type = K2_CHUNK_DONE;
            fin.c.finish = K2_FINISH_CANCELLED;
        } else {
            /* outside the lock: making the generator may take a while, and the cancel hook
             * must not wait for it */
            st = k2_complete(m, gen_request_view(w->req), &inner, &err);
            pthread_mutex_lock(&w->mu);
            w->inner = inner;
            if (inner && w->cancelled) k2_stream_cancel(inner);
            pthread_mutex_unlock(&w->mu);
        }
        if (st != K2_OK) {
            fin.c.type = K2_CHUNK_ERROR;
            fin.c.stage = K2_STAGE_PROMPT;
            fin.c.status = err.status;
            fin.msg = k2_strdup(err.message);
        }
        k2_chunk c;
        while (inner && k2_stream_next(inner, -1, &c) == K2_OK) {
            if (c.type == K2_CHUNK_DELTA) {
                gen_stream_push_delta(w->outer, c.text, c.text_len, c.ids, c.n_ids);
                continue;
            }
            fin.c = c;
            fin.msg = c.message ? k2_strdup(c.message) : NULL;
            break;
        }
        pthread_mutex_lock(&w->mu);
        w->inner = NULL;
        pthread_mutex_unlock(&w->mu);
        k2_stream_free(inner);
        k2_model_free(m);
    }
    gen_stream_set_cancel_hook(w->outer, NULL, NULL);
    if (fin.c.type == K2_CHUNK_ERROR)
        gen_stream_push_error(w->outer, fin.c.stage, fin.c.status, fin.msg ? fin.msg : "failed");
    else if (fin.c.type == K2_CHUNK_DONE)
        gen_stream_push_done(w->outer, fin.c.finish, &fin.c.usage, &fin.c.timings);
    else
        gen_stream_push_error(w->outer, K2_STAGE_GENERATE, K2_EINTERNAL, "the completion ended without a final chunk");
    free(fin.msg);
    k2_stream *outer = w->outer;
    gen_request_free(w->req);
    pthread_mutex_destroy(&w->mu);
    free(w);
    gen_stream_release(outer);
    return NULL;
}

k2_status k2_complete_ref(k2_runtime *rt, const char *ref, const k2_model_open_options *o,
                          const k2_completion_request *req, k2_stream **out, k2_error *err) {
    *out = NULL;
    if (!rt || !ref || !req) return k2_err(err, K2_EINVAL, "k2_complete_ref: a runtime, a reference and a request are required");
    /* What can be checked without the model is checked now. The vocabulary is not known
     * yet: bound it by the largest id the request names (the model's own bound applies
     * when the completion starts; the sampler probe allocates n_vocab entries). */
    int32_t bound = 1;
    for (size_t i = 0; req->sampling.logit_bias && i < req->sampling.n_logit_bias; i++)
        if (req->sampling.logit_bias[i].token >= bound && req->sampling.logit_bias[i].token < INT32_MAX)
            bound = req->sampling.logit_bias[i].token + 1;
    for (size_t i = 0; req->stop_ids && i < req->n_stop_ids; i++)
        if (req->stop_ids[i] >= bound && req->stop_ids[i] < INT32_MAX) bound = req->stop_ids[i] + 1;
    k2_status st = gen_request_validate(req, bound, err);
    if (st != K2_OK) return st;
    fwd *w = k2_calloc(1, sizeof *w);
    if (!w) return k2_err(err, K2_ENOMEM, "out of memory");
    pthread_mutex_init(&w->mu, NULL);
    w->stage = K2_STAGE_LOAD;
    if ((st = gen_request_copy(req, &w->req, err)) != K2_OK) {
        pthread_mutex_destroy(&w->mu);
        free(w);
        return st;
    }
    if ((st = gen_stream_new(&w->outer, err)) != K2_OK) {
        gen_request_free(w->req);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return st;
    }
    w->open = rtm_open(rt, ref, o, &w->stage);
    if (!w->open) {
        gen_stream_release(w->outer);
        k2_stream_free(w->outer);
        gen_request_free(w->req);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return k2_err(err, K2_ENOMEM, "out of memory");
    }
    k2_stream *s = w->outer;
    gen_stream_set_cancel_hook(s, fwd_cancel, w);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, fwd_main, w);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        gen_stream_set_cancel_hook(s, NULL, NULL);
        k2_future_cancel(w->open);
        k2_future_free(w->open);
        gen_stream_release(s);
        k2_stream_free(s);
        gen_request_free(w->req);
        pthread_mutex_destroy(&w->mu);
        free(w);
        return k2_err(err, K2_ENOMEM, "could not start a completion thread");
    }
    *out = s;
    return K2_OK;
}
