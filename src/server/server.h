/* server/: the OpenAI-compatible HTTP server (spec/server-api.md), internal side.
 *
 * Pieces:
 *  - srv_util.c:  growable buffers, compact JSON output with the escapes of §1.4, ids,
 *                 UTF-8 repair and the text hold-back buffer (UTF-8 + stop strings, §4.6);
 *  - srv_kimi.c:  the Kimi K2 tool-call parser (§7.4), one state machine for streamed and
 *                 non-streamed responses;
 *  - srv_sched.c: slots, the FIFO queue and the scheduler thread that owns the model
 *                 contexts and steps every active slot once per iteration (§6.2);
 *  - srv_api.c:   request validation (§2), prompt building, response and chunk JSON;
 *  - srv_http.c:  libmicrohttpd daemon, routing, auth, limits, suspend/resume, the
 *                 disconnect/keep-alive watchdog, metrics. */
#ifndef K2_SERVER_H
#define K2_SERVER_H

#include "k2.h"
#include "base/base.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- buffers ---- */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;

void sbuf_put(sbuf *b, const void *data, size_t n);
void sbuf_puts(sbuf *b, const char *s);
void sbuf_printf(sbuf *b, const char *fmt, ...) K2_PRINTF(2, 3);
void sbuf_free(sbuf *b);
/* Takes the NUL-terminated contents (never NULL); the buffer becomes empty. */
char *sbuf_take(sbuf *b);

/* ---- JSON output (§1.4) ---- */
/* Compact serialisation; U+0085, U+2028, U+2029 escaped. Steals nothing. malloc'ed. */
char *srv_json_dump(const json_t *j);
/* Appends the compact serialisation to b. */
void srv_json_append(sbuf *b, const json_t *j);
/* A json string from bytes that may be invalid UTF-8 (repaired with U+FFFD). */
json_t *srv_json_str(const char *s, size_t n);

/* ---- UTF-8 ---- */
/* Appends s with every maximal ill-formed subsequence replaced by U+FFFD. */
void srv_utf8_repair(sbuf *out, const char *s, size_t n);
bool srv_utf8_valid(const char *s, size_t n);

/* Random [A-Za-z0-9] characters from the OS CSPRNG. */
void srv_rand_alnum(char *out, size_t n);
double srv_now(void);   /* seconds, monotonic */

/* ---- text hold-back: incomplete UTF-8 and stop strings (§4.6) ---- */
typedef struct textbuf {
    sbuf pending;
    char **stop;
    size_t n_stop;
    size_t max_stop;
    bool stopped;
} textbuf;

void textbuf_init(textbuf *t, char *const *stop, size_t n_stop);
void textbuf_free(textbuf *t);
/* Adds bytes; appends the text that became safe to `out` (valid UTF-8). Returns true when
 * a stop string matched (the text before it was released, the rest discarded). */
bool textbuf_push(textbuf *t, const char *s, size_t n, sbuf *out);
/* Releases everything held (incomplete UTF-8 becomes U+FFFD). */
void textbuf_flush(textbuf *t, sbuf *out);

/* ---- Kimi K2 tool-call parser (§7.4) ---- */
typedef enum kimi_mark {
    KM_SB = 0, KM_SE, KM_CB, KM_AB, KM_CE, KM_THINK_OPEN, KM_THINK_CLOSE, KM_COUNT
} kimi_mark;

typedef struct kimi_sink {
    void (*content)(void *user, const char *s, size_t n);
    void (*reasoning)(void *user, const char *s, size_t n);
    void (*call_header)(void *user, int k, const char *id, const char *name);
    void (*call_args)(void *user, int k, const char *s, size_t n);
    void *user;
    /* text bytes the parser discards (leading whitespace of content); may be NULL */
    void (*dropped)(void *user, size_t n);
} kimi_sink;

typedef enum kimi_state {
    KS_START = 0, KS_REASONING, KS_CONTENT, KS_SECTION, KS_CALL_ID, KS_CALL_ARGS, KS_AFTER
} kimi_state;

