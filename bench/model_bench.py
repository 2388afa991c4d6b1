#!/usr/bin/env python3
"""Decode and prefill speed, time to first token and peak RSS of k2 vs llama.cpp
(llama-cpp-python, run in a child process) on the K2-slice model, same file, same threads,
in one run; plus decode's fraction of the measured memory bandwidth bound (weight bytes
read per decoded token / time per token). Decode runs after the prompt, so --prompt 8192
measures decode at context 8192.

  .venv-bench/bin/python3 bench/model_bench.py [--build build] [--type q4_k_m|q2_k_mix|iq_mix]
        [--threads 2] [--prompt 512] [--decode 32] [--ctx N] [--ttft-prompt 16]
        [--parallel 8] [--parallel-prompt 64] [--skip-single] [--model FILE] [--rounds 3]
Batched decode (continuous batching): --parallel N sequences decode together, k2 with one
k2_eval_batch per step (`k2 bench --parallel N`), llama.cpp with one llama_batch holding N
sequence ids per llama_decode; aggregate tokens/s of all sequences (--parallel 0 skips it).
Both engines run --rounds times, alternating, and each metric keeps its best round: the
machine is shared and its speed drifts by tens of percent over seconds.
Set-up of the peer: scripts/bench-setup (installs llama-cpp-python into .venv-bench).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def weight_bytes_per_token(path):
    """Bytes of weights one decode step reads: every matrix once, routed experts K/E of
    theirs, the embedding one row; norms and the router included."""
    import gguf
    r = gguf.GGUFReader(path)
    f = r.fields
    def u32(k):
        x = f.get(k)
        return int(x.parts[x.data[0]][0]) if x else 0
    E, K = u32("deepseek2.expert_count"), u32("deepseek2.expert_used_count")
    total = 0
    for t in r.tensors:
        n = int(t.n_bytes)
        if t.name == "token_embd.weight":
            n //= int(t.shape[1])
        elif "_exps." in t.name:
            n = n * K // E
        total += n
    return total


def run_child(cmd):
    """Runs cmd; returns (stdout, peak resident set of that process in MiB)."""
    import tempfile
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if p.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {err.read().decode()[-2000:]}")
        return out.read().decode(), ru.ru_maxrss / 1024.0


def run_k2(args, model):
    cmd = [os.path.join(args.build, "k2"), "bench", "-m", model, "-p", str(args.prompt), "-n", str(args.decode),
           "--threads", str(args.threads), "--ctx-size", str(args.ctx), "--json"]
    out, rss = run_child(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    r["rss_mib"] = rss
    # time to first token of a short prompt with the model in the page cache: open + prefill
    t = json.loads(run_child([os.path.join(args.build, "k2"), "bench", "-m", model, "-p", str(args.ttft_prompt),
                              "-n", "1", "--threads", str(args.threads), "--json"])[0].strip().splitlines()[-1])
    r["ttft_s"] = t["load_s"] + args.ttft_prompt / t["prefill_tps"]
    return r


def llama_child(a):
    """In a child process: llama.cpp's TTFT, prefill and decode speed on the model (JSON)."""
    from llama_cpp import Llama
    t0 = time.perf_counter()
    llm = Llama(model_path=a["model"], n_ctx=a["ctx"], n_threads=a["threads"], n_threads_batch=a["threads"],
                n_batch=a["prompt"], n_ubatch=min(a["prompt"], 512), verbose=False, use_mmap=True)
    n_vocab = llm.n_vocab()
    short = [(i * 7919 + 13) % (n_vocab - 64) for i in range(a["ttft_prompt"])]
    llm.eval(short)
    ttft = time.perf_counter() - t0
    prompt = [(i * 7919 + 13) % (n_vocab - 64) for i in range(a["prompt"])]
    llm.reset()
    t0 = time.perf_counter(); llm.eval(prompt); t1 = time.perf_counter()
    tok = prompt[-1]
    t2 = time.perf_counter()
    for i in range(a["decode"]):
        llm.eval([(tok + i * 31) % (n_vocab - 64)])
    t3 = time.perf_counter()
    print(json.dumps({"prefill_tps": a["prompt"] / (t1 - t0), "decode_tps": a["decode"] / (t3 - t2), "ttft_s": ttft}))


