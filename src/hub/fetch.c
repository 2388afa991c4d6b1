/* k2_hub_fetch: resolve → list → select → download into the shared cache
 * (spec/hub.md §4.11), as a state machine on the runtime's loop thread.
 *
 * The loop thread only issues requests (curl multi), writes received bytes with
 * pwrite and updates counters. Everything that may block for long — lock
 * attempts, cache inspection, preallocation, journal fsyncs, hashing, the final
 * fdatasync+rename, deleting temp files — is a worker job whose completion comes
 * back to the loop thread. Per-file states (Appendix A.3):
 *   QUEUED → LOCKING → PREPARING → TRANSFER (ranged chunks) → FINALIZING (hash)
 *   → COMMITTING (fdatasync, chmod, rename, pointer) → DONE
 */
#define _GNU_SOURCE
#include "hub/hub.h"
#include "base/base.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#define HASH_MIN (1u << 20)         /* start a hash job once this many contiguous bytes wait */
#define HASH_JOB_MAX (64u << 20)    /* bytes per hash job: other worker jobs get their turn */
#define TICK_MS 50
#define PROGRESS_MS 250
#define JOURNAL_MS 1000
#define LOCK_POLL_MS 200

typedef enum fstate {
    F_QUEUED, F_LOCKING, F_PREPARING, F_TRANSFER, F_FINALIZING, F_DISCARDING, F_COMMITTING, F_DONE
} fstate;

typedef struct session session;
typedef struct ffile ffile;

typedef struct xfer {
    ffile *f;
    hub_req *req;
    uint32_t chunk;
    uint64_t pos, end;        /* next byte to write, exclusive end */
    bool whole;               /* single stream, no Range (server ignores ranges) */
    bool got;                 /* received at least one byte */
    bool restart_now;         /* restart without counting a failure */
    bool fatal;               /* x->err is final */
    bool proto_error;         /* x->err is a retryable protocol error */
    char *redirect;
    int hops;
    bool auth;
    bool resolver;            /* started while the file's data URL was unknown */
    k2_error err;
} xfer;

struct ffile {
    session *s;
    int idx;
    k2_hub_file *pub;
    fstate st;
    bool link_only;
    char *blob, *tmp, *journal, *lockp;
    int lock_fd;
    uint64_t lock_next_ms, lock_since_ms, lock_logged_ms;
    bool lock_busy_job;
    int fd;
    uint64_t cs;
    uint32_t nch;
    uint64_t *done;
    uint8_t *busy;
    uint64_t have;
    char *data_url;
    bool data_auth, url_resolved;
    int expired_count;
    int failures;
    uint64_t retry_at_ms;
    bool no_ranges;
    int active;
    /* verification */
    int hash_kind;            /* 0 none, 1 sha256, 2 git sha1 */
    EVP_MD_CTX *md;
    uint64_t hashed;          /* bytes fed to the digest (loop thread's view) */
    _Atomic uint64_t avail;   /* contiguous bytes on disk from offset 0, published to the hasher */
    uint32_t pfx_chunk;       /* first chunk not complete (avail's chunk) */
    bool hash_busy;
    unsigned hash_gen;        /* bumped when progress is reset while a hash job runs */
    int integrity_retries;
    /* journal */
    bool jbusy, jdirty;
    uint64_t jlast_ms;
    bool committed_ok;
    uint64_t rate_mark_ms, rate_mark_bytes;
    double rate;
};

struct session {
    k2_runtime *rt;
    k2_future *fut;
    k2_runtime_op *op;
    hub_config cfg;
    k2_hub_options o;
    char **include;
    hub_ref ref;
    char *rev;                /* requested revision ("main" by default) */
    char *repo_dir, *locks_dir;
    unsigned umask_bits;
    hub_http *http;
    uv_timer_t tick;
    bool tick_started;
    char commit[41];
    hub_entry *entries;
    size_t n_entries;
    size_t *sel;
    size_t n_sel;
    long model_index;
    char **absent;            /* literal includes known not to exist at the commit (§4.6) */
    size_t n_absent;
    bool mark_absent;         /* learnt online: write .no_exist markers for them */
    bool listing_fresh;       /* complete listing from the Hub: write trees/<commit>.json */
    bool tree_unwritable;     /* the listing lacks what trees/<commit>.json needs */
    bool tree_complete;       /* offline listing comes from trees/<commit>.json (§4.13 step 5) */
    ffile *files;
    k2_hub_file *pub;
    size_t nf;
    bool downloading;
    /* API requests */
    int api_kind;             /* 1 revision, 2 tree */
    int api_failures;
    uint64_t api_retry_at;
    char *api_url;
    int api_hops;
    bool api_pending_retry;
    char *resolve_probe;      /* a /resolve/ URL of this repo: its host and bucket for pauses */
    /* progress */
    uint64_t total_size, total_have;
    uint64_t last_progress_ms, rate_mark_ms, rate_mark_bytes;
    double rate;
    /* lifecycle */
    int n_reqs, n_jobs;
    bool stopping, success, final_journals, settled, from_cache;
    atomic_bool abort_work;
    k2_error err;
    int closing_handles;
};

static void pump(session *s);
static void try_finish(session *s);
static void start_api(session *s, const char *url, int kind);
static void after_listing(session *s);
static void cancel_all_reqs(session *s);
static void hash_restart(ffile *f);
static void start_listing(session *s);
static void start_cache_first(session *s, bool literal);
static bool listed(const session *s, const char *path);
static void add_absent(session *s, const char *path);

static uint64_t now_ms(void) { return k2_now_ns() / 1000000u; }

/* ---------------------------------------------------------------- events */
static void emit(session *s, k2_hub_event_kind kind, int fi, const char *msg) {
    if (!s->o.on_event) return;
    k2_hub_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    ev.repo = s->ref.repo;
    ev.commit = s->commit;
    ev.files = s->pub;
    ev.n_files = s->nf;
    ev.file_index = fi;
    if (fi >= 0 && (size_t)fi < s->nf) {
        ev.path = s->pub[fi].path;
        ev.file_size = s->pub[fi].size;
        ev.file_done = s->files[fi].st == F_DONE ? s->pub[fi].size : s->files[fi].have;
    }
    ev.total_done = s->total_have;
    ev.total_size = s->total_size;
    ev.rate_bps = s->rate;
    ev.eta_s = s->rate > 1 ? (double)(s->total_size - s->total_have) / s->rate : -1;
    ev.file_eta_s = -1;
    if (fi >= 0 && (size_t)fi < s->nf) {
        const ffile *f = &s->files[fi];
        ev.file_rate_bps = f->rate;
        ev.file_eta_s = f->rate > 1 ? (double)(f->pub->size - K2_MIN(f->have, f->pub->size)) / f->rate : -1;
    }
    ev.message = msg;
    s->o.on_event(&ev, s->o.user);
}

/* --------------------------------------------------------- failure paths */
static void session_stop(session *s) {
    if (s->stopping) return;
    s->stopping = true;
    atomic_store(&s->abort_work, true);
    /* cancel everything in flight; on_done callbacks run later from the reaper */
    cancel_all_reqs(s);
    try_finish(s);
}

static void session_fail(session *s, const k2_error *e) {
    if (!s->stopping && s->err.status == K2_OK) s->err = *e;
    session_stop(s);
}

static void session_failf(session *s, k2_status st, const char *fmt, ...) K2_PRINTF(3, 4);
static void session_failf(session *s, k2_status st, const char *fmt, ...) {
    k2_error e;
    va_list ap;
    va_start(ap, fmt);
    k2_verr(&e, st, fmt, ap);
    va_end(ap);
    session_fail(s, &e);
}

/* ------------------------------------------------------------ worker jobs */
typedef struct job {
    session *s;
    ffile *f;
    int kind;
    k2_error err;
    k2_status st;
    /* generic payload */
    uint64_t a, b;
    uint64_t *done_copy;
    int fd;
    bool flag;
    void (*on_done)(struct job *j);
} job;

static void job_done_trampoline(void *u) {
    job *j = u;
    j->s->n_jobs--;
    j->on_done(j);
    free(j->done_copy);
    free(j);
}

static void submit(session *s, ffile *f, void (*work)(void *), void (*done)(job *), job *proto) {
    job *j = k2_calloc(1, sizeof *j);
    if (proto) *j = *proto;
    j->s = s;
    j->f = f;
    j->on_done = done;
    k2_error_clear(&j->err);
    s->n_jobs++;
    k2_runtime_submit_work(s->rt, work, job_done_trampoline, j);
}

/* ---------------------------------------------------------------- result */
typedef struct result_box {
    k2_hub_result r;
    k2_hub_file *files;
    char **paths;
    char *repo, *commit, *snap, *model;
    char **absent;
} result_box;

static void result_free(void *p) {
    result_box *b = p;
    if (!b) return;
    for (size_t i = 0; i < b->r.n_files; i++) {
        free((char *)b->files[i].path);
        free((char *)b->files[i].etag);
        if (b->paths) free(b->paths[i]);
    }
    free(b->files);
    free(b->paths);
    if (b->absent)
        for (size_t i = 0; b->absent[i]; i++) free(b->absent[i]);
    free(b->absent);
    free(b->repo);
    free(b->commit);
    free(b->snap);
    free(b->model);
    free(b);
}

static result_box *make_result(session *s) {
    result_box *b = k2_calloc(1, sizeof *b);
    b->repo = k2_strdup(s->ref.repo);
    b->commit = k2_strdup(s->commit);
    b->snap = k2_asprintf("%s/snapshots/%s", s->repo_dir, s->commit);
    b->files = k2_calloc(s->nf ? s->nf : 1, sizeof *b->files);
    if (!s->o.list_only) b->paths = k2_calloc(s->nf ? s->nf : 1, sizeof *b->paths);
    for (size_t i = 0; i < s->nf; i++) {
        b->files[i] = s->pub[i];
        b->files[i].path = k2_strdup(s->pub[i].path);
        b->files[i].etag = k2_strdup(s->pub[i].etag);
        if (!s->o.list_only) {
            b->files[i].cached = true;
            b->paths[i] = k2_asprintf("%s/%s", b->snap, s->pub[i].path);
        }
        if (s->model_index >= 0 && s->sel[i] == (size_t)s->model_index)
            b->model = k2_asprintf("%s/%s", b->snap, s->pub[i].path);
    }
    b->r.repo = b->repo;
    b->r.commit = b->commit;
    b->r.snapshot_dir = b->snap;
    b->r.n_files = s->nf;
    b->r.files = b->files;
    b->r.paths = (const char *const *)b->paths;
    b->r.model_path = b->model;
    b->r.from_cache_only = s->from_cache;
    b->absent = k2_calloc(s->n_absent + 1, sizeof *b->absent);
    for (size_t i = 0; i < s->n_absent; i++) b->absent[i] = k2_strdup(s->absent[i]);
    b->r.n_absent = s->n_absent;
    b->r.absent = (const char *const *)b->absent;
    return b;
}

