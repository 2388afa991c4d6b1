/* Rate-limit pauses shared by all fetches of one runtime (spec/hub.md §1.10, §6.1):
 * the Hub counts requests per bucket — API (/api/...), Resolvers (any URL with
 * /resolve/), everything else — so when one request is told to wait (429 with
 * RateLimit/Retry-After), every request of that bucket on that host waits, whichever
 * fetch it belongs to. The table lives in a runtime slot; loop thread only. */
#include "hub/hub.h"
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

typedef struct pause_entry {
    char origin[256];
    int bucket;
    uint64_t until_ms;
} pause_entry;

typedef struct pause_table {
    pause_entry *v;
    size_t n;
} pause_table;

static const char g_key = 0;

static void table_free(void *p) {
    pause_table *t = p;
    free(t->v);
    free(t);
}

static pause_table *table(k2_runtime *rt) {
    void **slot = k2_runtime_slot(rt, &g_key, table_free);
    if (!slot) return NULL;
    if (!*slot) *slot = k2_calloc(1, sizeof(pause_table));
    return *slot;
}

/* 0 API, 1 resolvers, 2 other (§1.10) */
static int bucket_of(const char *url) {
    const char *p = strstr(url, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    if (!p) return 2;
    size_t plen = strcspn(p, "?#");
    if (plen >= 5 && strncmp(p, "/api/", 5) == 0) return 0;
    for (size_t i = 0; i + 9 <= plen; i++)
        if (strncmp(p + i, "/resolve/", 9) == 0) return 1;
    return 2;
}

static pause_entry *find(pause_table *t, const char *origin, int bucket) {
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].bucket == bucket && strcmp(t->v[i].origin, origin) == 0) return &t->v[i];
    return NULL;
}

uint64_t hub_pause_until(k2_runtime *rt, const char *url, uint64_t now_ms) {
    pause_table *t = table(rt);
    char origin[256];
    if (!t || t->n == 0 || !url || !hub_url_origin(url, origin, sizeof origin)) return 0;
    pause_entry *e = find(t, origin, bucket_of(url));
    return e && e->until_ms > now_ms ? e->until_ms : 0;
}

void hub_pause_set(k2_runtime *rt, const char *url, uint64_t until_ms) {
    pause_table *t = table(rt);
    char origin[256];
    if (!t || !url || !hub_url_origin(url, origin, sizeof origin)) return;
    int b = bucket_of(url);
    pause_entry *e = find(t, origin, b);
    if (!e) {
        pause_entry *nv = k2_realloc(t->v, (t->n + 1) * sizeof *nv);
        if (!nv) return;
        t->v = nv;
        e = &t->v[t->n++];
        memset(e, 0, sizeof *e);
        snprintf(e->origin, sizeof e->origin, "%s", origin);
        e->bucket = b;
    }
    if (until_ms > e->until_ms) e->until_ms = until_ms;
}