typedef struct kimi_parser {
    kimi_sink sink;
    bool reasoning_enabled;
    kimi_state state;
    int k;                  /* calls so far */
    bool content_started;
    bool args_started;      /* leading whitespace of the current call's arguments dropped */
    bool call_open;         /* CALL_ARGS belongs to a resolved call */
    bool entered_call_id;   /* for tool_choice "required" */
    sbuf id_buf, ws_hold, think_hold;
    char **ids;             /* ids used so far (duplicate detection) */
    size_t n_ids;
    int parse_errors;
} kimi_parser;

void kimi_init(kimi_parser *p, bool reasoning_enabled, const kimi_sink *sink);
void kimi_free(kimi_parser *p);
void kimi_text(kimi_parser *p, const char *s, size_t n);
void kimi_on_mark(kimi_parser *p, kimi_mark m);
void kimi_end(kimi_parser *p);
/* Named tool_choice (§7.5): the forced prefix already opened call 0. */
void kimi_force_call(kimi_parser *p, const char *id, const char *name);

/* ---- errors (§5) ---- */
typedef struct srv_error {
    int http;                 /* 0 = none */
    const char *type;
    const char *code;
    char param[128];
    char message[512];
} srv_error;

/* Sets e (returns false for `if (!ok) return srv_fail(...)` chains). */
bool srv_fail(srv_error *e, int http, const char *code, const char *param, const char *fmt, ...)
    K2_PRINTF(5, 6);
json_t *srv_error_json(const srv_error *e);
char *srv_error_body(const srv_error *e);

/* ---- requests and jobs ---- */
typedef struct k2_server srv;
typedef struct srv_job srv_job;

enum tool_choice { TC_NONE = 0, TC_AUTO, TC_REQUIRED, TC_NAMED };
enum job_state { JOB_QUEUED = 0, JOB_RUNNING, JOB_FINISHED };
enum cancel_reason { CR_NONE = 0, CR_CLIENT, CR_WRITE_TIMEOUT, CR_SHUTDOWN };

typedef struct script_piece {
    char *bytes;
    size_t len;
    int32_t token;        /* >= 0: the control token it stands for; -1: text */
} script_piece;

/* One generated token's log-probabilities (§3.4), waiting until its bytes are routed. */
#define SRV_MAX_TOP_LP 20
typedef struct lp_tok {
    int32_t id;                   /* -1: a scripted piece (no model, logprob 0) */
    float lp;
    int n_top;
    int32_t top_id[SRV_MAX_TOP_LP];
    float top_lp[SRV_MAX_TOP_LP];
    char *bytes;
    size_t len, rem;              /* the token's bytes; those not yet routed */
    bool sent;                    /* its entry was produced */
} lp_tok;

/* Fills t (id, lp, n_top alternatives) from the raw logits at temperature 1. */
void srv_logprobs(const float *logits, int32_t n_vocab, int32_t chosen, int n_top, lp_tok *t);

typedef struct tool_call_acc {
    char *id, *name;
    sbuf args;
} tool_call_acc;

struct srv_job {
    atomic_int refs;
    srv *s;
    pthread_mutex_t mu;

    /* request (immutable after admission) */
    bool chat, stream, include_usage;
    int32_t *prompt;
    size_t n_prompt;
    int64_t max_tokens;          /* <= 0: unlimited */
    k2_sampling_options samp;
    k2_logit_bias *bias;
    size_t n_bias;
    char **stop;
    size_t n_stop;
    bool reasoning_separate;
    int tool_choice;
    char *forced_id, *forced_name;
    bool parallel_tool_calls;
    bool has_tools;
    bool scripted;
    script_piece *pieces;
    size_t n_pieces;
    int piece_delay_ms, prompt_delay_ms;
    int64_t fail_after;          /* < 0: never */
    bool want_lp;                /* logprobs requested (§3.4) */
    int n_top_lp;                /* alternatives per token */
    char id[48];
    int64_t created;
    char *api_key;               /* for per-key limits; may be NULL */
    int key_index;               /* counted in key_active, or -1 */

