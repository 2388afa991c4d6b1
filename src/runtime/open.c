/* Opening models by reference into shared instances.
 *
 * The registry is a list of entries, one per model being opened or open, keyed by what
 * makes two opens interchangeable: the reference (a local file's real path, or the Hub
 * reference with revision, endpoint and cache) plus the tokenizer source and the model
 * options. An open that finds an entry joins it as a waiter; otherwise it creates one and
 * starts it on the runtime's loop thread: Hub fetch (model, then tokenizer if that is a
 * Hub repository) -> load on a worker thread -> every waiter's future is resolved with a
 * reference of its own. When a Hub reference resolves to a file that another entry already
 * holds, its waiters move to that entry. The model's `release` hook drops references under
 * the registry lock, so that a concurrent open never revives a model being freed; the
 * entry leaves the registry with the last reference.
 *
 * Threads: entries are created and joined on any thread (under reg_mu); their state
 * machine runs on the loop thread of the runtime that created them, except the load
 * (worker pool). User callbacks are never called with reg_mu held. */
#include "runtime/runtime.h"

#include "async/async.h"
#include "base/base.h"
#include "hub/hub.h"
#include "model/model.h"

#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the attachment carried by a model: tokenizer and generator ---- */

typedef struct rtm_entry rtm_entry;

typedef struct rtm_attach {
    rtm_entry *entry;            /* registered models: their registry entry */
    k2_tokenizer *tok;
    pthread_mutex_t mu;          /* guards gen */
    k2_generator *gen;
    k2_generator_options gopts;
} rtm_attach;

static void attach_free(void *p) {
    rtm_attach *a = p;
    if (!a) return;
    k2_generator_free(a->gen);
    k2_tokenizer_free(a->tok);
    pthread_mutex_destroy(&a->mu);
    free(a);
}

static rtm_attach *attach_new(k2_tokenizer *tok, const k2_generator_options *go) {
    rtm_attach *a = k2_calloc(1, sizeof *a);
    if (!a) return NULL;
    a->tok = tok;
    pthread_mutex_init(&a->mu, NULL);
    if (go) a->gopts = *go;
    else k2_generator_options_init(&a->gopts);
    return a;
}

/* ---- registry ---- */

typedef enum { E_FETCH = 0, E_LOAD, E_READY } entry_state;

typedef struct rtm_waiter {
    struct rtm_waiter *next;
    k2_future *f;                /* a reference of our own */
    k2_open_event_cb cb;
    void *user;
    k2_error_stage *stage;
} rtm_waiter;

struct rtm_entry {
    rtm_entry *next;
    char *key;                   /* reference key */
    char *file_key;              /* once the GGUF path is known */
    entry_state state;
    bool doomed;                 /* cancelled with nobody waiting: not joinable */
    k2_runtime *rt;
    k2_runtime_op *op;
    char *ref;
    char *model_path;            /* local GGUF */
    bool local;
    /* options (owned copies) */
    k2_model_open_options o;
    char *tok_src, *tok_special, *tok_path;
    char *hub_rev, *hub_endpoint, *hub_cache, *hub_token;
    char **hub_include;
    bool tok_hub;
    k2_future *fetch;            /* the Hub fetch in flight (model or tokenizer) */
    bool fetching_tokenizer;
    rtm_waiter *waiters;
    /* load results (worker thread -> loop thread) */
    k2_model *model;
    k2_tokenizer *tok;
    k2_model *live;              /* READY: the open model (no reference of its own; valid while
                                  * the entry is registered) */
    k2_error err;
    k2_error_stage err_stage;
    uint64_t t0;
};

static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static rtm_entry *reg_head;

static void reg_unlink(rtm_entry *e) {
    for (rtm_entry **pp = &reg_head; *pp; pp = &(*pp)->next)
        if (*pp == e) {
            *pp = e->next;
            e->next = NULL;
            return;
        }
}

static rtm_entry *reg_find(const char *key, const rtm_entry *except) {
    for (rtm_entry *e = reg_head; e; e = e->next) {
        if (e == except || e->doomed) continue;
        if ((e->key && strcmp(e->key, key) == 0) || (e->file_key && strcmp(e->file_key, key) == 0)) return e;
    }
    return NULL;
}

static void entry_free(rtm_entry *e) {
    if (!e) return;
    free(e->key);
    free(e->file_key);
    free(e->ref);
    free(e->model_path);
    free(e->tok_src);
    free(e->tok_special);
    free(e->tok_path);
    free(e->hub_rev);
    free(e->hub_endpoint);
    free(e->hub_cache);
    free(e->hub_token);
    if (e->hub_include) {
        for (size_t i = 0; e->hub_include[i]; i++) free(e->hub_include[i]);
        free(e->hub_include);
    }
    k2_future_free(e->fetch);
    free(e);
}

