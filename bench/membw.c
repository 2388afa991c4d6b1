/* Measures the machine's memory read bandwidth with N threads (default: all cores):
 * each thread sums its slice of a buffer much larger than the caches with 16-byte loads,
 * without and with software prefetch at several distances (the k2 kernels prefetch, and
 * on this kind of VM a prefetching stream reads markedly faster); the best of all runs
 * and distances, so the bound model_bench derives from it is not an easy one; also the
 * best plain sequential read (no prefetch), the kind of figure quoted in the issue.
 * Prints one JSON object. Used by bench/model_bench.py for the bandwidth bound. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef uint64_t v2u64 __attribute__((vector_size(16)));
typedef struct job { const uint64_t *p; size_t n; int ahead; uint64_t sum; } job;

static void *reader(void *arg) {
    job *j = arg;
    const v2u64 *v = (const v2u64 *)(const void *)j->p;
    size_t nv = j->n / 2, ahead = (size_t)j->ahead / sizeof(v2u64);
    v2u64 s0 = {0, 0}, s1 = s0, s2 = s0, s3 = s0;
    for (size_t i = 0; i + 4 <= nv; i += 4) {
        if (ahead) __builtin_prefetch(v + i + ahead);
        s0 += v[i];
        s1 += v[i + 1];
        s2 += v[i + 2];
        s3 += v[i + 3];
    }
    v2u64 s = s0 + s1 + s2 + s3;
    j->sum = s[0] + s[1];
    return NULL;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    size_t bytes = (size_t)(argc > 2 ? atof(argv[2]) : 1.0) * (1ull << 30);
    int runs = 3;
    if (threads < 1 || threads > 256) threads = 1;
    size_t n = bytes / 8;
    uint64_t *buf = aligned_alloc(64, n * 8);
    if (!buf) { fprintf(stderr, "membw: out of memory\n"); return 1; }
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 1e30, best_plain = 1e30;
    uint64_t total = 0;
    static const int distances[] = {0, 1024, 2048, 4096};
    for (int r = 0; r < runs; r++)
        for (size_t k = 0; k < sizeof distances / sizeof distances[0]; k++) {
            pthread_t th[256];
            job jobs[256];
            double t0 = now();
            for (int t = 0; t < threads; t++) {
                jobs[t].p = buf + n / threads * t;
                jobs[t].n = n / threads;
                jobs[t].ahead = distances[k];
                pthread_create(&th[t], NULL, reader, &jobs[t]);
            }
            for (int t = 0; t < threads; t++) { pthread_join(th[t], NULL); total += jobs[t].sum; }
            double dt = now() - t0;
            if (dt < best) best = dt;
            if (distances[k] == 0 && dt < best_plain) best_plain = dt;
        }
    printf("{\"threads\": %d, \"bytes\": %zu, \"read_gbps\": %.3f, \"plain_read_gbps\": %.3f, \"checksum\": %llu}\n",
           threads, n * 8, (double)(n * 8) / best / 1e9, (double)(n * 8) / best_plain / 1e9,
           (unsigned long long)(total & 0xff));
    free(buf);
    return 0;
}