    /* life cycle */
    atomic_bool cancelled;
    atomic_int cancel_reason;
    int state;                   /* enum job_state, under mu */
    double t_admit, t_first_token, t_last_write;

    /* output: stream bytes (SSE) or the final response */
    sbuf out;
    size_t out_pos;
    bool out_final;              /* stream: nothing more will be appended */
    int final_status;            /* non-stream: HTTP status of `out` */
    bool role_sent;

    /* the HTTP side (under mu); conn == NULL once the connection is gone */
    void *conn;
    bool gone;                   /* the connection was closed */
    bool suspended;
    int fd;

    /* generation state (scheduler thread only) */
    k2_sampler *sampler;
    textbuf text;
    kimi_parser parser;
    sbuf content, reasoning;
    tool_call_acc *calls;
    size_t n_calls_acc;
    int64_t n_gen;
    uint32_t n_cached;
    size_t script_pos;
    bool first_ce_seen;
    lp_tok lp_cur;               /* set by the scheduler before out_token (lp_cur_set) */
    bool lp_cur_set;
    lp_tok *lp_q;                /* tokens whose bytes are not all routed yet */
    size_t lp_head, lp_n, lp_cap;
    json_t *lp_acc;              /* non-stream: the logprobs gathered so far */
    size_t text_cp;              /* completions: code points of text sent so far */
    srv_job *next;               /* queue link */
};

srv_job *job_new(srv *s);
srv_job *job_ref(srv_job *j);
void job_unref(srv_job *j);
/* Appends stream bytes and wakes the connection (takes j->mu). */
void job_emit(srv_job *j, const char *data, size_t n, bool final);
/* Non-stream completion: stores the body and wakes the connection. */
void job_finish_body(srv_job *j, int status, char *body);
/* Wakes a suspended connection (j->mu held). */
void job_wake_locked(srv_job *j);

/* ---- scheduler ---- */
typedef struct srv_slot {
    k2_context *ctx;          /* NULL in test mode without a model */
    int32_t *cached;
    size_t n_cached, cap_cached;
    srv_job *job;
    int phase;                /* 0 prefill, 1 decode */
    size_t prefill_pos;
    double ready_at;          /* test-mode delays */
    bool delay_done;
    float *logits;            /* n_vocab scratch */
    /* The logits at the end of the last prompt this slot evaluated, valid while the cache
     * holds exactly that prompt's tokens as its first prompt_logits_len: a request whose
     * prompt is all cached samples from them instead of re-evaluating its last token, so
     * it gets the bits the first evaluation gave (a one-token eval takes other kernels and
     * the absorbed attention form than a prompt chunk does) */
    float *prompt_logits;
    size_t prompt_logits_len; /* 0: none */
    bool use_prompt_logits;   /* the next decode_sample takes prompt_logits */
    /* this iteration's share of the batch (sched_main) */
    int32_t next_tok;         /* decode: the sampled token to evaluate */
    uint32_t n_step;          /* rows it evaluates: a prompt chunk or 1 */
    double t_sample;          /* seconds spent sampling it */
} srv_slot;

typedef struct srv_sched {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop;
    srv_slot *slots;
    int n_slots;
    srv_job *q_head, *q_tail;
    int n_queued;
    int n_busy;
} srv_sched;

k2_status sched_start(srv *s, k2_error *err);
void sched_stop(srv *s);
void sched_free(srv *s);
/* Admission (§6.3): false when the queue is full. Takes a reference on success. */
bool sched_submit(srv *s, srv_job *j);
void sched_wake(srv *s);
void sched_counts(srv *s, int *busy, int *queued);

