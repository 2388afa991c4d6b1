/* k2_model_open_async / k2_complete / k2_complete_ref on local references: a file, a folder,
 * shared instances (concurrent opens, one load, same pointer), reference counting, tokenizer
 * overrides (accepted and refused), corrupt and missing files as ERROR chunks, cancellation
 * while opening, and many concurrent streams on one shared model. Hub references are
 * tested through the CLI against scripts/hubserver.py (tests/runtime/test_run_hub.py). */
#include "testutil.h"

#include "base/base.h"
#include "model/model.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct counts {
    atomic_int load, ready, shared, download;
} counts;

static void on_event(const k2_open_event *ev, void *user) {
    counts *c = user;
    switch (ev->stage) {
    case K2_OPEN_LOAD: atomic_fetch_add(&c->load, 1); break;
    case K2_OPEN_READY: atomic_fetch_add(&c->ready, 1); break;
    case K2_OPEN_SHARED: atomic_fetch_add(&c->shared, 1); break;
    case K2_OPEN_DOWNLOAD: atomic_fetch_add(&c->download, 1); break;
    }
}

static k2_model_open_options opts_with(counts *c) {
    k2_model_open_options o;
    k2_model_open_options_init(&o);
    o.on_event = on_event;
    o.user = c;
    o.generator.context.n_threads = 1;
    o.generator.context.n_ctx = 256;
    o.generator.n_slots = 2;
    return o;
}

/* The loop thread drops its reference to a settled future just after settling it: give
 * the count a moment to reach `want`. */
static int model_refs_settled(k2_model *m, int want) {
    int r = atomic_load(&m->refs);
    for (int i = 0; i < 200 && r != want; i++) {
        usleep(5000);
        r = atomic_load(&m->refs);
    }
    return r;
}
#define model_refs(m) atomic_load(&(m)->refs)

typedef struct collected {
    char text[4096];
    size_t n_text, n_ids;
    k2_chunk final;
    char msg[1024];
} collected;

static void collect(k2_stream *s, collected *r) {
    memset(r, 0, sizeof *r);
    k2_chunk c;
    while (k2_stream_next(s, 60000, &c) == K2_OK) {
        if (c.type == K2_CHUNK_DELTA) {
            size_t n = K2_MIN(c.text_len, sizeof r->text - 1 - r->n_text);
            memcpy(r->text + r->n_text, c.text, n);
            r->n_text += n;
            r->n_ids += c.n_ids;
            continue;
        }
        r->final = c;
        if (c.message) snprintf(r->msg, sizeof r->msg, "%s", c.message);
        break;
    }
}

static void chat_req(k2_completion_request *req, k2_chat_message *msg, const char *text, int32_t max_tokens) {
    k2_completion_request_init(req);
    memset(msg, 0, sizeof *msg);
    msg->role = "user";
    msg->content = text;
    req->messages = msg;
    req->n_messages = 1;
    req->sampling.temperature = 0;
    req->max_tokens = max_tokens;
    req->ignore_stop_tokens = true;
}