const k2_hub_result *k2_hub_fetch_result(const k2_future *f) {
    result_box *b = k2_future_result(f);
    return b ? &b->r : NULL;
}

/* ------------------------------------------------------------- lifecycle */
static void session_free(session *s) {
    for (size_t i = 0; i < s->nf; i++) {
        ffile *f = &s->files[i];
        free(f->blob); free(f->tmp); free(f->journal); free(f->lockp);
        free(f->done); free(f->busy); free(f->data_url);
        if (f->md) EVP_MD_CTX_free(f->md);
    }
    for (size_t i = 0; i < s->nf; i++) {
        free((char *)s->pub[i].path);
        free((char *)s->pub[i].etag);
    }
    free(s->pub);
    free(s->files);
    hub_entries_free(s->entries, s->n_entries);
    free(s->sel);
    for (size_t i = 0; i < s->n_absent; i++) free(s->absent[i]);
    free(s->absent);
    if (s->include) {
        for (size_t i = 0; s->include[i]; i++) free(s->include[i]);
        free(s->include);
    }
    free(s->rev);
    free(s->repo_dir);
    free(s->locks_dir);
    free(s->api_url);
    free(s->resolve_probe);
    hub_config_free(&s->cfg);
    k2_future_free(s->fut);
    free(s);
}

static void handle_closed(void *u) {
    session *s = u;
    if (--s->closing_handles > 0) return;
    k2_runtime_op *op = s->op;
    k2_runtime *rt = s->rt;
    session_free(s);
    k2_runtime_op_end(rt, op);
}

static void tick_closed(uv_handle_t *h) { handle_closed(h->data); }

/* Final journal so that a cancelled or failed download resumes next time. */
static void journal_work(void *u);
static void journal_done(job *j);
static void submit_journal(session *s, ffile *f);

static void discard_work(void *u);
static void discard_done(job *j);

static void try_finish(session *s) {
    if (!s->stopping || s->settled) return;
    if (s->n_reqs > 0) {
        /* cancel whatever is still running */
        return;
    }
    if (s->n_jobs > 0) return;
    if (!s->final_journals) {
        s->final_journals = true;
        bool any = false;
        for (size_t i = 0; i < s->nf; i++) {
            ffile *f = &s->files[i];
            if (f->fd >= 0 && f->st == F_TRANSFER && f->have == 0) {
                /* nothing worth resuming: leave no empty temp file behind */
                job proto = {0};
                proto.fd = f->fd;
                f->fd = -1;
                submit(s, f, discard_work, discard_done, &proto);
                any = true;
            } else if (f->fd >= 0 && f->st == F_TRANSFER && f->nch > 0) {
                submit_journal(s, f);
                any = true;
            }
        }
        if (any) return;
    }
    s->settled = true;
    for (size_t i = 0; i < s->nf; i++) {
        ffile *f = &s->files[i];
        if (f->fd >= 0) { close(f->fd); f->fd = -1; }
        if (f->lock_fd >= 0) { close(f->lock_fd); f->lock_fd = -1; }
    }
    if (s->success) {
        k2_future_resolve(s->fut, make_result(s), result_free);
    } else {
        if (s->err.status == K2_OK) {
            if (k2_future_cancel_requested(s->fut)) k2_err(&s->err, K2_ECANCELLED, "%s: download cancelled", s->ref.repo);
            else k2_err(&s->err, K2_EINTERNAL, "%s: fetch stopped without a reason", s->ref.repo);
        }
        k2_future_fail(s->fut, &s->err);
    }
    s->closing_handles = 1 + (s->tick_started ? 1 : 0);
    if (s->tick_started) {
        uv_timer_stop(&s->tick);
        uv_close((uv_handle_t *)&s->tick, tick_closed);
    }
    if (s->http) hub_http_close(s->http, handle_closed, s);
    else handle_closed(s);
}

static void on_cancel(void *u) {
    session *s = u;
    if (!s->stopping) k2_err(&s->err, K2_ECANCELLED, "%s: download cancelled (partial files kept for resuming)", s->ref.repo);
    session_stop(s);
}

static void on_shutdown(void *u) {
    session *s = u;
    if (s->err.status == K2_OK && !s->stopping) k2_err(&s->err, K2_ECANCELLED, "%s: runtime shutting down", s->ref.repo);
    session_stop(s);
}

/* ---------------------------------------------------------------- API */
typedef struct api_ctx {
    session *s;
    int kind;
} api_ctx;

/* §1.8 error mapping for Hub responses */
static k2_status map_hub_error(hub_req *r, const char *what, k2_error *e) {
    const char *code = hub_req_header(r, "X-Error-Code");
    const char *msg = hub_req_header(r, "X-Error-Message");
    char u[512];
    hub_redact_url(r->url, u, sizeof u);
    long st = r->status;
    if (code && strcmp(code, "GatedRepo") == 0)
        return k2_err(e, K2_EAUTH, "%s: gated repository (HTTP %ld): %s — log in (HF_TOKEN) and request access on the repository page",
                      what, st, msg ? msg : "access restricted");
    if (code && strcmp(code, "RevisionNotFound") == 0)
        return k2_err(e, K2_ENOTFOUND, "%s: revision not found (%s)", what, msg ? msg : u);
    if (code && strcmp(code, "EntryNotFound") == 0)
        return k2_err(e, K2_ENOTFOUND, "%s: file not found in this commit (%s)", what, u);
    if (st == 401 && msg && strstr(msg, "Invalid credentials"))
        return k2_err(e, K2_EAUTH, "%s: the Hugging Face token is invalid or expired (HTTP 401)", what);
    if (st == 401)
        return k2_err(e, K2_EAUTH, "%s: repository not found or it needs a token (HTTP 401 from %s)", what, u);
    if (st == 404)
        return k2_err(e, K2_ENOTFOUND, "%s: not found (HTTP 404 from %s)", what, u);
    if (st == 403)
        return k2_err(e, K2_EAUTH, "%s: access denied (HTTP 403 from %s): %s", what, u, msg ? msg : "forbidden");
    return k2_err(e, K2_ENETWORK, "%s: HTTP %ld from %s%s%s", what, st, u, msg ? ": " : "", msg ? msg : "");
}

static bool retryable_status(long st) {
    return st == 408 || st == 429 || st == 500 || st == 502 || st == 503 || st == 504;
}

static bool retryable_curl(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_CONNECT: case CURLE_OPERATION_TIMEDOUT: case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING:
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_HTTP2: case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR: case CURLE_WEIRD_SERVER_REPLY:
        return true;
    default:
        return false;
    }
}

/* Retry-After: delta seconds or an HTTP date (§6.1); -1 if absent. */
static int64_t retry_after_ms(hub_req *r) {
    /* RateLimit: "<bucket>";r=<remaining>;t=<seconds> — authoritative when r=0 (§6.1) */
    const char *rl = hub_req_header(r, "RateLimit");
    if (rl) {
        const char *rp = strstr(rl, ";r="), *tp = strstr(rl, ";t=");
        if (rp && tp && strtol(rp + 3, NULL, 10) == 0) {
            long t = strtol(tp + 3, NULL, 10);
            if (t >= 0) return (int64_t)K2_MIN(t, 3600) * 1000 + 1000;
        }
    }
    const char *v = hub_req_header(r, "Retry-After");
    if (!v) return -1;
    char *end;
    long sec = strtol(v, &end, 10);
    if (end != v && *end == '\0' && sec >= 0) return (int64_t)K2_MIN(sec, 3600) * 1000 + 250;
    time_t t = curl_getdate(v, NULL);
    if (t > 0) {
        int64_t d = (int64_t)(t - time(NULL)) * 1000;
        return d < 0 ? 0 : K2_MIN(d, 3600000);
    }
    return -1;
}

static uint64_t backoff_ms(session *s, int failures) {
    uint64_t base = (uint64_t)s->o.retry_base_ms;
    uint64_t d = base;
    for (int i = 1; i < failures && d < 30000; i++) d *= 2;
    if (d > 30000) d = 30000;
    /* equal jitter: half fixed, half random */
    uint64_t half = d / 2;
    return half + (half ? (uint64_t)rand() % (half + 1) : 0);
}

static bool hub_origin(session *s, const char *url) {
    return hub_same_origin(url, s->cfg.endpoint) || hub_same_origin(url, "https://huggingface.co") ||
           hub_same_origin(url, "https://hf.co");
}

static void api_fallback_or_fail(session *s, const k2_error *e);

