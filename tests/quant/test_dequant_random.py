"""k2's dequantization of random blocks equals gguf.quants.dequantize bit for bit, for
every type the package decodes (spec/quant-types.md §7). fp16 scale fields are forced to
finite values of varied magnitude (subnormals included). Types the package lacks (Q8_1,
Q8_K, Q1_0, Q2_0) are checked against small NumPy decoders written from §3 here."""
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

from quanttool import bits_mismatch, k2_dequantize_bytes

# Byte offsets of fp16 fields inside a block, per type (§3).
FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
    T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0],
    T.IQ1_S: [0], T.IQ4_NL: [0], T.IQ4_XS: [0], T.TQ1_0: [52], T.TQ2_0: [64],
    T.MXFP4: [], T.NVFP4: [],
}
Q8_1, Q8_K, Q1_0, Q2_0 = 9, 15, 41, 42
BLOCK = {Q8_1: (32, 36), Q8_K: (256, 292), Q1_0: (128, 18), Q2_0: (64, 18)}

rng = np.random.default_rng(20260901)


def finite_fp16(n):
    h = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    exp31 = (h & 0x7C00) == 0x7C00
    h[exp31] &= np.uint16(0xBFFF)  # clear the top exponent bit: finite, large
    return h


def put_fp16(blocks, off, vals):
    blocks[:, off] = (vals & 0xFF).astype(np.uint8)
    blocks[:, off + 1] = (vals >> 8).astype(np.uint8)


def random_blocks(qtype, n_blocks, type_size):
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in FP16_FIELDS.get(qtype, []):
        put_fp16(b, off, finite_fp16(n_blocks))
    if qtype == T.IQ1_M:
        # the super-scale is an fp16 split over the top nibbles of four uint16 words (§3.5 IQ1_M)
        d = finite_fp16(n_blocks)
        w = b[:, 48:56].copy().view(np.uint16).reshape(n_blocks, 4)
        for k in range(4):
            w[:, k] = (w[:, k] & np.uint16(0x0FFF)) | (((d >> np.uint16(4 * k)) & np.uint16(0xF)) << np.uint16(12))
        b[:, 48:56] = w.view(np.uint8).reshape(n_blocks, 8)
    if qtype == T.MXFP4:
        special = np.array([0, 1, 2, 126, 127, 128, 129, 130, 140, 150, 254, 255], dtype=np.uint8)
        b[:len(special), 0] = special
    return b


def ref_extra(qtype, blocks):
    """NumPy decoders written from §3 for the types gguf-py does not decode."""
    nb = blocks.shape[0]
    if qtype in (Q8_1, Q8_K):
        if qtype == Q8_1:
            d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
            qs = blocks[:, 4:36].view(np.int8).astype(np.float32)
        else:
            d = blocks[:, 0:4].copy().view(np.float32)
            qs = blocks[:, 4:260].view(np.int8).astype(np.float32)
        return qs * d if qtype == Q8_1 else d * qs
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:18]
    if qtype == Q1_0:
        bits = (qs.reshape(nb, 16, 1) >> np.arange(8, dtype=np.uint8).reshape(1, 1, 8)) & 1
        bits = bits.reshape(nb, 128)
        return np.where(bits == 1, d, -d).astype(np.float32)
    codes = (qs.reshape(nb, 16, 1) >> (2 * np.arange(4, dtype=np.uint8)).reshape(1, 1, 4)) & 3
    codes = codes.reshape(nb, 64).astype(np.int8) - np.int8(1)
    return codes.astype(np.float32) * d


def check(name, qtype_id, n_elems, raw, ref):
    mine = k2_dequantize_bytes(qtype_id, n_elems, raw)
    bad = bits_mismatch(mine, ref)
    if bad.size:
        i = bad[0]
        print(f"MISMATCH {name}: {bad.size} of {n_elems} differ; first at {i} (block {i // max(1, n_elems // raw.shape[0])}): "
              f"k2 {mine[i]!r} ({mine[i:i+1].view(np.uint32)[0]:#x}) ref {ref.ravel()[i]!r}")
        return 1
    print(f"ok {name}: {n_elems} values")
    return 0


def main():
    failures = 0
    n_blocks = 2048
    for qtype in list(FP16_FIELDS) + [T.IQ1_M]:
        bs, ts = GGML_QUANT_SIZES[qtype]
        raw = random_blocks(qtype, n_blocks, ts)
        with np.errstate(over="ignore"):  # MXFP4 exponent 255 overflows to inf, in both
            ref = np.asarray(dequantize(raw.reshape(-1), qtype), dtype=np.float32)
        failures += check(qtype.name, int(qtype), n_blocks * bs, raw, ref)

    # plain floats: every fp16 / bf16 bit pattern, NaN payloads included (NaN == NaN here)
    allh = np.arange(1 << 16, dtype=np.uint16)
    raw = allh.view(np.uint8).reshape(-1, 2)
    failures += check("F16", int(T.F16), allh.size, raw, dequantize(raw.reshape(-1), T.F16))
    failures += check("BF16", int(T.BF16), allh.size, raw, dequantize(raw.reshape(-1), T.BF16))
    f32 = rng.integers(0, 1 << 32, size=4096, dtype=np.uint32).view(np.uint8).reshape(-1, 4)
    failures += check("F32", int(T.F32), 4096, f32, dequantize(f32.reshape(-1), T.F32))

    for qtype, name in ((Q8_1, "Q8_1"), (Q8_K, "Q8_K"), (Q1_0, "Q1_0"), (Q2_0, "Q2_0")):
        bs, ts = BLOCK[qtype]
        raw = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
        if qtype == Q8_K:
            raw[:, 0:4] = rng.normal(0, 1e-2, size=n_blocks).astype(np.float32).view(np.uint8).reshape(n_blocks, 4)
        else:
            put_fp16(raw, 0, finite_fp16(n_blocks))
        failures += check(name, qtype, n_blocks * bs, raw, ref_extra(qtype, raw))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
