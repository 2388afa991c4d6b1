/* generate/: samplers, completion streams and the completion loop (internal side).
 *
 * Layers:
 *  - sampling.c: k2_sampler (penalties, bias, top-k/top-p/min-p, temperature, PRNG);
 *  - stream.c:   k2_stream, a thread-safe chunk queue; the producer side is gen_stream_*;
 *  - complete.c: the completion loop over a gen_backend (a model context, or scripted
 *                logits for tests and the server's test mode), slots with prefix reuse,
 *                and k2_generator (one thread per request). */
#ifndef K2_GENERATE_H
#define K2_GENERATE_H

#include "k2.h"

/* ---- PRNG (xoshiro256**, seeded with splitmix64) ---- */
typedef struct gen_rng {
    uint64_t s[4];
} gen_rng;

void gen_rng_seed(gen_rng *r, uint64_t seed);
uint64_t gen_rng_next(gen_rng *r);
/* Uniform in [0, 1) with 53 random bits. */
double gen_rng_uniform(gen_rng *r);
/* A seed from the OS (getrandom), falling back to the clock. */
uint64_t gen_random_seed(void);

/* ---- streams, producer side ---- */

/* A new stream with two references: the consumer's (k2_stream_free) and the producer's
 * (gen_stream_release after the final push). */
k2_status gen_stream_new(k2_stream **out, k2_error *err);
/* One DELTA chunk (text copied; ids copied). */
k2_status gen_stream_push_delta(k2_stream *s, const char *text, size_t len, const int32_t *ids,
                                size_t n_ids);
/* The final chunks. After one of them nothing more may be pushed. */
k2_status gen_stream_push_done(k2_stream *s, k2_finish_reason finish, const k2_usage *usage,
                               const k2_timings *timings);
k2_status gen_stream_push_error(k2_stream *s, k2_error_stage stage, k2_status status,
                                const char *message);
/* Drops the producer's reference. */
void gen_stream_release(k2_stream *s);
/* A producer that is not a gen_run loop (e.g. one still opening the model) learns of
 * k2_stream_cancel through this hook: called once, on the cancelling thread (at once when
 * the stream is already cancelled). hook(user) must not block. Setting NULL waits for a
 * hook call in progress, so `user` may be freed afterwards. */
void gen_stream_set_cancel_hook(k2_stream *s, void (*hook)(void *user), void *user);

/* ---- backends: where logits come from ---- */

typedef struct gen_backend gen_backend;
struct gen_backend {
    uint32_t n_ctx;
    int32_t n_vocab;
    /* Tokens currently in the cache. */
    uint32_t (*length)(gen_backend *b);
    k2_status (*truncate)(gen_backend *b, uint32_t n_keep, k2_error *err);
    /* Appends n tokens; with want_logits the last token's logits become available. */
    k2_status (*eval)(gen_backend *b, const int32_t *ids, uint32_t n, bool want_logits, k2_error *err);
    const float *(*logits)(gen_backend *b);
    void (*destroy)(gen_backend *b);
};

/* A generator's continuous batching so far: forward passes its slots shared and the
 * evaluations they held (both 0 with one slot). */
void gen_generator_batch_stats(k2_generator *g, uint64_t *batches, uint64_t *evals);

/* Over a model context (owned: freed with the backend). */
k2_status gen_backend_model_new(k2_context *ctx, int32_t n_vocab, gen_backend **out, k2_error *err);
/* Scripted logits: the k-th logits served since the last truncate (gen_run truncates once
 * per request) give script[k] logit 0 and every other id -1e9, so any sampler picks it;
 * past the end of the script `end_id` is favoured. n_ctx bounds the cache like a model's.
 * n_vocab is the logits' length. */
k2_status gen_backend_scripted_new(const int32_t *script, size_t n, int32_t end_id, int32_t n_vocab,
                                   uint32_t n_ctx, gen_backend **out, k2_error *err);
void gen_backend_free(gen_backend *b);

/* ---- slots and the completion loop ---- */

/* A backend plus the ids whose cache it holds (for prefix reuse). */
typedef struct gen_slot {
    gen_backend *backend;
    int32_t *cached;
    size_t n_cached, cap_cached;
    uint64_t last_used;
} gen_slot;

/* A deep copy of a k2_completion_request (strings, arrays and messages owned). */
typedef struct gen_request gen_request;
k2_status gen_request_copy(const k2_completion_request *req, gen_request **out, k2_error *err);
void gen_request_free(gen_request *r);
const k2_completion_request *gen_request_view(const gen_request *r);

/* Checks the parts of a request that do not need the model (one prompt form, sampling
 * options); n_vocab bounds logit-bias and stop ids. */
k2_status gen_request_validate(const k2_completion_request *req, int32_t n_vocab, k2_error *err);

typedef struct gen_run_options {
    uint32_t prefill_chunk;   /* 0 = 512 */
    double queue_ms;          /* reported in the timings */
    /* Tests: called with each step's raw logits before sampling. */
    void (*on_logits)(const float *logits, int32_t n_vocab, void *user);
    void *user;
} gen_run_options;

/* The prompt's ids: the chat rendering, the tokenized text or a copy of the given ids
 * (checked against n_vocab). *ids is malloc'ed. On failure *stage tells which stage
 * failed (tokenize or prompt). */
k2_status gen_prompt_ids(const k2_tokenizer *tok, const k2_completion_request *req, int32_t n_vocab,
                         int32_t **ids, size_t *n, k2_error_stage *stage, k2_error *err);

/* Runs one completion of the prompt `ids` on a slot in the calling thread: checks the
 * context, prefills (reusing the slot's cached prefix), samples and pushes DELTA chunks,
 * then DONE; or an ERROR chunk. Always pushes exactly one final chunk. */
void gen_run(gen_slot *slot, const k2_tokenizer *tok, const k2_completion_request *req, const int32_t *ids,
             size_t n_ids, const gen_run_options *o, k2_stream *s);
/* Frees a slot's backend and cached ids. */
void gen_slot_clear(gen_slot *slot);

/* Length of the common prefix of two id arrays. */
size_t gen_common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb);

#endif
