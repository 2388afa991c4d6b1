/* hub/: Hugging Face Hub client (spec/hub.md). Internal interfaces shared by the
 * files of this module: reference parsing and file selection (select.c), cache
 * layout and environment (cache.c), libcurl-multi on the runtime's libuv loop
 * (http.c) and the download state machine (fetch.c). */
#ifndef K2_HUB_H
#define K2_HUB_H

#include "k2.h"
#include "async/async.h"

#include <curl/curl.h>

/* Tag of our temp files in blobs/ (§4.8): blobs/<etag>.k2.incomplete */
#define HUB_CLIENT_TAG "k2"

/* ---- references and selection (select.c) ---- */
typedef struct hub_ref {
    char repo[257];       /* "org/name" */
    char revision[257];   /* "" = default branch */
    char quant[129];      /* "" = none */
} hub_ref;

k2_status hub_ref_parse(const char *s, hub_ref *out, k2_error *err);
bool hub_repo_id_valid(const char *id);
/* huggingface_hub fnmatchcase semantics (§5.3). */
bool hub_glob_match(const char *pattern, const char *path);
/* A pattern without wildcards names one file: an explicit (optional) request. */
bool hub_glob_literal(const char *pattern);
/* Rejects absolute paths, '..' segments, backslashes, control characters (§4.4). */
bool hub_path_safe(const char *path);
/* Blob names must be hex sha1/sha256, or at least [A-Za-z0-9._-] without ".." (§4.3). */
bool hub_etag_safe(const char *etag);
/* "-00001-of-00003.gguf": sets index/count and the prefix length (up to the '-'). */
bool hub_shard_parse(const char *path, int *index, int *count, size_t *prefix_len);

typedef struct hub_entry {
    char *path;
    char *etag;       /* blob name: lfs.oid (sha256) if LFS else oid */
    uint64_t size;
    bool lfs;
    char *oid;        /* git blob id (of the pointer file for LFS); NULL when unknown (snapshot scan) */
    char *xet;        /* xetHash (64 hex) or NULL */
} hub_entry;

void hub_entries_free(hub_entry *e, size_t n);
void hub_entries_sort(hub_entry *e, size_t n);

/* Picks files per §5: quant tag, include globs, or everything; completes shard
 * sets; refuses several GGUF models unless `all`. `sel` gets indices into e
 * (sorted), `*model_index` the first shard of the main GGUF or -1. */
k2_status hub_select(const hub_entry *e, size_t n, const char *quant, const char *const *include,
                     bool all, size_t **sel, size_t *n_sel, long *model_index, k2_error *err);

/* ---- configuration and cache (cache.c) ---- */
typedef struct hub_config {
    char *endpoint;        /* no trailing '/' */
    char *cache_dir;       /* absolute */
    char *token;           /* NULL = anonymous */
    bool offline;
    int etag_timeout_s;
    int download_timeout_s;
} hub_config;

k2_status hub_config_load(const k2_hub_options *o, hub_config *c, k2_error *err);
void hub_config_free(hub_config *c);
bool hub_env_truthy(const char *name);

/* "models--org--name" */
char *hub_repo_folder(const char *repo);
/* mkdir -p */
k2_status hub_mkdirs(const char *path, k2_error *err);
/* Creates snapshots/<commit>/<path> -> ../../blobs/<etag> (relative, §4.4). */
k2_status hub_make_pointer(const char *repo_dir, const char *commit, const char *path,
                           const char *etag, k2_error *err);
/* Atomic refs/<rev> write; failures are ignored by callers (read-only caches). */
k2_status hub_write_ref(const char *repo_dir, const char *rev, const char *commit, k2_error *err);
/* True if path names an existing regular file (symlinks resolved). */
bool hub_file_exists(const char *path, uint64_t *size);
bool hub_is_commit(const char *rev);
/* Offline resolution (§4.13): revision -> commit, then the snapshot's files
 * (none when the snapshot folder is missing or empty: *n = 0, K2_OK). */
k2_status hub_offline_listing(const char *repo_dir, const char *revision, char commit[41],
                              hub_entry **out, size_t *n, k2_error *err);
/* trees/<commit>.json (§4.9, Python's tree cache): the complete listing of a commit.
 * Read: K2_ENOTFOUND when absent, unreadable, of another format_version or with an
 * invalid entry (the caller lists online instead). Write: atomic, keys sorted; only
 * for complete, unfiltered listings with oids. */
