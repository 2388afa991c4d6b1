/* Server life cycle: options, asynchronous model loading on the runtime's worker pool,
 * graceful stop (spec/server-api.md §6.9), metrics (§2.6) and logging. */
#include "server/server.h"
#include "async/async.h"
#include "runtime/runtime.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifndef K2_VERSION
#define K2_VERSION "0.0.0"
#endif
#ifndef K2_COMMIT
#define K2_COMMIT "unknown"
#endif

void k2_server_options_init(k2_server_options *o) {
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->parallel = 1;
    o->batch_size = 512;
    o->queue_size = 32;
    o->max_body_bytes = 16u << 20;
    o->read_timeout_s = 30;
    o->keepalive_timeout_s = 60;
    o->write_timeout_s = 60;
    o->queue_timeout_s = 600;
    o->sse_keepalive_s = 15;
    o->max_connections = 256;
    o->max_stream_buffer = 4u << 20;
    o->metrics = true;
    o->temperature = 1.0f;
    o->top_p = 1.0f;
    o->repeat_penalty = 1.0f;
}

void srv_log(srv *s, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%H:%M:%S", &tm);
    pthread_mutex_lock(&s->log_mu);
    fprintf(stderr, "[%s] k2 serve: %s\n", ts, line);
    pthread_mutex_unlock(&s->log_mu);
}

static char **split_list(const char *s, size_t *n) {
    *n = 0;
    if (!s) return NULL;
    char **out = NULL;
    const char *p = s;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        while (l && isspace((unsigned char)*p)) p++, l--;
        while (l && isspace((unsigned char)p[l - 1])) l--;
        if (l) {
            char **nn = realloc(out, (*n + 1) * sizeof *nn);
            if (!nn) break;
            out = nn;
            out[(*n)++] = k2_strndup(p, l);
        }
        if (!e) break;
        p = e + 1;
    }
    return out;
}

static void free_list(char **l, size_t n) {
    for (size_t i = 0; i < n; i++) free(l[i]);
    free(l);
}

static k2_status read_key_file(srv *s, const char *path, k2_error *err) {
    char *data = NULL;
    size_t size = 0;
    k2_status st = k2_read_file(path, &data, &size, err);
    if (st != K2_OK) return st;
    char *save = NULL;
    for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        while (isspace((unsigned char)*line)) line++;
        size_t l = strlen(line);
        while (l && isspace((unsigned char)line[l - 1])) line[--l] = 0;
        if (!l || line[0] == '#') continue;
        char **nn = realloc(s->keys, (s->n_keys + 1) * sizeof *nn);
        if (!nn) break;
        s->keys = nn;
        s->keys[s->n_keys++] = k2_strdup(line);
    }
    free(data);
    return K2_OK;
}

/* ---- loading ---- */

static void sanitize_id(char *id) {
    for (char *c = id; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("._:-", *c)) *c = '-';
}

/* A local file or folder, or a Hub reference: the same resolution as k2 run / chat
 * (src/runtime), waited for on this worker thread. */
static k2_status resolve_path(srv *s, k2_error *err) {
    k2_hub_options ho;
    k2_hub_options_init(&ho);
    return rtm_fetch_model(s->rt, s->o.model, &ho, &s->model_path, NULL, err);
}

