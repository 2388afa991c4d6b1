/* async/: the runtime's loop thread, its worker pool and futures (internal side).
 *
 * Threads: one libuv loop thread per runtime runs every callback that touches
 * network state, timers and future continuations; a small worker pool runs the
 * blocking chores (hashing, fsync, rename, directory scans) and hands the result
 * back to the loop thread. Nothing here blocks the loop. */
#ifndef K2_ASYNC_H
#define K2_ASYNC_H

#include "k2.h"
#include <uv.h>

typedef void (*k2_task_fn)(void *user);

/* Runs fn(user) on the loop thread (from any thread, including the loop thread:
 * then it runs on a later loop iteration, never inline). Fails only when the
 * runtime is shutting down, in which case fn is not called. */
k2_status k2_runtime_post(k2_runtime *rt, k2_task_fn fn, void *user);
/* Runs work(user) on a worker thread, then done(user) on the loop thread.
 * Callable from any thread. done may be NULL. */
void k2_runtime_submit_work(k2_runtime *rt, k2_task_fn work, k2_task_fn done, void *user);
/* The libuv loop; use only on the loop thread. */
uv_loop_t *k2_runtime_loop(k2_runtime *rt);
bool k2_runtime_on_loop_thread(const k2_runtime *rt);

/* Long-running operations register a shutdown hook (called on the loop thread by
 * k2_runtime_free) and unregister once they have fully wound down; the runtime
 * waits for every registered operation before its loop exits. */
typedef struct k2_runtime_op k2_runtime_op;
k2_runtime_op *k2_runtime_op_begin(k2_runtime *rt, k2_task_fn on_shutdown, void *user);
void k2_runtime_op_end(k2_runtime *rt, k2_runtime_op *op);

/* Per-runtime storage for modules (loop thread only): the slot of `key` (any
 * static address), created holding NULL. `dtor` (may be NULL) frees a non-NULL
 * value when the runtime is freed. */
void **k2_runtime_slot(k2_runtime *rt, const void *key, void (*dtor)(void *));

/* Producer side of futures. */
k2_future *k2_future_new(k2_runtime *rt);
/* Settles as DONE with `result` (owned by the future, freed by free_result).
 * Returns false (and frees result) when it had already settled. */
bool k2_future_resolve(k2_future *f, void *result, void (*free_result)(void *));
/* Settles as FAILED (or CANCELLED when err->status == K2_ECANCELLED). */
bool k2_future_fail(k2_future *f, const k2_error *err);
/* When set, k2_future_cancel calls hook(user) on the loop thread instead of
 * settling the future itself; the producer then stops and settles it (normally
 * with K2_ECANCELLED) once its state is safe (e.g. resumable files written). */
void k2_future_set_cancel_hook(k2_future *f, k2_task_fn hook, void *user);
bool k2_future_cancel_requested(const k2_future *f);
k2_runtime *k2_future_runtime(const k2_future *f);

#endif