static void api_done(hub_req *r, CURLcode rc) {
    api_ctx *c = r->user;
    session *s = c->s;
    int kind = c->kind;
    free(c);
    s->n_reqs--;
    if (s->stopping) { hub_req_free(r); try_finish(s); return; }
    k2_error e;
    k2_error_clear(&e);
    char u[512];
    hub_redact_url(r->url, u, sizeof u);
    const char *what = kind == 1 ? "resolving the revision" : "listing files";
    char whatb[600];
    snprintf(whatb, sizeof whatb, "%s: %s", s->ref.repo, what);

    if (rc == CURLE_OK && r->status >= 300 && r->status < 400) {
        const char *to = hub_req_redirect_url(r);
        if (!to || ++s->api_hops > 10 || hub_is_https_downgrade(r->url, to) || !hub_origin(s, to)) {
            k2_err(&e, K2_ENETWORK, "%s: refusing redirect from %s (HTTP %ld)", whatb, u, r->status);
            hub_req_free(r);
            api_fallback_or_fail(s, &e);
            return;
        }
        char *next = k2_strdup(to);
        hub_req_free(r);
        start_api(s, next, kind);
        free(next);
        return;
    }
    if (rc != CURLE_OK || retryable_status(r->status)) {
        bool retry = rc != CURLE_OK ? retryable_curl(rc) : true;
        if (rc != CURLE_OK)
            k2_err(&e, rc == CURLE_OPERATION_TIMEDOUT ? K2_ETIMEOUT : K2_ENETWORK, "%s: %s (%s)", whatb,
                   r->curl_error[0] ? r->curl_error : curl_easy_strerror(rc), u);
        else
            k2_err(&e, K2_ENETWORK, "%s: HTTP %ld from %s", whatb, r->status, u);
        if (retry && ++s->api_failures <= s->o.max_retries) {
            int64_t ra = rc == CURLE_OK ? retry_after_ms(r) : -1;
            uint64_t d = backoff_ms(s, s->api_failures);
            if (ra >= 0 && (uint64_t)ra > d) d = (uint64_t)ra;
            s->api_retry_at = now_ms() + d;
            if (ra >= 0) hub_pause_set(s->rt, r->url, s->api_retry_at);   /* the bucket waits (§6.1) */
            s->api_pending_retry = true;
            s->api_kind = kind;
            free(s->api_url);
            s->api_url = k2_strdup(r->url);
            emit(s, K2_HUB_EVENT_RETRY, -1, e.message);
            hub_req_free(r);
            return;
        }
        hub_req_free(r);
        api_fallback_or_fail(s, &e);
        return;
    }
    if (r->status != 200) {
        map_hub_error(r, whatb, &e);
        bool revision_missing = (e.status == K2_ENOTFOUND && strstr(e.message, "revision not found"));
        hub_req_free(r);
        if (revision_missing) session_fail(s, &e);
        else api_fallback_or_fail(s, &e);
        return;
    }
    s->api_failures = 0;
    json_error_t je;
    json_t *doc = json_loadb(r->body ? r->body : "", r->body_len, 0, &je);
    if (!doc) {
        k2_err(&e, K2_EFORMAT, "%s: %s is not JSON (line %d: %s); is HF_ENDPOINT a Hub?", whatb, u, je.line, je.text);
        hub_req_free(r);
        session_fail(s, &e);
        return;
    }
    if (kind == 1) {
        const char *sha = json_string_value(json_object_get(doc, "sha"));
        if (!sha || !hub_is_commit(sha)) {
            k2_err(&e, K2_EFORMAT, "%s: %s: field 'sha' is missing or not a 40-hex commit", whatb, u);
            json_decref(doc);
            hub_req_free(r);
            session_fail(s, &e);
            return;
        }
        memcpy(s->commit, sha, 41);
        json_decref(doc);
        hub_req_free(r);
        start_cache_first(s, false);
        return;
    }
    /* tree page (§1.3) */
    if (!json_is_array(doc)) {
        k2_err(&e, K2_EFORMAT, "%s: %s: expected a JSON array", whatb, u);
        json_decref(doc);
        hub_req_free(r);
        session_fail(s, &e);
        return;
    }
    size_t i;
    json_t *it;
    json_array_foreach(doc, i, it) {
        const char *type = json_string_value(json_object_get(it, "type"));
        if (!type || strcmp(type, "file") != 0) continue;
        const char *path = json_string_value(json_object_get(it, "path"));
        json_t *sz = json_object_get(it, "size");
        json_t *lfs = json_object_get(it, "lfs");
        const char *oid = json_string_value(json_object_get(lfs ? lfs : it, "oid"));
        if (!path || !hub_path_safe(path) || memchr(path, 0, 1)) {
            k2_err(&e, K2_EFORMAT, "%s: %s lists an unsafe file name '%s' (absolute, '..', backslash or control character); refusing the listing",
                   whatb, u, path ? path : "(none)");
            break;
        }
        if (!json_is_integer(sz) || json_integer_value(sz) < 0 || !oid || !hub_etag_safe(oid)) {
            k2_err(&e, K2_EFORMAT, "%s: %s: entry '%s' has a bad size or oid", whatb, u, path);
            break;
        }
        hub_entry *ne = k2_realloc(s->entries, (s->n_entries + 1) * sizeof *ne);
        s->entries = ne;
        hub_entry *en = &ne[s->n_entries++];
        en->path = k2_strdup(path);
        en->etag = k2_strdup(oid);
        en->size = (uint64_t)json_integer_value(sz);
        en->lfs = lfs != NULL;
        const char *git_oid = json_string_value(json_object_get(it, "oid"));
        const char *xet = json_string_value(json_object_get(it, "xetHash"));
        en->oid = git_oid && hub_etag_safe(git_oid) ? k2_strdup(git_oid) : NULL;
        /* a masked xetHash is dropped (Python rejects it, PR #4595): then no trees file */
        en->xet = xet && hub_xet_hash_valid(xet) ? k2_strdup(xet) : NULL;
        if (!en->oid || (xet && !en->xet)) s->tree_unwritable = true;
    }
    json_decref(doc);
    if (e.status != K2_OK) {
        hub_req_free(r);
        session_fail(s, &e);
        return;
    }
    /* Link: <URL>; rel="next" (RFC 8288) */
    const char *link = hub_req_header(r, "Link");
    char *next = NULL;
    if (link) {
        const char *p = link;
        while (p && *p) {
            const char *lt = strchr(p, '<'), *gt = lt ? strchr(lt, '>') : NULL;
            if (!gt) break;
            const char *params_end = strchr(gt, ',');
            size_t plen = params_end ? (size_t)(params_end - gt) : strlen(gt);
            char params[512];
            snprintf(params, sizeof params, "%.*s", (int)K2_MIN(plen, sizeof params - 1), gt);
            if (strstr(params, "rel=\"next\"") || strstr(params, "rel=next")) {
                char *rel = k2_strndup(lt + 1, (size_t)(gt - lt - 1));
                CURLU *cu = curl_url();
                curl_url_set(cu, CURLUPART_URL, r->url, 0);
                if (curl_url_set(cu, CURLUPART_URL, rel, 0) == CURLUE_OK) {
                    char *abs = NULL;
                    curl_url_get(cu, CURLUPART_URL, &abs, 0);
                    if (abs) { next = k2_strdup(abs); curl_free(abs); }
                }
                curl_url_cleanup(cu);
                free(rel);
                break;
            }
            p = params_end ? params_end + 1 : NULL;
        }
    }
    hub_req_free(r);
    if (next) {
        if (s->n_entries > 10000000) {
            free(next);
            session_failf(s, K2_EFORMAT, "%s: listing does not end", whatb);
            return;
        }
        s->api_hops = 0;
        start_api(s, next, 2);
        free(next);
        return;
    }
    /* listing complete: explicit paths it lacks do not exist at this commit (§4.6) */
    for (size_t k = 0; s->include && s->include[k]; k++)
        if (hub_glob_literal(s->include[k]) && !listed(s, s->include[k])) add_absent(s, s->include[k]);
    s->mark_absent = s->n_absent > 0;
    s->listing_fresh = true;
    after_listing(s);
}

static void start_api(session *s, const char *url, int kind) {
    uint64_t until = hub_pause_until(s->rt, url, now_ms());
    if (until) {
        /* another request of this runtime was told to wait: this bucket waits too */
        s->api_pending_retry = true;
        s->api_retry_at = until;
        s->api_kind = kind;
        char *u = k2_strdup(url);
        free(s->api_url);
        s->api_url = u;
        return;
    }
    hub_req *r = hub_req_new(url);
    api_ctx *c = k2_malloc(sizeof *c);
    c->s = s;
    c->kind = kind;
    r->auth = hub_origin(s, url);
    r->timeout_ms = (long)s->cfg.etag_timeout_s * 1000;
    r->on_done = api_done;
    r->user = c;
    k2_error e;
    if (hub_req_start(s->http, r, &e) != K2_OK) {
        free(c);
        hub_req_free(r);
        session_fail(s, &e);
        return;
    }
    s->n_reqs++;
}

/* ------------------------------------------------------- offline listing */
static bool listed(const session *s, const char *path) {
    for (size_t i = 0; i < s->n_entries; i++)
        if (strcmp(s->entries[i].path, path) == 0) return true;
    return false;
}

static void add_absent(session *s, const char *path) {
    for (size_t i = 0; i < s->n_absent; i++)
        if (strcmp(s->absent[i], path) == 0) return;
    s->absent = k2_realloc(s->absent, (s->n_absent + 2) * sizeof *s->absent);
    s->absent[s->n_absent++] = k2_strdup(path);
    s->absent[s->n_absent] = NULL;
}

/* True when the selection is explicit paths only (no quant, no wildcard). */
static bool literal_selection(const session *s) {
    if (s->ref.quant[0] || !s->include || !s->include[0]) return false;
    for (size_t k = 0; s->include[k]; k++)
        if (!hub_glob_literal(s->include[k])) return false;
    return true;
}
static void offline_work(void *u) {
    job *j = u;
    session *s = j->s;
    char commit[41];
    hub_entry *e = NULL;
    size_t n = 0;
    j->st = hub_offline_listing(s->repo_dir, s->rev, commit, &e, &n, &j->err);
    if (j->st != K2_OK) return;
    memcpy(s->commit, commit, 41);
    hub_entries_free(s->entries, s->n_entries);
    s->entries = e;
    s->n_entries = n;
    /* with trees/<commit>.json the complete list is known: selection runs on it and
     * missing snapshot files are reported (§4.13 step 5) */
    hub_entry *te = NULL;
    size_t tn = 0;
    if (hub_tree_read(s->repo_dir, s->commit, &te, &tn, NULL) == K2_OK) {
        hub_entries_free(s->entries, s->n_entries);
        s->entries = te;
        s->n_entries = tn;
        s->tree_complete = true;
    }
    /* explicit paths the listing lacks: known absent when the listing is complete
     * or a marker says so (§4.13 step 3) */
    for (size_t k = 0; s->include && s->include[k]; k++)
        if (hub_glob_literal(s->include[k]) && !listed(s, s->include[k]) &&
            (s->tree_complete || hub_no_exist_check(s->repo_dir, s->commit, s->include[k])))
            add_absent(s, s->include[k]);
    if (s->n_entries == 0 && s->n_absent == 0)
        j->st = k2_err(&j->err, K2_ENOTFOUND, "%s: snapshot %s has no files in the cache", s->repo_dir, s->commit);
}

/* Once the commit is known, online: trees/<commit>.json replaces the listing call
 * (§4.9: a commit's file list never changes). Without it, for a commit revision and
 * explicit paths only, every path in the snapshot or known absent => no request at
 * all (Python's commit shortcut and try_to_load_from_cache, §4.6, §4.13).
 * In: j->kind = literal shortcut allowed. Out: j->flag = listing from trees. */
