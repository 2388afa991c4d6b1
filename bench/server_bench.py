#!/usr/bin/env python3
"""Aggregate generated tokens/s of `k2 serve` vs llama-cpp-python's server with 1, 4 and 8
concurrent streams on the K2-slice bench model, both servers in the same run.

  .venv-bench/bin/python3 bench/server_bench.py [--build build] [--type q4_k_m] [--threads N]
                                                 [--tokens 32] [--streams 1,4,8] [--ctx 1024]
                                                 [--model FILE] [--skip-llama]
Set-up: scripts/bench-setup (llama-cpp-python into .venv-bench); the model is made with
`k2 mkmodel --preset k2-slice --type TYPE --out bench/out/k2-slice-TYPE.gguf` when missing.
Each stream sends the same short prompt with its own seed (--temperature, default 0.8) and asks for
--tokens tokens; tokens/s = all generated tokens / wall time of the round.
k2 serve runs --parallel max(streams) slots with continuous batching (every decoding slot's
token goes through one forward pass per step). llama-cpp-python's server has no parallel
slots: it serves one request at a time (its outer/inner locks) and, by default, interrupts
a streaming request when another arrives, so it runs with --interrupt_requests False and the
concurrent streams queue.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

TEMPERATURE = 0.8  # --temperature
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_http(url, timeout=600):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except Exception:  # noqa: BLE001
            time.sleep(0.2)
    return False


def model_id(base):
    with urllib.request.urlopen(base + "/v1/models", timeout=10) as r:
        return json.loads(r.read())["data"][0]["id"]


def stream_one(base, mid, tokens, seed, out):
    body = {"model": mid, "prompt": "The history of the city begins", "max_tokens": tokens, "temperature": TEMPERATURE,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True}}
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    n_chunks, usage = 0, None
    with urllib.request.urlopen(req, timeout=3600) as r:
        for line in r:
            line = line.strip()
            if not line.startswith(b"data: ") or line == b"data: [DONE]":
                continue
            j = json.loads(line[6:])
            if j.get("usage"):
                usage = j["usage"]["completion_tokens"]
            if j.get("choices") and j["choices"][0].get("text"):
                n_chunks += 1
    out.append(usage if usage is not None else n_chunks)


def round_tps(base, streams, tokens):
    out = []
    mid = model_id(base)
    ts = [threading.Thread(target=stream_one, args=(base, mid, tokens, 1000 + i, out)) for i in range(streams)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    return sum(out) / dt, sum(out), dt


def bench_server(name, cmd, base, streams_list, tokens, env=None):
    log = open(os.path.join(ROOT, "bench", "out", f"server-{name}.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    res = {}
    try:
        if not wait_http(base + "/v1/models"):
            print(f"{name}: server did not come up (see bench/out/server-{name}.log)", file=sys.stderr)
            return None
        round_tps(base, 1, 4)   # warm-up
        for n in streams_list:
            res[n] = round_tps(base, n, tokens)
            print(f"{name:>10}  streams={n:<2}  {res[n][0]:8.2f} tok/s  ({res[n][1]} tokens in {res[n][2]:.1f} s)",
                  flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--type", default="q4_k_m")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--streams", default="1,4,8")
    ap.add_argument("--ctx", type=int, default=1024, help="context per stream")
    ap.add_argument("--model", help="an existing K2-slice GGUF (default: bench/out/k2-slice-TYPE.gguf, made once)")
    ap.add_argument("--skip-llama", action="store_true")
    ap.add_argument("--temperature", type=float, default=0.8, help="0: greedy")
    args = ap.parse_args()
    global TEMPERATURE
    TEMPERATURE = args.temperature
    streams = [int(x) for x in args.streams.split(",")]
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    model = args.model or os.path.join(ROOT, "bench", "out", f"k2-slice-{args.type}.gguf")
    k2 = os.path.join(args.build, "k2")
    if not os.path.exists(model):
        subprocess.run([k2, "mkmodel", "--preset", "k2-slice", "--type", args.type, "--out", model], check=True)
    par = max(streams)
    port = free_port()
    # each slot context gets --ctx tokens; the batch runs on one slot's --threads workers
    k2_res = bench_server("k2", [k2, "serve", model, "--port", str(port), "--parallel", str(par), "--ctx-size",
                                 str(args.ctx * par), "--threads", str(args.threads), "--quiet"],
                          f"http://127.0.0.1:{port}", streams, args.tokens)
    llama_res = None
    if not args.skip_llama:
        try:
            import llama_cpp  # noqa: F401
            port = free_port()
            llama_res = bench_server("llama", [sys.executable, "-m", "llama_cpp.server", "--model", model, "--port",
                                               str(port), "--n_ctx", str(args.ctx), "--n_threads", str(args.threads),
                                               "--n_threads_batch", str(args.threads), "--interrupt_requests", "False"],
                                     f"http://127.0.0.1:{port}", streams, args.tokens)
        except ImportError:
            print("llama-cpp-python is not installed (scripts/bench-setup); k2 only", file=sys.stderr)
    print("\n| streams | k2 tok/s | llama-cpp-python tok/s |")
    print("|---|---|---|")
    for n in streams:
        a = f"{k2_res[n][0]:.2f}" if k2_res and n in k2_res else "-"
        b = f"{llama_res[n][0]:.2f}" if llama_res and n in llama_res else "-"
        print(f"| {n} | {a} | {b} |")


if __name__ == "__main__":
    main()