/* The model's release hook: drops one reference under the registry lock. */
static void registered_release(k2_model *m) {
    rtm_attach *a = m->ext;
    rtm_entry *gone = NULL;
    pthread_mutex_lock(&reg_mu);
    if (atomic_fetch_sub(&m->refs, 1) == 1) {
        gone = a->entry;
        reg_unlink(gone);
    }
    pthread_mutex_unlock(&reg_mu);
    if (!gone) return;
    entry_free(gone);
    model_destroy(m);
}

/* A future's result: one model reference. */
static void result_release(void *p) { k2_model_free(p); }

k2_model *k2_model_open_result(const k2_future *f) {
    k2_model *m = f ? k2_future_result(f) : NULL;
    return m ? k2_model_ref(m) : NULL;
}

/* ---- events ---- */

typedef struct cb_pair {
    k2_open_event_cb cb;
    void *user;
} cb_pair;

static void emit(rtm_entry *e, k2_open_event *ev) {
    cb_pair *pairs = NULL;
    size_t n = 0;
    pthread_mutex_lock(&reg_mu);
    for (rtm_waiter *w = e->waiters; w; w = w->next) n += w->cb != NULL;
    if (n) pairs = k2_calloc(n, sizeof *pairs);
    n = 0;
    if (pairs)
        for (rtm_waiter *w = e->waiters; w; w = w->next)
            if (w->cb) pairs[n++] = (cb_pair){w->cb, w->user};
    pthread_mutex_unlock(&reg_mu);
    ev->ref = e->ref;
    for (size_t i = 0; i < n; i++) pairs[i].cb(ev, pairs[i].user);
    free(pairs);
}

static double since_s(uint64_t t0) { return (double)(k2_now_ns() - t0) / 1e9; }

/* ---- finishing ---- */

static void entry_end_op(rtm_entry *e) {
    if (e->op) k2_runtime_op_end(e->rt, e->op);
    e->op = NULL;
}

/* Fails every waiter and drops the entry (loop thread). */
static void entry_fail(rtm_entry *e, k2_error_stage stage, const k2_error *err) {
    pthread_mutex_lock(&reg_mu);
    reg_unlink(e);
    rtm_waiter *w = e->waiters;
    e->waiters = NULL;
    pthread_mutex_unlock(&reg_mu);
    while (w) {
        rtm_waiter *n = w->next;
        if (w->stage) *w->stage = stage;
        k2_future_fail(w->f, err);
        k2_future_free(w->f);
        free(w);
        w = n;
    }
    entry_end_op(e);
    if (e->model) model_destroy(e->model);
    k2_tokenizer_free(e->tok);
    entry_free(e);
}

/* Hands the loaded model to every waiter (loop thread). */
static void entry_ready(rtm_entry *e) {
    k2_model *m = e->model;
    e->model = NULL;
    rtm_attach *a = attach_new(e->tok, &e->o.generator);
    if (!a) {
        k2_error err;
        k2_err(&err, K2_ENOMEM, "out of memory opening %s", e->ref);
        e->model = m;
        entry_fail(e, K2_STAGE_LOAD, &err);
        return;
    }
    e->tok = NULL;
    a->entry = e;
    m->ext = a;
    m->ext_free = attach_free;
    m->release = registered_release;
    k2_open_event ev = {.stage = K2_OPEN_READY, .path = e->model_path, .seconds = since_s(e->t0)};
    emit(e, &ev);
    pthread_mutex_lock(&reg_mu);
    e->state = E_READY;
    e->live = m;
    rtm_waiter *w = e->waiters;
    e->waiters = NULL;
    size_t n = 0;
    for (rtm_waiter *x = w; x; x = x->next) n++;
    /* the loader's reference becomes the first waiter's */
    bool destroy = false;
    if (n == 0) {
        reg_unlink(e);
        destroy = true;
    } else {
        atomic_fetch_add(&m->refs, (int)n - 1);
    }
    pthread_mutex_unlock(&reg_mu);
    entry_end_op(e);
    if (destroy) {
        entry_free(e);
        model_destroy(m);
        return;
    }
    while (w) {
        rtm_waiter *nx = w->next;
        k2_future_resolve(w->f, m, result_release);
        k2_future_free(w->f);
        free(w);
        w = nx;
    }
}

