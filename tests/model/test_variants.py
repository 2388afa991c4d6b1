"""deepseek2 variants (no q-LoRA, legacy attn_kv_b, softmax routing, grouped routing, two
shared experts, no YaRN, YaRN with default betas, tied output) written by make_variants with
k2's GGUF writer: k2 exact mode (prefill and decode) against the NumPy oracle."""
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
                for mode, extra in [("prefill", []), ("decode", ["--decode"])]:
                    p = subprocess.run([K2, "logits", "-m", path, "--tokens", ",".join(map(str, TOKENS)),
                                        "--out", out, "--exact", "--threads", "2"] + extra,
                                       capture_output=True, text=True)
                    if p.returncode != 0:
                        if t == "q8_0" and "cannot compute with" in p.stderr:
                            print(f"skip {v}-{t}: {p.stderr.strip()}")
                            break
                        print(f"FAIL {v}-{t} {mode}: {p.stderr.strip()}")
                        fails += 1
                        continue
                    lg = np.fromfile(out, dtype="<f4").reshape(len(TOKENS), -1)
                    d = np.abs(lg - ref).max()
                    ok = d <= TOL
                    fails += not ok
                    print(f"{'ok ' if ok else 'FAIL'} {v}-{t} {mode}: max |k2 - oracle| {d:.3g}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