static k2_status do_load(srv *s, k2_error *err) {
    k2_status st = resolve_path(s, err);
    if (st != K2_OK) return st;
    const k2_gguf *g = NULL;
    k2_error merr;
    st = k2_model_load(s->model_path, NULL, &s->model, &merr);
    if (st != K2_OK) {
        if (!s->o.test_mode) {
            *err = merr;
            return st;
        }
        /* test mode: a vocabulary-only file is enough (spec §8.1) */
        s->model = NULL;
        st = k2_gguf_open(s->model_path, &s->gguf, err);
        if (st != K2_OK) return st;
        g = s->gguf;
        srv_log(s, "test mode without a model (%s)", merr.message);
    } else {
        g = k2_model_gguf(s->model);
    }
    st = k2_tokenizer_from_gguf(g, &s->tok, err);
    if (st != K2_OK) return st;
    s->n_vocab = k2_tokenizer_n_vocab(s->tok);
    if (s->model && (int32_t)k2_model_n_vocab(s->model) > s->n_vocab) s->n_vocab = (int32_t)k2_model_n_vocab(s->model);
    s->n_ctx_train = s->model ? k2_model_n_ctx_train(s->model) : 0;
    if (!s->n_ctx_train) {
        uint32_t v = 0;
        k2_str arch = {0};
        if (k2_gguf_get_str(g, "general.architecture", &arch, NULL) == K2_OK && arch.len < 64) {
            char key[128];
            snprintf(key, sizeof key, "%.*s.context_length", (int)arch.len, arch.ptr);
            if (k2_gguf_get_u32(g, key, &v, NULL) == K2_OK) s->n_ctx_train = v;
        }
        if (!s->n_ctx_train) s->n_ctx_train = 4096;
    }
    uint32_t total = s->o.ctx_size ? s->o.ctx_size : K2_MIN(s->n_ctx_train, 32768u);
    s->n_ctx_slot = total / (uint32_t)s->o.parallel;
    if (s->n_ctx_slot < 8) return k2_err(err, K2_EINVAL, "server: --ctx-size %u is too small for %d slots", total, s->o.parallel);
    /* model id */
    if (s->o.model_id) s->model_id = k2_strdup(s->o.model_id);
    else {
        k2_str name = {0};
        if (k2_gguf_get_str(g, "general.name", &name, NULL) == K2_OK && name.len) s->model_id = k2_strndup(name.ptr, name.len);
        else {
            const char *b = strrchr(s->model_path, '/');
            b = b ? b + 1 : s->model_path;
            s->model_id = k2_strdup(b);
            size_t l = strlen(s->model_id);
            if (l > 5 && strcmp(s->model_id + l - 5, ".gguf") == 0) s->model_id[l - 5] = 0;
        }
        sanitize_id(s->model_id);
    }
    static const char *const marks[KM_COUNT] = {"<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
                                                "<|tool_call_begin|>", "<|tool_call_argument_begin|>",
                                                "<|tool_call_end|>", "<think>", "</think>"};
    for (int i = 0; i < KM_COUNT; i++) {
        int32_t id = k2_token_find(s->tok, marks[i], strlen(marks[i]));
        s->marks[i] = id >= 0 && k2_token_is_special(s->tok, id) ? id : (i < KM_THINK_OPEN ? id : -1);
        if (i >= KM_THINK_OPEN && id >= 0 && !k2_token_is_special(s->tok, id)) s->marks[i] = -1;
    }
    static const char *const extra[3] = {"<|im_user|>", "<|im_assistant|>", "<|im_system|>"};
    for (int i = 0; i < 3; i++) s->eog_extra[i] = k2_token_find(s->tok, extra[i], strlen(extra[i]));
    st = sched_start(s, err);
    if (st != K2_OK) return st;
    s->created = (int64_t)time(NULL);
    return K2_OK;
}

static void load_work(void *u) {
    srv *s = u;
    k2_error err;
    k2_error_clear(&err);
    double t0 = srv_now();
    k2_status st = do_load(s, &err);
    if (st != K2_OK) {
        s->load_err = err;
        srv_log(s, "model load failed: %s", err.message);
        int expect = SRV_LOADING;
        atomic_compare_exchange_strong(&s->state, &expect, SRV_FAILED);
    } else {
        srv_log(s, "model %s ready in %.1f s (%d slots x %u tokens)", s->model_id, srv_now() - t0, s->o.parallel,
                s->n_ctx_slot);
        int expect = SRV_LOADING;
        atomic_compare_exchange_strong(&s->state, &expect, SRV_READY);
    }
}

/* The server keeps a small private struct for the load handshake at its end. */
typedef struct srv_full {
    struct k2_server s;
    pthread_mutex_t load_mu;
    pthread_cond_t load_cv;
    bool load_done;
    bool stopped;
} srv_full;