static void test_local_file_and_sharing(k2_runtime *rt, const char *path) {
    counts c1 = {0}, c2 = {0};
    k2_model_open_options o1 = opts_with(&c1), o2 = opts_with(&c2);
    /* two opens before either can finish: one load, one instance */
    k2_future *f1 = k2_model_open_async(rt, path, &o1);
    k2_future *f2 = k2_model_open_async(rt, path, &o2);
    CHECK(f1 && f2);
    CHECK(k2_future_wait(f1, 60000) == K2_OK);
    CHECK(k2_future_wait(f2, 60000) == K2_OK);
    k2_model *m1 = k2_model_open_result(f1), *m2 = k2_model_open_result(f2);
    CHECK(m1 && m1 == m2);
    CHECK_MSG(atomic_load(&c1.load) == 1 && atomic_load(&c2.load) == 1, "load events %d %d", atomic_load(&c1.load),
              atomic_load(&c2.load));
    CHECK(atomic_load(&c2.shared) == 1 && atomic_load(&c1.shared) == 0);
    CHECK(atomic_load(&c1.ready) == 1);
    /* references: two futures + two results */
    CHECK_MSG(model_refs_settled(m1, 4) == 4, "refs %d", model_refs(m1));
    k2_future_free(f1);
    k2_future_free(f2);
    CHECK(model_refs_settled(m1, 2) == 2);

    /* a folder holding the file opens the same instance; so does a later open */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/folder", k2t_tmpdir());
    mkdir(dir, 0755);
    char link[1100];
    snprintf(link, sizeof link, "%s/model.gguf", dir);
    CHECK(symlink(path, link) == 0);
    k2_error err;
    k2_model *m3 = NULL;
    CHECK_OK(k2_model_open(rt, dir, &o1, &m3, &err), &err);
    CHECK(m3 == m1);
    CHECK(model_refs_settled(m1, 3) == 3);

    /* completions through the model's own generator */
    const k2_tokenizer *tok = NULL;
    CHECK_OK(k2_model_get_tokenizer(m1, &tok, &err), &err);
    CHECK(tok && k2_tokenizer_n_vocab(tok) == 2048);
    k2_completion_request req;
    k2_chat_message msg;
    chat_req(&req, &msg, "Hello!", 8);
    k2_stream *s = NULL;
    CHECK_OK(k2_complete(m1, &req, &s, &err), &err);
    collected r;
    if (s) collect(s, &r);
    k2_stream_free(s);
    CHECK(r.final.type == K2_CHUNK_DONE && r.final.finish == K2_FINISH_LENGTH && r.n_ids == 8);

    /* many concurrent streams on the shared instance (2 slots): each as if alone */
    enum { N = 6 };
    k2_stream *ss[N];
    collected rs[N];
    for (int i = 0; i < N; i++) CHECK_OK(k2_complete(i % 2 ? m1 : m2, &req, &ss[i], &err), &err);
    for (int i = 0; i < N; i++) {
        collect(ss[i], &rs[i]);
        k2_stream_free(ss[i]);
        CHECK(rs[i].final.type == K2_CHUNK_DONE && rs[i].n_ids == 8);
        CHECK_MSG(strcmp(rs[i].text, r.text) == 0, "stream %d: '%s' vs '%s'", i, rs[i].text, r.text);
    }

    k2_model_free(m3);
    k2_model_free(m2);
    CHECK(model_refs_settled(m1, 1) == 1);
    k2_model_free(m1);
    /* all references gone: a new open loads again */
    counts c3 = {0};
    k2_model_open_options o3 = opts_with(&c3);
    k2_model *m4 = NULL;
    CHECK_OK(k2_model_open(rt, path, &o3, &m4, &err), &err);
    CHECK_MSG(atomic_load(&c3.load) == 1 && model_refs_settled(m4, 1) == 1, "loads %d refs %d", atomic_load(&c3.load), model_refs(m4));
    k2_model_free(m4);
    unlink(link);
}

static void test_tokenizer_override(k2_runtime *rt, const char *path) {
    k2_error err;
    counts c = {0};
    k2_model_open_options o = opts_with(&c);
    o.tokenizer = k2t_shared_path("fixtures/tokenizer/k2-tiny/tiktoken.model");
    char tok_path[1024];
    snprintf(tok_path, sizeof tok_path, "%s", o.tokenizer);
    o.tokenizer = tok_path;
    k2_model *m = NULL, *plain = NULL;
    CHECK_OK(k2_model_open(rt, path, &o, &m, &err), &err);
    if (!m) return;
    const k2_tokenizer *tok = NULL;
    CHECK_OK(k2_model_get_tokenizer(m, &tok, &err), &err);
    CHECK(tok && strcmp(k2_tokenizer_pre_name(tok), "kimi-k2") == 0);
    /* a different tokenizer source means a different instance */
    k2_model_open_options o2 = opts_with(&c);
    CHECK_OK(k2_model_open(rt, path, &o2, &plain, &err), &err);
    CHECK(plain && plain != m);
    /* same ids as the GGUF's own tokenizer, and the same greedy completion */
    const k2_tokenizer *gt = NULL;
    if (plain) CHECK_OK(k2_model_get_tokenizer(plain, &gt, &err), &err);
    if (tok && gt) {
        const char *text = "Hello! How are you today? <|im_end|> Привет";
        int32_t *a = NULL, *b = NULL;
        size_t na = 0, nb = 0;
        CHECK_OK(k2_tokenize(tok, text, strlen(text), K2_TOKENIZE_PARSE_SPECIAL, &a, &na, &err), &err);
        CHECK_OK(k2_tokenize(gt, text, strlen(text), K2_TOKENIZE_PARSE_SPECIAL, &b, &nb, &err), &err);
        CHECK(na == nb && na > 0 && memcmp(a, b, na * sizeof *a) == 0);
        free(a);
        free(b);
        k2_completion_request req;
        k2_chat_message msg;
        chat_req(&req, &msg, "Tell me about Paris.", 6);
        k2_stream *s1 = NULL, *s2 = NULL;
        collected r1, r2;
        CHECK_OK(k2_complete(m, &req, &s1, &err), &err);
        CHECK_OK(k2_complete(plain, &req, &s2, &err), &err);
        if (s1 && s2) {
            collect(s1, &r1);
            collect(s2, &r2);
            CHECK(r1.final.type == K2_CHUNK_DONE && r1.n_ids == 6 && strcmp(r1.text, r2.text) == 0);
        }
        k2_stream_free(s1);
        k2_stream_free(s2);
    }
    k2_model_free(plain);
    k2_model_free(m);

    /* a folder holding tiktoken.model + special_tokens.json works the same */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", k2t_shared_path("fixtures/tokenizer/k2-tiny"));
    o.tokenizer = dir;
    CHECK_OK(k2_model_open(rt, path, &o, &m, &err), &err);
    k2_model_free(m);

    /* a vocabulary of another model is refused, naming the mismatch */
    snprintf(dir, sizeof dir, "%s", k2t_shared_path("fixtures/tokenizer/kimi-pattern-128k/tiktoken.model"));
    o.tokenizer = dir;
    m = NULL;
    k2_status st = k2_model_open(rt, path, &o, &m, &err);
    CHECK(st == K2_EINVAL && m == NULL);
    CHECK_MSG(strstr(err.message, "vocabulary") && strstr(err.message, "2048"), "message: %s", err.message);
    fprintf(stderr, "refused tokenizer: %s\n", err.message);

    /* missing tokenizer file */
    o.tokenizer = "/nonexistent/tiktoken.model";
    st = k2_model_open(rt, path, &o, &m, &err);
    CHECK(st == K2_ENOTFOUND && strstr(err.message, "/nonexistent/tiktoken.model"));
}

