/* k2 serve: the OpenAI-compatible HTTP server (spec/server-api.md). */
#include "cli/cli.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char HELP[] =
    "usage: k2 serve MODEL [options]\n"
    "\n"
    "Serves MODEL (a GGUF file or a Hub reference org/repo:QUANT) over an OpenAI-compatible\n"
    "HTTP API. The model loads in the background; /health answers 503 until it is ready.\n"
    "  --host H                   address to bind (default 127.0.0.1)\n"
    "  --port P                   TCP port (default 8080; 0 = any free port)\n"
    "  --port-file F              write the bound port to F once listening\n"
    "  --parallel N               slots decoding concurrently (default 1)\n"
    "  --ctx-size N               total KV capacity in tokens, split across slots\n"
    "  --batch-size N             prompt tokens per step, shared by all prefilling slots (default 512)\n"
    "  --threads N                threads per slot context (default: physical cores)\n"
    "  --api-key K1,K2            require Authorization: Bearer K\n"
    "  --api-key-file F           keys, one per line\n"
    "  --model-id NAME            id reported by /v1/models\n"
    "  --alias A1,A2              extra accepted model names\n"
    "  --accept-any-model         accept any model name in requests\n"
    "  --queue-size N             waiting requests beyond the slots (default 32)\n"
    "  --max-body-bytes N         request body limit (default 16777216)\n"
    "  --read-timeout S           (default 30)   --keepalive-timeout S (default 60)\n"
    "  --write-timeout S          (default 60)   --queue-timeout S     (default 600)\n"
    "  --sse-keepalive S          keep-alive comment interval (default 15; 0 = off)\n"
    "  --max-connections N        (default 256)\n"
    "  --max-concurrent-per-key M admitted requests per API key (429 beyond; default unlimited)\n"
    "  --max-tokens-default N     chat default when a request gives none (default unlimited)\n"
    "  --max-tokens-cap N         hard cap on generated tokens per request\n"
    "  --max-generation-seconds S stop a generation after S seconds (default off)\n"
    "  --temp T --top-p P --top-k K --min-p M --repeat-penalty R   sampling defaults\n"
    "  --no-metrics               disable /metrics\n"
    "  --cors-origin ORIGIN       enable CORS for ORIGIN\n"
    "  --shutdown-grace S         seconds running requests get on SIGTERM (default 10)\n"
    "  --test-mode                accept test_script (protocol tests only)\n"
    "  --quiet                    no per-request log lines\n";

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

static int parse_int(const char *cmd, const char *opt, const char *v, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < lo || x > hi) return cli_usage_error(cmd, "%s: bad value '%s'", opt, v);
    *out = x;
    return 0;
}