static void load_done(void *u) {
    srv_full *f = u;
    pthread_mutex_lock(&f->load_mu);
    f->load_done = true;
    pthread_cond_broadcast(&f->load_cv);
    pthread_mutex_unlock(&f->load_mu);
}

static void load_work_full(void *u) { load_work(&((srv_full *)u)->s); }

k2_status k2_server_start(k2_runtime *rt, const k2_server_options *o, k2_server **out, k2_error *err) {
    *out = NULL;
    if (!rt || !o || !o->model) return k2_err(err, K2_EINVAL, "k2_server_start: a runtime and a model are required");
    if (o->parallel < 1 || o->parallel > 256) return k2_err(err, K2_EINVAL, "server: --parallel must be 1..256");
    if (o->port < 0 || o->port > 65535) return k2_err(err, K2_EINVAL, "server: --port must be 0..65535");
    if (o->batch_size < 1) return k2_err(err, K2_EINVAL, "server: --batch-size must be >= 1");
    if (o->queue_size < 0) return k2_err(err, K2_EINVAL, "server: --queue-size must be >= 0");
    srv_full *f = k2_calloc(1, sizeof *f);
    if (!f) return k2_err(err, K2_ENOMEM, "server: out of memory");
    srv *s = &f->s;
    s->o = *o;
    s->o.model = k2_strdup(o->model);
    s->o.host = k2_strdup(o->host ? o->host : "127.0.0.1");
    s->o.model_id = o->model_id ? k2_strdup(o->model_id) : NULL;
    s->o.owned_by = k2_strdup(o->owned_by ? o->owned_by : "local");
    s->o.cors_origin = o->cors_origin ? k2_strdup(o->cors_origin) : NULL;
    s->o.api_keys = NULL;
    s->o.api_key_file = NULL;
    s->o.aliases = NULL;
    if (s->o.max_connections < 1) s->o.max_connections = 256;
    s->rt = rt;
    s->aliases = split_list(o->aliases, &s->n_aliases);
    s->keys = split_list(o->api_keys, &s->n_keys);
    pthread_mutex_init(&s->live_mu, NULL);
    pthread_mutex_init(&s->conn_mu, NULL);
    pthread_mutex_init(&s->log_mu, NULL);
    pthread_mutex_init(&s->m.mu, NULL);
    pthread_mutex_init(&s->sched.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->sched.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&f->load_mu, NULL);
    pthread_cond_init(&f->load_cv, NULL);
    s->m.http = json_object();
    atomic_init(&s->state, SRV_LOADING);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    s->start_time = (double)ts.tv_sec + ts.tv_nsec * 1e-9;
    snprintf(s->fingerprint, sizeof s->fingerprint, "fp_%.10s", K2_COMMIT);
    for (char *c = s->fingerprint + 3; *c; c++) *c = (char)tolower((unsigned char)*c);
    k2_status st = K2_OK;
    if (o->api_key_file) st = read_key_file(s, o->api_key_file, err);
    s->key_active = k2_calloc(s->n_keys + 1, sizeof *s->key_active);
    if (st == K2_OK) st = http_start(s, err);
    if (st != K2_OK) {
        f->load_done = true;
        k2_server_free(s);
        return st;
    }
    srv_log(s, "listening on http://%s:%d", s->o.host, s->port);
    k2_runtime_submit_work(rt, load_work_full, load_done, f);
    *out = s;
    return K2_OK;
}

int k2_server_port(const k2_server *s) { return s->port; }

k2_server_state k2_server_get_state(const k2_server *s, k2_error *err) {
    int st = atomic_load(&((srv *)s)->state);
    if (st == SRV_FAILED && err) *err = s->load_err;
    switch (st) {
    case SRV_READY: return K2_SERVER_READY;
    case SRV_FAILED: return K2_SERVER_FAILED;
    case SRV_SHUTTING_DOWN: return K2_SERVER_STOPPING;
    default: return K2_SERVER_LOADING;
    }
}