static void test_errors_as_chunks(k2_runtime *rt, const char *path) {
    k2_error err;
    k2_completion_request req;
    k2_chat_message msg;
    chat_req(&req, &msg, "Hi", 4);
    k2_model_open_options o = opts_with(&(counts){0});
    o.on_event = NULL;

    /* missing local file */
    k2_stream *s = NULL;
    collected r;
    CHECK_OK(k2_complete_ref(rt, "/nonexistent/model.gguf", &o, &req, &s, &err), &err);
    if (s) {
        collect(s, &r);
        CHECK(r.final.type == K2_CHUNK_ERROR && r.final.stage == K2_STAGE_LOAD && r.final.status == K2_ENOTFOUND);
        CHECK(strstr(r.msg, "/nonexistent/model.gguf") != NULL);
        k2_stream_free(s);
    }

    /* a corrupt GGUF: the first half of the real file */
    char bad[1024];
    snprintf(bad, sizeof bad, "%s/corrupt.gguf", k2t_tmpdir());
    char *data = NULL;
    size_t size = 0;
    CHECK_OK(k2_read_file(path, &data, &size, &err), &err);
    FILE *f = fopen(bad, "wb");
    if (f && data) {
        fwrite(data, 1, size / 2, f);
        fclose(f);
    }
    free(data);
    s = NULL;
    CHECK_OK(k2_complete_ref(rt, bad, &o, &req, &s, &err), &err);
    if (s) {
        collect(s, &r);
        CHECK_MSG(r.final.type == K2_CHUNK_ERROR && r.final.stage == K2_STAGE_LOAD, "type %d stage %d", r.final.type,
                  r.final.stage);
        CHECK_MSG(strstr(r.msg, "corrupt.gguf") != NULL, "message: %s", r.msg);
        fprintf(stderr, "corrupt GGUF: %s: %s\n", k2_status_name(r.final.status), r.msg);
        k2_stream_free(s);
    }

    /* a context overflow is an ERROR chunk at stage prompt */
    o.generator.context.n_ctx = 8;
    k2_completion_request big;
    k2_chat_message bm;
    chat_req(&big, &bm, "This prompt is far longer than eight tokens, so it cannot fit.", 4);
    s = NULL;
    CHECK_OK(k2_complete_ref(rt, path, &o, &big, &s, &err), &err);
    if (s) {
        collect(s, &r);
        CHECK(r.final.type == K2_CHUNK_ERROR && r.final.stage == K2_STAGE_PROMPT && r.final.status == K2_ERANGE);
        k2_stream_free(s);
    }

    /* a stop id outside the model's vocabulary: known only once the model is open */
    int32_t far_id = 5000;
    k2_completion_request badreq = req;
    badreq.stop_ids = &far_id;
    badreq.n_stop_ids = 1;
    o.generator.context.n_ctx = 256;
    s = NULL;
    CHECK_OK(k2_complete_ref(rt, path, &o, &badreq, &s, &err), &err);
    if (s) {
        collect(s, &r);
        CHECK_MSG(r.final.type == K2_CHUNK_ERROR && r.final.stage == K2_STAGE_PROMPT && strstr(r.msg, "stop_ids"),
                  "type %d stage %d: %s", r.final.type, r.final.stage, r.msg);
        k2_stream_free(s);
    }

    /* success through the same path */
    o.generator.context.n_ctx = 256;
    s = NULL;
    CHECK_OK(k2_complete_ref(rt, path, &o, &req, &s, &err), &err);
    if (s) {
        collect(s, &r);
        CHECK_MSG(r.final.type == K2_CHUNK_DONE && r.final.finish == K2_FINISH_LENGTH && r.n_ids == 4,
                  "type %d finish %d ids %zu: %s", r.final.type, r.final.finish, (size_t)r.n_ids, r.msg);
        k2_stream_free(s);
    }

    /* cancelled mid-stream: DONE / cancelled within a token or so */
    k2_completion_request lng;
    k2_chat_message lm;
    chat_req(&lng, &lm, "Write a long story.", 200);
    o.generator.context.n_ctx = 1024;
    s = NULL;
    CHECK_OK(k2_complete_ref(rt, path, &o, &lng, &s, &err), &err);
    if (s) {
        k2_chunk c;
        int deltas = 0;
        while (k2_stream_next(s, 60000, &c) == K2_OK && c.type == K2_CHUNK_DELTA)
            if (++deltas == 3) k2_stream_cancel(s);
        CHECK_MSG(c.type == K2_CHUNK_DONE && c.finish == K2_FINISH_CANCELLED, "type %d finish %d", c.type, c.finish);
        /* the producer may run ahead of this reader: it stops soon, not after exactly 3 */
        CHECK_MSG(c.usage.completion_tokens < 200, "generated %u despite the cancel", c.usage.completion_tokens);
        k2_stream_free(s);
    }

    /* freeing the stream at once (cancel while opening): nothing leaks or hangs */
    s = NULL;
    CHECK_OK(k2_complete_ref(rt, path, &o, &req, &s, &err), &err);
    k2_stream_free(s);
}

