/* Slots, the FIFO queue and the scheduler thread (spec/server-api.md §6.1-6.3).
 *
 * One thread owns every model context (one per slot) and all generation state. Each
 * iteration it admits queued requests into free slots (preferring the slot whose cached
 * tokens share the longest prefix with the prompt), then advances every active slot by one
 * step with continuous batching: every decoding slot samples its next token, prefilling
 * slots take prompt chunks out of a budget of batch_size tokens per iteration (so decoding
 * slots keep streaming while a long prompt is read), and all of these rows go through the
 * model in ONE k2_eval_batch call, each slot's context attending to its own cache. Each
 * sequence's arithmetic is exactly what it would be alone, which is why concurrent
 * requests give the same greedy tokens as when served one by one. Cancellation is a
 * per-request flag checked before every step. */
#include "server/server.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void slot_release(srv *s, srv_slot *sl) {
    srv_job *j = sl->job;
    pthread_mutex_lock(&s->sched.mu);
    sl->job = NULL;
    s->sched.n_busy--;
    pthread_mutex_unlock(&s->sched.mu);
    pthread_mutex_lock(&j->mu);
    j->state = JOB_FINISHED;
    pthread_mutex_unlock(&j->mu);
    metrics_observe_duration(s, srv_now() - j->t_admit);
    job_unref(j);
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t i = 0;
    while (i < na && i < nb && a[i] == b[i]) i++;
    return i;
}

static void cached_push(srv_slot *sl, const int32_t *ids, size_t n) {
    if (sl->n_cached + n > sl->cap_cached) {
        size_t cap = K2_MAX(sl->cap_cached * 2, sl->n_cached + n + 64);
        int32_t *p = realloc(sl->cached, cap * sizeof *p);
        if (!p) return;
        sl->cached = p;
        sl->cap_cached = cap;
    }
    memcpy(sl->cached + sl->n_cached, ids, n * sizeof *ids);
    sl->n_cached += n;
}

/* A job enters a slot: prefix reuse, sampler, output state. */
static bool slot_begin(srv *s, srv_slot *sl) {
    srv_job *j = sl->job;
    k2_error err;
    sl->phase = 0;
    sl->delay_done = false;
    sl->ready_at = 0;
    size_t common = 0;
    if (!j->scripted && sl->ctx) {
        common = common_prefix(sl->cached, sl->n_cached, j->prompt, j->n_prompt);
        /* all of it cached: the logits of its last token are the stored ones when they
         * belong to exactly this prompt, else that token is evaluated again */
        bool whole = common >= j->n_prompt && sl->prompt_logits_len == j->n_prompt;
        if (common >= j->n_prompt && !whole) common = j->n_prompt - 1;
        if (common > k2_context_length(sl->ctx)) common = k2_context_length(sl->ctx), whole = false;
        if (k2_context_truncate(sl->ctx, (uint32_t)common, &err) != K2_OK) {
            k2_context_reset(sl->ctx);
            common = 0;
            whole = false;
        }
        sl->n_cached = common;
        if (common < sl->prompt_logits_len) sl->prompt_logits_len = 0;
        sl->use_prompt_logits = whole;
        if (whole) sl->phase = 1;
    }
    sl->prefill_pos = common;
    j->n_cached = (uint32_t)common;
    if (!j->scripted) {
        if (!sl->ctx) {
            out_error(j, 500, "internal_error", "Generation failed: no model is loaded (test mode without a model).");
            return false;
        }
        if (k2_sampler_new(&j->samp, s->n_vocab, &j->sampler, &err) != K2_OK) {
            out_error(j, 500, "internal_error", err.message);
            return false;
        }
        for (size_t i = 0; i < j->n_prompt; i++) k2_sampler_accept(j->sampler, j->prompt[i], false);
    }
    pthread_mutex_lock(&s->m.mu);
    s->m.prompt_cached += common;
    pthread_mutex_unlock(&s->m.mu);
    out_begin(j);
    return true;
}

static void count_prompt(srv *s, size_t n, double secs) {
    pthread_mutex_lock(&s->m.mu);
    s->m.prompt_tokens += n;
    s->m.prompt_seconds += secs;
    pthread_mutex_unlock(&s->m.mu);
}

