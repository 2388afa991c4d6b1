"""k2 exact mode against fixtures/golden-exact (every model, every case) and the f32 model
against fixtures/golden (llama.cpp), on the prefill path (one batch) and the decode path
(one token at a time), with 1 and 2 threads, plus greedy generation.

Criteria (fixtures/README.md): every position d(p) = max_v |k2 - golden| <= 0.005; greedy ids
equal up to the first step whose golden margin is below 0.005."""
import os
import subprocess
import sys
import tempfile

import numpy as np

import k2fixtures as fx

TOL = 0.005
K2 = os.environ.get("K2_BIN", os.path.join(os.environ.get("K2_BUILD_DIR", "build"), "k2"))


def run_logits(model, toks, extra, tmp):
    out = os.path.join(tmp, "out.f32")
    cmd = [K2, "logits", "-m", model, "--tokens", ",".join(map(str, toks)), "--out", out] + extra
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None, p.stderr.strip()
    return np.fromfile(out, dtype="<f4").reshape(len(toks), -1), ""


def main():
    fx.shared_dir()
    fails = 0
    worst = {}
    with tempfile.TemporaryDirectory() as tmp:
        for q in fx.models_to_test():
            name = f"k2-tiny-{q}"
            path = fx.model_path(name)
            for case in ["short", "chat", "long"]:
                toks, rows, gold = fx.load_case("golden-exact", name, case)
                # prefill with 2 threads on every case; decode on short (and chat for f32/bf16)
                # and 1 thread on short only, to keep the runtime small.
                modes = [("prefill/2t", ["--threads", "2"])]
                if case == "short" or (case == "chat" and q in ("f32", "bf16")):
                    modes.append(("decode/2t", ["--threads", "2", "--decode"]))
                if case == "short":
                    modes.append(("prefill/1t", ["--threads", "1"]))
                for mode, extra in modes:
                    lg, why = run_logits(path, toks, ["--exact"] + extra, tmp)
                    if lg is None:
                        print(f"FAIL {name} {case} {mode}: k2 failed: {why}")
                        fails += 1
                        continue
                    d = np.abs(lg[rows] - gold).max(axis=1)
                    worst[name] = max(worst.get(name, 0.0), float(d.max()))
                    ok = d.max() <= TOL
                    fails += not ok
                    if not ok:
                        print(f"FAIL {name} {case} {mode}: max d(p) {d.max():.3g} at row {int(d.argmax())}")
                    if q == "f32":
                        _, _, g2 = fx.load_case("golden", name, case)
                        d2 = np.abs(lg[rows] - g2).max(axis=1).max()
                        ok = d2 <= TOL
                        fails += not ok
                        print(f"{'ok ' if ok else 'FAIL'} {name} {case} {mode}: vs golden/ max d(p) {d2:.3g}")
            g = fx.load_greedy("golden-exact", name)
            p = subprocess.run([K2, "generate", "-m", path, "--tokens", ",".join(map(str, g["prompt"])),
                                "-n", str(len(g["generated"])), "--greedy", "--ids", "--exact",
                                "--threads", "2"], capture_output=True, text=True)
            if p.returncode != 0:
                print(f"FAIL {name} greedy: {p.stderr.strip()}")
                fails += 1
                continue
            got = [int(x) for x in p.stdout.strip().split(",") if x]
            ok, why = fx.greedy_ok(got, g["generated"], g["margin"])
            fails += not ok
            print(f"{'ok ' if ok else 'FAIL'} {name}: max d(p) {worst.get(name, 0):.3g}, greedy {why}")
    if "k2-tiny-f32" not in worst:
        print("FAIL: the f32 model did not run")
        fails += 1
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