def run_llama(args, model):
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    a = {"model": model, "ctx": args.ctx, "threads": args.threads, "prompt": args.prompt, "decode": args.decode,
         "ttft_prompt": args.ttft_prompt}
    out, rss = run_child([sys.executable, os.path.abspath(__file__), "--llama-child", json.dumps(a)])
    r = json.loads(out.strip().splitlines()[-1])
    r["rss_mib"] = rss  # includes the Python interpreter (~25 MiB)
    return r


def run_k2_parallel(args, model):
    cmd = [os.path.join(args.build, "k2"), "bench", "-m", model, "-p", str(args.parallel_prompt), "-n",
           str(args.decode), "--threads", str(args.threads), "--parallel", str(args.parallel), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


_llama_quiet = None


def run_llama_parallel(args, model):
    """llama.cpp's batched decode through the low-level API: N sequence ids in one batch."""
    try:
        import llama_cpp as L
    except ImportError:
        return None
    N, P, D = args.parallel, args.parallel_prompt, args.decode
    global _llama_quiet
    _llama_quiet = L.llama_log_callback(lambda level, text, user: None)  # kept alive: C holds it
    L.llama_log_set(_llama_quiet, None)
    L.llama_backend_init()
    mp = L.llama_model_default_params()
    mdl = L.llama_model_load_from_file(model.encode(), mp)
    cp = L.llama_context_default_params()
    cp.n_ctx = N * (P + D + 16)
    cp.n_batch = N * P
    cp.n_ubatch = min(512, N * P)
    cp.n_seq_max = N
    cp.n_threads = cp.n_threads_batch = args.threads
    ctx = L.llama_init_from_model(mdl, cp)
    n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(mdl))
    span = n_vocab - 64
    batch = L.llama_batch_init(N * P, 0, N)

    def decode(entries):
        batch.n_tokens = len(entries)
        for i, (t, pos, sq, lg) in enumerate(entries):
            batch.token[i] = t
            batch.pos[i] = pos
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = sq
            batch.logits[i] = lg
        rc = L.llama_decode(ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc}")

    toks = [[(i * 7919 + 13 + q * (P + D) * 7919) % span for i in range(P + D)] for q in range(N)]
    decode([(toks[0][i], i, 0, i == 7) for i in range(8)])  # warm-up
    L.llama_memory_clear(L.llama_get_memory(ctx), True)
    t0 = time.perf_counter()
    decode([(toks[q][i], i, q, i == P - 1) for q in range(N) for i in range(P)])
    t1 = time.perf_counter()
    for k in range(D):
        decode([(toks[q][P + k], P + k, q, True) for q in range(N)])
    t2 = time.perf_counter()
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(mdl)
    return {"prefill_tps": N * P / (t1 - t0), "decode_tps": N * D / (t2 - t1)}