static void count_gen(srv *s, double secs) {
    pthread_mutex_lock(&s->m.mu);
    s->m.generated++;
    s->m.gen_seconds += secs;
    pthread_mutex_unlock(&s->m.mu);
}

static bool is_eog(srv *s, srv_job *j, int32_t t) {
    if (t < 0) return false;
    if (k2_token_is_stop(s->tok, t)) return true;
    if (j->chat)
        for (int i = 0; i < 3; i++)
            if (s->eog_extra[i] == t) return true;
    return false;
}

/* Logit bans of §7.5 (applied to a copy of the logits). */
static void apply_bans(srv *s, srv_job *j, float *lg) {
    if (!j->chat) return;
    if (!j->has_tools || j->tool_choice == TC_NONE) {
        if (s->marks[KM_SB] >= 0) lg[s->marks[KM_SB]] = -INFINITY;
        if (s->marks[KM_CB] >= 0) lg[s->marks[KM_CB]] = -INFINITY;
    }
    if (j->tool_choice == TC_REQUIRED && !j->parser.entered_call_id) {
        const int32_t *ids;
        size_t n = k2_tokenizer_stop_ids(s->tok, &ids);
        for (size_t i = 0; i < n; i++)
            if (ids[i] >= 0 && ids[i] < s->n_vocab) lg[ids[i]] = -INFINITY;
        for (int i = 0; i < 3; i++)
            if (s->eog_extra[i] >= 0) lg[s->eog_extra[i]] = -INFINITY;
    }
    if ((j->tool_choice == TC_NAMED || !j->parallel_tool_calls) && j->first_ce_seen && s->marks[KM_CB] >= 0)
        lg[s->marks[KM_CB]] = -INFINITY;
}

/* §3.4: log-softmax of the raw logits (temperature 1, before bias, bans and penalties),
 * with the log-sum-exp taken in double around the maximum so that no term overflows. The
 * n_top best alternatives come from one pass keeping a small sorted list (n_top <= 20):
 * descending logit, lower id first on ties. */
void srv_logprobs(const float *lg, int32_t n_vocab, int32_t chosen, int n_top, lp_tok *t) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        if (lg[i] > mx) mx = lg[i];
    double sum = 0;
    if (isfinite(mx))
        for (int32_t i = 0; i < n_vocab; i++) sum += exp((double)lg[i] - (double)mx);
    double lse = isfinite(mx) && sum > 0 ? (double)mx + log(sum) : 0;
    if (n_top > SRV_MAX_TOP_LP) n_top = SRV_MAX_TOP_LP;
    if (n_top > n_vocab) n_top = n_vocab;
    int k = 0;
    for (int32_t i = 0; i < n_vocab && n_top > 0; i++) {
        float v = lg[i];
        if (k == n_top && !(v > t->top_lp[k - 1])) continue;
        int p = k < n_top ? k++ : k - 1;
        while (p > 0 && v > t->top_lp[p - 1]) {
            t->top_lp[p] = t->top_lp[p - 1];
            t->top_id[p] = t->top_id[p - 1];
            p--;
        }
        t->top_lp[p] = v;
        t->top_id[p] = i;
    }
    t->n_top = k;
    for (int i = 0; i < k; i++) t->top_lp[i] = (float)((double)t->top_lp[i] - lse);
    t->id = chosen;
    t->lp = (float)((double)lg[chosen] - lse);
}

/* After a token: the common end checks. Returns true when the job finished. */
static bool after_token(srv *s, srv_slot *sl, bool ended) {
    srv_job *j = sl->job;
    if (ended) {
        out_finish(j, "stop");
        return true;
    }
    if (j->max_tokens > 0 && j->n_gen >= j->max_tokens) {
        out_finish(j, "length");
        return true;
    }
    if ((uint64_t)j->n_prompt + (uint64_t)j->n_gen >= s->n_ctx_slot) {
        out_finish(j, "length");
        return true;
    }
    if (s->o.max_generation_seconds > 0 && j->t_first_token > 0 &&
        srv_now() - j->t_first_token > s->o.max_generation_seconds) {
        out_finish(j, "length");
        return true;
    }
    return false;
}

