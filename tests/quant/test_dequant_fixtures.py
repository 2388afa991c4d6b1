"""k2's dequantization of every tensor of every shared/fixtures model equals
gguf.quants.dequantize bit for bit (spec/quant-types.md §3, §7)."""
import glob
import os
import sys

import numpy as np
import gguf
from gguf.quants import dequantize

from quanttool import bits_mismatch, k2_dequantize_many, shared_dir_or_skip


def main():
    shared = shared_dir_or_skip()
    models = sorted(glob.glob(os.path.join(shared, "fixtures", "models", "*.gguf")))
    if not models:
        print(f"FAIL: no models under {shared}/fixtures/models")
        return 1
    failures = 0
    n_tensors = 0
    seen_types = set()
    for path in models:
        r = gguf.GGUFReader(path)
        entries = []
        for t in r.tensors:
            entries.append((int(t.tensor_type), int(t.n_elements), int(t.data_offset)))
        ours = k2_dequantize_many(path, entries)
        for t, mine in zip(r.tensors, ours):
            ref = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32).ravel()
            bad = bits_mismatch(mine, ref)
            n_tensors += 1
            seen_types.add(t.tensor_type.name)
            if bad.size:
                failures += 1
                i = bad[0]
                print(f"MISMATCH {os.path.basename(path)} {t.name} ({t.tensor_type.name}): "
                      f"{bad.size} of {ref.size} values differ; first at {i}: k2 {mine[i]!r} gguf {ref[i]!r}")
    print(f"{n_tensors} tensors in {len(models)} models, types {sorted(seen_types)}: {failures} mismatching")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
