"""k2_sampler against a NumPy/Python reference of the documented pipeline
(spec/server-api.md §2.3.1 order, k2.h): exact token sequences for fixed seeds, the PRNG
stream, seed reproducibility, and a chi-square check of the drawn distribution."""
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from k2test import Checker, build_dir  # noqa: E402

M64 = (1 << 64) - 1
f32 = np.float32


class Rng:
    """xoshiro256** seeded through splitmix64."""

    def __init__(self, seed):
        x = seed & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    def next(self):
        s = self.s
        rotl = lambda x, k: ((x << k) | (x >> (64 - k))) & M64  # noqa: E731
        result = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return result

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53


DEFAULTS = dict(temperature=0.6, top_p=1.0, top_k=0, min_p=0.0, repeat_penalty=1.0, repeat_last_n=64,
                frequency_penalty=0.0, presence_penalty=0.0)


def ref_run(case):
    o = dict(DEFAULTS)
    o.update(case.get("opts", {}))
    rng = Rng(int(o["seed"]))
    rows = [np.array([-np.inf if x == "-inf" else x for x in r], dtype=np.float32) for r in case["logits"]]
    steps = case.get("steps", len(rows))
    hist = list(case.get("prompt", []))
    counts = {}
    T, top_p, top_k, min_p = f32(o["temperature"]), f32(o["top_p"]), o["top_k"], f32(o["min_p"])
    r, n_last = f32(o["repeat_penalty"]), o["repeat_last_n"]
    fp, pp = f32(o["frequency_penalty"]), f32(o["presence_penalty"])
    out = []
    for k in range(steps):
        w = rows[min(k, len(rows) - 1)].copy()
        for tid, b in case.get("bias", []):
            w[tid] = w[tid] + (f32(-np.inf) if b == "-inf" else f32(b))
        if r != f32(1) and n_last != 0 and hist:
            win = hist if n_last < 0 else hist[-n_last:]
            for t in sorted(set(win)):
                w[t] = w[t] / r if w[t] > 0 else w[t] * r
        for t, n in counts.items():
            w[t] = w[t] - (f32(n) * fp + (pp if n > 0 else f32(0)))
        cand = [(float(w[i]), i) for i in range(len(w)) if w[i] > -np.inf]
        if T <= 0 or top_p <= 0:
            best = max(cand, key=lambda c: (c[0], -c[1]))
            tok = best[1]
        else:
            if 0 < top_k < len(cand):
                cand = sorted(cand, key=lambda c: (-c[0], c[1]))[:top_k]
            lmax = max(c[0] for c in cand)
            if top_p < 1:
                z = 0.0
                for c in cand:
                    z += math.exp(c[0] - lmax)
                target = float(top_p) * z
                srt = sorted(cand, key=lambda c: (-c[0], c[1]))
                cum, keep = 0.0, len(srt)
                for i, c in enumerate(srt):
                    cum += math.exp(c[0] - lmax)
                    if cum >= target:
                        keep = i + 1
                        break
                cand = srt[:keep]
            if min_p > 0:
                cand = [c for c in cand if not (math.exp(c[0] - lmax) < float(min_p))]
            cand = sorted(cand, key=lambda c: c[1])
            inv_t = 1.0 / float(T)
            total = 0.0
            for c in cand:
                total += math.exp((c[0] - lmax) * inv_t)
            u = rng.uniform() * total
            cum, tok = 0.0, cand[-1][1]
            for c in cand:
                cum += math.exp((c[0] - lmax) * inv_t)
                if u < cum:
                    tok = c[1]
                    break
        out.append(tok)
        hist.append(tok)
        counts[tok] = counts.get(tok, 0) + 1
    return out