static void cache_first_work(void *u) {
    job *j = u;
    session *s = j->s;
    hub_entry *e = NULL;
    size_t n = 0, na = 0;
    char **ab = NULL;
    if (hub_tree_read(s->repo_dir, s->commit, &e, &n, NULL) == K2_OK) {
        s->entries = e;
        s->n_entries = n;
        j->flag = true;
        j->st = K2_OK;
        return;
    }
    if (!j->kind) { j->st = K2_ENOTFOUND; return; }
    j->st = hub_cached_paths(s->repo_dir, s->commit, (const char *const *)s->include, &e, &n, &ab, &na, &j->err);
    if (j->st != K2_OK) return;
    s->entries = e;
    s->n_entries = n;
    s->absent = ab;
    s->n_absent = na;
}

static void cache_first_done(job *j);

static void start_cache_first(session *s, bool literal) {
    job proto = {0};
    proto.kind = literal;
    submit(s, NULL, cache_first_work, cache_first_done, &proto);
}

static void start_listing(session *s) {
    char *url = k2_asprintf("%s/api/models/%s/tree/%s?recursive=true", s->cfg.endpoint, s->ref.repo, s->commit);
    s->api_hops = 0;
    start_api(s, url, 2);
    free(url);
}

static void cache_first_done(job *j) {
    session *s = j->s;
    if (s->stopping) { try_finish(s); return; }
    if (j->st != K2_OK) { start_listing(s); return; }
    if (j->flag) {
        /* the cached listing is complete: explicit paths it lacks do not exist */
        for (size_t k = 0; s->include && s->include[k]; k++)
            if (hub_glob_literal(s->include[k]) && !listed(s, s->include[k])) add_absent(s, s->include[k]);
        s->mark_absent = s->n_absent > 0;
    } else {
        s->from_cache = true;
    }
    after_listing(s);
}

static void offline_done(job *j) {
    session *s = j->s;
    if (s->stopping) { try_finish(s); return; }
    if (j->st != K2_OK) {
        if (j->flag) {
            /* online failed: report both */
            k2_error e = s->err;
            k2_err(&s->err, e.status, "%s; no usable copy in the cache either (%s)", e.message, j->err.message);
            k2_error final = s->err;
            s->err.status = K2_OK;
            session_fail(s, &final);
        } else {
            k2_err_prefix(&j->err, "offline mode (HF_HUB_OFFLINE): ");
            session_fail(s, &j->err);
        }
        return;
    }
    s->from_cache = true;
    s->err.status = K2_OK;
    s->err.message[0] = '\0';
    after_listing(s);
}

static void api_fallback_or_fail(session *s, const k2_error *e) {
    /* §4.13: on a failure other than RevisionNotFound, use the cache if it has the files */
    s->err = *e;
    job proto = {0};
    proto.flag = true;
    submit(s, NULL, offline_work, offline_done, &proto);
}

/* ------------------------------------------------------------ inspection */
static void inspect_work(void *u) {
    job *j = u;
    session *s = j->s;
    uint64_t need = 0;
    bool writes = !s->o.list_only && !s->from_cache;
    if (writes) {
        char *blobs = k2_asprintf("%s/blobs", s->repo_dir);
        j->st = hub_mkdirs(blobs, &j->err);
        free(blobs);
        if (j->st == K2_OK) j->st = hub_mkdirs(s->locks_dir, &j->err);
        if (j->st != K2_OK) return;
        /* CACHEDIR.TAG (§4.10), best effort */
        char *tag = k2_asprintf("%s/CACHEDIR.TAG", s->cfg.cache_dir);
        if (access(tag, F_OK) != 0) {
            int fd = open(tag, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd >= 0) {
                static const char t[] = "Signature: 8a477f597d28d172789f06886806bc55\n"
                                        "# This file is a cache directory tag created by huggingface_hub / k2.\n";
                if (write(fd, t, sizeof t - 1) < 0) { /* best effort */ }
                close(fd);
            }
        }
        free(tag);
        if (!hub_is_commit(s->rev)) hub_write_ref(s->repo_dir, s->rev, s->commit, NULL);
        if (s->mark_absent)
            for (size_t i = 0; i < s->n_absent; i++) hub_no_exist_mark(s->repo_dir, s->commit, s->absent[i]);
        /* the complete, unfiltered listing (§4.9), best effort */
        if (s->listing_fresh && !s->tree_unwritable) hub_tree_write(s->repo_dir, s->commit, s->entries, s->n_entries, NULL);
    }
    if (s->from_cache && s->tree_complete) {
        char miss[1024] = "";
        size_t used = 0, n_miss = 0;
        for (size_t i = 0; i < s->nf; i++) {
            char *snap = k2_asprintf("%s/snapshots/%s/%s", s->repo_dir, s->commit, s->files[i].pub->path);
            uint64_t sz = 0;
            if (!hub_file_exists(snap, &sz) || sz != s->files[i].pub->size) {
                if (n_miss++ < 4) {
                    int w = snprintf(miss + used, sizeof miss - used, "%s%s", used ? ", " : "", s->files[i].pub->path);
                    if (w > 0) used = K2_MIN(used + (size_t)w, sizeof miss - 1);
                }
            }
            free(snap);
        }
        if (n_miss) {
            j->st = k2_err(&j->err, K2_ENOTFOUND, "the cached snapshot %s is incomplete: %zu selected file(s) missing (%s%s)",
                           s->commit, n_miss, miss, n_miss > 4 ? ", ..." : "");
            return;
        }
    }
    for (size_t i = 0; i < s->nf; i++) {
        ffile *f = &s->files[i];
        char *snap = k2_asprintf("%s/snapshots/%s/%s", s->repo_dir, s->commit, f->pub->path);
        uint64_t sz = 0;
        if (s->from_cache || (hub_file_exists(snap, &sz) && sz == f->pub->size)) {
            f->pub->cached = true;
        } else if (hub_file_exists(f->blob, &sz) && sz == f->pub->size) {
            f->link_only = true;
        } else {
            struct stat st;
            uint64_t partial = (stat(f->tmp, &st) == 0) ? (uint64_t)st.st_blocks * 512 : 0;
            need += f->pub->size > partial ? f->pub->size - partial : 0;
        }
        free(snap);
    }
    if (writes && s->o.check_space && need > 0) {
        struct statvfs vf;
        char *blobs = k2_asprintf("%s/blobs", s->repo_dir);
        if (statvfs(blobs, &vf) == 0) {
            uint64_t avail = (uint64_t)vf.f_bavail * vf.f_frsize;
            if (avail < need + (64u << 20))
                j->st = k2_err(&j->err, K2_EIO, "not enough disk space in %s: the download needs %.2f GB, %.2f GB are free "
                               "(set HF_HUB_CACHE elsewhere or free space)", blobs, need / 1e9, avail / 1e9);
        }
        free(blobs);
    }
}

static void inspect_done(job *j) {
    session *s = j->s;
    if (s->stopping) { try_finish(s); return; }
    if (j->st != K2_OK) { session_fail(s, &j->err); return; }
    s->total_size = 0;
    s->total_have = 0;
    for (size_t i = 0; i < s->nf; i++) {
        s->total_size += s->pub[i].size;
        if (s->pub[i].cached) s->total_have += s->pub[i].size;
    }
    emit(s, K2_HUB_EVENT_PLAN, -1, NULL);
    if (s->o.list_only || s->from_cache) {
        s->success = true;
        session_stop(s);
        return;
    }
    s->downloading = true;
    for (size_t i = 0; i < s->nf; i++)
        if (s->pub[i].cached) {
            s->files[i].st = F_DONE;
            emit(s, K2_HUB_EVENT_FILE_DONE, (int)i, "cached");
        }
    s->rate_mark_ms = now_ms();
    s->rate_mark_bytes = s->total_have;
    pump(s);
}

static void mark_absent_work(void *u) {
    job *j = u;
    session *s = j->s;
    for (size_t i = 0; i < s->n_absent; i++) hub_no_exist_mark(s->repo_dir, s->commit, s->absent[i]);
    if (!hub_is_commit(s->rev)) hub_write_ref(s->repo_dir, s->rev, s->commit, NULL);
}

static void mark_absent_done(job *j) {
    j->s->mark_absent = false;
    session_fail(j->s, &j->err);
}

static void after_listing(session *s) {
    hub_entries_sort(s->entries, s->n_entries);
    k2_error e;
    const char *const *inc = (const char *const *)s->include;
    k2_status sst = hub_select(s->entries, s->n_entries, s->ref.quant, inc, s->o.all, &s->sel, &s->n_sel,
                               &s->model_index, &e);
    if (sst == K2_ENOTFOUND && s->n_absent > 0) {
        char names[1024] = "";
        size_t used = 0;
        for (size_t i = 0; i < s->n_absent && used + 1 < sizeof names; i++) {
            int w = snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "", s->absent[i]);
            if (w < 0) break;
            used = K2_MIN(used + (size_t)w, sizeof names - 1);
        }
        k2_err(&e, K2_ENOTFOUND, "%s@%.12s: %s: no such file in this commit%s", s->ref.repo, s->commit, names,
               s->from_cache ? " (known from the cache: .no_exist markers / trees listing)" : "");
        if (s->mark_absent && !s->o.list_only) {
            /* still record it for the next time (and for Python) */
            job proto = {0};
            proto.err = e;
            submit(s, NULL, mark_absent_work, mark_absent_done, &proto);
            return;
        }
        session_fail(s, &e);
        return;
    }
    if (sst != K2_OK) {
        k2_err_prefix(&e, "%s@%.12s: ", s->ref.repo, s->commit);
        session_fail(s, &e);
        return;
    }
    s->nf = s->n_sel;
    s->files = k2_calloc(s->nf ? s->nf : 1, sizeof *s->files);
    s->pub = k2_calloc(s->nf ? s->nf : 1, sizeof *s->pub);
    for (size_t i = 0; i < s->nf; i++) {
        hub_entry *en = &s->entries[s->sel[i]];
        k2_hub_file *p = &s->pub[i];
        p->path = k2_strdup(en->path);
        p->etag = k2_strdup(en->etag);
        p->size = en->size;
        p->lfs = en->lfs;
        ffile *f = &s->files[i];
        f->s = s;
        f->idx = (int)i;
        f->pub = p;
        f->fd = -1;
        f->lock_fd = -1;
        f->blob = k2_asprintf("%s/blobs/%s", s->repo_dir, en->etag);
        f->tmp = k2_asprintf("%s/blobs/%s.%s.incomplete", s->repo_dir, en->etag, HUB_CLIENT_TAG);
        f->journal = k2_asprintf("%s.json", f->tmp);
        f->lockp = k2_asprintf("%s/%s.lock", s->locks_dir, en->etag);
        f->cs = s->o.chunk_size;
        uint64_t nch = f->pub->size ? (f->pub->size + f->cs - 1) / f->cs : 0;
        if (nch > 1000000) {   /* keep the journal small: grow chunks for giant files */
            f->cs = (f->pub->size + 999999) / 1000000;
            nch = (f->pub->size + f->cs - 1) / f->cs;
        }
        f->nch = (uint32_t)nch;
        f->done = k2_calloc(nch ? nch : 1, sizeof *f->done);
        f->busy = k2_calloc(nch ? nch : 1, 1);
        size_t el = strlen(en->etag);
        bool hex = true;
        for (size_t k = 0; k < el; k++) hex = hex && isxdigit((unsigned char)en->etag[k]);
        f->hash_kind = (!s->o.verify || !hex) ? 0 : el == 64 ? 1 : el == 40 ? 2 : 0;
    }
    submit(s, NULL, inspect_work, inspect_done, NULL);
}

