#define _GNU_SOURCE
/* The HTTP side on libmicrohttpd (spec/server-api.md §1, §4, §6.5).
 *
 * MHD runs its own polling threads. Handlers never wait for inference: an admitted
 * non-streaming request suspends its connection until the scheduler resumes it with the
 * finished body; a stream answers 200 at once with a chunked callback response whose
 * reader suspends the connection whenever no bytes are pending. A watchdog thread checks
 * every 100 ms whether the clients of admitted requests are still there (poll + MSG_PEEK,
 * as MHD does not watch suspended sockets), writes SSE keep-alive comments, and closes
 * connections whose request does not arrive within the read timeout (slowloris). */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct srv_conn {
    struct srv_conn *next, *prev;
    int fd;
    double t0;
    bool processing;
    int n_done;
    bool shut;
} srv_conn;

enum endpoint {
    EP_HEALTH = 0, EP_MODELS, EP_MODEL, EP_CHAT, EP_COMPL, EP_TOKENIZE, EP_DETOKENIZE, EP_METRICS, EP_APPLY, EP_OTHER
};

static const char *const EP_NAMES[] = {"/health",     "/v1/models", "/v1/models/{model}", "/v1/chat/completions",
                                       "/v1/completions", "/tokenize", "/detokenize", "/metrics", "/apply-template",
                                       "other"};

typedef struct http_req {
    int ep;
    char *model_arg;     /* EP_MODEL */
    sbuf body;
    bool too_large;
    bool answered;
    srv_job *job;
    int status;
    srv_conn *sc;
    char *api_key;
    double t0;
    char method[8];
} http_req;

/* ---- jobs ---- */

srv_job *job_new(srv *s) {
    srv_job *j = k2_calloc(1, sizeof *j);
    if (!j) abort();
    atomic_init(&j->refs, 1);
    j->s = s;
    j->fd = -1;
    j->fail_after = -1;
    j->key_index = -1;
    pthread_mutex_init(&j->mu, NULL);
    return j;
}

srv_job *job_ref(srv_job *j) {
    atomic_fetch_add(&j->refs, 1);
    return j;
}