static void note_first(srv *s, srv_job *j) {
    if (j->t_first_token == 0) {
        j->t_first_token = srv_now();
        metrics_observe_ttft(s, j->t_first_token - j->t_admit);
    }
}

static void slot_fail(srv_slot *sl, const k2_error *err) {
    k2_context_reset(sl->ctx);
    sl->n_cached = 0;
    sl->prompt_logits_len = 0;
    char msg[K2_ERROR_MESSAGE_MAX + 32];
    snprintf(msg, sizeof msg, "Generation failed: %s", err->message);
    out_error(sl->job, 500, "internal_error", msg);
}

/* A decoding slot samples its next token from the logits of the previous step and sends it.
 * Returns true when the job is done; otherwise sl->next_tok is to be evaluated. */
static bool decode_sample(srv *s, srv_slot *sl) {
    srv_job *j = sl->job;
    k2_error err;
    const float *lg = sl->use_prompt_logits ? sl->prompt_logits : k2_context_logits(sl->ctx);
    sl->use_prompt_logits = false;
    memcpy(sl->logits, lg, (size_t)s->n_vocab * sizeof(float));
    apply_bans(s, j, sl->logits);
    int32_t tok;
    if (k2_sampler_sample(j->sampler, sl->logits, &tok, &err) != K2_OK) {
        out_error(j, 500, "internal_error", err.message);
        return true;
    }
    /* lg is the context's own row, untouched by the bans and the sampler (which work on
     * the sl->logits copy): the raw logits §3.4 asks for */
    if (j->want_lp) {
        srv_logprobs(lg, s->n_vocab, tok, j->n_top_lp, &j->lp_cur);
        j->lp_cur_set = true;
    }
    k2_sampler_accept(j->sampler, tok, true);
    j->n_gen++;
    note_first(s, j);
    bool ended = is_eog(s, j, tok);
    if (!ended) {
        k2_str b = {0};
        bool special = k2_token_is_special(s->tok, tok);
        if (!special) k2_token_bytes(s->tok, tok, &b, NULL);
        ended = out_token(j, special ? tok : -1, b.ptr, b.len);
    }
    if (after_token(s, sl, ended)) return true;
    sl->next_tok = tok;
    return false;
}

/* The tokens a slot evaluates this iteration. */
static const int32_t *step_tokens(srv_slot *sl) {
    return sl->phase == 0 ? sl->job->prompt + sl->prefill_pos : &sl->next_tok;
}

/* Evaluates the batch of slots bs[0..nb) (their rows: step_tokens, n_step each) in one
 * forward pass, then books each slot's step. A slot whose step fails gets an error and is
 * released; when a batch of several fails, each slot is retried alone so that only the
 * failing ones end. */
static void eval_batch(srv *s, srv_slot **bs, int nb) {
    k2_context *ctxs[256];
    const int32_t *toks[256];
    uint32_t ns[256];
    bool failed[256];
    k2_error err;
    bool any_logits = false;
    size_t rows = 0;
    for (int k = 0; k < nb; k++) {
        srv_slot *sl = bs[k];
        ctxs[k] = sl->ctx;
        toks[k] = step_tokens(sl);
        ns[k] = sl->n_step;
        failed[k] = false;
        rows += sl->n_step;
        any_logits |= sl->phase != 0 || sl->prefill_pos + sl->n_step == sl->job->n_prompt;
    }
    double t0 = srv_now();
    k2_status st = k2_eval_batch(ctxs, toks, ns, nb, any_logits ? K2_ROWS_LAST : K2_ROWS_NONE, &err);
    if (st != K2_OK) {
        if (nb == 1) {
            failed[0] = true;
            slot_fail(bs[0], &err);
        } else {
            for (int k = 0; k < nb; k++)
                if (k2_eval(ctxs[k], toks[k], ns[k], K2_ROWS_LAST, NULL, &err) != K2_OK) {
                    failed[k] = true;
                    slot_fail(bs[k], &err);
                }
        }
    }
    /* the batch's time is shared out by rows */
    double secs = srv_now() - t0;
    pthread_mutex_lock(&s->m.mu);
    s->m.batch_evals++;
    s->m.batch_seqs += (uint64_t)nb;
    s->m.batch_rows += rows;
    pthread_mutex_unlock(&s->m.mu);
    for (int k = 0; k < nb; k++) {
        srv_slot *sl = bs[k];
        srv_job *j = sl->job;
        if (failed[k]) {
            slot_release(s, sl);
            continue;
        }
        double share = rows ? secs * (double)sl->n_step / (double)rows : 0;
        cached_push(sl, toks[k], sl->n_step);
        if (sl->phase == 0) {
            count_prompt(s, sl->n_step, share);
            sl->prefill_pos += sl->n_step;
            if (sl->prefill_pos == j->n_prompt) {
                sl->phase = 1;
                if (sl->prompt_logits && sl->n_cached == j->n_prompt) {
                    memcpy(sl->prompt_logits, k2_context_logits(sl->ctx), (size_t)s->n_vocab * sizeof(float));
                    sl->prompt_logits_len = j->n_prompt;
                }
            }
        } else {
            count_gen(s, sl->t_sample + share);
        }
    }
}

