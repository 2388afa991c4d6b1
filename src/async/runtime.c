/* The runtime: a libuv loop on its own thread, a task queue other threads post
 * to (uv_async), and a worker pool of plain pthreads whose completions come back
 * through the same queue. */
#include "async/async.h"
#include "base/base.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct task {
    struct task *next;
    k2_task_fn fn;
    void *user;
    k2_task_fn done;   /* worker tasks: run on the loop afterwards */
} task;

typedef struct slot {
    struct slot *next;
    const void *key;
    void *value;
    void (*dtor)(void *);
} slot;

struct k2_runtime_op {
    k2_runtime_op *prev, *next;
    k2_task_fn on_shutdown;
    void *user;
};

struct k2_runtime {
    uv_loop_t loop;
    uv_async_t wake;
    pthread_t thread;
    pthread_t loop_tid;
    bool thread_started;

    pthread_mutex_t mu;          /* guards posted, closed */
    task *posted_head, *posted_tail;
    bool closed;                 /* no more posts accepted */

    /* worker pool */
    pthread_mutex_t wmu;
    pthread_cond_t wcond;
    task *work_head, *work_tail;
    bool wstop;
    int n_workers;
    pthread_t *workers;

    /* loop-thread-only state */
    k2_runtime_op ops;           /* sentinel of the active-operation list */
    int n_work_inflight;
    bool stopping;
    bool handles_closed;
    slot *slots;
};

void k2_runtime_options_init(k2_runtime_options *o) {
    memset(o, 0, sizeof *o);
}

uv_loop_t *k2_runtime_loop(k2_runtime *rt) { return &rt->loop; }

bool k2_runtime_on_loop_thread(const k2_runtime *rt) {
    return rt->thread_started && pthread_equal(pthread_self(), rt->loop_tid);
}

static void queue_push(task **head, task **tail, task *t) {
    t->next = NULL;
    if (*tail) (*tail)->next = t;
    else *head = t;
    *tail = t;
}

k2_status k2_runtime_post(k2_runtime *rt, k2_task_fn fn, void *user) {
    task *t = k2_calloc(1, sizeof *t);
    if (!t) return K2_ENOMEM;
    t->fn = fn;
    t->user = user;
    pthread_mutex_lock(&rt->mu);
    if (rt->closed) {
        pthread_mutex_unlock(&rt->mu);
        free(t);
        return K2_ECANCELLED;
    }
    queue_push(&rt->posted_head, &rt->posted_tail, t);
    pthread_mutex_unlock(&rt->mu);
    uv_async_send(&rt->wake);
    return K2_OK;
}

static void maybe_finish(k2_runtime *rt);

static void close_cb(uv_handle_t *h) { (void)h; }

static void walk_close(uv_handle_t *h, void *arg) {
    (void)arg;
    if (!uv_is_closing(h)) uv_close(h, close_cb);
}

/* Drains the posted queue; worker completions arrive here too. */
static void on_wake(uv_async_t *a) {
    k2_runtime *rt = a->data;
    for (;;) {
        pthread_mutex_lock(&rt->mu);
        task *t = rt->posted_head;
        rt->posted_head = rt->posted_tail = NULL;
        pthread_mutex_unlock(&rt->mu);
        if (!t) break;
        while (t) {
            task *next = t->next;
            if (t->done) {
                /* a finished worker task: its completion runs here */
                rt->n_work_inflight--;
                t->done(t->user);
            } else if (t->fn) {
                t->fn(t->user);
            }
            free(t);
            t = next;
        }
    }
    maybe_finish(rt);
}

static void noop_task(void *u) { (void)u; }

static void *worker_main(void *arg) {
    k2_runtime *rt = arg;
    for (;;) {
        pthread_mutex_lock(&rt->wmu);
        while (!rt->work_head && !rt->wstop) pthread_cond_wait(&rt->wcond, &rt->wmu);
        task *t = rt->work_head;
        if (!t) {
            pthread_mutex_unlock(&rt->wmu);
            return NULL;
        }
        rt->work_head = t->next;
        if (!rt->work_head) rt->work_tail = NULL;
        pthread_mutex_unlock(&rt->wmu);

        t->fn(t->user);
        /* Hand the completion back to the loop thread; the queue is accepted even
         * while closing so that in-flight work always completes. */
        if (!t->done) t->done = noop_task;
        t->fn = NULL;
        pthread_mutex_lock(&rt->mu);
        queue_push(&rt->posted_head, &rt->posted_tail, t);
        pthread_mutex_unlock(&rt->mu);
        uv_async_send(&rt->wake);
    }
}

typedef struct submit_ctx {
    k2_runtime *rt;
    task *t;
} submit_ctx;

static void submit_on_loop(void *u) {
    submit_ctx *c = u;
    k2_runtime *rt = c->rt;
    rt->n_work_inflight++;
    pthread_mutex_lock(&rt->wmu);
    queue_push(&rt->work_head, &rt->work_tail, c->t);
    pthread_cond_signal(&rt->wcond);
    pthread_mutex_unlock(&rt->wmu);
    free(c);
}

void k2_runtime_submit_work(k2_runtime *rt, k2_task_fn work, k2_task_fn done, void *user) {
    task *t = k2_calloc(1, sizeof *t);
    if (!t) return;
    t->fn = work;
    t->user = user;
    t->done = done ? done : noop_task;
    if (k2_runtime_on_loop_thread(rt)) {
        submit_ctx c0 = {rt, t};
        submit_ctx *c = k2_malloc(sizeof *c);
        if (!c) { free(t); return; }
        *c = c0;
        submit_on_loop(c);
        return;
    }
    submit_ctx *c = k2_malloc(sizeof *c);
    if (!c) { free(t); return; }
    c->rt = rt;
    c->t = t;
    if (k2_runtime_post(rt, submit_on_loop, c) != K2_OK) {
        /* closing: run it here so the caller's done still happens on some thread */
        free(c);
        work(user);
        if (done) done(user);
        free(t);
    }
}