static void wait_load(srv_full *f) {
    pthread_mutex_lock(&f->load_mu);
    while (!f->load_done) pthread_cond_wait(&f->load_cv, &f->load_mu);
    pthread_mutex_unlock(&f->load_mu);
}

void k2_server_stop(k2_server *s, int grace_s) {
    srv_full *f = (srv_full *)s;
    if (f->stopped) return;
    f->stopped = true;
    atomic_store(&s->state, SRV_SHUTTING_DOWN);
    wait_load(f);
    if (s->sched.started) {
        /* queued requests are refused at once; running ones get the grace period */
        pthread_mutex_lock(&s->sched.mu);
        srv_job *q = s->sched.q_head;
        s->sched.q_head = s->sched.q_tail = NULL;
        s->sched.n_queued = 0;
        pthread_mutex_unlock(&s->sched.mu);
        while (q) {
            srv_job *n = q->next;
            q->next = NULL;
            pthread_mutex_lock(&s->m.mu);
            s->m.rejected[REJ_SHUTDOWN]++;
            pthread_mutex_unlock(&s->m.mu);
            out_error(q, 503, "shutting_down", "The server is shutting down.");
            job_unref(q);
            q = n;
        }
        double end = srv_now() + grace_s;
        for (;;) {
            int busy, queued;
            sched_counts(s, &busy, &queued);
            if (busy == 0 || srv_now() >= end) break;
            usleep(20 * 1000);
        }
        sched_stop(s);
    }
    /* let clients receive their last bytes */
    double end = srv_now() + 2.0;
    for (;;) {
        pthread_mutex_lock(&s->live_mu);
        size_t n = s->n_live;
        pthread_mutex_unlock(&s->live_mu);
        if (!n || srv_now() >= end) break;
        usleep(10 * 1000);
    }
    http_stop(s);
}

void k2_server_free(k2_server *s) {
    if (!s) return;
    srv_full *f = (srv_full *)s;
    k2_server_stop(s, 0);
    sched_free(s);
    if (s->tok) k2_tokenizer_free(s->tok);
    if (s->model) k2_model_free(s->model);
    if (s->gguf) k2_gguf_close(s->gguf);
    free(s->model_path);
    free(s->model_id);
    free_list(s->aliases, s->n_aliases);
    free_list(s->keys, s->n_keys);
    free(s->key_active);
    free(s->live);
    json_decref(s->m.http);
    free((char *)s->o.model);
    free((char *)s->o.host);
    free((char *)s->o.model_id);
    free((char *)s->o.owned_by);
    free((char *)s->o.cors_origin);
    pthread_mutex_destroy(&s->live_mu);
    pthread_mutex_destroy(&s->conn_mu);
    pthread_mutex_destroy(&s->log_mu);
    pthread_mutex_destroy(&s->m.mu);
    pthread_mutex_destroy(&s->sched.mu);
    pthread_cond_destroy(&s->sched.cv);
    pthread_mutex_destroy(&f->load_mu);
    pthread_cond_destroy(&f->load_cv);
    free(f);
}

/* ---- metrics ---- */