void job_unref(srv_job *j) {
    if (!j || atomic_fetch_sub(&j->refs, 1) != 1) return;
    if (j->key_index >= 0) {
        pthread_mutex_lock(&j->s->m.mu);
        j->s->key_active[j->key_index]--;
        pthread_mutex_unlock(&j->s->m.mu);
    }
    free(j->prompt);
    free(j->bias);
    for (size_t i = 0; i < j->n_stop; i++) free(j->stop[i]);
    free(j->stop);
    free(j->forced_id);
    free(j->forced_name);
    for (size_t i = 0; i < j->n_pieces; i++) free(j->pieces[i].bytes);
    free(j->pieces);
    free(j->api_key);
    for (size_t i = j->lp_head; i < j->lp_n; i++) free(j->lp_q[i].bytes);
    free(j->lp_q);
    if (j->lp_acc) json_decref(j->lp_acc);
    sbuf_free(&j->out);
    if (j->sampler) k2_sampler_free(j->sampler);
    textbuf_free(&j->text);
    kimi_free(&j->parser);
    sbuf_free(&j->content);
    sbuf_free(&j->reasoning);
    for (size_t i = 0; i < j->n_calls_acc; i++) {
        free(j->calls[i].id);
        free(j->calls[i].name);
        sbuf_free(&j->calls[i].args);
    }
    free(j->calls);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

void job_wake_locked(srv_job *j) {
    if (j->suspended && j->conn) {
        j->suspended = false;
        MHD_resume_connection(j->conn);
    }
}

void job_emit(srv_job *j, const char *data, size_t n, bool final) {
    pthread_mutex_lock(&j->mu);
    if (!j->out_final) {
        if (!j->gone) sbuf_put(&j->out, data, n);
        if (final) j->out_final = true;
        job_wake_locked(j);
    }
    pthread_mutex_unlock(&j->mu);
}

void job_finish_body(srv_job *j, int status, char *body) {
    pthread_mutex_lock(&j->mu);
    if (!j->out_final) {
        j->out.len = 0;
        sbuf_puts(&j->out, body);
        j->final_status = status;
        j->out_final = true;
        job_wake_locked(j);
    }
    pthread_mutex_unlock(&j->mu);
    free(body);
}

void live_add(srv *s, srv_job *j) {
    pthread_mutex_lock(&s->live_mu);
    if (s->n_live == s->cap_live) {
        size_t cap = s->cap_live ? s->cap_live * 2 : 32;
        srv_job **n = realloc(s->live, cap * sizeof *n);
        if (!n) abort();
        s->live = n;
        s->cap_live = cap;
    }
    s->live[s->n_live++] = j;
    pthread_mutex_unlock(&s->live_mu);
}

void live_remove(srv *s, srv_job *j) {
    pthread_mutex_lock(&s->live_mu);
    for (size_t i = 0; i < s->n_live; i++)
        if (s->live[i] == j) {
            s->live[i] = s->live[--s->n_live];
            break;
        }
    pthread_mutex_unlock(&s->live_mu);
}

static void count_cancel(srv *s, int reason) {
    pthread_mutex_lock(&s->m.mu);
    s->m.cancelled[reason == CR_WRITE_TIMEOUT ? 1 : reason == CR_SHUTDOWN ? 2 : 0]++;
    pthread_mutex_unlock(&s->m.mu);
}

/* j->mu held. Returns true if this call cancelled it. */
static bool cancel_locked(srv_job *j, int reason) {
    if (j->out_final || atomic_load(&j->cancelled)) return false;
    atomic_store(&j->cancel_reason, reason);
    atomic_store(&j->cancelled, true);
    return true;
}

/* ---- responses ---- */

static void add_common_headers(srv *s, struct MHD_Response *resp) {
    if (s->o.cors_origin) MHD_add_response_header(resp, "Access-Control-Allow-Origin", s->o.cors_origin);
}

static enum MHD_Result send_reply(srv *s, struct MHD_Connection *c, http_req *r, api_reply *rep, const char *req_id,
                                  bool close) {
    const char *body = rep->body ? rep->body : "";
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
    free(rep->body);
    rep->body = NULL;
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", rep->content_type ? rep->content_type : "application/json");
    char rid[40];
    if (!req_id) {
        memcpy(rid, "req-", 4);
        srv_rand_alnum(rid + 4, 24);
        req_id = rid;
    }
    MHD_add_response_header(resp, "x-request-id", req_id);
    if (rep->retry_after > 0) {
        char ra[16];
        snprintf(ra, sizeof ra, "%d", rep->retry_after);
        MHD_add_response_header(resp, "Retry-After", ra);
    }
    if (rep->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (rep->status == 500) MHD_add_response_header(resp, "x-should-retry", "false");
    add_common_headers(s, resp);
    if (close) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    r->status = rep->status;
    r->answered = true;
    return ret;
}

static enum MHD_Result send_error(srv *s, struct MHD_Connection *c, http_req *r, int status, const char *code,
                                  const char *param, const char *msg, bool close) {
    srv_error e;
    srv_fail(&e, status, code, param, "%s", msg);
    api_reply rep = {0};
    api_error_reply(&rep, &e);
    if (status == 503 && code && strcmp(code, "model_load_failed") == 0) rep.retry_after = 0;
    return send_reply(s, c, r, &rep, NULL, close);
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    srv_job *j = cls;
    (void)pos;
    pthread_mutex_lock(&j->mu);
    if (atomic_load(&j->cancelled) && !j->out_final) {
        pthread_mutex_unlock(&j->mu);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    size_t avail = j->out.len - j->out_pos;
    if (avail) {
        size_t n = K2_MIN(avail, max);
        memcpy(buf, j->out.p + j->out_pos, n);
        j->out_pos += n;
        if (j->out_pos == j->out.len) j->out.len = j->out_pos = 0;
        j->t_last_write = srv_now();
        pthread_mutex_unlock(&j->mu);
        return (ssize_t)n;
    }
    if (j->out_final) {
        pthread_mutex_unlock(&j->mu);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    j->suspended = true;
    MHD_suspend_connection(j->conn);
    pthread_mutex_unlock(&j->mu);
    return 0;
}

static void stream_free(void *cls) { job_unref(cls); }

/* ---- auth ---- */

static bool ct_equal(const char *a, size_t al, const char *b, size_t bl) {
    size_t n = K2_MAX(al, bl);
    unsigned diff = (unsigned)(al ^ bl);
    for (size_t i = 0; i < n; i++) {
        unsigned char x = i < al ? (unsigned char)a[i] : 0, y = i < bl ? (unsigned char)b[i] : 0;
        diff |= (unsigned)(x ^ y);
    }
    return diff == 0;
}

/* NULL when keys are configured and none matches; else the key (or "" without keys). */
static const char *check_auth(srv *s, struct MHD_Connection *c, bool *ok) {
    *ok = true;
    if (!s->n_keys) return NULL;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    const char *key = NULL;
    size_t kl = 0;
    if (h) {
        while (*h == ' ' || *h == '\t') h++;
        if (strncasecmp(h, "bearer", 6) == 0 && (h[6] == ' ' || h[6] == '\t')) {
            key = h + 6;
            while (*key == ' ' || *key == '\t') key++;
            kl = strlen(key);
            while (kl && (key[kl - 1] == ' ' || key[kl - 1] == '\t')) kl--;
        }
    }
    if (!key) {
        key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Api-Key");
        if (key) kl = strlen(key);
    }
    bool match = false;
    const char *matched = NULL;
    for (size_t i = 0; i < s->n_keys; i++) {
        bool m = key && ct_equal(key, kl, s->keys[i], strlen(s->keys[i]));
        if (m && !match) matched = s->keys[i];
        match |= m;
    }
    *ok = match;
    return matched;
}

/* ---- routing ---- */

static int route(const char *url, char **model_arg) {
    size_t n = strlen(url);
    char path[512];
    if (n >= sizeof path) return EP_OTHER;
    memcpy(path, url, n + 1);
    if (n > 1 && path[n - 1] == '/') path[--n] = 0;
    if (strcmp(path, "/health") == 0) return EP_HEALTH;
    if (strcmp(path, "/v1/models") == 0 || strcmp(path, "/models") == 0) return EP_MODELS;
    if (strncmp(path, "/v1/models/", 11) == 0 && path[11]) {
        *model_arg = k2_strdup(path + 11);
        return EP_MODEL;
    }
    if (strcmp(path, "/v1/chat/completions") == 0 || strcmp(path, "/chat/completions") == 0) return EP_CHAT;
    if (strcmp(path, "/v1/completions") == 0 || strcmp(path, "/completions") == 0) return EP_COMPL;
    if (strcmp(path, "/tokenize") == 0) return EP_TOKENIZE;
    if (strcmp(path, "/detokenize") == 0) return EP_DETOKENIZE;
    if (strcmp(path, "/metrics") == 0) return EP_METRICS;
    if (strcmp(path, "/apply-template") == 0) return EP_APPLY;
    return EP_OTHER;
}

static bool ep_is_post(int ep) {
    return ep == EP_CHAT || ep == EP_COMPL || ep == EP_TOKENIZE || ep == EP_DETOKENIZE || ep == EP_APPLY;
}

static bool has_body(struct MHD_Connection *c) {
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return (cl && strtoull(cl, NULL, 10) > 0) || te;
}

/* ---- the access handler ---- */

static enum MHD_Result admitted(srv *s, struct MHD_Connection *c, http_req *r, srv_job *j) {
    r->job = j;
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    pthread_mutex_lock(&j->mu);
    j->conn = c;
    j->fd = ci ? ci->connect_fd : -1;
    pthread_mutex_unlock(&j->mu);
    live_add(s, j);
    if (j->stream) {
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, job_ref(j), stream_free);
        if (!resp) {
            job_unref(j);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream; charset=utf-8");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no");
        MHD_add_response_header(resp, "x-request-id", j->id);
        add_common_headers(s, resp);
        enum MHD_Result ret = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        r->status = 200;
        r->answered = true;
        return ret;
    }
    pthread_mutex_lock(&j->mu);
    if (!j->out_final) {
        j->suspended = true;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&j->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&j->mu);
    return MHD_YES;   /* answered below on the next call */
}

static enum MHD_Result finish_job_reply(srv *s, struct MHD_Connection *c, http_req *r) {
    srv_job *j = r->job;
    pthread_mutex_lock(&j->mu);
    if (!j->out_final) {
        if (atomic_load(&j->cancelled)) {
            pthread_mutex_unlock(&j->mu);
            return MHD_NO;
        }
        j->suspended = true;
        MHD_suspend_connection(c);
        pthread_mutex_unlock(&j->mu);
        return MHD_YES;
    }
    api_reply rep = {0};
    rep.status = j->final_status;
    rep.body = k2_strndup(j->out.p ? j->out.p : "", j->out.len);
    rep.content_type = "application/json";
    if (rep.status == 503) rep.retry_after = 1;
    pthread_mutex_unlock(&j->mu);
    return send_reply(s, c, r, &rep, j->id, false);
}

static enum MHD_Result dispatch(srv *s, struct MHD_Connection *c, http_req *r) {
    api_reply rep = {0};
    const char *body = r->body.p ? r->body.p : "";
    size_t len = r->body.len;
    switch (r->ep) {
    case EP_HEALTH: api_health(s, &rep); break;
    case EP_MODELS: api_models(s, NULL, &rep); break;
    case EP_MODEL: api_models(s, r->model_arg, &rep); break;
    case EP_TOKENIZE: api_tokenize(s, body, len, &rep); break;
    case EP_DETOKENIZE: api_detokenize(s, body, len, &rep); break;
    case EP_APPLY: api_apply_template(s, body, len, &rep); break;
    case EP_METRICS:
        rep.status = 200;
        rep.body = metrics_render(s);
        rep.content_type = "text/plain; version=0.0.4; charset=utf-8";
        break;
    case EP_CHAT:
    case EP_COMPL:
        api_completion(s, r->ep == EP_CHAT, body, len, r->api_key, &rep);
        if (rep.job) {
            enum MHD_Result ret = admitted(s, c, r, rep.job);
            if (ret == MHD_YES && !rep.job->stream && !r->answered) {
                pthread_mutex_lock(&rep.job->mu);
                bool ready = rep.job->out_final && !rep.job->suspended;
                pthread_mutex_unlock(&rep.job->mu);
                if (ready) return finish_job_reply(s, c, r);
            }
            return ret;
        }
        break;
    default: break;
    }
    return send_reply(s, c, r, &rep, NULL, false);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    srv *s = cls;
    (void)version;
    http_req *r = *con_cls;
    if (!r) {
        r = k2_calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        *con_cls = r;
        r->t0 = srv_now();
        snprintf(r->method, sizeof r->method, "%s", method);
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        r->sc = ci ? ci->socket_context : NULL;
        r->ep = route(url, &r->model_arg);
        bool body = has_body(c);
        if (strcmp(method, "OPTIONS") == 0 && s->o.cors_origin) {
            struct MHD_Response *resp = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
            MHD_add_response_header(resp, "Access-Control-Allow-Origin", s->o.cors_origin);
            MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
            MHD_add_response_header(resp, "Access-Control-Allow-Headers", "Authorization, Content-Type");
            enum MHD_Result ret = MHD_queue_response(c, 204, resp);
            MHD_destroy_response(resp);
            r->status = 204;
            r->answered = true;
            return ret;
        }
        if (r->ep == EP_OTHER || (r->ep == EP_METRICS && !s->o.metrics))
            return send_error(s, c, r, 404, "unknown_url", NULL, "Unknown URL.", body);
        bool post = ep_is_post(r->ep);
        if ((post && strcmp(method, "POST") != 0) || (!post && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)) {
            srv_error e;
            srv_fail(&e, 405, "method_not_allowed", NULL, "Method %s is not allowed here.", method);
            api_reply rep = {0};
            api_error_reply(&rep, &e);
            struct MHD_Response *resp =
                MHD_create_response_from_buffer(strlen(rep.body), rep.body, MHD_RESPMEM_MUST_FREE);
            MHD_add_response_header(resp, "Content-Type", "application/json");
            MHD_add_response_header(resp, "Allow", post ? "POST" : "GET");
            if (body) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
            enum MHD_Result ret = MHD_queue_response(c, 405, resp);
            MHD_destroy_response(resp);
            r->status = 405;
            r->answered = true;
            return ret;
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body_bytes)
            return send_error(s, c, r, 413, "request_too_large", NULL, "The request body is too large.", true);
        if (r->ep != EP_HEALTH) {
            bool ok;
            const char *key = check_auth(s, c, &ok);
            if (!ok) return send_error(s, c, r, 401, "invalid_api_key", NULL, "Invalid API key.", body);
            if (key) r->api_key = k2_strdup(key);
            int st = atomic_load(&s->state);
            if (st != SRV_READY && r->ep != EP_METRICS) {
                if (st == SRV_LOADING) {
                    pthread_mutex_lock(&s->m.mu);
                    s->m.rejected[REJ_LOADING]++;
                    pthread_mutex_unlock(&s->m.mu);
                    return send_error(s, c, r, 503, "model_loading", NULL, "The model is loading.", body);
                }
                if (st == SRV_SHUTTING_DOWN)
                    return send_error(s, c, r, 503, "shutting_down", NULL, "The server is shutting down.", body);
                char msg[K2_ERROR_MESSAGE_MAX + 64];
                snprintf(msg, sizeof msg, "The model failed to load: %s", s->load_err.message);
                return send_error(s, c, r, 503, "model_load_failed", NULL, msg, body);
            }
        }
        return MHD_YES;
    }
    if (r->answered && !r->job) {
        *upload_size = 0;   /* an early error was queued: the body is discarded */
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_large) {
            if (r->body.len + *upload_size > s->o.max_body_bytes) {
                r->too_large = true;
                sbuf_free(&r->body);
            } else {
                sbuf_put(&r->body, upload, *upload_size);
            }
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (r->job) return finish_job_reply(s, c, r);
    if (r->sc) { /* under conn_mu: the watchdog reads it (ThreadSanitizer) */
        pthread_mutex_lock(&s->conn_mu);
        r->sc->processing = true;
        pthread_mutex_unlock(&s->conn_mu);
    }
    if (r->too_large) return send_error(s, c, r, 413, "request_too_large", NULL, "The request body is too large.", true);
    return dispatch(s, c, r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    srv *s = cls;
    (void)c;
    http_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (r->job) {
        srv_job *j = r->job;
        live_remove(s, j);
        pthread_mutex_lock(&j->mu);
        j->conn = NULL;
        j->gone = true;
        j->suspended = false;
        bool now_cancelled = cancel_locked(j, CR_CLIENT);
        pthread_mutex_unlock(&j->mu);
        if (now_cancelled) {
            count_cancel(s, CR_CLIENT);
            sched_wake(s);
        }
        job_unref(j);
    }
    if (r->status) metrics_http(s, EP_NAMES[r->ep], r->status);
    if (!s->o.quiet)
        srv_log(s, "%s %s %d %.1f ms%s", r->method, EP_NAMES[r->ep], r->status, (srv_now() - r->t0) * 1e3,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection closed)");
    pthread_mutex_lock(&s->conn_mu);
    if (r->sc) {
        r->sc->processing = false;
        r->sc->n_done++;
        r->sc->t0 = srv_now();
    }
    pthread_mutex_unlock(&s->conn_mu);
    sbuf_free(&r->body);
    free(r->model_arg);
    free(r->api_key);
    free(r);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    srv *s = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        srv_conn *sc = k2_calloc(1, sizeof *sc);
        if (!sc) return;
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        sc->fd = ci ? ci->connect_fd : -1;
        sc->t0 = srv_now();
        if (sc->fd >= 0) {
            int one = 1;
            setsockopt(sc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        pthread_mutex_lock(&s->conn_mu);
        sc->next = s->conns;
        if (s->conns) s->conns->prev = sc;
        s->conns = sc;
        pthread_mutex_unlock(&s->conn_mu);
        *socket_context = sc;
    } else if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        srv_conn *sc = *socket_context;
        if (!sc) return;
        pthread_mutex_lock(&s->conn_mu);
        if (sc->prev) sc->prev->next = sc->next;
        else s->conns = sc->next;
        if (sc->next) sc->next->prev = sc->prev;
        pthread_mutex_unlock(&s->conn_mu);
        free(sc);
        *socket_context = NULL;
    }
}

/* ---- watchdog ---- */

static bool client_gone(int fd) {
    if (fd < 0) return false;
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLRDHUP};
    int n = poll(&p, 1, 0);
    if (n <= 0) return false;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
    if (p.revents & POLLIN) {
        char b;
        ssize_t k = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (k == 0) return true;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return true;
    }
    return false;
}

static void *watchdog_main(void *arg) {
    srv *s = arg;
    while (!atomic_load(&s->watchdog_stop)) {
        usleep(100 * 1000);
        double now = srv_now();
        pthread_mutex_lock(&s->live_mu);
        for (size_t i = 0; i < s->n_live; i++) {
            srv_job *j = s->live[i];
            pthread_mutex_lock(&j->mu);
            int reason = CR_NONE;
            if (j->conn && !j->out_final) {
                if (client_gone(j->fd)) reason = CR_CLIENT;
                else if (j->stream && j->out.len - j->out_pos > s->o.max_stream_buffer) reason = CR_WRITE_TIMEOUT;
                else if (j->stream && j->out.len > j->out_pos && !j->suspended && s->o.write_timeout_s > 0 &&
                         now - j->t_last_write > s->o.write_timeout_s)
                    reason = CR_WRITE_TIMEOUT;
            }
            if (reason != CR_NONE) {
                if (cancel_locked(j, reason)) {
                    count_cancel(s, reason);
                    sched_wake(s);
                }
                job_wake_locked(j);
            } else if (j->conn && j->stream && !j->out_final && s->o.sse_keepalive_s > 0 && j->out.len == j->out_pos &&
                       now - j->t_last_write >= s->o.sse_keepalive_s) {
                static const char ka[] = ": keep-alive\n\n";
                sbuf_put(&j->out, ka, sizeof ka - 1);
                j->t_last_write = now;
                job_wake_locked(j);
            }
            pthread_mutex_unlock(&j->mu);
        }
        pthread_mutex_unlock(&s->live_mu);
        pthread_mutex_lock(&s->conn_mu);
        for (srv_conn *sc = s->conns; sc; sc = sc->next) {
            if (sc->processing || sc->shut || sc->fd < 0) continue;
            double limit = sc->n_done ? s->o.keepalive_timeout_s : s->o.read_timeout_s;
            if (limit > 0 && now - sc->t0 > limit) {
                shutdown(sc->fd, SHUT_RDWR);
                sc->shut = true;
            }
        }
        pthread_mutex_unlock(&s->conn_mu);
    }
    return NULL;
}

/* ---- start / stop ---- */

k2_status http_start(srv *s, k2_error *err) {
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    char port[16];
    snprintf(port, sizeof port, "%d", s->o.port);
    int rc = getaddrinfo(s->o.host, port, &hints, &ai);
    if (rc != 0 || !ai) return k2_err(err, K2_EINVAL, "server: cannot resolve host '%s': %s", s->o.host, gai_strerror(rc));
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    bool v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    unsigned flags = MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_ALLOW_SUSPEND_RESUME;
    if (v6) flags |= MHD_USE_IPv6;
    unsigned timeout = (unsigned)K2_MAX(s->o.keepalive_timeout_s, s->o.read_timeout_s);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)s->o.port, NULL, NULL, on_request, s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(96 * 1024),
        MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr, MHD_OPTION_END);
    if (!d) return k2_err(err, K2_EIO, "server: cannot listen on %s:%d (address in use or not permitted)", s->o.host, s->o.port);
    s->daemon = d;
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : s->o.port;
    atomic_store(&s->watchdog_stop, false);
    if (pthread_create(&s->watchdog, NULL, watchdog_main, s) == 0) s->watchdog_started = true;
    return K2_OK;
}

void http_stop(srv *s) {
    if (!s->daemon) return;
    /* Every admitted job is final by now; resume whatever is suspended so MHD can finish. */
    for (int round = 0; round < 50; round++) {
        pthread_mutex_lock(&s->live_mu);
        size_t n = s->n_live;
        for (size_t i = 0; i < s->n_live; i++) {
            srv_job *j = s->live[i];
            pthread_mutex_lock(&j->mu);
            if (!j->out_final && cancel_locked(j, CR_SHUTDOWN)) count_cancel(s, CR_SHUTDOWN);
            job_wake_locked(j);
            pthread_mutex_unlock(&j->mu);
        }
        pthread_mutex_unlock(&s->live_mu);
        if (!n) break;
        usleep(20 * 1000);
    }
    atomic_store(&s->watchdog_stop, true);
    if (s->watchdog_started) pthread_join(s->watchdog, NULL);
    s->watchdog_started = false;
    MHD_stop_daemon(s->daemon);
    s->daemon = NULL;
}