/* One step of a test-script slot (spec §8.1). */
static bool step_script(srv *s, srv_slot *sl, double now) {
    srv_job *j = sl->job;
    if (sl->phase == 0) {
        if (j->prompt_delay_ms > 0 && !sl->delay_done) {
            sl->delay_done = true;
            sl->ready_at = now + j->prompt_delay_ms / 1000.0;
            return false;
        }
        count_prompt(s, j->n_prompt, j->prompt_delay_ms / 1000.0);
        sl->phase = 1;
    }
    if (j->fail_after >= 0 && (int64_t)j->script_pos >= j->fail_after) {
        char msg[128];
        snprintf(msg, sizeof msg, "Generation failed: scripted failure after %lld pieces.", (long long)j->fail_after);
        out_error(j, 500, "internal_error", msg);
        return true;
    }
    if (j->script_pos >= j->n_pieces) {
        out_finish(j, "stop");
        return true;
    }
    script_piece *p = &j->pieces[j->script_pos++];
    j->n_gen++;
    note_first(s, j);
    count_gen(s, 0);
    bool ended = p->token >= 0 && is_eog(s, j, p->token);
    if (!ended) ended = out_token(j, p->token, p->bytes, p->len);
    if (after_token(s, sl, ended)) return true;
    sl->ready_at = now + j->piece_delay_ms / 1000.0;
    return false;
}

/* Removes cancelled and timed-out jobs from the queue (sched.mu held); collects the
 * timed-out ones into *expired. */
static void queue_sweep(srv *s, double now, srv_job **expired) {
    srv_sched *q = &s->sched;
    srv_job **pp = &q->q_head, *prev = NULL;
    while (*pp) {
        srv_job *j = *pp;
        bool cancel = atomic_load(&j->cancelled);
        bool timeout = s->o.queue_timeout_s > 0 && now - j->t_admit > s->o.queue_timeout_s;
        if (cancel || timeout) {
            *pp = j->next;
            if (q->q_tail == j) q->q_tail = prev;
            q->n_queued--;
            j->next = NULL;
            if (timeout && !cancel) {
                j->next = *expired;
                *expired = j;
            } else {
                job_unref(j);
            }
            continue;
        }
        prev = j;
        pp = &j->next;
    }
}

