/* libcurl's multi interface driven by the runtime's libuv loop (spec/hub.md
 * Appendix A): CURLMOPT_SOCKETFUNCTION maps curl sockets to uv_poll handles,
 * CURLMOPT_TIMERFUNCTION to a uv_timer; every callback runs on the loop thread.
 * Redirects are never followed by curl: the caller decides per §1.5/§2. */
#include "hub/hub.h"
#include "base/base.h"

#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct sock_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    hub_http *h;
    struct sock_ctx *prev, *next;
} sock_ctx;

struct hub_http {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    uv_timer_t reaper;
    sock_ctx socks;          /* sentinel */
    hub_req *reap_head;
    hub_req *active;         /* started, on_done not yet called */
    char *auth_header;
    int open_handles;
    bool closing;
    k2_task_fn closed;
    void *closed_user;
    int n_running;
};

static void check_multi(hub_http *h);

static void unlink_active(hub_req *r) {
    if (!r->http) return;
    if (r->aprev) r->aprev->anext = r->anext;
    else if (r->http->active == r) r->http->active = r->anext;
    if (r->anext) r->anext->aprev = r->aprev;
    r->aprev = r->anext = NULL;
}

void hub_http_cancel_all(hub_http *h) {
    for (hub_req *r = h->active; r; r = r->anext) hub_req_cancel(r);
}

static void finish_req(hub_req *r, CURLcode rc) {
    if (r->done_called) return;
    r->done_called = true;
    unlink_active(r);
    if (r->on_done) r->on_done(r, rc);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    sock_ctx *c = p->data;
    hub_http *h = c->h;
    int flags = 0;
    if (status < 0) flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(h->multi, c->fd, flags, &running);
    check_multi(h);
}

static void on_timer(uv_timer_t *t) {
    hub_http *h = t->data;
    int running;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_multi(h);
}

static void handle_closed(uv_handle_t *hd) {
    hub_http *h = hd->data;
    if (hd->type == UV_POLL) {
        h = ((sock_ctx *)hd->data)->h;
        free(hd->data);
    }
    h->open_handles--;
    if (h->closing && h->open_handles == 0) {
        k2_task_fn cb = h->closed;
        void *u = h->closed_user;
        free(h->auth_header);
        free(h);
        if (cb) cb(u);
    }
}

static void sock_close(hub_http *h, sock_ctx *c) {
    c->prev->next = c->next;
    c->next->prev = c->prev;
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, handle_closed);
    (void)h;
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp) {
    (void)e;
    hub_http *h = userp;
    sock_ctx *c = socketp;
    if (h->closing) return 0;   /* hub_http_close closes every poll handle itself */
    if (what == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(h->multi, s, NULL);
            sock_close(h, c);
        }
        return 0;
    }
    if (!c) {
        c = k2_calloc(1, sizeof *c);
        if (!c) return -1;
        c->fd = s;
        c->h = h;
        if (uv_poll_init_socket(h->loop, &c->poll, s) != 0) {
            free(c);
            return -1;
        }
        c->poll.data = c;
        h->open_handles++;
        c->next = h->socks.next;
        c->prev = &h->socks;
        h->socks.next->prev = c;
        h->socks.next = c;
        curl_multi_assign(h->multi, s, c);
    }
    int ev = 0;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) ev |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) ev |= UV_WRITABLE;
    uv_poll_start(&c->poll, ev, on_poll);
    return 0;
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp) {
    (void)m;
    hub_http *h = userp;
    if (timeout_ms < 0) uv_timer_stop(&h->timer);
    else uv_timer_start(&h->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static void check_multi(hub_http *h) {
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left))) {
        if (msg->msg != CURLMSG_DONE) continue;
        hub_req *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode rc = msg->data.result;
        curl_multi_remove_handle(h->multi, msg->easy_handle);
        h->n_running--;
        if (!r) continue;
        r->in_multi = false;
        if (r->status == 0) curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
        if (r->cancelled) rc = CURLE_ABORTED_BY_CALLBACK;
        finish_req(r, rc);
    }
}

/* Cancelled requests are removed from the multi handle outside curl callbacks. */
static void on_reap(uv_timer_t *t) {
    hub_http *h = t->data;
    while (h->reap_head) {
        hub_req *r = h->reap_head;
        h->reap_head = r->next_reap;
        r->next_reap = NULL;
        if (r->in_multi) {
            curl_multi_remove_handle(h->multi, r->easy);
            h->n_running--;
            r->in_multi = false;
        }
        finish_req(r, CURLE_ABORTED_BY_CALLBACK);
    }
}