static void test_cancel_open(k2_runtime *rt, const char *path) {
    /* one of two waiters cancels: the other still gets the model */
    k2_model_open_options o = opts_with(&(counts){0});
    o.on_event = NULL;
    k2_future *a = k2_model_open_async(rt, path, &o);
    k2_future *b = k2_model_open_async(rt, path, &o);
    k2_future_cancel(a);
    CHECK(k2_future_wait(b, 60000) == K2_OK);
    k2_status sa = k2_future_wait(a, 60000);
    CHECK(sa == K2_ECANCELLED || sa == K2_OK);
    k2_model *m = k2_model_open_result(b);
    CHECK(m != NULL);
    k2_model_free(m);
    k2_future_free(a);
    k2_future_free(b);
}


/* ---- Hub references through scripts/hubserver.py ---- */

static pid_t start_hub(const char *root, char *endpoint, size_t cap) {
    const char *py = getenv("K2_PYTHON"), *src = getenv("K2_SOURCE_DIR");
    if (!py || !src || access(py, X_OK) != 0) return -1;
    char script[1024], pf[1024];
    snprintf(script, sizeof script, "%s/scripts/hubserver.py", src);
    snprintf(pf, sizeof pf, "%s/hubports.json", k2t_tmpdir());
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(py, py, script, "--root", root, "--port", "0", "--port-file", pf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 400; i++) {
        char *doc = NULL;
        size_t n = 0;
        if (k2_read_file(pf, &doc, &n, NULL) == K2_OK) {
            const char *e = strstr(doc, "\"endpoint\": \"");
            const char *v = e ? e + 13 : NULL, *q = v ? strchr(v, '"') : NULL;
            if (q) {
                snprintf(endpoint, cap, "%.*s", (int)(q - v), v);
                free(doc);
                return pid;
            }
            free(doc);
        }
        usleep(25000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void test_hub(k2_runtime *rt, const char *path) {
    char root[1024], repo[1100], link[1200], ep[256], cache[1024];
    snprintf(root, sizeof root, "%s/hub", k2t_tmpdir());
    snprintf(repo, sizeof repo, "%s/k2test/k2-tiny-GGUF", root);
    snprintf(cache, sizeof cache, "%s/hfcache", k2t_tmpdir());
    char org[1100];
    snprintf(org, sizeof org, "%s/k2test", root);
    mkdir(root, 0755);
    mkdir(org, 0755);
    mkdir(repo, 0755);
    snprintf(link, sizeof link, "%s/k2-tiny-F32.gguf", repo);
    CHECK(symlink(path, link) == 0);
    pid_t hub = start_hub(root, ep, sizeof ep);
    if (hub < 0) {
        fprintf(stderr, "note: no hubserver (K2_PYTHON / K2_SOURCE_DIR unset): Hub opens not tested here\n");
        return;
    }
    counts c1 = {0}, c2 = {0};
    k2_model_open_options o1 = opts_with(&c1), o2 = opts_with(&c2);
    o1.hub.endpoint = o2.hub.endpoint = ep;
    o1.hub.cache_dir = o2.hub.cache_dir = cache;
    const char *ref = "k2test/k2-tiny-GGUF:F32";
    k2_future *f1 = k2_model_open_async(rt, ref, &o1);
    k2_future *f2 = k2_model_open_async(rt, ref, &o2);
    CHECK(k2_future_wait(f1, 120000) == K2_OK);
    CHECK(k2_future_wait(f2, 120000) == K2_OK);
    if (k2_future_state_of(f1) != K2_FUTURE_DONE) fprintf(stderr, "hub open: %s\n", k2_future_error(f1)->message);
    k2_model *a = k2_model_open_result(f1), *b = k2_model_open_result(f2);
    CHECK(a && a == b);
    CHECK(atomic_load(&c1.download) > 0 && atomic_load(&c1.load) == 1 && atomic_load(&c2.load) == 1);
    CHECK(atomic_load(&c2.shared) == 1);
    k2_future_free(f1);
    k2_future_free(f2);
    k2_error err;
    /* the snapshot file it resolved to is the same instance */
    if (a) {
        char snap[2048];
        snprintf(snap, sizeof snap, "%s", k2_gguf_shard_path(k2_model_gguf(a), 0));
        CHECK_MSG(strstr(snap, "/snapshots/") != NULL, "path %s", snap);
        k2_model *c = NULL;
        CHECK_OK(k2_model_open(rt, snap, &o1, &c, &err), &err);
        CHECK(c == a);
        k2_model_free(c);
        k2_model_free(a);
        k2_model_free(b);
        /* opened locally first, the Hub reference (from the cache) joins it */
        k2_model *l = NULL, *h = NULL;
        CHECK_OK(k2_model_open(rt, snap, &o1, &l, &err), &err);
        CHECK_OK(k2_model_open(rt, ref, &o1, &h, &err), &err);
        CHECK(l && l == h);
        k2_model_free(h);
        k2_model_free(l);
    }
    /* a missing repository: a download-stage error naming it */
    k2_model *m = NULL;
    k2_status st = k2_model_open(rt, "k2test/no-such-repo", &o1, &m, &err);
    CHECK_MSG(st != K2_OK && m == NULL && strstr(err.message, "no-such-repo"), "%s: %s", k2_status_name(st),
              err.message);
    kill(hub, SIGTERM);
    waitpid(hub, NULL, 0);
}

int main(void) {
    k2t_require_shared();
    char path[1024];
    snprintf(path, sizeof path, "%s", k2t_shared_path("fixtures/models/k2-tiny-f32.gguf"));
    k2_runtime *rt = NULL;
    k2_error err;
    CHECK_OK(k2_runtime_new(NULL, &rt, &err), &err);
    if (!rt) return k2t_finish("test_open");
    uint64_t t0 = k2_now_ns();
#define STEP(call) do { call; fprintf(stderr, "%-40s %.2f s\n", #call, (double)(k2_now_ns() - t0) / 1e9); t0 = k2_now_ns(); } while (0)
    STEP(test_local_file_and_sharing(rt, path));
    STEP(test_tokenizer_override(rt, path));
    STEP(test_errors_as_chunks(rt, path));
    STEP(test_cancel_open(rt, path));
    STEP(test_hub(rt, path));
#undef STEP
    /* plain k2_model_load models get a tokenizer and a generator on first use too */
    k2_model *m = NULL;
    CHECK_OK(k2_model_load(path, NULL, &m, &err), &err);
    if (m) {
        k2_completion_request req;
        k2_chat_message msg;
        chat_req(&req, &msg, "Hi", 3);
        k2_stream *s = NULL;
        CHECK_OK(k2_complete(m, &req, &s, &err), &err);
        collected r;
        if (s) collect(s, &r);
        k2_stream_free(s);
        CHECK(r.final.type == K2_CHUNK_DONE && r.n_ids == 3);
        k2_model_ref(m);
        k2_model_free(m);
        k2_model_free(m);
    }
    k2_runtime_free(rt);
    return k2t_finish("test_open");
}
