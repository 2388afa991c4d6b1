/* A small pthread pool: model_pool_for() hands out [begin, end) chunks of an index range to
 * the calling thread and n-1 workers through an atomic counter, then waits for all of them
 * (spinning briefly, then sleeping).
 * Splitting output rows never changes the arithmetic of a row, so results do not depend on
 * the thread count. */
#include "model/model.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct model_pool {
    int n;                      /* threads including the caller */
    pthread_t *threads;
    /* Workers and the caller spin a little before sleeping: a decode step posts ~25 short
     * jobs, and a condition-variable wake-up per job costs tens of microseconds. */
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    atomic_uint_fast64_t generation; /* bumped (under mu) for every job */
    atomic_int running;         /* workers still busy with the current job */
    atomic_bool quit;
    /* the current job (published by the generation bump) */
    model_pool_fn fn;
    void *arg;
    int64_t n_items, grain;
    atomic_int_fast64_t next;
};

/* Pause iterations before a thread sleeps (~100 us). */
#define POOL_SPIN 2000

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

typedef struct worker_arg {
    model_pool *p;
    int tid;
} worker_arg;

static void run_chunks(model_pool *p, int tid) {
    for (;;) {
        int64_t b = atomic_fetch_add(&p->next, p->grain);
        if (b >= p->n_items) break;
        int64_t e = K2_MIN(b + p->grain, p->n_items);
        p->fn(p->arg, b, e, tid);
    }
}

static void *worker_main(void *argp) {
    worker_arg *wa = argp;
    model_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        for (int spin = 0; atomic_load(&p->generation) == seen && !atomic_load(&p->quit); spin++) {
            if (spin < POOL_SPIN) {
                cpu_relax();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) break;
        seen = atomic_load(&p->generation);
        run_chunks(p, tid);
        if (atomic_fetch_sub(&p->running, 1) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
    return NULL;
}

k2_status model_pool_new(int n_threads, model_pool **out, k2_error *err) {
    *out = NULL;
    if (n_threads < 1) n_threads = 1;
    model_pool *p = calloc(1, sizeof *p);
    if (!p) return k2_err(err, K2_ENOMEM, "out of memory creating the thread pool");
    p->n = n_threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->running, 0);
    atomic_init(&p->quit, false);
    atomic_init(&p->next, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
        if (!p->threads) {
            model_pool_free(p);
            return k2_err(err, K2_ENOMEM, "out of memory creating the thread pool");
        }
        for (int i = 1; i < n_threads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (wa) {
                wa->p = p;
                wa->tid = i;
            }
            if (!wa || pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
                free(wa);
                p->n = i;
                model_pool_free(p);
                return k2_err(err, K2_EINTERNAL, "cannot start worker thread %d of %d", i, n_threads);
            }
        }
    }
    *out = p;
    return K2_OK;
}

void model_pool_free(model_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, true);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int model_pool_size(const model_pool *p) { return p->n; }

void model_pool_for(model_pool *p, int64_t n, int64_t grain, model_pool_fn fn, void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (p->n == 1 || n <= grain) {
        fn(arg, 0, n, 0);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    p->n_items = n;
    p->grain = grain;
    atomic_store(&p->next, 0);
    atomic_store(&p->running, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->generation, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    for (int spin = 0; atomic_load(&p->running) > 0; spin++) {
        if (spin < POOL_SPIN) {
            cpu_relax();
            continue;
        }
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->running) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}

/* Physical cores: distinct (package, core) pairs in sysfs; else the online CPU count. */
int model_physical_cores(void) {
    long n_cpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (n_cpu < 1) n_cpu = 1;
    int n = 0;
    int64_t seen[1024];
    for (long c = 0; c < n_cpu && c < 1024; c++) {
        char path[128];
        int pkg = 0, core = -1;
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/core_id", c);
        FILE *f = fopen(path, "r");
        if (!f) return (int)n_cpu;
        if (fscanf(f, "%d", &core) != 1) core = -1;
        fclose(f);
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%ld/topology/physical_package_id", c);
        f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%d", &pkg) != 1) pkg = 0;
            fclose(f);
        }
        if (core < 0) return (int)n_cpu;
        int64_t key = ((int64_t)pkg << 32) | (uint32_t)core;
        bool dup = false;
        for (int i = 0; i < n; i++) dup |= seen[i] == key;
        if (!dup) seen[n++] = key;
    }
    return n > 0 ? n : (int)n_cpu;
}