/* ---- metrics ---- */
#define SRV_N_TTFT_BUCKETS 12
#define SRV_N_DUR_BUCKETS 11
typedef struct srv_metrics {
    pthread_mutex_t mu;
    json_t *http;                 /* {"endpoint status": count} */
    uint64_t rejected[5];         /* queue_full rate_limited queue_timeout loading shutting_down */
    uint64_t cancelled[3];        /* client_disconnect write_timeout shutdown */
    uint64_t prompt_tokens, prompt_cached, generated, tool_calls, tool_parse_errors;
    double prompt_seconds, gen_seconds;
    uint64_t batch_evals, batch_seqs, batch_rows; /* forward passes, sequences and rows in them */
    uint64_t ttft_buckets[SRV_N_TTFT_BUCKETS + 1], dur_buckets[SRV_N_DUR_BUCKETS + 1];
    double ttft_sum, dur_sum;
    uint64_t ttft_count, dur_count;
} srv_metrics;

enum { REJ_QUEUE_FULL = 0, REJ_RATE, REJ_QUEUE_TIMEOUT, REJ_LOADING, REJ_SHUTDOWN };

void metrics_http(srv *s, const char *endpoint, int status);
void metrics_observe_ttft(srv *s, double secs);
void metrics_observe_duration(srv *s, double secs);
char *metrics_render(srv *s);

/* ---- the server ---- */
enum srv_state { SRV_LOADING = 0, SRV_READY, SRV_FAILED, SRV_SHUTTING_DOWN };

struct k2_server {
    k2_server_options o;
    k2_runtime *rt;
    atomic_int state;
    k2_error load_err;
    char *model_path;

    k2_model *model;
    k2_gguf *gguf;                 /* test mode without a model: the vocabulary file */
    k2_tokenizer *tok;
    int32_t n_vocab;
    uint32_t n_ctx_slot, n_ctx_train;
    char *model_id;
    char **aliases;
    size_t n_aliases;
    int64_t created;
    char fingerprint[16];
    int32_t marks[KM_COUNT];       /* control ids of the preserved markers, -1 if absent */
    int32_t eog_extra[3];          /* <|im_user|> <|im_assistant|> <|im_system|> */

    char **keys;
    size_t n_keys;
    int *key_active;               /* admitted requests per key (under m.mu) */

    void *daemon;                  /* struct MHD_Daemon */
    int port;
    pthread_t watchdog;
    bool watchdog_started;
    atomic_bool watchdog_stop;
    pthread_mutex_t live_mu;
    srv_job **live;
    size_t n_live, cap_live;
    pthread_mutex_t conn_mu;
    struct srv_conn *conns;        /* open connections (read-timeout enforcement) */

    srv_sched sched;
    srv_metrics m;
    double start_time;             /* Unix */
    pthread_mutex_t log_mu;
};

void srv_log(srv *s, const char *fmt, ...) K2_PRINTF(2, 3);

/* srv_http.c */
k2_status http_start(srv *s, k2_error *err);
void http_stop(srv *s);
void live_add(srv *s, srv_job *j);
void live_remove(srv *s, srv_job *j);

/* srv_api.c: endpoint handlers. Each returns the HTTP status and a malloc'ed body
 * (JSON), or for admitted completions 0 with *job set. */
typedef struct api_reply {
    int status;
    char *body;
    const char *content_type;
    int retry_after;          /* > 0: Retry-After header */
    srv_job *job;             /* admitted completion */
} api_reply;

void api_health(srv *s, api_reply *r);
void api_models(srv *s, const char *one, api_reply *r);
void api_tokenize(srv *s, const char *body, size_t len, api_reply *r);
void api_detokenize(srv *s, const char *body, size_t len, api_reply *r);
void api_apply_template(srv *s, const char *body, size_t len, api_reply *r);
void api_completion(srv *s, bool chat, const char *body, size_t len, const char *api_key, api_reply *r);
void api_error_reply(api_reply *r, const srv_error *e);
bool api_model_known(srv *s, const char *name);

/* Generation output, called by the scheduler (srv_api.c). */
void out_begin(srv_job *j);                                     /* before the first token */
/* One generated token or test piece: control `token` (>= 0) or text bytes. */
bool out_token(srv_job *j, int32_t token, const char *bytes, size_t n);  /* true: ended (stop) */
void out_finish(srv_job *j, const char *finish_reason);
void out_error(srv_job *j, int http, const char *code, const char *message);

#endif
