/* Runtime, worker pool and futures: continuations on the loop thread, waits with
 * timeouts, cancellation with and without a producer hook, shutdown with work in flight. */
#include "testutil.h"
#include "async/async.h"
#include "base/base.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static k2_runtime *g_rt;
static atomic_int g_then_on_loop;
static atomic_int g_then_calls;
static atomic_int g_posted;

static void on_then(k2_future *f, void *user) {
    (void)f;
    if (k2_runtime_on_loop_thread(g_rt)) atomic_fetch_add(&g_then_on_loop, 1);
    atomic_fetch_add(&g_then_calls, 1);
    if (user) *(int *)user = 1;
}

static void posted(void *u) {
    if (k2_runtime_on_loop_thread(g_rt)) atomic_fetch_add(&g_posted, *(int *)u);
}

typedef struct work_ctx {
    k2_future *f;
    int input;
    int output;
    bool work_on_loop;
    bool done_on_loop;
} work_ctx;

static void work_fn(void *u) {
    work_ctx *w = u;
    w->work_on_loop = k2_runtime_on_loop_thread(g_rt);
    usleep(20000);
    w->output = w->input * 2;
}

static void done_fn(void *u) {
    work_ctx *w = u;
    w->done_on_loop = k2_runtime_on_loop_thread(g_rt);
    int *res = malloc(sizeof *res);
    *res = w->output;
    k2_future_resolve(w->f, res, free);
}

static atomic_int g_hook_calls;
static void cancel_hook(void *u) {
    k2_future *f = u;
    atomic_fetch_add(&g_hook_calls, 1);
    CHECK(k2_runtime_on_loop_thread(g_rt));
    k2_error e;
    k2_err(&e, K2_ECANCELLED, "stopped by the hook");
    k2_future_fail(f, &e);
}

static void *resolver_thread(void *u) {
    usleep(30000);
    int *v = malloc(sizeof *v);
    *v = 7;
    k2_future_resolve(u, v, free);
    return NULL;
}

/* a long operation that ends only when the runtime shuts down */
typedef struct long_op {
    k2_runtime_op *op;
    uv_timer_t timer;
    k2_future *f;
    int shutdown_calls;
} long_op;

static void long_closed(uv_handle_t *h) {
    long_op *lo = h->data;
    k2_error e;
    k2_err(&e, K2_ECANCELLED, "runtime shutting down");
    k2_future_fail(lo->f, &e);
    k2_runtime_op_end(g_rt, lo->op);
}
static void long_shutdown(void *u) {
    long_op *lo = u;
    lo->shutdown_calls++;
    uv_timer_stop(&lo->timer);
    uv_close((uv_handle_t *)&lo->timer, long_closed);
}
static void long_tick(uv_timer_t *t) { (void)t; }
static void long_start(void *u) {
    long_op *lo = u;
    uv_timer_init(k2_runtime_loop(g_rt), &lo->timer);
    lo->timer.data = lo;
    uv_timer_start(&lo->timer, long_tick, 5, 5);
    lo->op = k2_runtime_op_begin(g_rt, long_shutdown, lo);
}