static void *sched_main(void *arg) {
    srv *s = arg;
    srv_sched *q = &s->sched;
    for (;;) {
        double now = srv_now();
        srv_job *expired = NULL;
        int started[64];
        int n_started = 0;
        pthread_mutex_lock(&q->mu);
        if (q->stop) {
            pthread_mutex_unlock(&q->mu);
            break;
        }
        queue_sweep(s, now, &expired);
        while (q->q_head && n_started < (int)K2_ARRAY_LEN(started)) {
            int best = -1;
            size_t best_common = 0;
            srv_job *j = q->q_head;
            for (int i = 0; i < q->n_slots; i++) {
                if (q->slots[i].job) continue;
                size_t c = common_prefix(q->slots[i].cached, q->slots[i].n_cached, j->prompt, j->n_prompt);
                if (best < 0 || c > best_common) best = i, best_common = c;
            }
            if (best < 0) break;
            q->q_head = j->next;
            if (!q->q_head) q->q_tail = NULL;
            j->next = NULL;
            q->n_queued--;
            q->slots[best].job = j;
            q->n_busy++;
            started[n_started++] = best;
        }
        pthread_mutex_unlock(&q->mu);

        while (expired) {
            srv_job *j = expired;
            expired = j->next;
            pthread_mutex_lock(&s->m.mu);
            s->m.rejected[REJ_QUEUE_TIMEOUT]++;
            pthread_mutex_unlock(&s->m.mu);
            out_error(j, 503, "queue_timeout", "The request waited too long for a free slot.");
            job_unref(j);
        }
        for (int k = 0; k < n_started; k++) {
            srv_slot *sl = &q->slots[started[k]];
            pthread_mutex_lock(&sl->job->mu);
            sl->job->state = JOB_RUNNING;
            pthread_mutex_unlock(&sl->job->mu);
            if (atomic_load(&sl->job->cancelled)) continue;
            if (!slot_begin(s, sl)) slot_release(s, sl);
        }

        bool stepped = false;
        double next_ready = now + 0.25;
        srv_slot *bs[256];
        int nb = 0;
        /* scripted slots step alone; decoding slots sample their next token */
        for (int i = 0; i < q->n_slots; i++) {
            srv_slot *sl = &q->slots[i];
            if (!sl->job) continue;
            srv_job *j = sl->job;
            if (atomic_load(&j->cancelled)) {
                slot_release(s, sl);
                continue;
            }
            double t = srv_now();
            if (sl->ready_at > t) {
                if (sl->ready_at < next_ready) next_ready = sl->ready_at;
                continue;
            }
            if (j->scripted) {
                stepped = true;
                if (step_script(s, sl, t)) slot_release(s, sl);
                continue;
            }
            if (sl->phase == 0) continue;
            stepped = true;
            if (decode_sample(s, sl)) {
                count_gen(s, srv_now() - t);
                slot_release(s, sl);
                continue;
            }
            sl->t_sample = srv_now() - t;
            sl->n_step = 1;
            bs[nb++] = sl;
        }
        /* prefilling slots share batch_size prompt tokens, in slot order. A prompt is cut
         * into the same chunks (batch_size tokens, then the rest) however busy the server
         * is: a slot whose next chunk does not fit waits for the next iteration rather than
         * taking a smaller piece, because the chunk sizes choose the kernels (model.h:
         * MODEL_GEMM_MIN_TOK), and a request must get the same tokens as when served alone */
        size_t budget = (size_t)s->o.batch_size;
        for (int i = 0; i < q->n_slots && budget > 0; i++) {
            srv_slot *sl = &q->slots[i];
            if (!sl->job || sl->job->scripted || sl->phase != 0 || atomic_load(&sl->job->cancelled)) continue;
            size_t n = K2_MIN((size_t)s->o.batch_size, sl->job->n_prompt - sl->prefill_pos);
            if (n > budget) continue;
            budget -= n;
            sl->n_step = (uint32_t)n;
            bs[nb++] = sl;
            stepped = true;
        }
        if (nb > 0) eval_batch(s, bs, nb);
        if (stepped) continue;
        pthread_mutex_lock(&q->mu);
        if (!q->stop && !q->q_head) {
            double wait = next_ready - srv_now();
            if (wait > 0) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                long long ns = (long long)ts.tv_nsec + (long long)(wait * 1e9);
                ts.tv_sec += (time_t)(ns / 1000000000LL);
                ts.tv_nsec = (long)(ns % 1000000000LL);
                pthread_cond_timedwait(&q->cv, &q->mu, &ts);
            }
        } else if (q->q_head) {
            /* queued work waits for a slot: sleep until something changes */
            bool any_free = false;
            for (int i = 0; i < q->n_slots; i++)
                if (!q->slots[i].job) any_free = true;
            if (!any_free) {
                double wait = next_ready - srv_now();
                if (wait > 0) {
                    struct timespec ts;
                    clock_gettime(CLOCK_MONOTONIC, &ts);
                    long long ns = (long long)ts.tv_nsec + (long long)(wait * 1e9);
                    ts.tv_sec += (time_t)(ns / 1000000000LL);
                    ts.tv_nsec = (long)(ns % 1000000000LL);
                    pthread_cond_timedwait(&q->cv, &q->mu, &ts);
                }
            }
        }
        pthread_mutex_unlock(&q->mu);
    }
    return NULL;
}

