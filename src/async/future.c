/* Futures: a mutex + condition variable for waiters on any thread, and a list of
 * continuations that always run on the owning runtime's loop thread. */
#include "async/async.h"
#include "base/base.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct then_cb {
    struct then_cb *next;
    k2_future_cb cb;
    void *user;
} then_cb;

struct k2_future {
    atomic_int refs;
    k2_runtime *rt;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    k2_future_state state;
    k2_error err;
    void *result;
    void (*free_result)(void *);
    then_cb *thens;
    k2_task_fn cancel_hook;
    void *cancel_user;
    bool cancel_requested;
};

k2_future *k2_future_new(k2_runtime *rt) {
    k2_future *f = k2_calloc(1, sizeof *f);
    if (!f) return NULL;
    atomic_init(&f->refs, 1);
    f->rt = rt;
    pthread_mutex_init(&f->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    k2_error_clear(&f->err);
    return f;
}

k2_runtime *k2_future_runtime(const k2_future *f) { return f->rt; }

k2_future *k2_future_ref(k2_future *f) {
    if (f) atomic_fetch_add(&f->refs, 1);
    return f;
}

void k2_future_free(k2_future *f) {
    if (!f) return;
    if (atomic_fetch_sub(&f->refs, 1) != 1) return;
    if (f->free_result && f->result) f->free_result(f->result);
    for (then_cb *t = f->thens; t;) { then_cb *n = t->next; free(t); t = n; }
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cond);
    free(f);
}

typedef struct then_call {
    k2_future *f;
    k2_future_cb cb;
    void *user;
} then_call;

static void run_then(void *u) {
    then_call *c = u;
    c->cb(c->f, c->user);
    k2_future_free(c->f);
    free(c);
}

static void post_then(k2_future *f, k2_future_cb cb, void *user) {
    then_call *c = k2_malloc(sizeof *c);
    if (!c) return;
    c->f = k2_future_ref(f);
    c->cb = cb;
    c->user = user;
    if (!f->rt || k2_runtime_post(f->rt, run_then, c) != K2_OK) {
        /* no loop to run on (shutting down): deliver here rather than lose it */
        run_then(c);
    }
}

static bool settle(k2_future *f, k2_future_state st, void *result, void (*free_result)(void *),
                   const k2_error *err) {
    pthread_mutex_lock(&f->mu);
    if (f->state != K2_FUTURE_PENDING) {
        pthread_mutex_unlock(&f->mu);
        if (free_result && result) free_result(result);
        return false;
    }
    f->state = st;
    f->result = result;
    f->free_result = free_result;
    if (err) f->err = *err;
    then_cb *thens = f->thens;
    f->thens = NULL;
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->mu);
    while (thens) {
        then_cb *n = thens->next;
        post_then(f, thens->cb, thens->user);
        free(thens);
        thens = n;
    }
    return true;
}

bool k2_future_resolve(k2_future *f, void *result, void (*free_result)(void *)) {
    return settle(f, K2_FUTURE_DONE, result, free_result, NULL);
}

bool k2_future_fail(k2_future *f, const k2_error *err) {
    k2_error e;
    if (err) e = *err;
    else k2_err(&e, K2_EINTERNAL, "operation failed without a reason");
    if (e.status == K2_OK) e.status = K2_EINTERNAL;
    return settle(f, e.status == K2_ECANCELLED ? K2_FUTURE_CANCELLED : K2_FUTURE_FAILED, NULL, NULL, &e);
}

void k2_future_set_cancel_hook(k2_future *f, k2_task_fn hook, void *user) {
    pthread_mutex_lock(&f->mu);
    f->cancel_hook = hook;
    f->cancel_user = user;
    pthread_mutex_unlock(&f->mu);
}

bool k2_future_cancel_requested(const k2_future *f) {
    k2_future *m = (k2_future *)f;
    pthread_mutex_lock(&m->mu);
    bool r = m->cancel_requested;
    pthread_mutex_unlock(&m->mu);
    return r;
}

k2_future_state k2_future_state_of(const k2_future *f) {
    k2_future *m = (k2_future *)f;
    pthread_mutex_lock(&m->mu);
    k2_future_state s = m->state;
    pthread_mutex_unlock(&m->mu);
    return s;
}

static k2_status state_status(const k2_future *f) {
    switch (f->state) {
    case K2_FUTURE_DONE: return K2_OK;
    case K2_FUTURE_PENDING: return K2_ETIMEOUT;
    case K2_FUTURE_CANCELLED: return K2_ECANCELLED;
    default: return f->err.status != K2_OK ? f->err.status : K2_EINTERNAL;
    }
}

k2_status k2_future_wait(k2_future *f, int64_t timeout_ms) {
    pthread_mutex_lock(&f->mu);
    if (timeout_ms < 0) {
        while (f->state == K2_FUTURE_PENDING) pthread_cond_wait(&f->cond, &f->mu);
    } else if (f->state == K2_FUTURE_PENDING) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += timeout_ms / 1000;
        ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        while (f->state == K2_FUTURE_PENDING) {
            if (pthread_cond_timedwait(&f->cond, &f->mu, &ts) == ETIMEDOUT) break;
        }
    }
    k2_status s = state_status(f);
    pthread_mutex_unlock(&f->mu);
    return s;
}

void k2_future_then(k2_future *f, k2_future_cb cb, void *user) {
    if (!f || !cb) return;
    pthread_mutex_lock(&f->mu);
    if (f->state == K2_FUTURE_PENDING) {
        then_cb *t = k2_calloc(1, sizeof *t);
        if (t) {
            t->cb = cb;
            t->user = user;
            /* keep registration order */
            then_cb **pp = &f->thens;
            while (*pp) pp = &(*pp)->next;
            *pp = t;
        }
        pthread_mutex_unlock(&f->mu);
        return;
    }
    pthread_mutex_unlock(&f->mu);
    post_then(f, cb, user);
}

static void run_cancel_hook(void *u) {
    k2_future *f = u;
    pthread_mutex_lock(&f->mu);
    k2_task_fn hook = f->cancel_hook;
    void *user = f->cancel_user;
    bool pending = f->state == K2_FUTURE_PENDING;
    pthread_mutex_unlock(&f->mu);
    if (pending && hook) hook(user);
    k2_future_free(f);
}

void k2_future_cancel(k2_future *f) {
    if (!f) return;
    pthread_mutex_lock(&f->mu);
    if (f->state != K2_FUTURE_PENDING || f->cancel_requested) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    f->cancel_requested = true;
    bool has_hook = f->cancel_hook != NULL;
    pthread_mutex_unlock(&f->mu);
    if (has_hook && f->rt) {
        k2_future_ref(f);
        if (k2_runtime_post(f->rt, run_cancel_hook, f) == K2_OK) return;
        k2_future_free(f);
    }
    k2_error e;
    k2_err(&e, K2_ECANCELLED, "cancelled");
    k2_future_fail(f, &e);
}

const k2_error *k2_future_error(const k2_future *f) { return &f->err; }

void *k2_future_result(const k2_future *f) {
    k2_future *m = (k2_future *)f;
    pthread_mutex_lock(&m->mu);
    void *r = m->state == K2_FUTURE_DONE ? m->result : NULL;
    pthread_mutex_unlock(&m->mu);
    return r;
}
