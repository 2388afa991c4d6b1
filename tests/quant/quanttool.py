"""Shared helpers for the tests/quant Python tests: locating shared/ and driving
k2-quant-tool (built by tests/quant/tests.cmake)."""
import os
import subprocess
import sys
import tempfile

import numpy as np


def shared_dir_or_skip():
    """shared/ path, or exit 77 (skip) when absent; under CI=true absence is a failure."""
    d = os.environ.get("K2_SHARED_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
    if os.path.isdir(d):
        return d
    if os.environ.get("CI") == "true":
        print(f"FAIL: shared/ not found at {d} and CI=true")
        sys.exit(1)
    print(f"SKIP: shared/ not found at {d} (set K2_SHARED_DIR)")
    sys.exit(77)


def tool_path():
    build = os.environ.get("K2_BUILD_DIR")
    if not build:
        here = os.path.dirname(os.path.abspath(__file__))
        build = os.path.join(here, "..", "..", "build")
    path = os.path.join(build, "tests", "k2-quant-tool")
    if not os.path.exists(path):
        print(f"FAIL: {path} not found (build the project first; K2_BUILD_DIR={build})")
        sys.exit(1)
    return path


def run_tool(*args):
    r = subprocess.run([tool_path(), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"k2-quant-tool {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def k2_dequantize_many(data_path, entries):
    """entries: list of (type_id, n_elems, byte_offset) into the file at data_path.
    Returns one float32 array per entry, dequantized by k2's C code."""
    with tempfile.TemporaryDirectory() as tmp:
        man = os.path.join(tmp, "manifest.txt")
        out = os.path.join(tmp, "out.f32")
        with open(man, "w") as f:
            for t, n, off in entries:
                f.write(f"{int(t)} {int(n)} {int(off)}\n")
        run_tool("dequant", data_path, man, out)
        flat = np.fromfile(out, dtype=np.float32)
    res, pos = [], 0
    for _, n, _ in entries:
        res.append(flat[pos:pos + n])
        pos += n
    if pos != flat.size:
        raise RuntimeError(f"k2-quant-tool wrote {flat.size} floats, expected {pos}")
    return res


def k2_dequantize_bytes(type_id, n, raw):
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "in.bin")
        np.asarray(raw, dtype=np.uint8).tofile(p)
        return k2_dequantize_many(p, [(type_id, n, 0)])[0]


def bits_mismatch(a, b):
    """Indices where two float32 arrays differ bitwise (two NaNs count as equal)."""
    a = np.asarray(a, dtype=np.float32).ravel()
    b = np.asarray(b, dtype=np.float32).ravel()
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} != {b.shape}")
    same = (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))
    return np.nonzero(~same)[0]


def k2_quantize(kind, x):
    """Runs k2's activation quantizer `kind` (f16 bf16 q8_0 q8_0_ref q8_1 q8_1_ref q8_k)
    on the float32 array x; returns the raw bytes as a uint8 array."""
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "in.f32")
        o = os.path.join(tmp, "out.bin")
        np.asarray(x, dtype=np.float32).tofile(p)
        run_tool("quantize", kind, p, o)
        return np.fromfile(o, dtype=np.uint8)
