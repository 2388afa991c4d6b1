"""src/quant/iq_tables.{c,h} equal a fresh generation from the gguf package, and the
decoded grids agree with the package's own decoder and with the content checks of
spec/quant-types.md §3.5.1."""
import importlib.util
import os
import re
import sys

import numpy as np
import gguf.quants as gq

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("K2_SOURCE_DIR") or os.path.join(HERE, "..", "..")


def load_generator():
    path = os.path.join(SRC, "scripts", "gen-iq-tables.py")
    spec = importlib.util.spec_from_file_location("gen_iq_tables", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_c_arrays(text):
    """{symbol: [ints]} from the generated C file."""
    out = {}
    for m in re.finditer(r"const \w+ (\w+)\[(\d+)\] = \{(.*?)\};", text, re.S):
        vals = [int(v.strip().rstrip("ULu"), 0) for v in m.group(3).replace("\n", " ").split(",") if v.strip()]
        if len(vals) != int(m.group(2)):
            raise AssertionError(f"{m.group(1)}: {len(vals)} values, declared {m.group(2)}")
        out[m.group(1)] = vals
    return out


def main():
    gen = load_generator()
    failures = 0

    # 1. the committed files are what the generator produces now
    h, c = gen.render()
    for name, text in (("iq_tables.h", h), ("iq_tables.c", c)):
        with open(os.path.join(SRC, "src", "quant", name), encoding="utf-8") as f:
            cur = f.read()
        if gen.normalize(cur) != gen.normalize(text):
            print(f"FAIL: src/quant/{name} differs from scripts/gen-iq-tables.py output; regenerate it")
            failures += 1

    # 2. the committed values equal the package's own decoding of its grids
    with open(os.path.join(SRC, "src", "quant", "iq_tables.c"), encoding="utf-8") as f:
        arrays = parse_c_arrays(f.read())
    for sym, clsname, _ctype, nbytes in gen.GRIDS:
        cls = getattr(gq, clsname)
        cls.init_grid()
        ref = np.asarray(cls.grid, dtype=np.float32).reshape(cls.grid_shape).astype(np.int64)
        got = np.array(arrays[sym], dtype=np.uint64)
        vals = ((got.reshape(-1, 1) >> (8 * np.arange(nbytes, dtype=np.uint64)).reshape(1, -1)) & np.uint64(0xFF)).astype(np.int64)
        if clsname == "IQ1_S":
            vals = np.where(vals > 127, vals - 256, vals)
        if vals.shape != ref.shape or not np.array_equal(vals, ref):
            print(f"FAIL: {sym} differs from gguf.quants.{clsname}.grid")
            failures += 1
        # §3.5.1 content checks
        allowed = {"IQ2_XXS": {8, 25, 43}, "IQ2_XS": {8, 25, 43}, "IQ2_S": {8, 25, 43},
                   "IQ3_XXS": {4, 12, 20, 28, 36, 44, 52, 62}, "IQ3_S": {1, 3, 5, 7, 9, 11, 13, 15},
                   "IQ1_S": {-1, 0, 1}}[clsname]
        if not set(np.unique(vals).tolist()) <= allowed:
            print(f"FAIL: {sym} holds values outside {sorted(allowed)}")
            failures += 1
        if len(set(arrays[sym])) != len(arrays[sym]):
            print(f"FAIL: {sym} has duplicate entries")
            failures += 1

    ks = arrays["quant_ksigns_iq2xs"]
    if ks != [i + 128 * (bin(i).count("1") % 2) for i in range(128)]:
        print("FAIL: quant_ksigns_iq2xs is not i + 128*(popcount(i) mod 2)")
        failures += 1
    if ks != list(gq.IQ2_XXS.ksigns):
        print("FAIL: quant_ksigns_iq2xs differs from gguf.quants.IQ2_XXS.ksigns")
        failures += 1
    if arrays["quant_kvalues_iq4nl"] != [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]:
        print("FAIL: quant_kvalues_iq4nl differs from §3.3")
        failures += 1
    if arrays["quant_kvalues_mxfp4"] != [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12]:
        print("FAIL: quant_kvalues_mxfp4 differs from §3.3")
        failures += 1
    print(f"iq tables: {len(arrays)} arrays checked, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