k2_status sched_start(srv *s, k2_error *err) {
    srv_sched *q = &s->sched;
    q->n_slots = s->o.parallel;
    q->slots = k2_calloc((size_t)q->n_slots, sizeof *q->slots);
    if (!q->slots) return k2_err(err, K2_ENOMEM, "server: out of memory for %d slots", q->n_slots);
    for (int i = 0; i < q->n_slots; i++) {
        srv_slot *sl = &q->slots[i];
        sl->logits = k2_calloc((size_t)s->n_vocab, sizeof(float));
        sl->prompt_logits = k2_calloc((size_t)s->n_vocab, sizeof(float));
        if (!sl->logits || !sl->prompt_logits) return k2_err(err, K2_ENOMEM, "server: out of memory for logits");
        if (s->model) {
            k2_context_options co;
            k2_context_options_init(&co);
            co.n_ctx = s->n_ctx_slot;
            co.n_threads = s->o.threads;
            k2_status st = k2_context_new(s->model, &co, &sl->ctx, err);
            if (st != K2_OK) {
                k2_err_prefix(err, "server: slot %d: ", i);
                return st;
            }
        }
    }
    if (pthread_create(&q->thread, NULL, sched_main, s) != 0)
        return k2_err(err, K2_EIO, "server: cannot start the scheduler thread");
    q->started = true;
    return K2_OK;
}

void sched_stop(srv *s) {
    srv_sched *q = &s->sched;
    pthread_mutex_lock(&q->mu);
    q->stop = true;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (q->started) pthread_join(q->thread, NULL);
    q->started = false;
    /* whatever is still queued or running ends with an in-stream error / 503 */
    srv_job *j = q->q_head;
    q->q_head = q->q_tail = NULL;
    q->n_queued = 0;
    while (j) {
        srv_job *n = j->next;
        j->next = NULL;
        out_error(j, 503, "shutting_down", "The server is shutting down.");
        job_unref(j);
        j = n;
    }
    for (int i = 0; q->slots && i < q->n_slots; i++) {
        srv_slot *sl = &q->slots[i];
        if (sl->job) {
            if (!atomic_load(&sl->job->cancelled)) {
                atomic_store(&sl->job->cancel_reason, CR_SHUTDOWN);
                pthread_mutex_lock(&s->m.mu);
                s->m.cancelled[2]++;
                pthread_mutex_unlock(&s->m.mu);
                out_error(sl->job, 503, "shutting_down", "The server is shutting down.");
            }
            slot_release(s, sl);
        }
    }
}

void sched_free(srv *s) {
    srv_sched *q = &s->sched;
    for (int i = 0; q->slots && i < q->n_slots; i++) {
        if (q->slots[i].ctx) k2_context_free(q->slots[i].ctx);
        free(q->slots[i].cached);
        free(q->slots[i].logits);
        free(q->slots[i].prompt_logits);
    }
    free(q->slots);
    q->slots = NULL;
}

bool sched_submit(srv *s, srv_job *j) {
    srv_sched *q = &s->sched;
    pthread_mutex_lock(&q->mu);
    int free_slots = q->n_slots - q->n_busy;
    if (q->stop || q->n_queued + 1 - free_slots > s->o.queue_size) {
        pthread_mutex_unlock(&q->mu);
        return false;
    }
    job_ref(j);
    if (q->q_tail) q->q_tail->next = j;
    else q->q_head = j;
    q->q_tail = j;
    q->n_queued++;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    return true;
}

void sched_wake(srv *s) {
    pthread_mutex_lock(&s->sched.mu);
    pthread_cond_broadcast(&s->sched.cv);
    pthread_mutex_unlock(&s->sched.mu);
}

void sched_counts(srv *s, int *busy, int *queued) {
    pthread_mutex_lock(&s->sched.mu);
    *busy = s->sched.n_busy;
    *queued = s->sched.n_queued;
    pthread_mutex_unlock(&s->sched.mu);
}
