/* sample_tool: one JSON object per input line, one JSON result per output line.
 *
 * Input:  {"opts": {"temperature":..,"top_p":..,"top_k":..,"min_p":..,"repeat_penalty":..,
 *                   "repeat_last_n":..,"frequency_penalty":..,"presence_penalty":..,"seed":..},
 *          "bias": [[id, value], ...], "prompt": [ids],
 *          "logits": [[row], ...]   one row per step (the last row repeats for "steps"),
 *          "steps": N}
 * Each step samples from its row and accepts the token as generated.
 * Output: {"tokens": [...]} or {"error": "..."}; "rng": N instead draws N raw PRNG words
 * (as decimal strings) for the seed opts.seed. */
#include "k2.h"
#include "generate/generate.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double num(json_t *o, const char *key, double def) {
    json_t *v = json_object_get(o, key);
    if (!v) return def;
    if (json_is_string(v) && !strcmp(json_string_value(v), "-inf")) return -INFINITY;
    return json_number_value(v);
}

static void run_line(const char *line) {
    json_error_t je;
    json_t *in = json_loads(line, 0, &je);
    if (!in) {
        printf("{\"error\": \"bad json\"}\n");
        return;
    }
    json_t *jo = json_object_get(in, "opts");
    k2_sampling_options o;
    k2_sampling_options_init(&o);
    if (jo) {
        o.temperature = (float)num(jo, "temperature", o.temperature);
        o.top_p = (float)num(jo, "top_p", o.top_p);
        o.top_k = (int32_t)num(jo, "top_k", o.top_k);
        o.min_p = (float)num(jo, "min_p", o.min_p);
        o.repeat_penalty = (float)num(jo, "repeat_penalty", o.repeat_penalty);
        o.repeat_last_n = (int32_t)num(jo, "repeat_last_n", o.repeat_last_n);
        o.frequency_penalty = (float)num(jo, "frequency_penalty", o.frequency_penalty);
        o.presence_penalty = (float)num(jo, "presence_penalty", o.presence_penalty);
        json_t *js = json_object_get(jo, "seed");
        if (js) {
            o.has_seed = true;
            o.seed = json_is_string(js) ? strtoull(json_string_value(js), NULL, 10) : (uint64_t)json_integer_value(js);
        }
    }
    json_t *jr = json_object_get(in, "rng");
    if (jr) {
        gen_rng r;
        gen_rng_seed(&r, o.seed);
        printf("{\"rng\": [");
        for (json_int_t i = 0; i < json_integer_value(jr); i++)
            printf("%s\"%llu\"", i ? ", " : "", (unsigned long long)gen_rng_next(&r));
        printf("]}\n");
        json_decref(in);
        return;
    }
    json_t *jb = json_object_get(in, "bias");
    size_t nb = jb ? json_array_size(jb) : 0;
    k2_logit_bias *bias = calloc(nb ? nb : 1, sizeof *bias);
    for (size_t i = 0; i < nb; i++) {
        json_t *e = json_array_get(jb, i);
        bias[i].token = (int32_t)json_integer_value(json_array_get(e, 0));
        json_t *bv = json_array_get(e, 1);
        bias[i].bias = json_is_string(bv) ? -INFINITY : (float)json_number_value(bv);
    }
    o.logit_bias = bias;
    o.n_logit_bias = nb;
    json_t *jl = json_object_get(in, "logits");
    size_t rows = json_array_size(jl);
    int32_t V = (int32_t)json_array_size(json_array_get(jl, 0));
    size_t steps = (size_t)num(in, "steps", (double)rows);
    float *lg = malloc(sizeof(float) * (size_t)(V ? V : 1));
    k2_sampler *s = NULL;
    k2_error err;
    if (k2_sampler_new(&o, V, &s, &err) != K2_OK) {
        json_t *out = json_pack("{ss}", "error", err.message);
        char *d = json_dumps(out, 0);
        printf("%s\n", d);
        free(d);
        json_decref(out);
        goto done;
    }
    json_t *jp = json_object_get(in, "prompt");
    for (size_t i = 0; jp && i < json_array_size(jp); i++)
        k2_sampler_accept(s, (int32_t)json_integer_value(json_array_get(jp, i)), false);
    printf("{\"tokens\": [");
    for (size_t k = 0; k < steps; k++) {
        json_t *row = json_array_get(jl, k < rows ? k : rows - 1);
        for (int32_t v = 0; v < V; v++) {
            json_t *x = json_array_get(row, (size_t)v);
            lg[v] = json_is_string(x) ? -INFINITY : (float)json_number_value(x);
        }
        int32_t t;
        if (k2_sampler_sample(s, lg, &t, &err) != K2_OK) {
            printf("%s-1", k ? ", " : "");
            continue;
        }
        k2_sampler_accept(s, t, true);
        printf("%s%d", k ? ", " : "", (int)t);
    }
    printf("]}\n");
done:
    fflush(stdout);
    k2_sampler_free(s);
    free(lg);
    free(bias);
    json_decref(in);
}

int main(void) {
    size_t cap = 1 << 20;
    char *line = malloc(cap);
    ssize_t n;
    while ((n = getline(&line, &cap, stdin)) > 0) run_line(line);
    free(line);
    return 0;
}
