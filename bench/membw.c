/* Measures the machine's memory read bandwidth with N threads (default: all cores):
 * each thread sums its slice of a buffer much larger than the caches; best of R runs.
 * Prints one JSON object. Used by bench/model_bench.py for the bandwidth bound. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct job { const uint64_t *p; size_t n; uint64_t sum; } job;

static void *reader(void *arg) {
    job *j = arg;
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (size_t i = 0; i + 4 <= j->n; i += 4) { s0 += j->p[i]; s1 += j->p[i + 1]; s2 += j->p[i + 2]; s3 += j->p[i + 3]; }
    j->sum = s0 + s1 + s2 + s3;
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
    int runs = 5;
    if (threads < 1 || threads > 256) threads = 1;
    size_t n = bytes / 8;
    uint64_t *buf = aligned_alloc(64, n * 8);
    if (!buf) { fprintf(stderr, "membw: out of memory\n"); return 1; }
    for (size_t i = 0; i < n; i++) buf[i] = i;
    double best = 1e30;
    uint64_t total = 0;
    for (int r = 0; r < runs; r++) {
        pthread_t th[256];
        job jobs[256];
        double t0 = now();
        for (int t = 0; t < threads; t++) {
            jobs[t].p = buf + n / threads * t;
            jobs[t].n = n / threads;
            pthread_create(&th[t], NULL, reader, &jobs[t]);
        }
        for (int t = 0; t < threads; t++) { pthread_join(th[t], NULL); total += jobs[t].sum; }
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("{\"threads\": %d, \"bytes\": %zu, \"read_gbps\": %.3f, \"checksum\": %llu}\n", threads, n * 8,
           (double)(n * 8) / best / 1e9, (unsigned long long)(total & 0xff));
    free(buf);
    return 0;
}
