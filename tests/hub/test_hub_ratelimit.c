/* A 429 pauses the whole bucket on that host for every fetch of the runtime
 * (spec/hub.md §6.1): fetch A gets "429 Retry-After: 2" on /resolve/; fetch B,
 * started meanwhile on the same runtime, runs its API calls (another bucket) but
 * sends no /resolve/ request before A's pause ends. Runs against
 * scripts/hubserver.py started as a subprocess. */
#include "testutil.h"
#include "async/async.h"
#include "hub/hub.h"
#include "base/base.h"

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static atomic_ullong g_retry_ns;

static void on_event(const k2_hub_event *ev, void *user) {
    (void)user;
    if (ev->kind == K2_HUB_EVENT_RETRY && atomic_load(&g_retry_ns) == 0) atomic_store(&g_retry_ns, k2_now_ns());
}

static void write_file(const char *root, const char *repo, const char *name, size_t size) {
    char path[1400];
    k2_error err;
    snprintf(path, sizeof path, "%s/%s", root, repo);
    CHECK_OK(hub_mkdirs(path, &err), &err);
    snprintf(path, sizeof path, "%s/%s/%s", root, repo, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    char buf[4096];
    for (size_t done = 0; done < size; done += sizeof buf) {
        for (size_t k = 0; k < sizeof buf; k++) buf[k] = (char)(rand() & 0xff);
        CHECK(write(fd, buf, sizeof buf) == (ssize_t)sizeof buf);
    }
    close(fd);
}

int main(void) {
    const char *py = getenv("K2_PYTHON"), *src = getenv("K2_SOURCE_DIR");
    if (!py || !src || access(py, X_OK) != 0) {
        fprintf(stderr, "SKIP: K2_PYTHON/K2_SOURCE_DIR not set\n");
        return 77;
    }
    const char *tmp = k2t_tmpdir();
    char root[1024], pf[1200], cache[1200], server[1200];
    snprintf(root, sizeof root, "%s/root", tmp);
    write_file(root, "acme/a", "a.gguf", 200 * 1024);
    write_file(root, "acme/b", "b.gguf", 200 * 1024);
    snprintf(pf, sizeof pf, "%s/ports.json", tmp);
    snprintf(cache, sizeof cache, "%s/cache", tmp);
    snprintf(server, sizeof server, "%s/scripts/hubserver.py", src);
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        execl(py, py, server, "--root", root, "--port-file", pf, "--fault",
              "{\"kind\":\"status\",\"code\":429,\"retry_after\":2,\"where\":\"resolve\",\"path\":\"a.gguf\"}", (char *)NULL);
        _exit(127);
    }
    char *ports = NULL;
    size_t psize = 0;
    for (int i = 0; i < 200 && k2_read_file(pf, &ports, &psize, NULL) != K2_OK; i++) usleep(50000);
    CHECK(ports != NULL);
    if (!ports) { kill(pid, SIGKILL); waitpid(pid, NULL, 0); return k2t_finish("test_hub_ratelimit"); }
    char endpoint[256];
    const char *ep = strstr(ports, "\"endpoint\": \"");
    CHECK(ep != NULL);
    snprintf(endpoint, sizeof endpoint, "%.*s", (int)strcspn(ep + 13, "\""), ep + 13);
    free(ports);

    k2_error err;
    k2_runtime *rt;
    CHECK_OK(k2_runtime_new(NULL, &rt, &err), &err);
    k2_hub_options o;
    k2_hub_options_init(&o);
    o.endpoint = endpoint;
    o.cache_dir = cache;
    o.retry_base_ms = 50;
    o.on_event = on_event;
    uint64_t t0 = k2_now_ns();
    k2_future *a = k2_hub_fetch(rt, "acme/a", &o);
    while (atomic_load(&g_retry_ns) == 0 && k2_now_ns() - t0 < 10000000000ull && k2_future_state_of(a) == K2_FUTURE_PENDING)
        usleep(5000);
    uint64_t t429 = atomic_load(&g_retry_ns);
    CHECK_MSG(t429 != 0, "fetch A saw no 429");
    k2_hub_options ob = o;
    ob.on_event = NULL;
    k2_future *b = k2_hub_fetch(rt, "acme/b", &ob);
    k2_status sb = k2_future_wait(b, 20000);
    uint64_t tb = k2_now_ns();
    k2_status sa = k2_future_wait(a, 20000);
    CHECK_MSG(sa == K2_OK, "fetch A: %s", k2_future_error(a)->message);
    CHECK_MSG(sb == K2_OK, "fetch B: %s", k2_future_error(b)->message);
    double waited = (double)(tb - t429) / 1e9;
    fprintf(stderr, "fetch B finished %.2f s after A's 429 (Retry-After: 2)\n", waited);
    /* Retry-After 2 s (+0.25 s margin) from A's 429: B's /resolve/ waits for it,
     * its API calls did not add a second wait */
    CHECK_MSG(waited >= 1.9, "fetch B did not wait for the pause (%.2f s)", waited);
    CHECK_MSG(waited < 4.0, "fetch B waited too long (%.2f s)", waited);
    k2_future_free(a);
    k2_future_free(b);
    k2_runtime_free(rt);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    char cmd[1300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0) { /* best effort */ }
    return k2t_finish("test_hub_ratelimit");
}
