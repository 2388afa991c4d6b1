/* Samplers: the per-token pipeline of spec/server-api.md §2.3.1 (documented in k2.h) and
 * k2's own PRNG. Everything that decides a token is computed in a fixed order in double
 * precision so that a seed reproduces the same tokens on any platform. */
#include "generate/generate.h"

#include "base/base.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- PRNG: splitmix64 expands the seed into xoshiro256** state ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void gen_rng_seed(gen_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

uint64_t gen_rng_next(gen_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double gen_rng_uniform(gen_rng *r) { return (double)(gen_rng_next(r) >> 11) * 0x1.0p-53; }

uint64_t gen_random_seed(void) {
    uint64_t v;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v) return v;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = ((uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec) ^ k2_now_ns();
    return splitmix64(&x);
}

/* ---- the sampler ---- */

typedef struct cand {
    float logit;
    int32_t id;
} cand;

struct k2_sampler {
    k2_sampling_options o;
    k2_logit_bias *bias;
    int32_t n_vocab;
    gen_rng rng;
    uint64_t seed;
    /* repeat window: the last tokens of prompt + output (trimmed lazily) */
    int32_t *hist;
    size_t n_hist, cap_hist;
    uint32_t *stamp;   /* per id: the stamp of the last pass that penalised it */
    uint32_t stamp_now;
    /* frequency/presence: counts of generated ids and the distinct ids seen */
    int32_t *count;
    int32_t *seen;
    size_t n_seen, cap_seen;
    /* scratch */
    float *work;
    cand *c;
};

void k2_sampling_options_init(k2_sampling_options *o) {
    memset(o, 0, sizeof *o);
    o->temperature = 0.6f;
    o->top_p = 1.0f;
    o->top_k = 0;
    o->min_p = 0.0f;
    o->repeat_penalty = 1.0f;
    o->repeat_last_n = 64;
}

static k2_status check_options(const k2_sampling_options *o, int32_t n_vocab, k2_error *err) {
    if (!(o->temperature >= 0) || !isfinite(o->temperature))
        return k2_err(err, K2_EINVAL, "sampling option temperature %g must be a finite number >= 0",
                      (double)o->temperature);
    if (!(o->top_p >= 0 && o->top_p <= 1))
        return k2_err(err, K2_EINVAL, "sampling option top_p %g must be between 0 and 1", (double)o->top_p);
    if (o->top_k < 0) return k2_err(err, K2_EINVAL, "sampling option top_k %d must be >= 0", (int)o->top_k);
    if (!(o->min_p >= 0 && o->min_p <= 1))
        return k2_err(err, K2_EINVAL, "sampling option min_p %g must be between 0 and 1", (double)o->min_p);
    if (!(o->repeat_penalty > 0) || !isfinite(o->repeat_penalty))
        return k2_err(err, K2_EINVAL, "sampling option repeat_penalty %g must be a finite number > 0",
                      (double)o->repeat_penalty);
    if (o->repeat_last_n < -1)
        return k2_err(err, K2_EINVAL, "sampling option repeat_last_n %d must be >= -1", (int)o->repeat_last_n);
    if (!isfinite(o->frequency_penalty))
        return k2_err(err, K2_EINVAL, "sampling option frequency_penalty must be finite");
    if (!isfinite(o->presence_penalty))
        return k2_err(err, K2_EINVAL, "sampling option presence_penalty must be finite");
    if (o->n_logit_bias && !o->logit_bias)
        return k2_err(err, K2_EINVAL, "sampling option logit_bias is NULL but n_logit_bias is %zu", o->n_logit_bias);
    for (size_t i = 0; i < o->n_logit_bias; i++) {
        const k2_logit_bias *b = &o->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return k2_err(err, K2_EINVAL, "sampling option logit_bias[%zu]: token id %d is outside the vocabulary (size %d)",
                          i, (int)b->token, (int)n_vocab);
        if (isnan(b->bias) || b->bias == INFINITY)
            return k2_err(err, K2_EINVAL, "sampling option logit_bias[%zu]: bias for token %d must be finite or -inf",
                          i, (int)b->token);
    }
    return K2_OK;
}

k2_status k2_sampler_new(const k2_sampling_options *o, int32_t n_vocab, k2_sampler **out, k2_error *err) {
    *out = NULL;
    k2_sampling_options def;
    if (!o) {
        k2_sampling_options_init(&def);
        o = &def;
    }
    if (n_vocab <= 0) return k2_err(err, K2_EINVAL, "k2_sampler_new: vocabulary size %d must be > 0", (int)n_vocab);
    k2_status st = check_options(o, n_vocab, err);
    if (st != K2_OK) return st;
    k2_sampler *s = k2_calloc(1, sizeof *s);
    if (!s) return k2_err(err, K2_ENOMEM, "out of memory creating a sampler");
    s->o = *o;
    s->n_vocab = n_vocab;
    s->work = k2_malloc(sizeof(float) * (size_t)n_vocab);
    s->c = k2_malloc(sizeof(cand) * (size_t)n_vocab);
    if (o->n_logit_bias) {
        s->bias = k2_malloc(sizeof *s->bias * o->n_logit_bias);
        if (s->bias) memcpy(s->bias, o->logit_bias, sizeof *s->bias * o->n_logit_bias);
    }
    s->o.logit_bias = s->bias;
    if (o->repeat_penalty != 1.0f && o->repeat_last_n != 0) s->stamp = k2_calloc((size_t)n_vocab, sizeof *s->stamp);
    if (o->frequency_penalty != 0.0f || o->presence_penalty != 0.0f)
        s->count = k2_calloc((size_t)n_vocab, sizeof *s->count);
    bool want_stamp = o->repeat_penalty != 1.0f && o->repeat_last_n != 0;
    bool want_count = o->frequency_penalty != 0.0f || o->presence_penalty != 0.0f;
    if (!s->work || !s->c || (o->n_logit_bias && !s->bias) || (want_stamp && !s->stamp) || (want_count && !s->count)) {
        k2_sampler_free(s);
        return k2_err(err, K2_ENOMEM, "out of memory creating a sampler for %d tokens", (int)n_vocab);
    }
    s->seed = o->has_seed ? o->seed : gen_random_seed();
    gen_rng_seed(&s->rng, s->seed);
    *out = s;
    return K2_OK;
}

void k2_sampler_free(k2_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->hist);
    free(s->stamp);
    free(s->count);
    free(s->seen);
    free(s->work);
    free(s->c);
    free(s);
}