/* ---------------------------------------------------------- lock + prepare */
static void lock_work(void *u) {
    job *j = u;
    ffile *f = j->f;
    j->fd = -1;
    int fd = open(f->lockp, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
    if (fd < 0) { j->st = K2_EIO; k2_err(&j->err, K2_EIO, "%s: cannot open lock: %s", f->lockp, strerror(errno)); return; }
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) { j->fd = fd; j->st = K2_OK; return; }
    int e = errno;
    if (e == EWOULDBLOCK) { close(fd); j->st = K2_EBUSY; return; }
    /* no flock on this file system (§4.7): go on without, and leave no soft lock behind */
    close(fd);
    unlink(f->lockp);
    j->st = K2_EUNSUPPORTED;
}

static void prepare_work(void *u);
static void prepare_done(job *j);

static void lock_done(job *j) {
    ffile *f = j->f;
    session *s = j->s;
    f->lock_busy_job = false;
    if (s->stopping) { if (j->fd >= 0) close(j->fd); try_finish(s); return; }
    if (j->st == K2_EBUSY) {
        uint64_t t = now_ms();
        if (!f->lock_since_ms) f->lock_since_ms = t;
        if (!f->lock_logged_ms || t - f->lock_logged_ms >= 10000) {
            f->lock_logged_ms = t;
            emit(s, K2_HUB_EVENT_WAITING_LOCK, f->idx, "another process is downloading this file; waiting for its lock");
        }
        f->lock_next_ms = t + LOCK_POLL_MS;
        return;
    }
    if (j->st == K2_EIO) { session_fail(s, &j->err); return; }
    if (j->st == K2_EUNSUPPORTED) {
        /* correctness without the lock: a private temp name */
        free(f->tmp);
        free(f->journal);
        f->tmp = k2_asprintf("%s/blobs/%s.%s-%d-%08x.incomplete", s->repo_dir, f->pub->etag, HUB_CLIENT_TAG,
                             (int)getpid(), (unsigned)rand());
        f->journal = k2_asprintf("%s.json", f->tmp);
    }
    f->lock_fd = j->fd;
    f->st = F_PREPARING;
    submit(s, f, prepare_work, prepare_done, NULL);
}

static k2_status read_journal(ffile *f, int fd, k2_error *err) {
    char *data = NULL;
    size_t size = 0;
    if (k2_read_file(f->journal, &data, &size, NULL) != K2_OK) return K2_ENOTFOUND;
    json_t *doc = json_loadb(data, size, 0, NULL);
    free(data);
    k2_status st = K2_EFORMAT;
    if (doc) {
        const char *etag = json_string_value(json_object_get(doc, "etag"));
        json_t *chunks = json_object_get(doc, "chunks");
        struct stat sb;
        if (etag && strcmp(etag, f->pub->etag) == 0 &&
            (uint64_t)json_integer_value(json_object_get(doc, "size")) == f->pub->size &&
            (uint64_t)json_integer_value(json_object_get(doc, "chunk_size")) == f->cs &&
            json_is_array(chunks) && json_array_size(chunks) == f->nch && fstat(fd, &sb) == 0 &&
            (uint64_t)sb.st_size == f->pub->size) {
            st = K2_OK;
            for (uint32_t i = 0; i < f->nch; i++) {
                json_int_t v = json_integer_value(json_array_get(chunks, i));
                uint64_t len = K2_MIN(f->cs, f->pub->size - (uint64_t)i * f->cs);
                if (v < 0 || (uint64_t)v > len) { st = K2_EFORMAT; break; }
                f->done[i] = (uint64_t)v;
            }
        }
        json_decref(doc);
    }
    (void)err;
    return st;
}

static void prepare_work(void *u) {
    job *j = u;
    ffile *f = j->f;
    uint64_t sz;
    /* another process (or an earlier run) may have finished it meanwhile */
    if (hub_file_exists(f->blob, &sz) && sz == f->pub->size) {
        j->flag = true;
        j->st = hub_make_pointer(j->s->repo_dir, j->s->commit, f->pub->path, f->pub->etag, &j->err);
        return;
    }
    int fd = open(f->tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) {
        j->st = k2_err(&j->err, K2_EIO, "%s: cannot create the temp file: %s", f->tmp, strerror(errno));
        return;
    }
    memset(f->done, 0, f->nch * sizeof *f->done);
    if (read_journal(f, fd, NULL) != K2_OK) {
        /* no (valid) journal: restart this file from zero (§4.8) */
        memset(f->done, 0, f->nch * sizeof *f->done);
        if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)f->pub->size) != 0) {
            j->st = k2_err(&j->err, K2_EIO, "%s: cannot size the temp file: %s", f->tmp, strerror(errno));
            close(fd);
            return;
        }
        unlink(f->journal);
    }
    /* preallocate so that a full disk shows now, not at 99 % (§6.6) */
    if (f->pub->size > 0 && fallocate(fd, 0, 0, (off_t)f->pub->size) != 0 && errno == ENOSPC) {
        j->st = k2_err(&j->err, K2_EIO, "%s: no space left for %llu bytes", f->tmp, (unsigned long long)f->pub->size);
        close(fd);
        return;
    }
    j->fd = fd;
    j->st = K2_OK;
}

static void start_hash_if_due(ffile *f, bool final);
static uint64_t publish_prefix(ffile *f);
static void finalize_file(ffile *f);

static void file_done(ffile *f) {
    session *s = f->s;
    f->st = F_DONE;
    if (f->lock_fd >= 0) { close(f->lock_fd); f->lock_fd = -1; }
    f->pub->cached = true;
    emit(s, K2_HUB_EVENT_FILE_DONE, f->idx, NULL);
}

static void prepare_done(job *j) {
    ffile *f = j->f;
    session *s = j->s;
    if (j->st != K2_OK) {
        if (j->fd >= 0) close(j->fd);
        session_fail(s, &j->err);
        return;
    }
    if (s->stopping) { if (!j->flag) f->fd = j->fd; try_finish(s); return; }
    if (j->flag) {   /* blob appeared: linked */
        s->total_have += f->pub->size - f->have;
        f->have = f->pub->size;
        file_done(f);
        pump(s);
        return;
    }
    f->fd = j->fd;
    f->have = 0;
    for (uint32_t i = 0; i < f->nch; i++) f->have += f->done[i];
    s->total_have += f->have;
    f->hashed = 0;
    f->pfx_chunk = 0;
    if (f->md) { EVP_MD_CTX_free(f->md); f->md = NULL; }
    if (f->hash_kind) {
        f->md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(f->md, f->hash_kind == 1 ? EVP_sha256() : EVP_sha1(), NULL);
        if (f->hash_kind == 2) {
            char hdr[64];
            int n = snprintf(hdr, sizeof hdr, "blob %llu", (unsigned long long)f->pub->size);
            EVP_DigestUpdate(f->md, hdr, (size_t)n + 1);   /* includes the NUL */
        }
    }
    f->st = F_TRANSFER;
    publish_prefix(f);
    /* resuming: the bytes already on disk are hashed first, while the rest downloads */
    start_hash_if_due(f, false);
    emit(s, K2_HUB_EVENT_FILE_START, f->idx, f->have ? "resuming" : NULL);
    pump(s);
}

/* --------------------------------------------------------------- journal */
static void journal_work(void *u) {
    job *j = u;
    ffile *f = j->f;
    /* data first, then the journal that claims it (§4.8) */
    if (fdatasync(j->fd) != 0) { j->st = K2_EIO; return; }
    json_t *doc = json_object();
    json_object_set_new(doc, "version", json_integer(1));
    json_object_set_new(doc, "etag", json_string(f->pub->etag));
    json_object_set_new(doc, "size", json_integer((json_int_t)f->pub->size));
    json_object_set_new(doc, "chunk_size", json_integer((json_int_t)f->cs));
    json_t *arr = json_array();
    for (uint32_t i = 0; i < f->nch; i++) json_array_append_new(arr, json_integer((json_int_t)j->done_copy[i]));
    json_object_set_new(doc, "chunks", arr);
    char *tmp = k2_asprintf("%s.tmp", f->journal);
    j->st = json_dump_file(doc, tmp, JSON_COMPACT) == 0 && rename(tmp, f->journal) == 0 ? K2_OK : K2_EIO;
    if (j->st != K2_OK) unlink(tmp);
    free(tmp);
    json_decref(doc);
}

static void journal_done(job *j) {
    ffile *f = j->f;
    session *s = j->s;
    f->jbusy = false;
    if (s->stopping) { try_finish(s); return; }
    if (f->jdirty && f->st == F_TRANSFER) submit_journal(s, f);
    pump(s);
}

static void submit_journal(session *s, ffile *f) {
    if (f->jbusy) { f->jdirty = true; return; }
    if (f->fd < 0) return;
    f->jbusy = true;
    f->jdirty = false;
    f->jlast_ms = now_ms();
    job proto = {0};
    proto.fd = f->fd;
    proto.done_copy = k2_malloc((f->nch ? f->nch : 1) * sizeof(uint64_t));
    memcpy(proto.done_copy, f->done, f->nch * sizeof(uint64_t));
    submit(s, f, journal_work, journal_done, &proto);
}

/* --------------------------------------------------------------- hashing */
static uint64_t chunk_len(const ffile *f, uint32_t c) {
    return K2_MIN(f->cs, f->pub->size - (uint64_t)c * f->cs);
}

/* Advances the contiguous prefix after writes and publishes it to the hasher
 * (§4.12: the "hashed-up-to" offset follows contiguous completed data). */