/* ---- local references ---- */

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static bool looks_like_path(const char *ref) {
    return ref[0] == '/' || ref[0] == '.' || ref[0] == '~' || ends_with(ref, ".gguf") || !strchr(ref, '/');
}

typedef struct gguf_list {
    char **paths;
    size_t n, cap;
} gguf_list;

static void list_add(gguf_list *l, const char *path) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **np = k2_realloc(l->paths, cap * sizeof *np);
        if (!np) return;
        l->paths = np;
        l->cap = cap;
    }
    char *p = k2_strdup(path);
    if (p) l->paths[l->n++] = p;
}

/* GGUF models under dir (and one level of sub-folders, as quant folders of Hub repos):
 * single files and first shards. */
static void scan_dir(const char *dir, int depth, gguf_list *l) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = k2_asprintf("%s/%s", dir, de->d_name);
        if (!p) continue;
        struct stat st;
        if (stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode) && depth > 0) {
                scan_dir(p, depth - 1, l);
            } else if (S_ISREG(st.st_mode) && ends_with(de->d_name, ".gguf")) {
                int idx = 1;
                if (!hub_shard_parse(de->d_name, &idx, NULL, NULL) || idx == 1) list_add(l, p);
            }
        }
        free(p);
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

k2_status rtm_resolve_local(const char *ref, char **path, bool *is_local, k2_error *err) {
    *path = NULL;
    *is_local = false;
    if (!ref || !*ref) {
        *is_local = true;
        return k2_err(err, K2_EINVAL, "no model reference given");
    }
    struct stat st;
    if (stat(ref, &st) != 0) {
        if (looks_like_path(ref)) {
            *is_local = true;
            return k2_err(err, K2_ENOTFOUND, "%s: no such file or folder (and not a Hub reference org/repo)", ref);
        }
        return K2_ENOTFOUND;
    }
    *is_local = true;
    /* Paths keep their names (split shards are found by name beside the first one, and
     * messages should name what the user gave); sharing compares real paths. */
    if (S_ISREG(st.st_mode)) {
        *path = k2_strdup(ref);
        return *path ? K2_OK : k2_err(err, K2_ENOMEM, "out of memory");
    }
    if (!S_ISDIR(st.st_mode)) return k2_err(err, K2_EINVAL, "%s is neither a file nor a folder", ref);
    size_t rl = strlen(ref);
    while (rl > 1 && ref[rl - 1] == '/') rl--;
    char *dir = k2_strndup(ref, rl);
    if (!dir) return k2_err(err, K2_ENOMEM, "out of memory");
    gguf_list l = {0};
    scan_dir(dir, 1, &l);
    k2_status rc = K2_OK;
    if (l.n == 0) {
        rc = k2_err(err, K2_ENOTFOUND, "folder %s holds no .gguf model", ref);
    } else if (l.n > 1) {
        qsort(l.paths, l.n, sizeof *l.paths, cmp_str);
        char names[600] = "";
        for (size_t i = 0; i < l.n && strlen(names) < 400; i++) {
            const char *b = l.paths[i] + rl + 1;
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "", b);
        }
        rc = k2_err(err, K2_EINVAL, "folder %s holds %zu GGUF models (%s): name the file", ref, l.n, names);
    } else {
        *path = l.paths[0];
        l.paths[0] = NULL;
    }
    for (size_t i = 0; i < l.n; i++) free(l.paths[i]);
    free(l.paths);
    free(dir);
    return rc;
}

/* "file:<real path>" + suffix: what makes two opens of local files the same instance. */
static char *file_key(const char *path, const char *suffix) {
    char real[PATH_MAX];
    return k2_asprintf("file:%s%s", realpath(path, real) ? real : path, suffix ? suffix : "");
}