uint64_t k2_sampler_seed(const k2_sampler *s) { return s->seed; }

void k2_sampler_reset(k2_sampler *s) {
    s->n_hist = 0;
    if (s->count)
        for (size_t i = 0; i < s->n_seen; i++) s->count[s->seen[i]] = 0;
    s->n_seen = 0;
}

static bool grow_i32(int32_t **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t nc = *cap ? *cap * 2 : 64;
    while (nc < need) nc *= 2;
    int32_t *np = realloc(*p, nc * sizeof *np);
    if (!np) return false;
    *p = np;
    *cap = nc;
    return true;
}

void k2_sampler_accept(k2_sampler *s, int32_t token, bool generated) {
    if (token < 0 || token >= s->n_vocab) return;
    if (s->stamp) {
        size_t w = s->o.repeat_last_n > 0 ? (size_t)s->o.repeat_last_n : 0;
        /* Keep at most 2w entries: trim to the last w when full (amortised O(1)). */
        if (w && s->n_hist >= 2 * w) {
            memmove(s->hist, s->hist + s->n_hist - w, w * sizeof *s->hist);
            s->n_hist = w;
        }
        if (grow_i32(&s->hist, &s->cap_hist, s->n_hist + 1)) s->hist[s->n_hist++] = token;
    }
    if (generated && s->count) {
        if (s->count[token] == 0) {
            if (!grow_i32(&s->seen, &s->cap_seen, s->n_seen + 1)) return;
            s->seen[s->n_seen++] = token;
        }
        s->count[token]++;
    }
}

/* Orders candidates by logit (descending), then id (ascending). */
static int cand_cmp(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->logit != y->logit) return x->logit > y->logit ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cand_cmp_id(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

static inline bool cand_before(const cand *x, const cand *y) {
    return x->logit > y->logit || (x->logit == y->logit && x->id < y->id);
}

/* Moves the k first candidates in cand_cmp order to the front of c[0..n), sorted
 * (quickselect with a median-of-three pivot, then a sort of the k). */
static void partial_sort(cand *c, size_t n, size_t k) {
    if (k >= n) {
        qsort(c, n, sizeof *c, cand_cmp);
        return;
    }
    size_t lo = 0, hi = n; /* the k-th element lies in [lo, hi) */
    while (hi - lo > 16) {
        size_t mid = lo + (hi - lo) / 2;
        cand a = c[lo], b = c[mid], d = c[hi - 1], piv;
        if (cand_before(&a, &b)) piv = cand_before(&b, &d) ? b : (cand_before(&a, &d) ? d : a);
        else piv = cand_before(&a, &d) ? a : (cand_before(&b, &d) ? d : b);
        /* three-way partition: [lo,lt) before pivot, [lt,gt) equal, [gt,hi) after */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (cand_before(&c[i], &piv)) {
                cand t = c[lt]; c[lt] = c[i]; c[i] = t;
                lt++, i++;
            } else if (cand_before(&piv, &c[i])) {
                gt--;
                cand t = c[gt]; c[gt] = c[i]; c[i] = t;
            } else {
                i++;
            }
        }
        if (k <= lt) hi = lt;
        else if (k >= gt) lo = gt;
        else break;
    }
    qsort(c, hi > k ? hi : k, sizeof *c, cand_cmp);
}