static void curl_init_once(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

hub_http *hub_http_new(uv_loop_t *loop, const char *token, k2_error *err) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);   /* curl_global_init is not thread-safe */
    hub_http *h = k2_calloc(1, sizeof *h);
    if (!h) { k2_err(err, K2_ENOMEM, "out of memory"); return NULL; }
    h->loop = loop;
    h->socks.next = h->socks.prev = &h->socks;
    h->multi = curl_multi_init();
    if (!h->multi) { free(h); k2_err(err, K2_ENETWORK, "cannot create a curl multi handle"); return NULL; }
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, 32L);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 16L);
    /* HTTP/1.1: parallel ranges must use separate TCP connections (§6.3) */
    curl_multi_setopt(h->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
    uv_timer_init(loop, &h->timer);
    h->timer.data = h;
    uv_timer_init(loop, &h->reaper);
    h->reaper.data = h;
    h->open_handles = 2;
    if (token) h->auth_header = k2_asprintf("Authorization: Bearer %s", token);
    return h;
}

void hub_http_close(hub_http *h, k2_task_fn closed, void *user) {
    on_reap(&h->reaper);
    h->closing = true;
    h->closed = closed;
    h->closed_user = user;
    /* stop watching the sockets while their descriptors are still open, then let
     * curl close its cached connections (sock_cb ignores them from now on) */
    while (h->socks.next != &h->socks) sock_close(h, h->socks.next);
    curl_multi_cleanup(h->multi);
    h->multi = NULL;
    uv_timer_stop(&h->timer);
    uv_timer_stop(&h->reaper);
    uv_close((uv_handle_t *)&h->timer, handle_closed);
    uv_close((uv_handle_t *)&h->reaper, handle_closed);
}

hub_req *hub_req_new(const char *url) {
    hub_req *r = k2_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->url = k2_strdup(url);
    r->range_start = -1;
    r->range_end = -1;
    r->max_body = 64u << 20;
    return r;
}

static void clear_headers(hub_req *r) {
    for (size_t i = 0; i < r->n_hdrs; i++) {
        free(r->hdrs[i].name);
        free(r->hdrs[i].value);
    }
    free(r->hdrs);
    r->hdrs = NULL;
    r->n_hdrs = 0;
}

void hub_req_free(hub_req *r) {
    if (!r) return;
    if (r->in_multi && r->http && r->http->multi) {
        curl_multi_remove_handle(r->http->multi, r->easy);
        r->http->n_running--;
    }
    if (r->http) {
        /* drop from the reap list */
        for (hub_req **pp = &r->http->reap_head; *pp; pp = &(*pp)->next_reap)
            if (*pp == r) { *pp = r->next_reap; break; }
    }
    unlink_active(r);
    if (r->easy) curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->slist);
    clear_headers(r);
    free(r->body);
    free(r->url);
    free(r->redirect_abs);
    free(r);
}

static size_t header_fn(char *buf, size_t size, size_t nitems, void *u) {
    hub_req *r = u;
    size_t n = size * nitems;
    if (r->cancelled) return 0;
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* a new response (e.g. after 100 Continue): start over */
        clear_headers(r);
        r->headers_done = false;
        const char *sp = memchr(buf, ' ', n);
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        return n;
    }
    if (n <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
        if (r->status >= 100 && r->status < 200) return n;
        r->headers_done = true;
        if (r->on_response && !r->on_response(r)) {
            r->aborted = true;
            return 0;
        }
        return n;
    }
    const char *colon = memchr(buf, ':', n);
    if (!colon) return n;
    size_t nl = (size_t)(colon - buf);
    const char *v = colon + 1;
    const char *end = buf + n;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ')) end--;
    if (r->n_hdrs >= 256) return n;
    hub_header *nh = realloc(r->hdrs, (r->n_hdrs + 1) * sizeof *nh);
    if (!nh) return 0;
    r->hdrs = nh;
    r->hdrs[r->n_hdrs].name = k2_strndup(buf, nl);
    r->hdrs[r->n_hdrs].value = k2_strndup(v, (size_t)(end - v));
    r->n_hdrs++;
    return n;
}

static size_t write_fn(char *data, size_t size, size_t nmemb, void *u) {
    hub_req *r = u;
    size_t n = size * nmemb;
    if (r->cancelled || r->aborted) return 0;
    if (r->on_body) {
        if (!r->on_body(r, data, n)) {
            r->aborted = true;
            return 0;
        }
        return n;
    }
    if (r->body_len + n > r->max_body) {
        r->aborted = true;
        return 0;
    }
    char *nb = realloc(r->body, r->body_len + n + 1);
    if (!nb) return 0;
    r->body = nb;
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return n;
}