static uint64_t publish_prefix(ffile *f) {
    while (f->pfx_chunk < f->nch && f->done[f->pfx_chunk] >= chunk_len(f, f->pfx_chunk)) f->pfx_chunk++;
    uint64_t p = f->pfx_chunk < f->nch ? (uint64_t)f->pfx_chunk * f->cs + f->done[f->pfx_chunk] : f->pub->size;
    atomic_store_explicit(&f->avail, p, memory_order_release);
    return p;
}

/* Runs on a worker: feeds the digest from `a` on, in file order, following the
 * prefix the loop thread publishes while the download goes on, until it catches
 * up or has done HASH_JOB_MAX bytes (hash_done chains the next job). The bytes
 * are read back with pread (page cache) so the loop thread never hashes. */
static void hash_work(void *u) {
    job *j = u;
    ffile *f = j->f;
    size_t bs = 1u << 20;
    char *buf = k2_malloc(bs);
    uint64_t pos = j->a, stop = j->a + HASH_JOB_MAX;
    for (;;) {
        if (atomic_load(&j->s->abort_work)) break;
        uint64_t end = K2_MIN(atomic_load_explicit(&f->avail, memory_order_acquire), stop);
        if (pos >= end) break;
        size_t want = (size_t)K2_MIN((uint64_t)bs, end - pos);
        ssize_t r = pread(j->fd, buf, want, (off_t)pos);
        if (r <= 0) { j->st = K2_EIO; k2_err(&j->err, K2_EIO, "%s: read error while hashing: %s", f->tmp, r < 0 ? strerror(errno) : "short file"); break; }
        EVP_DigestUpdate(f->md, buf, (size_t)r);
        pos += (uint64_t)r;
    }
    j->a = pos;
    free(buf);
}

static void hash_done(job *j) {
    ffile *f = j->f;
    session *s = j->s;
    f->hash_busy = false;
    f->hashed = j->a;
    if (s->stopping) { try_finish(s); return; }
    if (j->st != K2_OK) { session_fail(s, &j->err); return; }
    if (j->kind != (int)f->hash_gen) hash_restart(f);
    if (f->st == F_TRANSFER) start_hash_if_due(f, false);   /* keep following the download */
    pump(s);
}

static void start_hash_if_due(ffile *f, bool final) {
    if (!f->hash_kind || f->hash_busy || f->fd < 0) return;
    uint64_t p = atomic_load_explicit(&f->avail, memory_order_relaxed);
    if (p <= f->hashed) return;
    if (!final && p - f->hashed < HASH_MIN && p < f->pub->size) return;
    f->hash_busy = true;
    job proto = {0};
    proto.fd = f->fd;
    proto.a = f->hashed;
    proto.kind = (int)f->hash_gen;
    submit(f->s, f, hash_work, hash_done, &proto);
}

/* ----------------------------------------------------------- completion */
static void commit_work(void *u) {
    job *j = u;
    ffile *f = j->f;
    session *s = j->s;
    struct stat st;
    if (fdatasync(j->fd) != 0 || fstat(j->fd, &st) != 0) {
        j->st = k2_err(&j->err, K2_EIO, "%s: cannot flush: %s", f->tmp, strerror(errno));
        return;
    }
    if ((uint64_t)st.st_size != f->pub->size) {
        j->st = k2_err(&j->err, K2_EINTEGRITY, "%s: consistency check failed: file should be of size %llu but has size %llu",
                       f->pub->path, (unsigned long long)f->pub->size, (unsigned long long)st.st_size);
        return;
    }
    fchmod(j->fd, (mode_t)(0666 & ~s->umask_bits));
    close(j->fd);
    j->fd = -1;
    if (hub_env_truthy("HF_HUB_DISABLE_SYMLINKS")) {
        /* no-symlink mode (§4.4): a newly downloaded blob is moved to the snapshot
         * path (nothing stays in blobs/), as Python does; no copy of a big file */
        char *snap = k2_asprintf("%s/snapshots/%s/%s", s->repo_dir, s->commit, f->pub->path);
        char *dir = k2_strdup(snap);
        *strrchr(dir, '/') = '\0';
        j->st = hub_mkdirs(dir, &j->err);
        if (j->st == K2_OK && rename(f->tmp, snap) != 0)
            j->st = k2_err(&j->err, K2_EIO, "%s: cannot move into place: %s", snap, strerror(errno));
        if (j->st == K2_OK) unlink(f->journal);
        free(dir);
        free(snap);
        return;
    }
    if (rename(f->tmp, f->blob) != 0) {
        j->st = k2_err(&j->err, K2_EIO, "%s: cannot move into place: %s", f->blob, strerror(errno));
        return;
    }
    unlink(f->journal);
    j->st = hub_make_pointer(s->repo_dir, s->commit, f->pub->path, f->pub->etag, &j->err);
}

static void commit_done(job *j) {
    ffile *f = j->f;
    session *s = j->s;
    f->fd = j->fd;   /* -1 once closed */
    if (j->st != K2_OK) { session_fail(s, &j->err); return; }
    if (s->stopping) { try_finish(s); return; }
    file_done(f);
    pump(s);
}

static void discard_work(void *u) {
    job *j = u;
    ffile *f = j->f;
    if (j->fd >= 0) close(j->fd);
    unlink(f->tmp);
    unlink(f->journal);
}

static void discard_done(job *j) {
    ffile *f = j->f;
    session *s = j->s;
    if (s->stopping) { try_finish(s); return; }
    if (!j->flag) {
        session_fail(s, &j->err);
        return;
    }
    /* one automatic full retry (§4.12) */
    s->total_have -= K2_MIN(s->total_have, f->have);
    f->have = 0;
    f->st = F_PREPARING;
    submit(s, f, prepare_work, prepare_done, NULL);
}

static void finalize_file(ffile *f) {
    session *s = f->s;
    if (f->jbusy || f->hash_busy) return;   /* wait for them; pump calls again */
    if (f->hash_kind && f->hashed < f->pub->size) { start_hash_if_due(f, true); return; }
    if (f->hash_kind) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int mdlen = 0;
        EVP_DigestFinal_ex(f->md, md, &mdlen);
        EVP_MD_CTX_free(f->md);
        f->md = NULL;
        char hex[2 * EVP_MAX_MD_SIZE + 1];
        for (unsigned i = 0; i < mdlen; i++) sprintf(hex + 2 * i, "%02x", md[i]);
        if (strcasecmp(hex, f->pub->etag) != 0) {
            job proto = {0};
            proto.fd = f->fd;
            f->fd = -1;
            proto.flag = f->integrity_retries++ == 0;
            k2_err(&proto.err, K2_EINTEGRITY, "%s: %s mismatch: expected %s, got %s (downloaded from %s); the partial file was deleted",
                   f->pub->path, f->hash_kind == 1 ? "sha256" : "git-sha1", f->pub->etag, hex,
                   f->data_url ? "the CDN" : "the Hub");
            emit(s, K2_HUB_EVENT_RETRY, f->idx, proto.err.message);
            f->st = F_DISCARDING;
            submit(s, f, discard_work, discard_done, &proto);
            return;
        }
    }
    f->st = F_COMMITTING;
    job proto = {0};
    proto.fd = f->fd;
    f->fd = -1;
    submit(s, f, commit_work, commit_done, &proto);
}

/* ------------------------------------------------------------- transfers */
static char *resolve_url(session *s, ffile *f) {
    char *rp = hub_encode_path(f->pub->path);
    char *u = k2_asprintf("%s/%s/resolve/%s/%s", s->cfg.endpoint, s->ref.repo, s->commit, rp);
    free(rp);
    return u;
}

static void norm_etag(const char *v, char *out, size_t cap) {
    if (!v) { out[0] = '\0'; return; }
    if (strncmp(v, "W/", 2) == 0) v += 2;
    size_t l = strlen(v);
    if (l >= 2 && v[0] == '"' && v[l - 1] == '"') { v++; l -= 2; }
    snprintf(out, cap, "%.*s", (int)l, v);
}

/* Cross-check of Hub metadata against the listing (§1.6). */
static bool check_metadata(xfer *x, hub_req *r) {
    ffile *f = x->f;
    session *s = f->s;
    const char *commit = hub_req_header(r, "X-Repo-Commit");
    const char *le = hub_req_header(r, "X-Linked-Etag");
    const char *ls = hub_req_header(r, "X-Linked-Size");
    char et[160];
    norm_etag(le ? le : (r->status < 300 ? hub_req_header(r, "ETag") : NULL), et, sizeof et);
    if (commit && strcmp(commit, s->commit) != 0) {
        k2_err(&x->err, K2_EINTEGRITY, "%s: the Hub answered for commit %s, the listing was for %s", f->pub->path, commit, s->commit);
        return false;
    }
    if (et[0] && strcasecmp(et, f->pub->etag) != 0 && (le || !f->pub->lfs)) {
        k2_err(&x->err, K2_EINTEGRITY, "%s: the Hub reports etag %s, the listing said %s", f->pub->path, et, f->pub->etag);
        return false;
    }
    if (ls && strtoull(ls, NULL, 10) != f->pub->size) {
        k2_err(&x->err, K2_EINTEGRITY, "%s: the Hub reports size %s, the listing said %llu", f->pub->path, ls,
               (unsigned long long)f->pub->size);
        return false;
    }
    return true;
}

static void hash_restart(ffile *f) {
    if (f->md) {
        EVP_DigestInit_ex(f->md, f->hash_kind == 1 ? EVP_sha256() : EVP_sha1(), NULL);
        if (f->hash_kind == 2) {
            char hdr[64];
            int n = snprintf(hdr, sizeof hdr, "blob %llu", (unsigned long long)f->pub->size);
            EVP_DigestUpdate(f->md, hdr, (size_t)n + 1);
        }
    }
    f->hashed = 0;
}

static void reset_progress(ffile *f) {
    session *s = f->s;
    s->total_have -= K2_MIN(s->total_have, f->have);
    f->have = 0;
    memset(f->done, 0, f->nch * sizeof *f->done);
    f->pfx_chunk = 0;
    atomic_store(&f->avail, 0);
    if (f->hash_busy) f->hash_gen++;   /* hash_done restarts the digest */
    else hash_restart(f);
}

static void start_xfer(ffile *f, uint32_t chunk, const char *url, bool auth, int hops);

static void mark_one_work(void *u) {
    job *j = u;
    hub_no_exist_mark(j->s->repo_dir, j->s->commit, j->f->pub->path);
}

static void mark_one_done(job *j) { try_finish(j->s); }

