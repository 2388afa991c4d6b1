#!/usr/bin/env python3
"""Decode and prefill speed of k2 vs llama.cpp (llama-cpp-python) on the K2-slice model,
same file, same threads, in one run; plus decode's fraction of the measured memory
bandwidth bound (weight bytes read per decoded token / time per token).

  .venv-bench/bin/python3 bench/model_bench.py [--build build] [--type q4_k_m] [--threads 2]
                                                [--prompt 512] [--decode 32] [--ctx 1024]
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


def run_k2(args, model):
    cmd = [os.path.join(args.build, "k2"), "bench", "-m", model, "-p", str(args.prompt), "-n", str(args.decode),
           "--threads", str(args.threads), "--ctx-size", str(args.ctx), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_llama(args, model):
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=model, n_ctx=args.ctx, n_threads=args.threads, n_threads_batch=args.threads,
                n_batch=args.prompt, n_ubatch=args.prompt, verbose=False, use_mmap=True)
    n_vocab = llm.n_vocab()
    prompt = [(i * 7919 + 13) % (n_vocab - 64) for i in range(args.prompt)]
    # warm-up (page cache, allocations)
    llm.reset(); llm.eval(prompt[:8])
    llm.reset()
    t0 = time.perf_counter(); llm.eval(prompt); t1 = time.perf_counter()
    tok = prompt[-1]
    t2 = time.perf_counter()
    for i in range(args.decode):
        llm.eval([(tok + i * 31) % (n_vocab - 64)])
    t3 = time.perf_counter()
    return {"prefill_tps": args.prompt / (t1 - t0), "decode_tps": args.decode / (t3 - t2)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--type", default="q4_k_m")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--ctx", type=int, default=1024)
    args = ap.parse_args()
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    model = os.path.join(ROOT, "bench", "out", f"k2-slice-{args.type}.gguf")
    if not os.path.exists(model):
        subprocess.run([os.path.join(args.build, "k2"), "mkmodel", "--preset", "k2-slice", "--type", args.type,
                        "--out", model], check=True)
    bw = json.loads(subprocess.run([os.path.join(args.build, "bench", "membw"), str(args.threads), "1"],
                                   check=True, capture_output=True, text=True).stdout)["read_gbps"]
    wb = weight_bytes_per_token(model)
    k2 = run_k2(args, model)
    ll = run_llama(args, model)
    print(f"K2-slice {args.type}: {wb / 1e9:.3f} GB of weights per decoded token; "
          f"memory read bandwidth {bw:.2f} GB/s ({args.threads} threads) -> bound {bw * 1e9 / wb:.2f} tok/s")
    print(f"{'metric':<22}{'k2':>10}{'llama.cpp':>12}{'ratio':>8}")
    for key, label in (("decode_tps", "decode tok/s"), ("prefill_tps", f"prefill tok/s (p{args.prompt})")):
        a = k2[key]
        b = ll[key] if ll else float("nan")
        print(f"{label:<22}{a:>10.2f}{b:>12.2f}{a / b if ll else float('nan'):>8.2f}")
    frac = k2["decode_tps"] * wb / (bw * 1e9)
    print(f"k2 decode at {100 * frac:.1f}% of the bandwidth bound"
          + (f"; llama.cpp at {100 * ll['decode_tps'] * wb / (bw * 1e9):.1f}%" if ll else ""))
    if ll is None:
        print("llama-cpp-python is not installed: run scripts/bench-setup", file=sys.stderr)


if __name__ == "__main__":
    main()