k2_status hub_tree_read(const char *repo_dir, const char *commit, hub_entry **out, size_t *n, k2_error *err);
k2_status hub_tree_write(const char *repo_dir, const char *commit, const hub_entry *e, size_t n, k2_error *err);
bool hub_xet_hash_valid(const char *h);
/* .no_exist/<commit>/<path> (§4.6): "path does not exist at commit". */
bool hub_no_exist_check(const char *repo_dir, const char *commit, const char *path);
void hub_no_exist_mark(const char *repo_dir, const char *commit, const char *path);
/* Cache-only lookup of explicit paths at a commit (§4.13 steps 3-4): each path is
 * either a complete snapshot file (-> *out) or known absent (-> *absent, NULL-
 * terminated); anything else is K2_ENOTFOUND (the network must decide). */
k2_status hub_cached_paths(const char *repo_dir, const char *commit, const char *const *paths, hub_entry **out,
                           size_t *n_out, char ***absent, size_t *n_absent, k2_error *err);

/* ---- HTTP over curl multi on a libuv loop (http.c) ---- */
typedef struct hub_http hub_http;
typedef struct hub_req hub_req;

typedef struct hub_header {
    char *name;
    char *value;
} hub_header;

struct hub_req {
    /* request */
    char *url;
    bool head;
    bool auth;              /* send Authorization (decided by the caller per §2) */
    int64_t range_start;    /* -1: no Range */
    int64_t range_end;      /* inclusive */
    long timeout_ms;        /* total (API); 0 none */
    long low_speed_time_s;  /* stall detection (data) */
    size_t max_body;        /* buffered bodies: limit */
    /* response */
    long status;
    hub_header *hdrs;
    size_t n_hdrs;
    char *body;             /* buffered when on_body is NULL */
    size_t body_len;
    char curl_error[CURL_ERROR_SIZE];
    /* callbacks, all on the loop thread. on_response: headers complete; return
     * false to stop the transfer (on_done then sees aborted=true). on_body: return
     * false to stop. on_done: always called exactly once (unless hub_req_free'd). */
    bool (*on_response)(hub_req *r);
    bool (*on_body)(hub_req *r, const char *data, size_t n);
    void (*on_done)(hub_req *r, CURLcode rc);
    void *user;
    /* private */
    hub_http *http;
    CURL *easy;
    struct curl_slist *slist;
    bool in_multi, headers_done, aborted, cancelled, done_called;
    hub_req *next_reap;
    char *redirect_abs;
    hub_req *aprev, *anext;   /* the engine's list of started requests */
};

hub_http *hub_http_new(uv_loop_t *loop, const char *token, k2_error *err);
/* Closes the engine once no request is in flight; `closed(user)` runs after every
 * libuv handle is closed. */
void hub_http_close(hub_http *h, k2_task_fn closed, void *user);
hub_req *hub_req_new(const char *url);
k2_status hub_req_start(hub_http *h, hub_req *r, k2_error *err);
/* Stops a running request; its on_done runs later with CURLE_ABORTED_BY_CALLBACK. */
void hub_req_cancel(hub_req *r);
void hub_req_free(hub_req *r);
/* Cancels every request of the engine (each gets its on_done later). */
void hub_http_cancel_all(hub_http *h);
const char *hub_req_header(const hub_req *r, const char *name);
/* Absolute target of a 3xx, or NULL. */
const char *hub_req_redirect_url(hub_req *r);
/* "scheme://host:port" of url (false if unparsable). */
bool hub_url_origin(const char *url, char *out, size_t cap);
/* Rate-limit pauses shared by every fetch of a runtime (§1.10, §6.1): a 429 (or a
 * Retry-After) pauses all requests of that bucket (API, resolvers, other) on that
 * host. Loop thread only. hub_pause_until returns 0 when not paused. */
uint64_t hub_pause_until(k2_runtime *rt, const char *url, uint64_t now_ms);
void hub_pause_set(k2_runtime *rt, const char *url, uint64_t until_ms);
/* "scheme://host:port" comparison (port-aware, §2). */
bool hub_same_origin(const char *a, const char *b);
bool hub_is_https_downgrade(const char *from, const char *to);
/* Strips the query string for error messages (presigned URLs, §2). */
void hub_redact_url(const char *url, char *out, size_t cap);
/* Percent-encodes per §1.1. */
char *hub_encode_path(const char *path);
char *hub_encode_segment(const char *seg);

#endif