static bool xfer_on_response(hub_req *r) {
    xfer *x = r->user;
    ffile *f = x->f;
    session *s = f->s;
    long st = r->status;
    if (st >= 300 && st < 400) {
        if (!f->url_resolved && hub_origin(s, r->url) && !check_metadata(x, r)) { x->fatal = true; return false; }
        const char *to = hub_req_redirect_url(r);
        if (to) x->redirect = k2_strdup(to);
        return false;
    }
    if (st != 200 && st != 206) return false;   /* classified in on_done */
    const char *ce = hub_req_header(r, "Content-Encoding");
    if (ce && strcasecmp(ce, "identity") != 0) {
        k2_err(&x->err, K2_ENETWORK, "%s: the server compressed the body (Content-Encoding: %s)", f->pub->path, ce);
        x->proto_error = true;
        return false;
    }
    if (!f->url_resolved && x->resolver) {
        if (hub_origin(s, r->url) && !check_metadata(x, r)) { x->fatal = true; return false; }
        free(f->data_url);
        f->data_url = k2_strdup(r->url);
        f->data_auth = x->auth;
        f->url_resolved = true;
    }
    if (st == 206) {
        const char *cr = hub_req_header(r, "Content-Range");
        unsigned long long a, b, t;
        if (!cr || sscanf(cr, "bytes %llu-%llu/%llu", &a, &b, &t) != 3 || a != x->pos || t != f->pub->size ||
            b + 1 > x->end || b < a) {
            k2_err(&x->err, K2_ENETWORK, "%s: the server answered 'Content-Range: %s' to a request for bytes %llu-%llu of %llu",
                   f->pub->path, cr ? cr : "(none)", (unsigned long long)x->pos, (unsigned long long)x->end - 1,
                   (unsigned long long)f->pub->size);
            x->proto_error = true;
            return false;
        }
        x->end = b + 1;
        return true;
    }
    /* 200 to a ranged request: the server ignored Range (§1.6) */
    if (x->whole) return true;
    if (x->pos == 0 && f->active == 1) {
        /* the only transfer and at offset 0: take the whole body as one stream */
        reset_progress(f);
        f->no_ranges = true;
        x->whole = true;
        x->end = f->pub->size;
        for (uint32_t i = 0; i < f->nch; i++) f->busy[i] = 1;
        return true;
    }
    f->no_ranges = true;
    x->restart_now = true;
    return false;
}

static bool xfer_on_body(hub_req *r, const char *data, size_t n) {
    xfer *x = r->user;
    ffile *f = x->f;
    session *s = f->s;
    if (x->pos + n > x->end) {
        k2_err(&x->err, K2_ENETWORK, "%s: the server sent more bytes than requested", f->pub->path);
        x->proto_error = true;
        return false;
    }
    size_t off = 0;
    while (off < n) {
        ssize_t w = pwrite(f->fd, data + off, n - off, (off_t)(x->pos + off));
        if (w < 0) {
            if (errno == EINTR) continue;
            k2_err(&x->err, K2_EIO, "%s: write failed: %s", f->tmp, strerror(errno));
            x->fatal = true;
            return false;
        }
        off += (size_t)w;
    }
    /* account per chunk (a single stream crosses chunk boundaries) */
    uint64_t pos = x->pos, left = n;
    while (left) {
        uint32_t c = (uint32_t)(pos / f->cs);
        uint64_t cend = K2_MIN((uint64_t)(c + 1) * f->cs, f->pub->size);
        uint64_t take = K2_MIN(left, cend - pos);
        f->done[c] = pos + take - (uint64_t)c * f->cs;
        pos += take;
        left -= take;
    }
    x->pos += n;
    x->got = true;
    f->have += n;
    s->total_have += n;
    if (f->hash_kind) {
        publish_prefix(f);
        start_hash_if_due(f, false);
    }
    return true;
}

static void xfer_free(xfer *x) {
    hub_req_free(x->req);
    free(x->redirect);
    free(x);
}

static void file_fail(ffile *f, k2_error *e) { session_fail(f->s, e); }

static void xfer_on_done(hub_req *r, CURLcode rc) {
    xfer *x = r->user;
    ffile *f = x->f;
    session *s = f->s;
    s->n_reqs--;
    f->active--;
    if (x->whole) memset(f->busy, 0, f->nch);
    else if (f->nch) f->busy[x->chunk] = 0;
    if (s->stopping || (rc == CURLE_ABORTED_BY_CALLBACK && r->cancelled)) {
        bool stop = s->stopping;
        xfer_free(x);
        if (stop) try_finish(s);
        else pump(s);
        return;
    }
    if (x->got) f->failures = 0;
    if (x->fatal) { k2_error e = x->err; xfer_free(x); file_fail(f, &e); return; }
    char u[512];
    hub_redact_url(r->url, u, sizeof u);

    if (x->redirect) {
        const char *to = x->redirect;
        if (x->hops >= 10) {
            k2_error e;
            k2_err(&e, K2_ENETWORK, "%s: too many redirects (last %s)", f->pub->path, u);
            xfer_free(x); file_fail(f, &e); return;
        }
        if (hub_is_https_downgrade(r->url, to)) {
            k2_error e;
            k2_err(&e, K2_ENETWORK, "%s: refusing an https→http redirect from %s", f->pub->path, u);
            xfer_free(x); file_fail(f, &e); return;
        }
        /* §1.5 step 2: Hub→Hub keeps the token; anything else is the (presigned) data URL */
        bool keep = x->auth && (hub_same_origin(r->url, to) || hub_origin(s, to));
        if (!keep) {
            free(f->data_url);
            f->data_url = k2_strdup(to);
            f->data_auth = false;
            f->url_resolved = true;
        }
        char *to2 = k2_strdup(to);
        int hops = x->hops + 1;
        uint32_t chunk = x->chunk;
        bool whole = x->whole;
        xfer_free(x);
        if (whole || f->no_ranges) pump(s);
        else start_xfer(f, chunk, to2, keep, hops);
        free(to2);
        return;
    }
    if (x->restart_now) { xfer_free(x); pump(s); return; }

    long st = r->status;
    if (rc == CURLE_OK && (st == 200 || st == 206) && x->pos == x->end) {
        /* range complete */
        if (!x->whole) f->busy[x->chunk] = 0;
        xfer_free(x);
        uint64_t t = now_ms();
        if (t - f->jlast_ms >= 200 || f->have == f->pub->size) submit_journal(s, f);
        else f->jdirty = true;
        start_hash_if_due(f, false);
        pump(s);
        return;
    }

    k2_error e;
    k2_error_clear(&e);
    bool retry = false;
    int64_t ra = -1;
    if (x->proto_error) {
        e = x->err;
        retry = true;
    } else if (st == 416) {
        k2_err(&e, K2_ENETWORK, "%s: HTTP 416 for bytes %llu- (%s): restarting the file", f->pub->path,
               (unsigned long long)x->pos, u);
        reset_progress(f);
        retry = true;
    } else if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && st >= 300)) {
        if (st >= 200 && st < 300) {
            k2_err(&e, K2_ENETWORK, "%s: the body ended early at byte %llu of %llu (%s)", f->pub->path,
                   (unsigned long long)x->pos, (unsigned long long)x->end, u);
            retry = true;
        } else if (retryable_status(st)) {
            k2_err(&e, K2_ENETWORK, "%s: HTTP %ld from %s", f->pub->path, st, u);
            ra = retry_after_ms(r);
            retry = true;
        } else if (!x->auth && (st == 403 || st == 400)) {
            /* presigned URL expired (§1.6): resolve again, once */
            if (++f->expired_count >= 2) {
                k2_err(&e, K2_ENETWORK, "%s: the download URL was refused twice (HTTP %ld from %s)", f->pub->path, st, u);
                xfer_free(x); file_fail(f, &e); return;
            }
            f->url_resolved = false;
            free(f->data_url);
            f->data_url = NULL;
            emit(s, K2_HUB_EVENT_RETRY, f->idx, "the signed download URL expired; resolving it again");
            xfer_free(x);
            pump(s);
            return;
        } else {
            char what[600];
            snprintf(what, sizeof what, "%s: %s", s->ref.repo, f->pub->path);
            map_hub_error(r, what, &e);
            const char *code = hub_req_header(r, "X-Error-Code"), *rc2 = hub_req_header(r, "X-Repo-Commit");
            if (st == 404 && code && strcmp(code, "EntryNotFound") == 0 && rc2 && strcmp(rc2, s->commit) == 0 &&
                hub_origin(s, r->url))
                submit(s, f, mark_one_work, mark_one_done, NULL);   /* §1.8, §4.6 */
            xfer_free(x); file_fail(f, &e); return;
        }
    } else {
        k2_err(&e, rc == CURLE_OPERATION_TIMEDOUT ? K2_ETIMEOUT : K2_ENETWORK, "%s: %s (%s)", f->pub->path,
               r->curl_error[0] ? r->curl_error : curl_easy_strerror(rc), u);
        retry = retryable_curl(rc);
    }
    char *req_url = ra >= 0 ? k2_strdup(r->url) : NULL;
    xfer_free(x);
    if (!retry) { free(req_url); file_fail(f, &e); return; }
    if (++f->failures > s->o.max_retries) {
        free(req_url);
        k2_err_prefix(&e, "giving up after %d attempts without progress: ", f->failures);
        file_fail(f, &e);
        return;
    }
    uint64_t d = backoff_ms(s, f->failures);
    if (ra >= 0 && (uint64_t)ra > d) d = (uint64_t)ra;
    f->retry_at_ms = now_ms() + d;
    if (req_url) hub_pause_set(s->rt, req_url, f->retry_at_ms);   /* the bucket waits, in every fetch (§6.1) */
    free(req_url);
    char msg[K2_ERROR_MESSAGE_MAX + 64];
    snprintf(msg, sizeof msg, "%s; retrying in %.1f s", e.message, d / 1000.0);
    emit(s, K2_HUB_EVENT_RETRY, f->idx, msg);
    pump(s);
}

