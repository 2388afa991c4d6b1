/* k2_stream: the chunk queue between one producer (the completion loop) and one consumer
 * (polling with a timeout, blocking, or a callback). A mutex + condition variable guard
 * the queue; a second mutex serialises callback delivery so that chunks reach a callback
 * in order even while the consumer switches to callback mode. The object is shared by
 * reference count: the consumer may free it while generation still runs. */
#include "generate/generate.h"

#include "base/base.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct node {
    struct node *next;
    k2_chunk c;
    char *text;
    int32_t *ids;
    char *msg;
} node;

struct k2_stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;       /* a chunk was queued or the final one was pushed */
    pthread_mutex_t cb_mu;   /* held while delivering to a callback */
    node *head, *tail;
    node *current;           /* the chunk last returned by k2_stream_next */
    bool final_pushed;       /* producer pushed DONE/ERROR */
    bool final_taken;        /* consumer received it */
    atomic_bool cancelled;
    int refs;
    k2_chunk_cb cb;
    void *user;
};

static void node_free(node *n) {
    if (!n) return;
    free(n->text);
    free(n->ids);
    free(n->msg);
    free(n);
}

static void stream_destroy(k2_stream *s) {
    node *n = s->head;
    while (n) {
        node *nx = n->next;
        node_free(n);
        n = nx;
    }
    node_free(s->current);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->cb_mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

k2_status gen_stream_new(k2_stream **out, k2_error *err) {
    *out = NULL;
    k2_stream *s = k2_calloc(1, sizeof *s);
    if (!s) return k2_err(err, K2_ENOMEM, "out of memory creating a stream");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->cb_mu, NULL);
    atomic_init(&s->cancelled, false);
    s->refs = 2;
    *out = s;
    return K2_OK;
}

static void unref(k2_stream *s) {
    pthread_mutex_lock(&s->mu);
    int left = --s->refs;
    pthread_mutex_unlock(&s->mu);
    if (left == 0) stream_destroy(s);
}

void gen_stream_release(k2_stream *s) {
    if (s) unref(s);
}

void k2_stream_free(k2_stream *s) {
    if (!s) return;
    k2_stream_cancel(s);
    unref(s);
}

void k2_stream_cancel(k2_stream *s) {
    if (s) atomic_store(&s->cancelled, true);
}

bool k2_stream_cancelled(const k2_stream *s) {
    return atomic_load(&((k2_stream *)s)->cancelled);
}

/* Queues a node or hands it to the callback. */
static k2_status push(k2_stream *s, node *n) {
    bool final = n->c.type != K2_CHUNK_DELTA;
    pthread_mutex_lock(&s->cb_mu);
    pthread_mutex_lock(&s->mu);
    if (s->final_pushed) {
        pthread_mutex_unlock(&s->mu);
        pthread_mutex_unlock(&s->cb_mu);
        node_free(n);
        return K2_EINVAL;
    }
    if (s->cb) {
        k2_chunk_cb cb = s->cb;
        void *user = s->user;
        pthread_mutex_unlock(&s->mu);
        cb(&n->c, user);
        node_free(n);
        pthread_mutex_lock(&s->mu);
        if (final) {
            s->final_pushed = true;
            s->final_taken = true;
        }
    } else {
        if (s->tail) s->tail->next = n;
        else s->head = n;
        s->tail = n;
        if (final) s->final_pushed = true;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_mutex_unlock(&s->cb_mu);
    return K2_OK;
}

k2_status gen_stream_push_delta(k2_stream *s, const char *text, size_t len, const int32_t *ids, size_t n_ids) {
    node *n = k2_calloc(1, sizeof *n);
    if (!n) return K2_ENOMEM;
    n->text = k2_malloc(len + 1);
    n->ids = n_ids ? k2_malloc(n_ids * sizeof *ids) : NULL;
    if (!n->text || (n_ids && !n->ids)) {
        node_free(n);
        return K2_ENOMEM;
    }
    if (len) memcpy(n->text, text, len);
    n->text[len] = 0;
    if (n_ids) memcpy(n->ids, ids, n_ids * sizeof *ids);
    n->c.type = K2_CHUNK_DELTA;
    n->c.text = n->text;
    n->c.text_len = len;
    n->c.ids = n->ids;
    n->c.n_ids = n_ids;
    n->c.message = "";
    return push(s, n);
}

/* The final chunks must arrive even when memory is short: they are built in place. */
k2_status gen_stream_push_done(k2_stream *s, k2_finish_reason finish, const k2_usage *usage,
                               const k2_timings *timings) {
    node *n = k2_calloc(1, sizeof *n);
    if (!n) return K2_ENOMEM;
    n->c.type = K2_CHUNK_DONE;
    n->c.text = "";
    n->c.message = "";
    n->c.finish = finish;
    if (usage) n->c.usage = *usage;
    if (timings) n->c.timings = *timings;
    return push(s, n);
}

k2_status gen_stream_push_error(k2_stream *s, k2_error_stage stage, k2_status status, const char *message) {
    node *n = k2_calloc(1, sizeof *n);
    if (!n) return K2_ENOMEM;
    n->msg = k2_strdup(message ? message : "");
    n->c.type = K2_CHUNK_ERROR;
    n->c.text = "";
    n->c.message = n->msg ? n->msg : "out of memory";
    n->c.stage = stage;
    n->c.status = status;
    return push(s, n);
}

static void deadline_after(struct timespec *ts, int64_t ms) {
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits on cv until pred(s) holds; false on timeout. Called with mu held. */
static bool wait_until(k2_stream *s, bool (*pred)(const k2_stream *), int64_t timeout_ms) {
    if (pred(s)) return true;
    if (timeout_ms == 0) return false;
    struct timespec dl;
    if (timeout_ms > 0) deadline_after(&dl, timeout_ms);
    while (!pred(s)) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->cv, &s->mu);
        } else if (pthread_cond_timedwait(&s->cv, &s->mu, &dl) == ETIMEDOUT) {
            return pred(s);
        }
    }
    return true;
}

