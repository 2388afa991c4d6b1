"""k2's activation quantizers equal an independent NumPy implementation of
spec/quant-types.md §2.2-2.3 (fp16/bf16 rounding) and §4.2-4.4 (Q8_0/Q8_1 with the x86
and the reference rule, Q8_K) byte for byte, on random rows and crafted edge cases."""
import sys

import numpy as np

from quanttool import k2_quantize

rng = np.random.default_rng(1234)
f32 = np.float32


def fp16_bytes(v):
    return np.asarray(v, dtype=np.float32).reshape(-1).astype(np.float16).view(np.uint8)


def bf16_ref(x):
    u = np.asarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    nan = (u & 0x7FFFFFFF) > 0x7F800000
    r = np.where(nan, (u >> 16) | 0x40, (u + 0x7FFF + ((u >> 16) & 1)) >> 16)
    return r.astype(np.uint16).view(np.uint8)


def roundf(v):
    """C roundf on float32 values, evaluated exactly in float64."""
    v = v.astype(np.float64)
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def q8_ref(x, x86, with_sum):
    blocks = np.asarray(x, dtype=np.float32).reshape(-1, 32)
    out = []
    for b in blocks:
        amax = np.max(np.abs(b)) if b.size else f32(0)
        d = f32(amax) / f32(127)
        if x86:
            idv = f32(127) / f32(amax) if amax != 0 else f32(0)
            q = np.rint(b * idv)           # float32 product, half to even
        else:
            idv = f32(1) / d if d != 0 else f32(0)
            q = roundf(b * idv)            # float32 product, half away from zero
        q = np.clip(q, -128, 127).astype(np.int8)
        parts = [fp16_bytes(d)]
        if with_sum:
            parts.append(fp16_bytes(f32(int(q.astype(np.int64).sum())) * d))
        parts.append(q.view(np.uint8))
        out.append(np.concatenate(parts))
    return np.concatenate(out)


def q8k_ref(x):
    blocks = np.asarray(x, dtype=np.float32).reshape(-1, 256)
    out = []
    for b in blocks:
        a = np.abs(b)
        j = int(np.argmax(a))   # first of equal magnitudes, like the strict > scan
        amax, mx = a[j], b[j]
        if amax == 0:
            d = f32(0)
            q = np.zeros(256, dtype=np.int8)
        else:
            iscale = f32(-127) / f32(mx)
            q = np.minimum(127, np.rint(f32(iscale) * b)).astype(np.int8)
            d = f32(1) / iscale
        bs = q.astype(np.int16).reshape(16, 16).sum(axis=1).astype(np.int16)
        out.append(np.concatenate([np.array([d], dtype=np.float32).view(np.uint8), q.view(np.uint8), bs.view(np.uint8)]))
    return np.concatenate(out)