static void start_xfer(ffile *f, uint32_t chunk, const char *url, bool auth, int hops) {
    session *s = f->s;
    xfer *x = k2_calloc(1, sizeof *x);
    x->f = f;
    x->chunk = chunk;
    x->hops = hops;
    x->auth = auth;
    x->resolver = !f->url_resolved;
    x->whole = f->no_ranges;
    if (x->whole) {
        reset_progress(f);
        x->pos = 0;
        x->end = f->pub->size;
        memset(f->busy, 1, f->nch);
    } else {
        x->pos = (uint64_t)chunk * f->cs + f->done[chunk];
        x->end = K2_MIN((uint64_t)(chunk + 1) * f->cs, f->pub->size);
        f->busy[chunk] = 1;
    }
    hub_req *r = hub_req_new(url);
    x->req = r;
    r->auth = auth;
    if (!x->whole) {
        r->range_start = (int64_t)x->pos;
        r->range_end = (int64_t)x->end - 1;
    }
    r->low_speed_time_s = s->o.stall_timeout_s;
    r->on_response = xfer_on_response;
    r->on_body = xfer_on_body;
    r->on_done = xfer_on_done;
    r->user = x;
    f->active++;
    s->n_reqs++;
    k2_error e;
    if (hub_req_start(s->http, r, &e) != K2_OK) {
        /* report through the normal completion path */
        r->done_called = true;
        s->n_reqs--;
        f->active--;
        f->busy[chunk] = 0;
        xfer_free(x);
        file_fail(f, &e);
    }
}

/* ------------------------------------------------------------ scheduler */
static void cancel_all_reqs(session *s) {
    if (s->http) hub_http_cancel_all(s->http);
}

static void pump(session *s) {
    if (s->stopping) { try_finish(s); return; }
    uint64_t t = now_ms();
    if (s->api_pending_retry) {
        if (t >= s->api_retry_at && !hub_pause_until(s->rt, s->api_url, t)) {
            s->api_pending_retry = false;
            char *u = s->api_url;
            s->api_url = NULL;
            start_api(s, u, s->api_kind);
            free(u);
        }
        return;
    }
    if (!s->downloading) return;
    int active_files = 0;
    bool all_done = true;
    for (size_t i = 0; i < s->nf; i++) {
        fstate st = s->files[i].st;
        if (st != F_QUEUED && st != F_DONE) active_files++;
        if (st != F_DONE) all_done = false;
    }
    if (all_done) {
        s->success = true;
        emit(s, K2_HUB_EVENT_PROGRESS, -1, NULL);
        session_stop(s);
        return;
    }
    for (size_t i = 0; i < s->nf; i++) {
        ffile *f = &s->files[i];
        if (f->st == F_QUEUED && active_files < s->o.parallel_files) {
            active_files++;
            if (f->link_only) {
                f->st = F_PREPARING;
                f->lock_fd = -1;
                submit(s, f, prepare_work, prepare_done, NULL);   /* links the existing blob */
                continue;
            }
            f->st = F_LOCKING;
            f->lock_next_ms = 0;
        }
        if (f->st == F_LOCKING && !f->lock_busy_job && t >= f->lock_next_ms) {
            f->lock_busy_job = true;
            submit(s, f, lock_work, lock_done, NULL);
            continue;
        }
        if (f->st != F_TRANSFER) continue;
        bool complete = f->have == f->pub->size;
        if (complete && f->active == 0) {
            f->st = F_FINALIZING;
            finalize_file(f);
            continue;
        }
        if (t < f->retry_at_ms) continue;
        if (hub_pause_until(s->rt, f->url_resolved ? f->data_url : s->resolve_probe, t)) continue;
        if (!f->url_resolved) {
            if (f->active == 0) {
                uint32_t c = 0;
                while (c < f->nch && f->done[c] >= K2_MIN(f->cs, f->pub->size - (uint64_t)c * f->cs)) c++;
                if (c < f->nch || f->no_ranges) {
                    char *u = resolve_url(s, f);
                    start_xfer(f, c < f->nch ? c : 0, u, true, 0);
                    free(u);
                }
            }
            continue;
        }
        if (f->no_ranges) {
            if (f->active == 0) start_xfer(f, 0, f->data_url, f->data_auth, 0);
            continue;
        }
        for (uint32_t c = 0; c < f->nch && f->active < s->o.connections; c++) {
            uint64_t len = K2_MIN(f->cs, f->pub->size - (uint64_t)c * f->cs);
            if (f->busy[c] || f->done[c] >= len) continue;
            start_xfer(f, c, f->data_url, f->data_auth, 0);
            if (s->stopping) return;
        }
    }
    for (size_t i = 0; i < s->nf; i++)
        if (s->files[i].st == F_FINALIZING) finalize_file(&s->files[i]);
}

static void on_tick(uv_timer_t *t) {
    session *s = t->data;
    if (s->stopping) return;
    uint64_t n = now_ms();
    for (size_t i = 0; i < s->nf; i++) {
        ffile *f = &s->files[i];
        if (f->st != F_TRANSFER) continue;
        if (f->jdirty && !f->jbusy && n - f->jlast_ms >= JOURNAL_MS) submit_journal(s, f);
        start_hash_if_due(f, false);
    }
    if (s->downloading && n - s->last_progress_ms >= PROGRESS_MS) {
        double dt = (double)(n - s->rate_mark_ms) / 1000.0;
        if (dt >= 0.5) {
            double inst = (double)(s->total_have - K2_MIN(s->total_have, s->rate_mark_bytes)) / dt;
            s->rate = s->rate > 0 ? 0.6 * s->rate + 0.4 * inst : inst;
            s->rate_mark_ms = n;
            s->rate_mark_bytes = s->total_have;
        }
        s->last_progress_ms = n;
        for (size_t i = 0; i < s->nf; i++) {
            ffile *f = &s->files[i];
            if (f->st != F_TRANSFER) continue;
            if (!f->rate_mark_ms) { f->rate_mark_ms = n; f->rate_mark_bytes = f->have; }
            double fdt = (double)(n - f->rate_mark_ms) / 1000.0;
            if (fdt >= 0.5) {
                double inst = (double)(f->have - K2_MIN(f->have, f->rate_mark_bytes)) / fdt;
                f->rate = f->rate > 0 ? 0.6 * f->rate + 0.4 * inst : inst;
                f->rate_mark_ms = n;
                f->rate_mark_bytes = f->have;
            }
            emit(s, K2_HUB_EVENT_PROGRESS, (int)i, NULL);
        }
        emit(s, K2_HUB_EVENT_PROGRESS, -1, NULL);
    }
    pump(s);
}

/* --------------------------------------------------------------- start */
static void session_start(void *u) {
    session *s = u;
    s->op = k2_runtime_op_begin(s->rt, on_shutdown, s);
    k2_error e;
    s->http = hub_http_new(k2_runtime_loop(s->rt), s->cfg.token, &e);
    if (!s->http) { session_fail(s, &e); return; }
    uv_timer_init(k2_runtime_loop(s->rt), &s->tick);
    s->tick.data = s;
    s->tick_started = true;
    uv_timer_start(&s->tick, on_tick, TICK_MS, TICK_MS);
    if (k2_future_cancel_requested(s->fut)) { on_cancel(s); return; }
    if (s->cfg.offline) {
        submit(s, NULL, offline_work, offline_done, NULL);
        return;
    }
    if (hub_is_commit(s->rev)) {
        memcpy(s->commit, s->rev, 41);
        start_cache_first(s, literal_selection(s) && !s->o.list_only);
        return;
    }
    char *rev = hub_encode_segment(s->rev);
    char *url = k2_asprintf("%s/api/models/%s/revision/%s", s->cfg.endpoint, s->ref.repo, rev);
    free(rev);
    start_api(s, url, 1);
    free(url);
}

void k2_hub_options_init(k2_hub_options *o) {
    memset(o, 0, sizeof *o);
    o->verify = true;
    o->check_space = true;
    o->connections = 4;
    o->parallel_files = 4;
    o->chunk_size = 32u << 20;
    o->max_retries = 5;
    o->retry_base_ms = 1000;
}

static unsigned read_umask(void) {
    char *data = NULL;
    size_t size = 0;
    unsigned m = 022;
    if (k2_read_file("/proc/self/status", &data, &size, NULL) == K2_OK) {
        const char *p = strstr(data, "Umask:");
        if (p) m = (unsigned)strtoul(p + 6, NULL, 8);
        free(data);
    }
    return m;
}

k2_future *k2_hub_fetch(k2_runtime *rt, const char *ref, const k2_hub_options *opts) {
    k2_future *fut = k2_future_new(rt);
    if (!fut) return NULL;
    k2_error e;
    session *s = k2_calloc(1, sizeof *s);
    if (!s) {
        k2_err(&e, K2_ENOMEM, "out of memory");
        k2_future_fail(fut, &e);
        return fut;
    }
    if (opts) s->o = *opts;
    else k2_hub_options_init(&s->o);
    if (s->o.connections <= 0) s->o.connections = 4;
    if (s->o.connections > 16) s->o.connections = 16;
    if (s->o.parallel_files <= 0) s->o.parallel_files = 4;
    if (s->o.chunk_size < 4096) s->o.chunk_size = 32u << 20;
    if (s->o.max_retries < 0) s->o.max_retries = 0;
    if (s->o.retry_base_ms <= 0) s->o.retry_base_ms = 1000;
    s->rt = rt;
    s->fut = k2_future_ref(fut);
    s->model_index = -1;
    k2_error_clear(&s->err);
    if (hub_ref_parse(ref, &s->ref, &e) != K2_OK || hub_config_load(&s->o, &s->cfg, &e) != K2_OK) {
        k2_future_fail(fut, &e);
        k2_future_free(s->fut);
        hub_config_free(&s->cfg);
        free(s);
        return fut;
    }
    if (s->o.stall_timeout_s <= 0) s->o.stall_timeout_s = s->cfg.download_timeout_s;
    s->rev = k2_strdup(s->o.revision ? s->o.revision : s->ref.revision[0] ? s->ref.revision : "main");
    if (s->o.include) {
        size_t n = 0;
        while (s->o.include[n]) n++;
        s->include = k2_calloc(n + 1, sizeof *s->include);
        for (size_t i = 0; i < n; i++) s->include[i] = k2_strdup(s->o.include[i]);
    }
    s->o.include = NULL;
    s->o.revision = NULL;
    s->o.endpoint = s->o.cache_dir = s->o.token = NULL;
    char *folder = hub_repo_folder(s->ref.repo);
    s->repo_dir = k2_asprintf("%s/%s", s->cfg.cache_dir, folder);
    s->locks_dir = k2_asprintf("%s/.locks/%s", s->cfg.cache_dir, folder);
    s->resolve_probe = k2_asprintf("%s/%s/resolve/", s->cfg.endpoint, s->ref.repo);
    free(folder);
    s->umask_bits = read_umask();
    atomic_init(&s->abort_work, false);
    k2_future_set_cancel_hook(fut, on_cancel, s);
    if (k2_runtime_post(rt, session_start, s) != K2_OK) {
        k2_err(&e, K2_ECANCELLED, "runtime is shutting down");
        k2_future_fail(fut, &e);
        session_free(s);
    }
    return fut;
}
