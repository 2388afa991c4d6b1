"""deepseek2 variants (no q-LoRA, legacy attn_kv_b, softmax routing, grouped routing, two
shared experts, no YaRN, YaRN with default betas, tied output) written by make_variants with
k2's GGUF writer: k2 exact mode (prefill and decode) against the NumPy oracle (max |d| <=
0.005), and fast mode on the Q8_0 files (median d <= 3 % of the largest logit -- the tied file's
logits reach ~45 -- and argmax agreement >= 80 %)."""
import os
import subprocess
import sys
import tempfile

import numpy as np

import deepseek_ref

TOL = 0.005
BUILD = os.environ.get("K2_BUILD_DIR", "build")
K2 = os.environ.get("K2_BIN", os.path.join(BUILD, "k2"))
MAKE = os.path.join(BUILD, "tests", "make_variants")
VARIANTS = ["base", "noqlora", "legacy", "softmax", "grouped", "shared2", "noyarn", "yarn32", "tied"]
TOKENS = [3, 17, 99, 1, 150, 42, 7, 7, 128, 64, 5, 77, 31, 140, 2, 9, 100, 55, 23, 11]


def main():
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([MAKE, tmp], check=True)
        out = os.path.join(tmp, "out.f32")
        for v in VARIANTS:
            for t in ["f32", "f16", "q8_0"]:
                path = os.path.join(tmp, f"{v}-{t}.gguf")
                ref = deepseek_ref.Model(path).forward(TOKENS)
                modes = [("prefill", ["--exact"]), ("decode", ["--exact", "--decode"])]
                if t == "q8_0":
                    modes.append(("fast", []))   # Q8_0 activations: ~1 % noise, looser bound
                for mode, extra in modes:
                    p = subprocess.run([K2, "logits", "-m", path, "--tokens", ",".join(map(str, TOKENS)),
                                        "--out", out, "--threads", "2"] + extra,
                                       capture_output=True, text=True)
                    if p.returncode != 0:
                        print(f"FAIL {v}-{t} {mode}: {p.stderr.strip()}")
                        fails += 1
                        continue
                    lg = np.fromfile(out, dtype="<f4").reshape(len(TOKENS), -1)
                    d = np.abs(lg - ref).max(axis=1)
                    if mode == "fast":
                        ok = np.median(d) <= 0.03 * np.abs(ref).max() and np.mean(lg.argmax(1) == ref.argmax(1)) >= 0.8
                    else:
                        ok = d.max() <= TOL
                    fails += not ok
                    print(f"{'ok ' if ok else 'FAIL'} {v}-{t} {mode}: max |k2 - oracle| {d.max():.3g}, "
                          f"median {np.median(d):.3g}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