def rows(block):
    """Test rows: a multiple of `block` elements each."""
    n = 7168 if block == 256 else 2048
    cases = []
    for scale in (1.0, 1e-3, 1e3, 1e-20, 3e4):
        cases.append(rng.normal(0, scale, size=n).astype(np.float32))
    cases.append(rng.uniform(-1, 1, size=n).astype(np.float32))
    z = np.zeros(n, dtype=np.float32)
    z[block:2 * block] = rng.normal(size=block)          # all-zero blocks next to a normal one
    cases.append(z)
    neg = rng.uniform(-1, 1, size=n).astype(np.float32)
    neg[::block] = -4.0                                    # largest magnitude negative
    cases.append(neg)
    pos = rng.uniform(-1, 1, size=n).astype(np.float32)
    pos[::block] = 4.0                                     # largest magnitude positive
    cases.append(pos)
    tie = np.tile(np.array([-4.0, 4.0], dtype=np.float32), n // 2)  # equal magnitudes, both signs
    cases.append(tie)
    # exact ties: amax 127 gives id == 1, so x*id = k + 0.5 exactly
    t = (rng.integers(-120, 120, size=n) + 0.5).astype(np.float32)
    t[::block] = 127.0
    cases.append(t)
    t = (rng.integers(-120, 120, size=n) + 0.5).astype(np.float32)
    t[::block] = -127.0
    cases.append(t)
    # values a hair from .5 boundaries with an awkward amax
    b = (rng.integers(-100, 100, size=n) + 0.5).astype(np.float32) * f32(0.37)
    b = np.nextafter(b, rng.choice([-np.inf, np.inf], size=n).astype(np.float32)).astype(np.float32)
    cases.append(b)
    sub = rng.normal(0, 1e-39, size=n).astype(np.float32)  # subnormal inputs, amax > 1e-40
    sub[::block] = 1e-30  # keeps 127/amax finite (a subnormal amax has no meaningful scale)
    cases.append(sub)
    return cases


def compare(name, got, want):
    if got.shape != want.shape or not np.array_equal(got, want):
        if got.shape != want.shape:
            print(f"MISMATCH {name}: {got.size} bytes vs {want.size}")
        else:
            i = int(np.nonzero(got != want)[0][0])
            print(f"MISMATCH {name}: {int((got != want).sum())} bytes differ, first at byte {i}: k2 {got[i]} ref {want[i]}")
        return 1
    return 0


@np.errstate(over="ignore")
def main():
    failures = 0
    checked = 0
    # fp16 / bf16 conversion: random bit patterns over the whole range, plus specials and
    # the neighbourhood of every rounding boundary class (subnormal, overflow, ties).
    bits = rng.integers(0, 1 << 32, size=1 << 20, dtype=np.uint32)
    special = np.array([0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F800001, 0xFFFFFFFF,
                        0x477FF000, 0x477FEFFF, 0x477FE000, 0x33000000, 0x33000001, 0x32FFFFFF,
                        0x38800000, 0x387FFFFF, 0x387FE000, 0x387FF000, 0x33800000, 0x33C00000,
                        0x3F801000, 0x3F803000, 0x3F800FFF, 0x3F807FFF, 0x3F808000, 0x3F818000], dtype=np.uint32)
    around = (np.arange(0x30000000, 0x48000000, 0x1000, dtype=np.uint64).astype(np.uint32).reshape(-1, 1)
              + np.array([0, 1, 0xFFF, 0x800, 0x7FF, 0x801], dtype=np.uint32).reshape(1, -1)).ravel()
    x = np.concatenate([bits, special, around, around | np.uint32(0x80000000)]).view(np.float32)
    x = x[: x.size // 2 * 2]
    with np.errstate(over="ignore", invalid="ignore"):
        want16 = x.astype(np.float16)
    got16 = k2_quantize("f16", x).view(np.uint16)
    w16 = want16.view(np.uint16).copy()
    nan = np.isnan(x)
    # §2.2: NaN -> sign | 0x7E00 (numpy may keep payload bits; the spec fixes them)
    w16[nan] = (x[nan].view(np.uint32) >> 16).astype(np.uint16) & np.uint16(0x8000) | np.uint16(0x7E00)
    failures += compare("f32->fp16", got16.view(np.uint8), w16.view(np.uint8))
    failures += compare("f32->bf16", k2_quantize("bf16", x), bf16_ref(x))
    checked += 2

    for block, kinds in ((32, ("q8_0", "q8_0_ref", "q8_1", "q8_1_ref")), (256, ("q8_k",))):
        for ci, row in enumerate(rows(block)):
            for kind in kinds:
                if kind == "q8_k":
                    want = q8k_ref(row)
                else:
                    want = q8_ref(row, x86=not kind.endswith("_ref"), with_sum=kind.startswith("q8_1"))
                failures += compare(f"{kind} case {ci}", k2_quantize(kind, row), want)
                checked += 1
        # Q8_K/Q8_0 also on rows cut from a long random stream, for volume
        big = rng.normal(0, 1, size=256 * 4096).astype(np.float32)
        for kind in kinds:
            want = q8k_ref(big) if kind == "q8_k" else q8_ref(big, x86=not kind.endswith("_ref"), with_sum=kind.startswith("q8_1"))
            failures += compare(f"{kind} bulk", k2_quantize(kind, big), want)
            checked += 1

    # §7 crafted ties: x*id = 2.5 gives 3 with roundf and 2 with half-even
    tie = np.zeros(32, dtype=np.float32)
    tie[0], tie[1] = 127.0, 2.5
    if k2_quantize("q8_0_ref", tie)[2 + 1] != 3 or k2_quantize("q8_0", tie)[2 + 1] != 2:
        print("FAIL: tie handling of Q8_0 rules")
        failures += 1
    # Q8_K d sign: positive max -> negative d, and the reverse (§4.4)
    xs = np.zeros(256, dtype=np.float32); xs[5] = 2.0
    d = k2_quantize("q8_k", xs)[:4].view(np.float32)[0]
    xs[5] = -2.0
    d2 = k2_quantize("q8_k", xs)[:4].view(np.float32)[0]
    if not (d < 0 < d2):
        print(f"FAIL: Q8_K scale signs {d} {d2}")
        failures += 1
    print(f"{checked} quantizer comparisons, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