/* ---- tokenizer overrides ---- */

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* A tokenizer file inside a folder: tiktoken.model first (Kimi's own), then tokenizer.json. */
static char *tokenizer_in_dir(const char *dir) {
    static const char *const names[] = {"tiktoken.model", "tokenizer.json"};
    for (size_t i = 0; i < K2_ARRAY_LEN(names); i++) {
        char *p = k2_asprintf("%s/%s", dir, names[i]);
        if (p && file_exists(p)) return p;
        free(p);
    }
    return NULL;
}

static k2_status load_tokenizer_file(const char *path, const char *special, k2_tokenizer **out, k2_error *err) {
    if (ends_with(path, ".json")) return k2_tokenizer_from_json(path, out, err);
    return k2_tokenizer_from_tiktoken(path, special, out, err);
}

/* The override must speak the model's vocabulary: same size as the GGUF's tokenizer (or
 * no larger than the embedding when the GGUF has none) and the same id for every special
 * token, in both directions. */
static k2_status check_tokenizer(const k2_model *m, const k2_tokenizer *ov, const char *src, k2_error *err) {
    int32_t nv = k2_tokenizer_n_vocab(ov);
    k2_tokenizer *gt = NULL;
    if (k2_tokenizer_from_gguf(k2_model_gguf(m), &gt, NULL) != K2_OK || !gt) {
        uint32_t rows = k2_model_n_vocab(m);
        if ((uint32_t)nv > rows)
            return k2_err(err, K2_EINVAL, "tokenizer %s has %d ids but the model's embedding has only %u rows", src, nv,
                          rows);
        return K2_OK;
    }
    k2_status rc = K2_OK;
    int32_t gv = k2_tokenizer_n_vocab(gt);
    if (nv != gv) {
        rc = k2_err(err, K2_EINVAL, "tokenizer %s has %d ids but the model's vocabulary has %d: it belongs to another model",
                    src, nv, gv);
        goto out;
    }
    for (int pass = 0; pass < 2 && rc == K2_OK; pass++) {
        const k2_tokenizer *a = pass ? ov : gt, *b = pass ? gt : ov;
        for (int32_t id = 0; id < nv; id++) {
            if (!k2_token_is_special(a, id)) continue;
            k2_str t;
            if (k2_token_bytes(a, id, &t, NULL) != K2_OK) continue;
            int32_t other = k2_token_find(b, t.ptr, t.len);
            if (other != id) {
                rc = k2_err(err, K2_EINVAL, "tokenizer %s: special token \"%.*s\" has id %d in %s but %d in %s", src,
                            (int)K2_MIN(t.len, 64), t.ptr, id, pass ? "the tokenizer" : "the model",
                            other, pass ? "the model" : "the tokenizer");
                break;
            }
        }
    }
out:
    k2_tokenizer_free(gt);
    return rc;
}

/* ---- the state machine (loop thread, except load_work) ---- */

static void load_work(void *u) {
    rtm_entry *e = u;
    k2_error err;
    k2_error_clear(&err);
    k2_status st = k2_model_load(e->model_path, &e->o.model, &e->model, &err);
    if (st == K2_OK && e->tok_path) {
        st = load_tokenizer_file(e->tok_path, e->tok_special, &e->tok, &err);
        if (st != K2_OK) k2_err_prefix(&err, "tokenizer: ");
        if (st == K2_OK) st = check_tokenizer(e->model, e->tok, e->tok_src, &err);
    } else if (st == K2_OK) {
        st = k2_tokenizer_from_gguf(k2_model_gguf(e->model), &e->tok, &err);
        if (st != K2_OK) k2_err_prefix(&err, "%s: no usable tokenizer in the GGUF (name one with a tokenizer option): ",
                                       e->model_path);
    }
    if (st != K2_OK) {
        e->err = err;
        e->err_stage = K2_STAGE_LOAD;
    }
}

static void load_done(void *u) {
    rtm_entry *e = u;
    if (e->err.status != K2_OK) {
        k2_error err = e->err;
        entry_fail(e, e->err_stage, &err);
        return;
    }
    entry_ready(e);
}

static void start_load(rtm_entry *e) {
    if (e->tok_src && !e->tok_hub && !e->tok_path) {
        /* local tokenizer source: a file or a folder holding one */
        struct stat st;
        if (stat(e->tok_src, &st) == 0 && S_ISDIR(st.st_mode)) e->tok_path = tokenizer_in_dir(e->tok_src);
        else if (stat(e->tok_src, &st) == 0) e->tok_path = k2_strdup(e->tok_src);
        if (!e->tok_path) {
            k2_error err;
            k2_err(&err, K2_ENOTFOUND, "tokenizer %s: no such file, and no tiktoken.model or tokenizer.json in it",
                   e->tok_src);
            entry_fail(e, K2_STAGE_LOAD, &err);
            return;
        }
    }
    pthread_mutex_lock(&reg_mu);
    e->state = E_LOAD;
    pthread_mutex_unlock(&reg_mu);
    k2_open_event ev = {.stage = K2_OPEN_LOAD, .path = e->model_path, .seconds = since_s(e->t0)};
    emit(e, &ev);
    k2_runtime_submit_work(e->rt, load_work, load_done, e);
}

static void on_hub_event(const k2_hub_event *hev, void *user) {
    rtm_entry *e = user;
    k2_open_event ev = {.stage = K2_OPEN_DOWNLOAD, .hub = hev, .tokenizer = e->fetching_tokenizer,
                        .seconds = since_s(e->t0)};
    emit(e, &ev);
}

static k2_hub_options entry_hub_options(rtm_entry *e) {
    k2_hub_options ho = e->o.hub;
    ho.revision = e->hub_rev;
    ho.endpoint = e->hub_endpoint;
    ho.cache_dir = e->hub_cache;
    ho.token = e->hub_token;
    ho.include = (const char *const *)e->hub_include;
    ho.list_only = false;
    ho.on_event = on_hub_event;
    ho.user = e;
    return ho;
}

static void on_tokenizer_fetched(k2_future *f, void *user) {
    rtm_entry *e = user;
    (void)f;
    k2_future *fut = e->fetch;
    e->fetch = NULL;
    if (k2_future_state_of(fut) != K2_FUTURE_DONE) {
        k2_error err = *k2_future_error(fut);
        if (err.status != K2_ECANCELLED) k2_err_prefix(&err, "tokenizer %s: ", e->tok_src);
        k2_future_free(fut);
        entry_fail(e, K2_STAGE_DOWNLOAD, &err);
        return;
    }
    const k2_hub_result *r = k2_hub_fetch_result(fut);
    e->tok_path = r && r->snapshot_dir ? tokenizer_in_dir(r->snapshot_dir) : NULL;
    k2_future_free(fut);
    if (!e->tok_path) {
        k2_error err;
        k2_err(&err, K2_ENOTFOUND, "tokenizer %s: the repository has no tiktoken.model or tokenizer.json", e->tok_src);
        entry_fail(e, K2_STAGE_DOWNLOAD, &err);
        return;
    }
    start_load(e);
}

static void start_tokenizer(rtm_entry *e) {
    if (!e->tok_hub) {
        start_load(e);
        return;
    }
    static const char *const tok_files[] = {"tiktoken.model", "tokenizer.json", "tokenizer_config.json",
                                            "special_tokens.json", NULL};
    k2_hub_options ho = entry_hub_options(e);
    ho.revision = NULL; /* the tokenizer ref carries its own @REV */
    ho.include = tok_files;
    ho.all = false;
    e->fetching_tokenizer = true;
    e->fetch = k2_hub_fetch(e->rt, e->tok_src, &ho);
    if (!e->fetch) {
        k2_error err;
        k2_err(&err, K2_ENOMEM, "tokenizer %s: cannot start the fetch", e->tok_src);
        entry_fail(e, K2_STAGE_DOWNLOAD, &err);
        return;
    }
    k2_future_then(e->fetch, on_tokenizer_fetched, e);
}

static char *key_suffix(const k2_model_open_options *o, const char *tok_key);

/* The Hub reference resolved to a file: join an entry that holds it already, if any. */
static bool merge_into_existing(rtm_entry *e) {
    pthread_mutex_lock(&reg_mu);
    rtm_entry *other = reg_find(e->file_key, e);
    if (!other) {
        pthread_mutex_unlock(&reg_mu);
        return false;
    }
    reg_unlink(e);
    rtm_waiter *w = e->waiters;
    e->waiters = NULL;
    k2_model *m = NULL;
    if (other->state == E_READY) {
        /* one reference per waiter, taken while the lock keeps the model alive */
        m = other->live;
        for (rtm_waiter *x = w; x; x = x->next) atomic_fetch_add(&m->refs, 1);
    } else {
        rtm_waiter **pp = &other->waiters;
        while (*pp) pp = &(*pp)->next;
        *pp = w;
        w = NULL;
    }
    pthread_mutex_unlock(&reg_mu);
    while (w) {
        rtm_waiter *nx = w->next;
        k2_future_resolve(w->f, m, result_release);
        k2_future_free(w->f);
        free(w);
        w = nx;
    }
    entry_end_op(e);
    entry_free(e);
    return true;
}

static void on_model_fetched(k2_future *f, void *user) {
    rtm_entry *e = user;
    (void)f;
    k2_future *fut = e->fetch;
    e->fetch = NULL;
    if (k2_future_state_of(fut) != K2_FUTURE_DONE) {
        k2_error err = *k2_future_error(fut);
        k2_future_free(fut);
        entry_fail(e, K2_STAGE_DOWNLOAD, &err);
        return;
    }
    const k2_hub_result *r = k2_hub_fetch_result(fut);
    if (!r || !r->model_path) {
        k2_error err;
        k2_err(&err, K2_ENOTFOUND, "%s: the selection holds no GGUF model file (name one with org/repo:QUANT)", e->ref);
        k2_future_free(fut);
        entry_fail(e, K2_STAGE_DOWNLOAD, &err);
        return;
    }
    e->model_path = k2_strdup(r->model_path);
    k2_future_free(fut);
    char *suffix = key_suffix(&e->o, e->tok_src);
    char *fk = e->model_path ? file_key(e->model_path, suffix) : NULL;
    free(suffix);
    pthread_mutex_lock(&reg_mu);
    e->file_key = fk;
    pthread_mutex_unlock(&reg_mu);
    if (merge_into_existing(e)) return;
    start_tokenizer(e);
}

static void on_shutdown(void *user) {
    rtm_entry *e = user;
    if (e->fetch) k2_future_cancel(e->fetch);
}

static void entry_start(void *user) {
    rtm_entry *e = user;
    e->op = k2_runtime_op_begin(e->rt, on_shutdown, e);
    if (e->local) {
        start_tokenizer(e);
        return;
    }
    k2_hub_options ho = entry_hub_options(e);
    e->fetching_tokenizer = false;
    e->fetch = k2_hub_fetch(e->rt, e->ref, &ho);
    if (!e->fetch) {
        k2_error err;
        k2_err(&err, K2_ENOMEM, "%s: cannot start the fetch", e->ref);
        entry_fail(e, K2_STAGE_DOWNLOAD, &err);
        return;
    }
    k2_future_then(e->fetch, on_model_fetched, e);
}

/* ---- opening ---- */

void k2_model_open_options_init(k2_model_open_options *o) {
    memset(o, 0, sizeof *o);
    k2_model_options_init(&o->model);
    k2_hub_options_init(&o->hub);
    k2_generator_options_init(&o->generator);
}

/* Opens share an instance only when everything the instance carries agrees: the tokenizer,
 * the model options and the generator it creates for k2_complete (slots, context size,
 * cache type, mode, threads) — otherwise a later open could inherit an earlier opener's
 * small context. */
static char *key_suffix(const k2_model_open_options *o, const char *tok_key) {
    const k2_generator_options *g = &o->generator;
    return k2_asprintf("|tok=%s|sp=%s|beta=%g,%g,%d|gen=%u,%u,%d,%d,%d,%u", tok_key ? tok_key : "",
                       o->tokenizer_special ? o->tokenizer_special : "", (double)o->model.yarn_beta_fast,
                       (double)o->model.yarn_beta_slow, o->model.llama_compat_beta, g->n_slots, g->context.n_ctx,
                       (int)g->context.cache_type, (int)g->context.exact, g->context.n_threads, g->prefill_chunk);
}

/* Cancelling one waiter's future: it leaves its entry; an entry nobody waits for any more
 * stops its fetch. Runs on the loop thread of the future's runtime. */
static void waiter_cancel(void *user) {
    k2_future *f = user;
    rtm_waiter *mine = NULL;
    k2_future *stop = NULL;
    pthread_mutex_lock(&reg_mu);
    for (rtm_entry *e = reg_head; e && !mine; e = e->next) {
        for (rtm_waiter **pp = &e->waiters; *pp; pp = &(*pp)->next) {
            if ((*pp)->f == f) {
                mine = *pp;
                *pp = mine->next;
                if (!e->waiters && e->state == E_FETCH && e->fetch) {
                    e->doomed = true;
                    stop = k2_future_ref(e->fetch);
                }
                break;
            }
        }
    }
    pthread_mutex_unlock(&reg_mu);
    if (!mine) return; /* being resolved right now */
    k2_error err;
    k2_err(&err, K2_ECANCELLED, "opening the model was cancelled");
    k2_future_fail(mine->f, &err);
    k2_future_free(mine->f);
    free(mine);
    if (stop) {
        k2_future_cancel(stop);
        k2_future_free(stop);
    }
}

static char *dup_opt(const char *s) { return s ? k2_strdup(s) : NULL; }

k2_future *rtm_open(k2_runtime *rt, const char *ref, const k2_model_open_options *opts, k2_error_stage *stage) {
    k2_future *f = k2_future_new(rt);
    if (!f) return NULL;
    k2_model_open_options def;
    if (!opts) {
        k2_model_open_options_init(&def);
        opts = &def;
    }
    k2_error err;
    k2_error_clear(&err);
    char *path = NULL;
    bool is_local = false;
    k2_status st = rtm_resolve_local(ref, &path, &is_local, &err);
    if (st != K2_OK && is_local) {
        if (stage) *stage = K2_STAGE_LOAD;
        k2_future_fail(f, &err);
        return f;
    }
    /* the tokenizer source: local (real path) or a Hub repository */
    char *tok_key = NULL;
    bool tok_hub = false;
    if (opts->tokenizer) {
        char real[PATH_MAX];
        struct stat sst;
        if (stat(opts->tokenizer, &sst) == 0 && realpath(opts->tokenizer, real)) {
            tok_key = k2_strdup(real);
        } else if (!looks_like_path(opts->tokenizer) && !ends_with(opts->tokenizer, ".json") &&
                   !ends_with(opts->tokenizer, ".model")) {
            tok_key = k2_strdup(opts->tokenizer);
            tok_hub = true;
        } else {
            if (stage) *stage = K2_STAGE_LOAD;
            k2_err(&err, K2_ENOTFOUND, "tokenizer %s: no such file or folder", opts->tokenizer);
            k2_future_fail(f, &err);
            free(path);
            return f;
        }
    }
    char *suffix = key_suffix(opts, tok_key);
    char *key;
    if (path) {
        key = file_key(path, suffix);
    } else {
        const char *rev = opts->hub.revision ? opts->hub.revision : "";
        const char *ep = opts->hub.endpoint ? opts->hub.endpoint : getenv("HF_ENDPOINT");
        const char *cache = opts->hub.cache_dir ? opts->hub.cache_dir : "";
        key = k2_asprintf("hub:%s|rev=%s|ep=%s|cache=%s%s", ref, rev, ep ? ep : "", cache, suffix ? suffix : "");
    }
    free(suffix);
    rtm_waiter *w = k2_calloc(1, sizeof *w);
    if (!key || !w) {
        free(key);
        free(w);
        free(path);
        free(tok_key);
        k2_err(&err, K2_ENOMEM, "out of memory opening %s", ref);
        k2_future_fail(f, &err);
        return f;
    }
    w->f = k2_future_ref(f);
    w->cb = opts->on_event;
    w->user = opts->user;
    w->stage = stage;
    k2_future_set_cancel_hook(f, waiter_cancel, f);

    pthread_mutex_lock(&reg_mu);
    rtm_entry *e = reg_find(key, NULL);
    if (e) {
        if (e->state == E_READY) {
            k2_model *m = e->live;
            atomic_fetch_add(&m->refs, 1);
            pthread_mutex_unlock(&reg_mu);
            k2_future_resolve(f, m, result_release);
            k2_future_free(w->f);
            free(w);
        } else {
            w->next = NULL;
            rtm_waiter **pp = &e->waiters;
            while (*pp) pp = &(*pp)->next;
            *pp = w;
            pthread_mutex_unlock(&reg_mu);
            if (w->cb) {
                k2_open_event ev = {.stage = K2_OPEN_SHARED, .ref = ref, .path = path};
                w->cb(&ev, w->user);
            }
        }
        free(key);
        free(path);
        free(tok_key);
        return f;
    }
    e = k2_calloc(1, sizeof *e);
    if (!e) {
        pthread_mutex_unlock(&reg_mu);
        k2_err(&err, K2_ENOMEM, "out of memory opening %s", ref);
        k2_future_fail(f, &err);
        k2_future_free(w->f);
        free(w);
        free(key);
        free(path);
        free(tok_key);
        return f;
    }
    e->key = key;
    e->rt = rt;
    e->ref = k2_strdup(ref);
    e->o = *opts;
    e->local = path != NULL;
    e->model_path = path;
    if (path) e->file_key = k2_strdup(key);
    e->tok_src = tok_key;
    e->tok_hub = tok_hub;
    e->tok_special = dup_opt(opts->tokenizer_special);
    e->o.tokenizer = e->tok_src;
    e->o.tokenizer_special = e->tok_special;
    e->o.on_event = NULL;
    e->o.user = NULL;
    e->hub_rev = dup_opt(opts->hub.revision);
    e->hub_endpoint = dup_opt(opts->hub.endpoint);
    e->hub_cache = dup_opt(opts->hub.cache_dir);
    e->hub_token = dup_opt(opts->hub.token);
    if (opts->hub.include) {
        size_t n = 0;
        while (opts->hub.include[n]) n++;
        e->hub_include = k2_calloc(n + 1, sizeof *e->hub_include);
        for (size_t i = 0; e->hub_include && i < n; i++) e->hub_include[i] = k2_strdup(opts->hub.include[i]);
    }
    e->t0 = k2_now_ns();
    e->waiters = w;
    e->next = reg_head;
    reg_head = e;
    pthread_mutex_unlock(&reg_mu);
    if (k2_runtime_post(rt, entry_start, e) != K2_OK) {
        k2_err(&err, K2_ECANCELLED, "the runtime is shutting down");
        entry_fail(e, K2_STAGE_LOAD, &err);
    }
    return f;
}

k2_future *k2_model_open_async(k2_runtime *rt, const char *ref, const k2_model_open_options *o) {
    if (!rt) return NULL;
    return rtm_open(rt, ref, o, NULL);
}

k2_status k2_model_open(k2_runtime *rt, const char *ref, const k2_model_open_options *o, k2_model **out,
                        k2_error *err) {
    *out = NULL;
    if (!rt) return k2_err(err, K2_EINVAL, "k2_model_open: no runtime");
    k2_future *f = k2_model_open_async(rt, ref, o);
    if (!f) return k2_err(err, K2_ENOMEM, "out of memory opening %s", ref ? ref : "(null)");
    k2_status st = k2_future_wait(f, -1);
    if (st == K2_OK) {
        *out = k2_model_open_result(f);
    } else if (err) {
        *err = *k2_future_error(f);
    }
    k2_future_free(f);
    return st;
}

/* ---- tokenizer and completions of an open model ---- */

static pthread_mutex_t attach_mu = PTHREAD_MUTEX_INITIALIZER;

static k2_status get_attach(k2_model *m, rtm_attach **out, k2_error *err) {
    *out = NULL;
    if (!m) return k2_err(err, K2_EINVAL, "no model");
    pthread_mutex_lock(&attach_mu);
    if (!m->ext) {
        k2_tokenizer *tok = NULL;
        k2_status st = k2_tokenizer_from_gguf(k2_model_gguf(m), &tok, err);
        if (st != K2_OK) {
            pthread_mutex_unlock(&attach_mu);
            return st;
        }
        rtm_attach *a = attach_new(tok, NULL);
        if (!a) {
            k2_tokenizer_free(tok);
            pthread_mutex_unlock(&attach_mu);
            return k2_err(err, K2_ENOMEM, "out of memory");
        }
        m->ext = a;
        m->ext_free = attach_free;
    }
    *out = m->ext;
    pthread_mutex_unlock(&attach_mu);
    return K2_OK;
}

k2_status k2_model_get_tokenizer(k2_model *m, const k2_tokenizer **out, k2_error *err) {
    *out = NULL;
    rtm_attach *a;
    k2_status st = get_attach(m, &a, err);
    if (st == K2_OK) *out = a->tok;
    return st;
}

k2_status k2_complete(k2_model *m, const k2_completion_request *req, k2_stream **out, k2_error *err) {
    *out = NULL;
    rtm_attach *a;
    k2_status st = get_attach(m, &a, err);
    if (st != K2_OK) return st;
    pthread_mutex_lock(&a->mu);
    if (!a->gen) st = k2_generator_new(m, a->tok, &a->gopts, &a->gen, err);
    k2_generator *g = a->gen;
    pthread_mutex_unlock(&a->mu);
    if (st != K2_OK) return st;
    return k2_generate(g, req, out, err);
}

/* ---- blocking resolution for the server ---- */

k2_status rtm_fetch_model(k2_runtime *rt, const char *ref, const k2_hub_options *ho, char **path,
                          k2_error_stage *stage, k2_error *err) {
    *path = NULL;
    bool is_local = false;
    if (stage) *stage = K2_STAGE_LOAD;
    k2_status st = rtm_resolve_local(ref, path, &is_local, err);
    if (st == K2_OK || is_local) return st;
    if (stage) *stage = K2_STAGE_DOWNLOAD;
    k2_future *f = k2_hub_fetch(rt, ref, ho);
    if (!f) return k2_err(err, K2_ENOMEM, "%s: cannot start the fetch", ref);
    st = k2_future_wait(f, -1);
    if (st != K2_OK) {
        if (err) *err = *k2_future_error(f);
        k2_future_free(f);
        return st;
    }
    const k2_hub_result *r = k2_hub_fetch_result(f);
    if (!r || !r->model_path) st = k2_err(err, K2_ENOTFOUND, "%s has no GGUF model file", ref);
    else if (!(*path = k2_strdup(r->model_path))) st = k2_err(err, K2_ENOMEM, "out of memory");
    k2_future_free(f);
    return st;
}