static const double TTFT_B[SRV_N_TTFT_BUCKETS] = {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
static const double DUR_B[SRV_N_DUR_BUCKETS] = {0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800};

void metrics_http(srv *s, const char *endpoint, int status) {
    char key[96];
    snprintf(key, sizeof key, "%s %03d", endpoint, status);
    pthread_mutex_lock(&s->m.mu);
    json_t *v = json_object_get(s->m.http, key);
    json_object_set_new(s->m.http, key, json_integer(v ? json_integer_value(v) + 1 : 1));
    pthread_mutex_unlock(&s->m.mu);
}

void metrics_observe_ttft(srv *s, double secs) {
    pthread_mutex_lock(&s->m.mu);
    for (int i = 0; i < SRV_N_TTFT_BUCKETS; i++)
        if (secs <= TTFT_B[i]) s->m.ttft_buckets[i]++;
    s->m.ttft_sum += secs;
    s->m.ttft_count++;
    pthread_mutex_unlock(&s->m.mu);
}

void metrics_observe_duration(srv *s, double secs) {
    pthread_mutex_lock(&s->m.mu);
    for (int i = 0; i < SRV_N_DUR_BUCKETS; i++)
        if (secs <= DUR_B[i]) s->m.dur_buckets[i]++;
    s->m.dur_sum += secs;
    s->m.dur_count++;
    pthread_mutex_unlock(&s->m.mu);
}

static void fam(sbuf *b, const char *name, const char *type, const char *help) {
    sbuf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void label_escape(sbuf *b, const char *v) {
    for (const char *c = v; *c; c++) {
        if (*c == '\\') sbuf_puts(b, "\\\\");
        else if (*c == '"') sbuf_puts(b, "\\\"");
        else if (*c == '\n') sbuf_puts(b, "\\n");
        else sbuf_put(b, c, 1);
    }
}

static void histogram(sbuf *b, const char *name, const double *bounds, int n, const uint64_t *counts, double sum,
                      uint64_t count) {
    for (int i = 0; i < n; i++) sbuf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)counts[i]);
    sbuf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)count);
    sbuf_printf(b, "%s_sum %.6f\n%s_count %llu\n", name, sum, name, (unsigned long long)count);
}