static bool has_chunk(const k2_stream *s) { return s->head != NULL || s->cb != NULL; }
static bool has_final(const k2_stream *s) { return s->final_pushed; }

k2_status k2_stream_next(k2_stream *s, int64_t timeout_ms, k2_chunk *chunk) {
    pthread_mutex_lock(&s->mu);
    node_free(s->current);
    s->current = NULL;
    k2_status st;
    if (s->cb) {
        st = K2_EINVAL;
    } else if (s->final_taken) {
        st = K2_ENOTFOUND;
    } else if (!wait_until(s, has_chunk, timeout_ms)) {
        st = K2_ETIMEOUT;
    } else if (!s->head) {
        st = K2_EINVAL; /* switched to callback mode while waiting */
    } else {
        node *n = s->head;
        s->head = n->next;
        if (!s->head) s->tail = NULL;
        n->next = NULL;
        if (n->c.type != K2_CHUNK_DELTA) s->final_taken = true;
        s->current = n;
        *chunk = n->c;
        st = K2_OK;
    }
    pthread_mutex_unlock(&s->mu);
    return st;
}

k2_status k2_stream_wait(k2_stream *s, int64_t timeout_ms) {
    pthread_mutex_lock(&s->mu);
    bool ok = wait_until(s, has_final, timeout_ms);
    pthread_mutex_unlock(&s->mu);
    return ok ? K2_OK : K2_ETIMEOUT;
}

void k2_stream_set_callback(k2_stream *s, k2_chunk_cb cb, void *user) {
    pthread_mutex_lock(&s->cb_mu);
    pthread_mutex_lock(&s->mu);
    s->cb = cb;
    s->user = user;
    node *q = NULL;
    if (cb) {
        q = s->head;
        s->head = s->tail = NULL;
        for (node *n = q; n; n = n->next)
            if (n->c.type != K2_CHUNK_DELTA) s->final_taken = true;
    }
    pthread_cond_broadcast(&s->cv); /* a blocked k2_stream_next returns K2_EINVAL */
    pthread_mutex_unlock(&s->mu);
    while (q) {
        node *nx = q->next;
        cb(&q->c, user);
        node_free(q);
        q = nx;
    }
    pthread_mutex_unlock(&s->cb_mu);
}

const char *k2_finish_reason_name(k2_finish_reason r) {
    switch (r) {
    case K2_FINISH_STOP: return "stop";
    case K2_FINISH_LENGTH: return "length";
    case K2_FINISH_CANCELLED: return "cancelled";
    default: return "";
    }
}

const char *k2_error_stage_name(k2_error_stage s) {
    switch (s) {
    case K2_STAGE_DOWNLOAD: return "download";
    case K2_STAGE_LOAD: return "load";
    case K2_STAGE_TOKENIZE: return "tokenize";
    case K2_STAGE_PROMPT: return "prompt";
    case K2_STAGE_GENERATE: return "generate";
    }
    return "";
}