int main(void) {
    k2_error err;
    k2_runtime_options o;
    k2_runtime_options_init(&o);
    o.workers = 2;
    CHECK_OK(k2_runtime_new(&o, &g_rt, &err), &err);
    CHECK(!k2_runtime_on_loop_thread(g_rt));

    /* post from a foreign thread */
    int three = 3;
    for (int i = 0; i < 10; i++) CHECK(k2_runtime_post(g_rt, posted, &three) == K2_OK);

    /* worker + future + then */
    work_ctx w = {.input = 21};
    w.f = k2_future_new(g_rt);
    int flag = 0;
    k2_future_then(w.f, on_then, &flag);
    CHECK(k2_future_state_of(w.f) == K2_FUTURE_PENDING);
    k2_runtime_submit_work(g_rt, work_fn, done_fn, &w);
    CHECK(k2_future_wait(w.f, 5000) == K2_OK);
    CHECK(k2_future_state_of(w.f) == K2_FUTURE_DONE);
    CHECK(*(int *)k2_future_result(w.f) == 42);
    CHECK(!w.work_on_loop);
    CHECK(w.done_on_loop);
    /* then registered after settling still runs, on the loop thread */
    k2_future_then(w.f, on_then, NULL);
    for (int i = 0; i < 200 && atomic_load(&g_then_calls) < 2; i++) usleep(5000);
    CHECK(atomic_load(&g_then_calls) == 2);
    CHECK(atomic_load(&g_then_on_loop) == 2);
    CHECK(flag == 1);
    CHECK(atomic_load(&g_posted) == 30);
    /* a second resolve is refused */
    int *dup = malloc(sizeof *dup);
    CHECK(!k2_future_resolve(w.f, dup, free));
    k2_future_free(w.f);

    /* wait with timeout on a pending future, then resolution from another thread */
    k2_future *f2 = k2_future_new(g_rt);
    uint64_t t0 = k2_now_ns();
    CHECK(k2_future_wait(f2, 30) == K2_ETIMEOUT);
    uint64_t dt = (k2_now_ns() - t0) / 1000000;
    CHECK_MSG(dt >= 25 && dt < 1000, "waited %llu ms", (unsigned long long)dt);
    pthread_t th;
    pthread_create(&th, NULL, resolver_thread, f2);
    CHECK(k2_future_wait(f2, -1) == K2_OK);
    CHECK(*(int *)k2_future_result(f2) == 7);
    pthread_join(th, NULL);
    k2_future_free(f2);

    /* cancel without a hook: settles at once */
    k2_future *f3 = k2_future_new(g_rt);
    k2_future_cancel(f3);
    CHECK(k2_future_state_of(f3) == K2_FUTURE_CANCELLED);
    CHECK(k2_future_wait(f3, 0) == K2_ECANCELLED);
    CHECK(k2_future_error(f3)->status == K2_ECANCELLED);
    CHECK(k2_future_result(f3) == NULL);
    k2_future_free(f3);

    /* cancel with a hook: the producer settles it on the loop thread */
    k2_future *f4 = k2_future_new(g_rt);
    k2_future_set_cancel_hook(f4, cancel_hook, f4);
    k2_future_cancel(f4);
    k2_future_cancel(f4); /* idempotent */
    CHECK(k2_future_wait(f4, 5000) == K2_ECANCELLED);
    CHECK(atomic_load(&g_hook_calls) == 1);
    CHECK(strstr(k2_future_error(f4)->message, "hook") != NULL);
    k2_future_free(f4);

    /* failure carries the error */
    k2_future *f5 = k2_future_new(g_rt);
    k2_err(&err, K2_ENETWORK, "http://x/y: connection refused");
    CHECK(k2_future_fail(f5, &err));
    CHECK(k2_future_wait(f5, 0) == K2_ENETWORK);
    CHECK(strcmp(k2_future_error(f5)->message, "http://x/y: connection refused") == 0);
    k2_future_free(f5);

    /* many worker jobs at once */
    enum { N = 64 };
    work_ctx ws[N];
    for (int i = 0; i < N; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].input = i;
        ws[i].f = k2_future_new(g_rt);
        k2_runtime_submit_work(g_rt, work_fn, done_fn, &ws[i]);
    }
    for (int i = 0; i < N; i++) {
        CHECK(k2_future_wait(ws[i].f, 10000) == K2_OK);
        CHECK(*(int *)k2_future_result(ws[i].f) == 2 * i);
        k2_future_free(ws[i].f);
    }

    /* shutdown with an operation still running: its hook ends it */
    long_op lo = {0};
    lo.f = k2_future_new(g_rt);
    k2_runtime_post(g_rt, long_start, &lo);
    usleep(20000);
    k2_runtime_free(g_rt);
    CHECK(lo.shutdown_calls == 1);
    CHECK(k2_future_state_of(lo.f) == K2_FUTURE_CANCELLED);
    k2_future_free(lo.f);
    return k2t_finish("test_runtime");
}
