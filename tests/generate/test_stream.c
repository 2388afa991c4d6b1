/* k2_stream: producer thread + consumer with timeouts, blocking reads, cancellation,
 * callback mode, error chunks and freeing while the producer still runs. */
#include "generate/generate.h"
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

typedef struct prod {
    k2_stream *s;
    int n;           /* deltas to push (or until cancelled when < 0) */
    int delay_ms;    /* before each push */
    int first_delay_ms;
    bool error;      /* end with an error chunk */
    atomic_int pushed;
} prod;

static void *producer(void *arg) {
    prod *p = arg;
    sleep_ms(p->first_delay_ms);
    k2_usage u = {0};
    for (int i = 0; p->n < 0 || i < p->n; i++) {
        if (k2_stream_cancelled(p->s)) {
            gen_stream_push_done(p->s, K2_FINISH_CANCELLED, &u, NULL);
            gen_stream_release(p->s);
            return NULL;
        }
        char txt[32];
        snprintf(txt, sizeof txt, "piece%d ", i);
        int32_t id = i;
        gen_stream_push_delta(p->s, txt, strlen(txt), &id, 1);
        atomic_fetch_add(&p->pushed, 1);
        u.completion_tokens++;
        if (p->delay_ms) sleep_ms(p->delay_ms);
    }
    if (p->error) gen_stream_push_error(p->s, K2_STAGE_GENERATE, K2_EIO, "decode failed: disk on fire");
    else gen_stream_push_done(p->s, K2_FINISH_LENGTH, &u, NULL);
    gen_stream_release(p->s);
    return NULL;
}

static void start(prod *p, pthread_t *th) {
    k2_error err;
    CHECK_OK(gen_stream_new(&p->s, &err), &err);
    atomic_init(&p->pushed, 0);
    pthread_create(th, NULL, producer, p);
}

static void test_poll_and_block(void) {
    prod p = {.n = 5, .delay_ms = 10, .first_delay_ms = 300};
    pthread_t th;
    start(&p, &th);
    k2_chunk c;
    CHECK(k2_stream_next(p.s, 0, &c) == K2_ETIMEOUT);
    CHECK(k2_stream_next(p.s, 10, &c) == K2_ETIMEOUT);
    int got = 0;
    char all[256] = "";
    for (;;) {
        k2_status st = k2_stream_next(p.s, got % 2 ? -1 : 2000, &c);
        CHECK(st == K2_OK);
        if (st != K2_OK) break;
        if (c.type == K2_CHUNK_DELTA) {
            CHECK(c.n_ids == 1 && c.ids[0] == got);
            CHECK(strlen(c.text) == c.text_len);
            strcat(all, c.text);
            got++;
        } else {
            CHECK(c.type == K2_CHUNK_DONE);
            CHECK(c.finish == K2_FINISH_LENGTH);
            CHECK(c.usage.completion_tokens == 5);
            CHECK(!strcmp(k2_finish_reason_name(c.finish), "length"));
            break;
        }
    }
    CHECK(got == 5);
    CHECK(!strcmp(all, "piece0 piece1 piece2 piece3 piece4 "));
    CHECK(k2_stream_next(p.s, 0, &c) == K2_ENOTFOUND);
    CHECK(k2_stream_next(p.s, -1, &c) == K2_ENOTFOUND);
    CHECK(k2_stream_wait(p.s, 0) == K2_OK);
    pthread_join(th, NULL);
    /* nothing may follow the final chunk */
    k2_stream_free(p.s);
}

static void test_cancel(void) {
    prod p = {.n = -1, .delay_ms = 2};
    pthread_t th;
    start(&p, &th);
    k2_chunk c;
    int deltas = 0;
    while (deltas < 3) {
        CHECK(k2_stream_next(p.s, 2000, &c) == K2_OK);
        if (c.type == K2_CHUNK_DELTA) deltas++;
    }
    CHECK(!k2_stream_cancelled(p.s));
    int at_cancel = atomic_load(&p.pushed);
    k2_stream_cancel(p.s);
    k2_stream_cancel(p.s);
    CHECK(k2_stream_cancelled(p.s));
    int after = 0;
    for (;;) {
        CHECK(k2_stream_next(p.s, 2000, &c) == K2_OK);
        if (c.type != K2_CHUNK_DELTA) break;
        after++;
    }
    CHECK(c.type == K2_CHUNK_DONE && c.finish == K2_FINISH_CANCELLED);
    pthread_join(th, NULL);
    int late = atomic_load(&p.pushed) - at_cancel;
    CHECK_MSG(late <= 1, "%d deltas pushed after the cancel", late);
    CHECK(after == atomic_load(&p.pushed) - 3);
    k2_stream_free(p.s);
}

