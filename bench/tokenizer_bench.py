#!/usr/bin/env python3
"""Single-thread encode throughput (MB/s) of k2 and PyPI tiktoken, same vocabulary
(shared/fixtures/tokenizer/kimi-pattern-128k) and Kimi K2's pattern, on an English text and
a multilingual mix of at least 1 MB each. Builds nothing: run after building the
`tok_bench` target (bench/tokenizer.cmake).

usage: bench/tokenizer_bench.py [--build DIR] [--shared DIR] [--seconds S]"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "tools"))
from k2tok import KIMI_PAT, load_tiktoken_ranks  # noqa: E402

MULTI = [
    "The quick brown fox jumps over the lazy dog. ", "Съешь же ещё этих мягких французских булок, да выпей чаю. ",
    "我们的目标是让每个人都能使用人工智能。", "人工知能は私たちの生活を変えつつあります。", "한국어는 아름다운 언어입니다. ",
    "Ο γρήγορος καφέ αλεπού πηδά πάνω από το τεμπέλικο σκυλί. ", "مرحبا بالعالم، هذا نص تجريبي. ",
    "नमस्ते दुनिया, यह एक परीक्षण है। ", "Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich. ",
    "def f(x):\n    return x ** 2  # 😀 emoji\n", "{\"key\": [1, 2, 3], \"value\": null}\n", "1234567890 3.14159 ",
    "ภาษาไทยเป็นภาษาที่สวยงาม ", "Tiếng Việt có dấu. ", "\n\n", "    ", "¿Qué tal? ¡Muy bien! ",
]


def english_text(shared, size):
    g = json.load(open(os.path.join(shared, "fixtures", "tokenizer", "k2-tiny", "golden.json")))
    base = max((c["text"] for c in g["ordinary"]), key=len)
    paras = [p for p in base.split("\n") if p.strip()]
    rng = random.Random(1)
    out = []
    n = 0
    while n < size:
        p = rng.choice(paras) + "\n\n"
        out.append(p)
        n += len(p.encode())
    return "".join(out)


def multi_text(size):
    rng = random.Random(2)
    out = []
    n = 0
    while n < size:
        p = rng.choice(MULTI)
        out.append(p)
        n += len(p.encode())
    return "".join(out)


def tiktoken_rate(enc, text, seconds):
    data = text.encode()
    enc.encode_ordinary(text)
    best = 1e30
    end = time.perf_counter() + seconds
    reps = 0
    while time.perf_counter() < end or reps < 3:
        t0 = time.perf_counter()
        ids = enc.encode_ordinary(text)
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return len(data) / best / 1e6, len(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--shared", default=os.environ.get("K2_SHARED_DIR", os.path.join(ROOT, "..", "shared")))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--size", type=int, default=1 << 20)
    a = ap.parse_args()
    import tiktoken
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    exe = next((p for p in (os.path.join(a.build, "bench", "tok_bench"), os.path.join(a.build, "tok_bench"))
                if os.path.exists(p)), None)
    if not exe:
        sys.exit("tok_bench not built (target tok_bench, bench/tokenizer.cmake)")
    d = os.path.join(a.shared, "fixtures", "tokenizer", "kimi-pattern-128k")
    model, special = os.path.join(d, "tiktoken.model"), os.path.join(d, "special_tokens.json")
    enc = tiktoken.Encoding(name="kimi", pat_str=KIMI_PAT, mergeable_ranks=load_tiktoken_ranks(model),
                            special_tokens=json.load(open(special)))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, text in (("english", english_text(a.shared, a.size)), ("multilingual", multi_text(a.size))):
            path = os.path.join(tmp, name + ".txt")
            open(path, "w", encoding="utf-8").write(text)
            out = subprocess.run([exe, model, special, path, str(a.seconds)], capture_output=True, text=True, check=True)
            nbytes, ntok, _, k2_mbs = out.stdout.split()
            tt_mbs, tt_ntok = tiktoken_rate(enc, text, a.seconds)
            if int(ntok) != tt_ntok:
                # k2 applies the reference's chunking (400 000 code points, spec §2.7); tiktoken alone does not.
                print(f"note: {name}: k2 {ntok} tokens, tiktoken {tt_ntok} (chunk boundaries, spec §2.7)")
            rows.append((name, int(nbytes), float(k2_mbs), tt_mbs))
    print(f"{'text':<14}{'bytes':>10}{'k2 MB/s':>10}{'tiktoken MB/s':>15}{'ratio':>8}")
    for name, n, k, t in rows:
        print(f"{name:<14}{n:>10}{k:>10.2f}{t:>15.2f}{k / t:>8.2f}")


main()