k2_status k2_sampler_sample(k2_sampler *s, const float *logits, int32_t *token, k2_error *err) {
    const k2_sampling_options *o = &s->o;
    const int32_t V = s->n_vocab;
    float *w = s->work;
    memcpy(w, logits, sizeof(float) * (size_t)V);

    /* 1. logit bias */
    for (size_t i = 0; i < o->n_logit_bias; i++) w[s->bias[i].token] += s->bias[i].bias;

    /* 2. repeat penalty over the distinct ids of the window */
    if (s->stamp && s->n_hist) {
        size_t win = o->repeat_last_n > 0 ? K2_MIN((size_t)o->repeat_last_n, s->n_hist) : s->n_hist;
        if (++s->stamp_now == 0) {
            memset(s->stamp, 0, sizeof *s->stamp * (size_t)V);
            s->stamp_now = 1;
        }
        const float r = o->repeat_penalty;
        for (size_t i = s->n_hist - win; i < s->n_hist; i++) {
            int32_t t = s->hist[i];
            if (s->stamp[t] == s->stamp_now) continue;
            s->stamp[t] = s->stamp_now;
            w[t] = w[t] > 0 ? w[t] / r : w[t] * r;
        }
    }

    /* 3. frequency and presence penalties over the generated tokens */
    if (s->count)
        for (size_t i = 0; i < s->n_seen; i++) {
            int32_t t = s->seen[i];
            int32_t n = s->count[t];
            w[t] -= (float)n * o->frequency_penalty + (n > 0 ? o->presence_penalty : 0.0f);
        }

    /* Candidates: every id whose logit is a number above -inf, in id order. */
    cand *c = s->c;
    size_t n = 0;
    for (int32_t i = 0; i < V; i++)
        if (w[i] > -INFINITY) c[n++] = (cand){w[i], i};
    if (n == 0) return k2_err(err, K2_EINVAL, "sampling: every token is banned (all logits are -inf or NaN)");

    /* 4. greedy */
    if (o->temperature <= 0 || o->top_p <= 0) {
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
            if (c[i].logit > c[best].logit) best = i;  /* strict: the lowest id wins ties */
        *token = c[best].id;
        return K2_OK;
    }

    bool sorted = false;
    /* 5. top-k */
    if (o->top_k > 0 && (size_t)o->top_k < n) {
        partial_sort(c, n, (size_t)o->top_k);
        n = (size_t)o->top_k;
        sorted = true;
    }

    /* 6. softmax at temperature 1; top-p over the candidates sorted by probability */
    double lmax = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (c[i].logit > lmax) lmax = c[i].logit;
    if (o->top_p < 1.0f) {
        /* The normaliser is summed in the candidates' current order before any reordering
         * below, so it does not depend on how much of the list gets sorted. */
        double z = 0;
        for (size_t i = 0; i < n; i++) z += exp((double)c[i].logit - lmax);
        double target = (double)o->top_p * z;
        size_t m = sorted ? n : K2_MIN(n, (size_t)256);
        for (;;) {
            if (!sorted) partial_sort(c, n, m);
            double cum = 0;
            size_t keep = 0;
            for (size_t i = 0; i < m; i++) {
                cum += exp((double)c[i].logit - lmax);
                if (cum >= target) {
                    keep = i + 1;
                    break;
                }
            }
            if (keep) {
                n = keep;
                break;
            }
            if (m == n) break; /* rounding: the whole mass never reached top_p; keep all */
            m = K2_MIN(n, m * 4);
        }
    }

    /* 7. min-p: p_i < min_p * p_max  <=>  exp(l_i - l_max) < min_p */
    if (o->min_p > 0) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (!(exp((double)c[i].logit - lmax) < (double)o->min_p)) c[k++] = c[i];
        n = k; /* the top token always survives: exp(0) = 1 >= min_p */
    }

    /* 8. temperature, softmax and the draw, walking the survivors in id order */
    if (sorted || o->top_p < 1.0f) qsort(c, n, sizeof *c, cand_cmp_id);
    const double inv_t = 1.0 / (double)o->temperature;
    double total = 0;
    for (size_t i = 0; i < n; i++) total += exp(((double)c[i].logit - lmax) * inv_t);
    double u = gen_rng_uniform(&s->rng) * total;
    double cum = 0;
    size_t pick = n - 1;
    for (size_t i = 0; i < n; i++) {
        cum += exp(((double)c[i].logit - lmax) * inv_t);
        if (u < cum) {
            pick = i;
            break;
        }
    }
    *token = c[pick].id;
    return K2_OK;
}