char *metrics_render(srv *s) {
    sbuf b = {0};
    int busy = 0, queued = 0;
    bool ready = atomic_load(&s->state) == SRV_READY;
    if (ready) sched_counts(s, &busy, &queued);
    fam(&b, "llm_build_info", "gauge", "Build information.");
    sbuf_printf(&b, "llm_build_info{version=\"%s\",commit=\"%s\"} 1\n", K2_VERSION, K2_COMMIT);
    fam(&b, "llm_model_info", "gauge", "The served model.");
    sbuf_puts(&b, "llm_model_info{model=\"");
    label_escape(&b, s->model_id && ready ? s->model_id : "");
    sbuf_printf(&b, "\",n_ctx_slot=\"%u\",n_parallel=\"%d\"} 1\n", ready ? s->n_ctx_slot : 0, s->o.parallel);
    pthread_mutex_lock(&s->m.mu);
    fam(&b, "llm_http_requests_total", "counter", "Finished HTTP requests.");
    const char *k;
    json_t *v;
    json_object_foreach(s->m.http, k, v) {
        const char *sp = strrchr(k, ' ');
        sbuf_puts(&b, "llm_http_requests_total{endpoint=\"");
        sbuf rb = {0};
        sbuf_put(&rb, k, (size_t)(sp - k));
        label_escape(&b, rb.p);
        sbuf_free(&rb);
        sbuf_printf(&b, "\",status=\"%s\"} %lld\n", sp + 1, (long long)json_integer_value(v));
    }
    fam(&b, "llm_requests_running", "gauge", "Requests currently holding a slot.");
    sbuf_printf(&b, "llm_requests_running %d\n", busy);
    fam(&b, "llm_requests_queued", "gauge", "Admitted requests waiting for a slot.");
    sbuf_printf(&b, "llm_requests_queued %d\n", queued);
    static const char *const rej[5] = {"queue_full", "rate_limited", "queue_timeout", "loading", "shutting_down"};
    fam(&b, "llm_requests_rejected_total", "counter", "Rejected requests.");
    for (int i = 0; i < 5; i++)
        sbuf_printf(&b, "llm_requests_rejected_total{reason=\"%s\"} %llu\n", rej[i], (unsigned long long)s->m.rejected[i]);
    static const char *const can[3] = {"client_disconnect", "write_timeout", "shutdown"};
    fam(&b, "llm_requests_cancelled_total", "counter", "Cancelled requests.");
    for (int i = 0; i < 3; i++)
        sbuf_printf(&b, "llm_requests_cancelled_total{reason=\"%s\"} %llu\n", can[i], (unsigned long long)s->m.cancelled[i]);
    fam(&b, "llm_prompt_tokens_total", "counter", "Prompt tokens evaluated (cache hits excluded).");
    sbuf_printf(&b, "llm_prompt_tokens_total %llu\n", (unsigned long long)s->m.prompt_tokens);
    fam(&b, "llm_prompt_tokens_cached_total", "counter", "Prompt tokens reused from the prefix cache.");
    sbuf_printf(&b, "llm_prompt_tokens_cached_total %llu\n", (unsigned long long)s->m.prompt_cached);
    fam(&b, "llm_generated_tokens_total", "counter", "Sampled tokens.");
    sbuf_printf(&b, "llm_generated_tokens_total %llu\n", (unsigned long long)s->m.generated);
    fam(&b, "llm_prompt_seconds_total", "counter", "Wall time spent evaluating prompts.");
    sbuf_printf(&b, "llm_prompt_seconds_total %.6f\n", s->m.prompt_seconds);
    fam(&b, "llm_generation_seconds_total", "counter", "Wall time spent in generation steps.");
    sbuf_printf(&b, "llm_generation_seconds_total %.6f\n", s->m.gen_seconds);
    fam(&b, "llm_batch_evals_total", "counter", "Model forward passes (each evaluates every stepping slot at once).");
    sbuf_printf(&b, "llm_batch_evals_total %llu\n", (unsigned long long)s->m.batch_evals);
    fam(&b, "llm_batch_sequences_total", "counter", "Slot steps summed over forward passes.");
    sbuf_printf(&b, "llm_batch_sequences_total %llu\n", (unsigned long long)s->m.batch_seqs);
    fam(&b, "llm_batch_tokens_total", "counter", "Token rows summed over forward passes.");
    sbuf_printf(&b, "llm_batch_tokens_total %llu\n", (unsigned long long)s->m.batch_rows);
    fam(&b, "llm_slots_total", "gauge", "Slots.");
    sbuf_printf(&b, "llm_slots_total %d\n", s->o.parallel);
    fam(&b, "llm_slots_busy", "gauge", "Busy slots.");
    sbuf_printf(&b, "llm_slots_busy %d\n", busy);
    uint64_t used = 0;
    for (int i = 0; ready && i < s->sched.n_slots; i++) used += s->sched.slots[i].n_cached;
    fam(&b, "llm_kv_cache_tokens_used", "gauge", "Tokens held in the KV caches.");
    sbuf_printf(&b, "llm_kv_cache_tokens_used %llu\n", (unsigned long long)used);
    fam(&b, "llm_kv_cache_tokens_capacity", "gauge", "KV cache capacity in tokens.");
    sbuf_printf(&b, "llm_kv_cache_tokens_capacity %llu\n", (unsigned long long)s->n_ctx_slot * (unsigned long long)s->o.parallel);
    fam(&b, "llm_tool_calls_total", "counter", "Tool calls returned to clients.");
    sbuf_printf(&b, "llm_tool_calls_total %llu\n", (unsigned long long)s->m.tool_calls);
    fam(&b, "llm_tool_call_parse_errors_total", "counter", "Malformed Kimi tool sections.");
    sbuf_printf(&b, "llm_tool_call_parse_errors_total %llu\n", (unsigned long long)s->m.tool_parse_errors);
    fam(&b, "llm_time_to_first_token_seconds", "histogram", "Admission to first token.");
    histogram(&b, "llm_time_to_first_token_seconds", TTFT_B, SRV_N_TTFT_BUCKETS, s->m.ttft_buckets, s->m.ttft_sum,
              s->m.ttft_count);
    fam(&b, "llm_request_duration_seconds", "histogram", "Admission to end.");
    histogram(&b, "llm_request_duration_seconds", DUR_B, SRV_N_DUR_BUCKETS, s->m.dur_buckets, s->m.dur_sum, s->m.dur_count);
    pthread_mutex_unlock(&s->m.mu);
    fam(&b, "process_start_time_seconds", "gauge", "Unix time the process started.");
    sbuf_printf(&b, "process_start_time_seconds %.3f\n", s->start_time);
    return sbuf_take(&b);
}