def main():
    ck = Checker("test_sampling")
    tool = os.path.join(build_dir(), "tests", "sample_tool")
    if not os.path.exists(tool):
        tool = os.path.join(build_dir(), "sample_tool")
    lines = []

    def add(case):
        lines.append(case)

    g = np.random.default_rng(1234)

    def rows(n, V, scale=3.0):
        return [[float(x) for x in (g.standard_normal(V) * scale).astype(np.float32)] for _ in range(n)]

    # PRNG stream
    add({"opts": {"seed": 42}, "rng": 8})
    add({"opts": {"seed": str(M64)}, "rng": 4})
    # per-sampler cases: (name, opts, extra)
    cases = [
        ("temperature", {"temperature": 0.7}, {}),
        ("temperature-high", {"temperature": 1.8}, {}),
        ("greedy", {"temperature": 0.0}, {}),
        ("top_p=0 greedy", {"temperature": 1.0, "top_p": 0.0}, {}),
        ("top_k", {"temperature": 1.0, "top_k": 5}, {}),
        ("top_p", {"temperature": 1.0, "top_p": 0.8}, {}),
        ("min_p", {"temperature": 1.0, "min_p": 0.1}, {}),
        ("all", {"temperature": 1.3, "top_k": 10, "top_p": 0.9, "min_p": 0.05}, {}),
        ("repeat", {"temperature": 0.9, "repeat_penalty": 1.5, "repeat_last_n": 8}, {"prompt": [1, 2, 3, 3, 7]}),
        ("repeat-all", {"temperature": 0.9, "repeat_penalty": 1.3, "repeat_last_n": -1}, {"prompt": [4, 5]}),
        ("freq-pres", {"temperature": 0.8, "frequency_penalty": 0.5, "presence_penalty": 0.3}, {"prompt": [1, 1]}),
        ("greedy-penalties", {"temperature": 0.0, "repeat_penalty": 1.2, "frequency_penalty": 1.0,
                              "presence_penalty": 0.5}, {}),
        ("bias", {"temperature": 1.0}, {"bias": [[0, 5.0], [3, "-inf"], [7, -2.5]]}),
        ("bias-greedy", {"temperature": 0.0}, {"bias": [[11, 100.0]]}),
    ]
    for i, (name, opts, extra) in enumerate(cases):
        o = dict(opts)
        o["seed"] = 1000 + i
        case = {"name": name, "opts": o, "logits": rows(60, 40)}
        case.update(extra)
        add(case)
    # a flat large vocabulary: the nucleus spans more than the first partial sort (256)
    big = rows(6, 3000, 0.3)
    add({"name": "top_p-big", "opts": {"temperature": 1.0, "top_p": 0.95, "seed": 7}, "logits": big})
    add({"name": "top_k-big", "opts": {"temperature": 1.0, "top_k": 700, "seed": 8}, "logits": big})
    add({"name": "all-big", "opts": {"temperature": 0.5, "top_k": 2000, "top_p": 0.5, "min_p": 0.2, "seed": 9},
         "logits": big})
    # ties: equal logits, greedy takes the lowest id, top_k keeps the lowest ids
    tie = [[1.0, 3.0, 3.0, 2.0, 3.0, 0.5]]
    add({"name": "tie-greedy", "opts": {"temperature": 0.0, "seed": 1}, "logits": tie, "steps": 5})
    add({"name": "tie-topk", "opts": {"temperature": 1.0, "top_k": 2, "seed": 2}, "logits": tie, "steps": 50})
    # reproducibility and distribution
    fixed = [[0.0, 1.0, -0.5, 2.0, 0.3, -2.0, 1.5, 0.7]]
    add({"name": "seed-a", "opts": {"temperature": 1.0, "seed": 99}, "logits": fixed, "steps": 200})
    add({"name": "seed-b", "opts": {"temperature": 1.0, "seed": 99}, "logits": fixed, "steps": 200})
    add({"name": "seed-c", "opts": {"temperature": 1.0, "seed": 100}, "logits": fixed, "steps": 200})
    add({"name": "chi", "opts": {"temperature": 1.0, "seed": 5}, "logits": fixed, "steps": 20000})
    add({"name": "chi-t", "opts": {"temperature": 0.5, "top_k": 4, "seed": 6}, "logits": fixed, "steps": 20000})
    # errors
    add({"name": "bad-bias", "opts": {"seed": 1}, "bias": [[40, 1.0]], "logits": rows(1, 40)})
    add({"name": "bad-temp", "opts": {"seed": 1, "temperature": -1}, "logits": rows(1, 40)})
    add({"name": "all-banned", "opts": {"seed": 1}, "bias": [[0, "-inf"], [1, "-inf"]], "logits": [[1.0, 2.0]],
         "steps": 1})

    inp = "".join(json.dumps(c) + "\n" for c in lines)
    res = subprocess.run([tool], input=inp, capture_output=True, text=True, timeout=300)
    ck.check(res.returncode == 0, f"sample_tool exited {res.returncode}: {res.stderr}")
    outs = [json.loads(x) for x in res.stdout.splitlines()]
    ck.check(len(outs) == len(lines), f"{len(outs)} results for {len(lines)} cases")
    by_name = {}
    for case, out in zip(lines, outs):
        name = case.get("name", "rng")
        by_name[name] = out
        if "rng" in case:
            r = Rng(int(case["opts"]["seed"]))
            want = [str(r.next()) for _ in range(case["rng"])]
            ck.check(out.get("rng") == want, f"PRNG stream for seed {case['opts']['seed']}: {out} != {want}")
            continue
        if name.startswith("bad-"):
            ck.check("error" in out, f"{name}: expected an error, got {out}")
            continue
        if name == "all-banned":
            ck.check(out.get("tokens") == [-1], f"{name}: {out}")
            continue
        want = ref_run(case)
        got = out.get("tokens")
        ck.check(got == want, f"{name}: k2 {got[:20] if got else out} ... != reference {want[:20]} ...")
    ck.check(by_name["tie-greedy"]["tokens"] == [1] * 5, f"tie greedy {by_name['tie-greedy']}")
    ck.check(set(by_name["tie-topk"]["tokens"]) <= {1, 2}, f"tie top_k {by_name['tie-topk']}")
    ck.check(by_name["seed-a"]["tokens"] == by_name["seed-b"]["tokens"], "same seed, same tokens")
    ck.check(by_name["seed-a"]["tokens"] != by_name["seed-c"]["tokens"], "another seed, other tokens")
    for name, T, k in (("chi", 1.0, 0), ("chi-t", 0.5, 4)):
        toks = np.array(by_name[name]["tokens"])
        lg = np.array(fixed[0], dtype=np.float64)
        keep = np.argsort(-lg, kind="stable")[:k] if k else np.arange(len(lg))
        p = np.zeros_like(lg)
        e = np.exp((lg[keep] - lg.max()) / T)
        p[keep] = e / e.sum()
        hist = np.bincount(toks, minlength=len(lg))
        n = len(toks)
        ck.check(hist[p == 0].sum() == 0, f"{name}: tokens outside the kept set: {hist}")
        m = p > 0
        chi2 = float((((hist[m] - n * p[m]) ** 2) / (n * p[m])).sum())
        dof = int(m.sum()) - 1
        # 99.99th percentile of chi-square is below 3*dof + 15 for dof <= 7
        ck.check(chi2 < 3 * dof + 15, f"{name}: chi-square {chi2:.1f} with {dof} dof; counts {hist} vs {n * p}")
    ck.report()


if __name__ == "__main__":
    main()