void **k2_runtime_slot(k2_runtime *rt, const void *key, void (*dtor)(void *)) {
    for (slot *s = rt->slots; s; s = s->next)
        if (s->key == key) return &s->value;
    slot *s = k2_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->key = key;
    s->dtor = dtor;
    s->next = rt->slots;
    rt->slots = s;
    return &s->value;
}

k2_runtime_op *k2_runtime_op_begin(k2_runtime *rt, k2_task_fn on_shutdown, void *user) {
    k2_runtime_op *op = k2_calloc(1, sizeof *op);
    if (!op) return NULL;
    op->on_shutdown = on_shutdown;
    op->user = user;
    op->next = rt->ops.next;
    op->prev = &rt->ops;
    rt->ops.next->prev = op;
    rt->ops.next = op;
    if (rt->stopping && on_shutdown) on_shutdown(user);
    return op;
}

void k2_runtime_op_end(k2_runtime *rt, k2_runtime_op *op) {
    if (!op) return;
    op->prev->next = op->next;
    op->next->prev = op->prev;
    free(op);
    maybe_finish(rt);
}

static void maybe_finish(k2_runtime *rt) {
    if (!rt->stopping || rt->handles_closed) return;
    if (rt->ops.next != &rt->ops || rt->n_work_inflight > 0) return;
    pthread_mutex_lock(&rt->mu);
    bool empty = rt->posted_head == NULL;
    if (empty) rt->closed = true;
    pthread_mutex_unlock(&rt->mu);
    if (!empty) {
        uv_async_send(&rt->wake);
        return;
    }
    rt->handles_closed = true;
    uv_walk(&rt->loop, walk_close, NULL);
}

static void stop_task(void *u) {
    k2_runtime *rt = u;
    rt->stopping = true;
    /* hooks may end their op synchronously: walk a snapshot-safe way */
    for (k2_runtime_op *op = rt->ops.next; op != &rt->ops;) {
        k2_runtime_op *next = op->next;
        if (op->on_shutdown) op->on_shutdown(op->user);
        op = next;
    }
    maybe_finish(rt);
}

static void *loop_main(void *arg) {
    k2_runtime *rt = arg;
    uv_run(&rt->loop, UV_RUN_DEFAULT);
    return NULL;
}

k2_status k2_runtime_new(const k2_runtime_options *o, k2_runtime **out, k2_error *err) {
    *out = NULL;
    k2_runtime *rt = k2_calloc(1, sizeof *rt);
    if (!rt) return k2_err(err, K2_ENOMEM, "runtime: out of memory");
    rt->ops.next = rt->ops.prev = &rt->ops;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_mutex_init(&rt->wmu, NULL);
    pthread_cond_init(&rt->wcond, NULL);
    int r = uv_loop_init(&rt->loop);
    if (r != 0) {
        free(rt);
        return k2_err(err, K2_EIO, "runtime: cannot create the event loop: %s", uv_strerror(r));
    }
    uv_async_init(&rt->loop, &rt->wake, on_wake);
    rt->wake.data = rt;
    rt->n_workers = (o && o->workers > 0) ? o->workers : 4;
    if (rt->n_workers > 256) rt->n_workers = 256;
    rt->workers = k2_calloc((size_t)rt->n_workers, sizeof *rt->workers);
    for (int i = 0; i < rt->n_workers; i++) pthread_create(&rt->workers[i], NULL, worker_main, rt);
    if (pthread_create(&rt->thread, NULL, loop_main, rt) != 0) {
        k2_err(err, K2_EIO, "runtime: cannot start the loop thread");
        rt->thread_started = false;
        k2_runtime_free(rt);
        return K2_EIO;
    }
    rt->loop_tid = rt->thread;
    rt->thread_started = true;
    *out = rt;
    return K2_OK;
}

void k2_runtime_free(k2_runtime *rt) {
    if (!rt) return;
    if (rt->thread_started) {
        if (k2_runtime_post(rt, stop_task, rt) == K2_OK) pthread_join(rt->thread, NULL);
    }
    pthread_mutex_lock(&rt->wmu);
    rt->wstop = true;
    pthread_cond_broadcast(&rt->wcond);
    pthread_mutex_unlock(&rt->wmu);
    for (int i = 0; i < rt->n_workers; i++) pthread_join(rt->workers[i], NULL);
    free(rt->workers);
    if (!rt->thread_started) {
        uv_close((uv_handle_t *)&rt->wake, NULL);
        uv_run(&rt->loop, UV_RUN_DEFAULT);
    }
    uv_loop_close(&rt->loop);
    /* anything posted after closing was refused; free leftovers defensively */
    for (task *t = rt->posted_head; t;) { task *n = t->next; free(t); t = n; }
    for (task *t = rt->work_head; t;) { task *n = t->next; free(t); t = n; }
    for (slot *s = rt->slots; s;) {
        slot *n = s->next;
        if (s->value && s->dtor) s->dtor(s->value);
        free(s);
        s = n;
    }
    pthread_mutex_destroy(&rt->mu);
    pthread_mutex_destroy(&rt->wmu);
    pthread_cond_destroy(&rt->wcond);
    free(rt);
}
