"""k2 logits / k2 generate: output format and error reporting (bad ids, context overflow,
missing file, another architecture, usage errors)."""
import os
import subprocess
import sys
import tempfile

import numpy as np

import k2fixtures as fx

K2 = os.environ.get("K2_BIN", os.path.join(os.environ.get("K2_BUILD_DIR", "build"), "k2"))
fails = 0


def check(cond, what):
    global fails
    fails += not cond
    print(f"{'ok ' if cond else 'FAIL'} {what}")


def k2(*args):
    return subprocess.run([K2, *args], capture_output=True, text=True)


def main():
    shared = fx.shared_dir()
    m = fx.model_path("k2-tiny-f32")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "o.f32")
        p = k2("logits", "-m", m, "--tokens", "1,2,3", "--rows", "last", "--out", out)
        check(p.returncode == 0 and os.path.getsize(out) == 2048 * 4, "--rows last writes one row of n_vocab f32")
        p = k2("logits", "-m", m, "--tokens", "1,2,3", "--out", out)
        check(p.returncode == 0 and os.path.getsize(out) == 3 * 2048 * 4, "--rows all writes one row per token")
        full = np.fromfile(out, dtype="<f4").reshape(3, -1)
        p = k2("generate", "-m", m, "--tokens", "1,2,3", "-n", "3", "--greedy", "--ids")
        ids = [int(x) for x in p.stdout.strip().split(",")]
        check(p.returncode == 0 and len(ids) == 3 and ids[0] == int(full[2].argmax()),
              "generate prints the greedy ids")
        toks = ",".join(str(t) for t in range(40, 80))
        k2("logits", "-m", m, "--tokens", toks, "--out", out, "--exact")
        a = np.fromfile(out, dtype="<f4").reshape(40, -1)
        k2("logits", "-m", m, "--tokens", toks, "--out", out, "--exact", "--llama-compat-beta")
        b = np.fromfile(out, dtype="<f4").reshape(40, -1)
        k2("logits", "-m", m, "--tokens", toks, "--out", out, "--exact", "--yarn-beta-fast", "32")
        c = np.fromfile(out, dtype="<f4").reshape(40, -1)
        check(np.abs(a[0] - b[0]).max() < 1e-6 and np.abs(a[-1] - b[-1]).max() > 1e-3 and np.array_equal(b, c),
              "--llama-compat-beta (= --yarn-beta-fast 32) changes positions > 0 only")
        p = k2("logits", "-m", m, "--tokens", "1,2,3,4,5", "--ctx", "4", "--out", out)
        check(p.returncode == 1 and "context" in p.stderr, f"prompt longer than the context: {p.stderr.strip()}")
        p = k2("logits", "-m", m, "--tokens", "1,2048", "--out", out)
        check(p.returncode == 1 and "2048" in p.stderr and "vocabulary" in p.stderr,
              f"token id out of range: {p.stderr.strip()}")
        p = k2("logits", "-m", m, "--tokens", "-1", "--out", out)
        check(p.returncode == 1 and "vocabulary" in p.stderr, f"negative token id: {p.stderr.strip()}")
        p = k2("logits", "-m", os.path.join(tmp, "absent.gguf"), "--tokens", "1", "--out", out)
        check(p.returncode == 1 and "absent.gguf" in p.stderr, f"missing model: {p.stderr.strip()}")
        vocab = os.path.join(shared, "fixtures", "tokenizer", "llama-cpp-vocab", "ggml-vocab-gpt-2.gguf")
        p = k2("logits", "-m", vocab, "--tokens", "1", "--out", out)
        check(p.returncode == 1 and "architecture" in p.stderr, f"other architecture: {p.stderr.strip()}")
        p = k2("logits", "-m", m, "--tokens", "1,x", "--out", out)
        check(p.returncode == 2, "malformed --tokens is a usage error")
        p = k2("logits", "-m", m, "--tokens", "1")
        check(p.returncode == 2, "missing --out is a usage error")
        # k2 bench: one sequence, and --parallel (sequences decoded together, aggregate rates)
        import json
        for par in (1, 3):
            p = k2("bench", "-m", m, "-p", "4", "-n", "2", "--threads", "1", "--parallel", str(par), "--json")
            j = json.loads(p.stdout) if p.returncode == 0 else {}
            check(j.get("parallel") == par and j.get("decode_tps", 0) > 0 and j.get("prefill_tps", 0) > 0 and
                  abs(j["decode_tps_per_seq"] * par - j["decode_tps"]) < 1e-3 * j["decode_tps"],
                  f"bench --parallel {par}: {p.stdout.strip()} {p.stderr.strip()}")
        p = k2("bench", "-m", m, "--parallel", "0")
        check(p.returncode == 2 and "parallel" in p.stderr, f"bench --parallel 0 is a usage error: {p.stderr.strip()}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