k2_status hub_req_start(hub_http *h, hub_req *r, k2_error *err) {
    r->http = h;
    r->easy = curl_easy_init();
    if (!r->easy) return k2_err(err, K2_ENOMEM, "cannot create a curl handle");
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_UNRESTRICTED_AUTH, 0L);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "k2/" K2_VERSION " (hub client; libcurl)");
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_fn);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_fn);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->curl_error);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (r->head) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    if (r->timeout_ms > 0) curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    if (r->low_speed_time_s > 0) {
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, r->low_speed_time_s);
    }
    if (r->range_start >= 0) {
        char rg[64];
        if (r->range_end >= 0) snprintf(rg, sizeof rg, "%lld-%lld", (long long)r->range_start, (long long)r->range_end);
        else snprintf(rg, sizeof rg, "%lld-", (long long)r->range_start);
        curl_easy_setopt(e, CURLOPT_RANGE, rg);
    }
    /* never compressed (§1.6) */
    r->slist = curl_slist_append(r->slist, "Accept-Encoding: identity");
    if (r->auth && h->auth_header) r->slist = curl_slist_append(r->slist, h->auth_header);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->slist);
    CURLMcode mc = curl_multi_add_handle(h->multi, e);
    if (mc != CURLM_OK) return k2_err(err, K2_ENETWORK, "cannot start a transfer: %s", curl_multi_strerror(mc));
    r->in_multi = true;
    h->n_running++;
    r->anext = h->active;
    r->aprev = NULL;
    if (h->active) h->active->aprev = r;
    h->active = r;
    return K2_OK;
}

void hub_req_cancel(hub_req *r) {
    if (!r || r->cancelled || r->done_called) return;
    r->cancelled = true;
    hub_http *h = r->http;
    if (!h) return;
    r->next_reap = h->reap_head;
    h->reap_head = r;
    uv_timer_start(&h->reaper, on_reap, 0, 0);
}

const char *hub_req_header(const hub_req *r, const char *name) {
    for (size_t i = r->n_hdrs; i-- > 0;)
        if (strcasecmp(r->hdrs[i].name, name) == 0) return r->hdrs[i].value;
    return NULL;
}

const char *hub_req_redirect_url(hub_req *r) {
    if (r->status < 300 || r->status >= 400) return NULL;
    const char *loc = hub_req_header(r, "Location");
    if (!loc || !*loc) return NULL;
    /* resolve a relative Location against the request URL */
    CURLU *u = curl_url();
    if (!u) return NULL;
    char *abs = NULL;
    if (curl_url_set(u, CURLUPART_URL, r->url, 0) == CURLUE_OK &&
        curl_url_set(u, CURLUPART_URL, loc, 0) == CURLUE_OK)
        curl_url_get(u, CURLUPART_URL, &abs, 0);
    curl_url_cleanup(u);
    if (!abs) return NULL;
    free(r->redirect_abs);
    r->redirect_abs = k2_strdup(abs);
    curl_free(abs);
    return r->redirect_abs;
}

/* scheme://host:port with default ports filled in */
static bool origin_of(const char *url, char *out, size_t cap) {
    CURLU *u = curl_url();
    if (!u) return false;
    bool ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK;
    char *scheme = NULL, *host = NULL, *port = NULL;
    if (ok) ok = curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
                 curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
                 curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK;
    if (ok) {
        for (char *c = host; *c; c++) *c = (char)tolower((unsigned char)*c);
        snprintf(out, cap, "%s://%s:%s", scheme, host, port);
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return ok;
}

bool hub_url_origin(const char *url, char *out, size_t cap) { return origin_of(url, out, cap); }

bool hub_same_origin(const char *a, const char *b) {
    char oa[512], ob[512];
    return origin_of(a, oa, sizeof oa) && origin_of(b, ob, sizeof ob) && strcmp(oa, ob) == 0;
}

bool hub_is_https_downgrade(const char *from, const char *to) {
    return strncasecmp(from, "https:", 6) == 0 && strncasecmp(to, "https:", 6) != 0;
}

void hub_redact_url(const char *url, char *out, size_t cap) {
    size_t l = strcspn(url, "?#");
    snprintf(out, cap, "%.*s%s", (int)l, url, url[l] ? "?…" : "");
}

static bool unreserved(unsigned char c) {
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

static char *encode(const char *s, bool keep_slash) {
    size_t n = strlen(s);
    char *r = k2_malloc(n * 3 + 1);
    if (!r) return NULL;
    char *o = r;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (unreserved(c) || (keep_slash && c == '/')) *o++ = (char)c;
        else o += sprintf(o, "%%%02X", c);
    }
    *o = '\0';
    return r;
}

char *hub_encode_path(const char *path) { return encode(path, true); }
char *hub_encode_segment(const char *seg) { return encode(seg, false); }