def best_of(rounds):
    """Per metric, the best of several rounds: the highest speed, the lowest time or RSS."""
    rounds = [r for r in rounds if r]
    if not rounds:
        return None
    return {k: (min if k.endswith("_s") or k == "rss_mib" else max)(r[k] for r in rounds) for k in rounds[0]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--type", default="q4_k_m")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=0, help="context size (default: prompt + decode + 16)")
    ap.add_argument("--ttft-prompt", type=int, default=16, help="prompt tokens of the time-to-first-token run")
    ap.add_argument("--llama-child", help=argparse.SUPPRESS)
    ap.add_argument("--model", help="an existing K2-slice GGUF (default: bench/out/k2-slice-TYPE.gguf, made once)")
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--parallel-prompt", type=int, default=64)
    ap.add_argument("--skip-single", action="store_true", help="only the --parallel measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; each metric keeps its best")
    args = ap.parse_args()
    if args.llama_child:
        llama_child(json.loads(args.llama_child))
        return
    if args.ctx <= 0:
        args.ctx = args.prompt + args.decode + 16
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    model = args.model or os.path.join(ROOT, "bench", "out", f"k2-slice-{args.type}.gguf")
    if not os.path.exists(model):
        subprocess.run([os.path.join(args.build, "k2"), "mkmodel", "--preset", "k2-slice", "--type", args.type,
                        "--out", model], check=True)
    wb = weight_bytes_per_token(model)
    # one untimed pass puts the file in the page cache (TTFT is for a cached model)
    with open(model, "rb") as f:
        while f.read(1 << 24):
            pass
    # Rounds: the engines and the bandwidth probe alternate, and each metric keeps its best
    # round (speeds: highest; times: lowest), so a slow spell of a shared machine does not
    # land on one engine only. The bound uses the best bandwidth seen.
    bws, plains, k2s, lls, kps, lps = [], [], [], [], [], []
    for _ in range(args.rounds):
        m = json.loads(subprocess.run([os.path.join(args.build, "bench", "membw"), str(args.threads), "1"],
                                      check=True, capture_output=True, text=True).stdout)
        bws.append(m["read_gbps"])
        plains.append(m["plain_read_gbps"])
        if not args.skip_single:
            k2s.append(run_k2(args, model))
            lls.append(run_llama(args, model))
        if args.parallel > 0:
            kps.append(run_k2_parallel(args, model))
            lps.append(run_llama_parallel(args, model))
    bw, plain = max(bws), max(plains)
    k2, ll = best_of(k2s), best_of(lls)
    if args.parallel > 0:
        kp, lp = best_of(kps), best_of(lps)
    print(f"K2-slice {args.type}: {wb / 1e9:.3f} GB of weights per decoded token; "
          f"memory read bandwidth {bw:.2f} GB/s ({args.threads} threads, prefetching reads; plain sequential "
          f"{plain:.2f}) -> bound {bw * 1e9 / wb:.2f} tok/s; "
          f"file {os.path.getsize(model) / 2**20:.0f} MiB")
    print(f"{'metric':<34}{'k2':>10}{'llama.cpp':>12}{'ratio':>8}")
    rows = []
    if k2:
        rows += [(k2, ll, "decode_tps", f"decode tok/s (ctx {args.prompt})"),
                 (k2, ll, "prefill_tps", f"prefill tok/s (p{args.prompt})"),
                 (k2, ll, "ttft_s", f"TTFT s (p{args.ttft_prompt}, cached)"),
                 (k2, ll, "rss_mib", "peak RSS MiB (llama: +python)")]
    if args.parallel > 0:
        rows += [(kp, lp, "decode_tps", f"batched decode x{args.parallel} tok/s (all)"),
                 (kp, lp, "prefill_tps", f"batched prefill {args.parallel}x{args.parallel_prompt} tok/s")]
    for a_, b_, key, label in rows:
        a = a_[key]
        b = b_[key] if b_ else float("nan")
        print(f"{label:<34}{a:>10.3f}{b:>12.3f}{a / b if b_ else float('nan'):>8.2f}")
    if k2:
        frac = k2["decode_tps"] * wb / (bw * 1e9)
        print(f"k2 decode at {100 * frac:.1f}% of the bandwidth bound"
              + (f"; llama.cpp at {100 * ll['decode_tps'] * wb / (bw * 1e9):.1f}%" if ll else "")
              + f" (of the plain-read bound: k2 {100 * k2['decode_tps'] * wb / (plain * 1e9):.1f}%"
              + (f", llama.cpp {100 * ll['decode_tps'] * wb / (plain * 1e9):.1f}%)" if ll else ")"))
    if k2 and args.parallel > 0:
        print(f"k2 batched x{args.parallel} / single-sequence decode: {kp['decode_tps'] / k2['decode_tps']:.2f}")
    if (not args.skip_single and ll is None) or (args.parallel > 0 and lp is None):
        print("llama-cpp-python is not installed: run scripts/bench-setup", file=sys.stderr)


if __name__ == "__main__":
    main()