typedef struct cbstate {
    int deltas;
    int finals;
    int order_ok;
    int next_id;
    k2_finish_reason finish;
} cbstate;

static void on_chunk(const k2_chunk *c, void *user) {
    cbstate *st = user;
    if (c->type == K2_CHUNK_DELTA) {
        if (c->n_ids == 1 && c->ids[0] == st->next_id) st->order_ok++;
        st->next_id++;
        st->deltas++;
    } else {
        st->finals++;
        st->finish = c->finish;
    }
}

static void test_callback(void) {
    prod p = {.n = 20, .delay_ms = 1, .first_delay_ms = 0};
    pthread_t th;
    start(&p, &th);
    while (atomic_load(&p.pushed) < 3) sleep_ms(1); /* some chunks are queued already */
    cbstate st = {0};
    k2_stream_set_callback(p.s, on_chunk, &st);
    k2_chunk c;
    CHECK(k2_stream_next(p.s, 0, &c) == K2_EINVAL);
    CHECK(k2_stream_wait(p.s, 5000) == K2_OK);
    pthread_join(th, NULL);
    CHECK(st.deltas == 20);
    CHECK(st.order_ok == 20);
    CHECK(st.finals == 1 && st.finish == K2_FINISH_LENGTH);
    k2_stream_free(p.s);
}

static void test_error(void) {
    prod p = {.n = 2, .error = true};
    pthread_t th;
    start(&p, &th);
    k2_chunk c;
    int n = 0;
    while (k2_stream_next(p.s, 2000, &c) == K2_OK && c.type == K2_CHUNK_DELTA) n++;
    CHECK(n == 2);
    CHECK(c.type == K2_CHUNK_ERROR);
    CHECK(c.stage == K2_STAGE_GENERATE && c.status == K2_EIO);
    CHECK(!strcmp(k2_error_stage_name(c.stage), "generate"));
    CHECK(strstr(c.message, "disk on fire") != NULL);
    CHECK(k2_stream_next(p.s, 0, &c) == K2_ENOTFOUND);
    pthread_join(th, NULL);
    k2_stream_free(p.s);
    CHECK(!strcmp(k2_error_stage_name(K2_STAGE_DOWNLOAD), "download"));
    CHECK(!strcmp(k2_error_stage_name(K2_STAGE_LOAD), "load"));
    CHECK(!strcmp(k2_error_stage_name(K2_STAGE_TOKENIZE), "tokenize"));
    CHECK(!strcmp(k2_error_stage_name(K2_STAGE_PROMPT), "prompt"));
}

static void test_free_early(void) {
    /* The consumer leaves at once; the producer sees the cancellation and finishes on a
     * stream only it still references. */
    prod p = {.n = -1, .delay_ms = 1, .first_delay_ms = 5};
    pthread_t th;
    start(&p, &th);
    k2_stream_free(p.s);
    pthread_join(th, NULL);
    CHECK(true);
}

static void test_push_after_final(void) {
    k2_stream *s;
    k2_error err;
    CHECK_OK(gen_stream_new(&s, &err), &err);
    CHECK(gen_stream_push_done(s, K2_FINISH_STOP, NULL, NULL) == K2_OK);
    CHECK(gen_stream_push_delta(s, "x", 1, NULL, 0) == K2_EINVAL);
    CHECK(gen_stream_push_error(s, K2_STAGE_LOAD, K2_EIO, "late") == K2_EINVAL);
    k2_chunk c;
    CHECK(k2_stream_next(s, -1, &c) == K2_OK && c.type == K2_CHUNK_DONE && c.finish == K2_FINISH_STOP);
    CHECK(!strcmp(k2_finish_reason_name(K2_FINISH_STOP), "stop"));
    CHECK(!strcmp(k2_finish_reason_name(K2_FINISH_CANCELLED), "cancelled"));
    gen_stream_release(s);
    k2_stream_free(s);
}

int main(void) {
    test_poll_and_block();
    test_cancel();
    test_callback();
    test_error();
    test_free_early();
    test_push_after_final();
    return k2t_finish("test_stream");
}