int cmd_serve(int argc, char **argv) {
    const char *cmd = "serve";
    k2_server_options o;
    k2_server_options_init(&o);
    const char *port_file = NULL;
    long long grace = 10;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(HELP, stdout);
            return 0;
        }
        if (a[0] != '-') {
            if (o.model) return cli_usage_error(cmd, "more than one model given");
            o.model = a;
            continue;
        }
        bool flag = true;
        if (strcmp(a, "--accept-any-model") == 0) o.accept_any_model = true;
        else if (strcmp(a, "--no-metrics") == 0) o.metrics = false;
        else if (strcmp(a, "--test-mode") == 0) o.test_mode = true;
        else if (strcmp(a, "--quiet") == 0) o.quiet = true;
        else flag = false;
        if (flag) continue;
        if (i + 1 >= argc) return cli_usage_error(cmd, "%s needs a value (see k2 serve --help)", a);
        const char *v = argv[++i];
        long long x = 0;
        int rc = 0;
        if (strcmp(a, "--host") == 0) o.host = v;
        else if (strcmp(a, "--port") == 0) rc = parse_int(cmd, a, v, 0, 65535, &x), o.port = (int)x;
        else if (strcmp(a, "--port-file") == 0) port_file = v;
        else if (strcmp(a, "--parallel") == 0 || strcmp(a, "-np") == 0) rc = parse_int(cmd, a, v, 1, 256, &x), o.parallel = (int)x;
        else if (strcmp(a, "--ctx-size") == 0 || strcmp(a, "-c") == 0) rc = parse_int(cmd, a, v, 0, 1 << 30, &x), o.ctx_size = (uint32_t)x;
        else if (strcmp(a, "--batch-size") == 0) rc = parse_int(cmd, a, v, 1, 1 << 20, &x), o.batch_size = (int)x;
        else if (strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0) rc = parse_int(cmd, a, v, 0, 1024, &x), o.threads = (int)x;
        else if (strcmp(a, "--api-key") == 0) o.api_keys = v;
        else if (strcmp(a, "--api-key-file") == 0) o.api_key_file = v;
        else if (strcmp(a, "--model-id") == 0) o.model_id = v;
        else if (strcmp(a, "--alias") == 0) o.aliases = v;
        else if (strcmp(a, "--owned-by") == 0) o.owned_by = v;
        else if (strcmp(a, "--queue-size") == 0) rc = parse_int(cmd, a, v, 0, 1 << 20, &x), o.queue_size = (int)x;
        else if (strcmp(a, "--max-body-bytes") == 0) rc = parse_int(cmd, a, v, 1, 1LL << 40, &x), o.max_body_bytes = (uint64_t)x;
        else if (strcmp(a, "--read-timeout") == 0) rc = parse_int(cmd, a, v, 0, 86400, &x), o.read_timeout_s = (int)x;
        else if (strcmp(a, "--keepalive-timeout") == 0) rc = parse_int(cmd, a, v, 0, 86400, &x), o.keepalive_timeout_s = (int)x;
        else if (strcmp(a, "--write-timeout") == 0) rc = parse_int(cmd, a, v, 0, 86400, &x), o.write_timeout_s = (int)x;
        else if (strcmp(a, "--queue-timeout") == 0) rc = parse_int(cmd, a, v, 0, 86400 * 7, &x), o.queue_timeout_s = (int)x;
        else if (strcmp(a, "--sse-keepalive") == 0) rc = parse_int(cmd, a, v, 0, 86400, &x), o.sse_keepalive_s = (int)x;
        else if (strcmp(a, "--max-concurrent-per-key") == 0) rc = parse_int(cmd, a, v, 0, 1 << 20, &x), o.max_concurrent_per_key = (int)x;
        else if (strcmp(a, "--max-connections") == 0) rc = parse_int(cmd, a, v, 1, 1 << 20, &x), o.max_connections = (int)x;
        else if (strcmp(a, "--max-tokens-default") == 0) rc = parse_int(cmd, a, v, 0, 1LL << 40, &x), o.max_tokens_default = x;
        else if (strcmp(a, "--max-tokens-cap") == 0) rc = parse_int(cmd, a, v, 0, 1LL << 40, &x), o.max_tokens_cap = x;
        else if (strcmp(a, "--max-generation-seconds") == 0) o.max_generation_seconds = atof(v);
        else if (strcmp(a, "--shutdown-grace") == 0) rc = parse_int(cmd, a, v, 0, 86400, &grace);
        else if (strcmp(a, "--cors-origin") == 0) o.cors_origin = v;
        else if (strcmp(a, "--temp") == 0 || strcmp(a, "--temperature") == 0) o.temperature = (float)atof(v);
        else if (strcmp(a, "--top-p") == 0) o.top_p = (float)atof(v);
        else if (strcmp(a, "--top-k") == 0) rc = parse_int(cmd, a, v, 0, 1 << 30, &x), o.top_k = (int32_t)x;
        else if (strcmp(a, "--min-p") == 0) o.min_p = (float)atof(v);
        else if (strcmp(a, "--repeat-penalty") == 0) o.repeat_penalty = (float)atof(v);
        else return cli_usage_error(cmd, "unknown option %s (see k2 serve --help)", a);
        if (rc) return rc;
    }
    if (!o.model) return cli_usage_error(cmd, "a model (GGUF file or Hub reference) is required");

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    k2_error err;
    k2_runtime *rt;
    if (k2_runtime_new(NULL, &rt, &err) != K2_OK) return cli_fail(cmd, &err);
    k2_server *srv;
    if (k2_server_start(rt, &o, &srv, &err) != K2_OK) {
        k2_runtime_free(rt);
        return cli_fail(cmd, &err);
    }
    if (port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", port_file);
        FILE *f = fopen(tmp, "w");
        if (f) {
            fprintf(f, "%d\n", k2_server_port(srv));
            fclose(f);
            rename(tmp, port_file);
        }
    }
    printf("k2 serve: listening on http://%s:%d\n", o.host, k2_server_port(srv));
    fflush(stdout);
    int rc = 0;
    bool reported = false;
    while (!g_stop) {
        usleep(100 * 1000);
        if (!reported && k2_server_get_state(srv, &err) == K2_SERVER_FAILED) {
            /* keep serving /health with the failure, but make it visible */
            fprintf(stderr, "k2 serve: the model failed to load: %s\n", err.message);
            reported = true;
            rc = 1;
        }
    }
    fprintf(stderr, "k2 serve: shutting down\n");
    k2_server_stop(srv, (int)grace);
    k2_server_free(srv);
    k2_runtime_free(rt);
    return rc;
}
