"""GGUF interoperability with the PyPI `gguf` package, both directions:
- files k2's writer makes are read identically by gguf.GGUFReader;
- files gguf.GGUFWriter makes are read identically by k2 (via `k2 inspect --json`);
- every fixture model: k2's metadata and tensor table equal gguf.GGUFReader's."""
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf

from k2test import Checker, build_dir, k2_bin, shared_dir

c = Checker("test_gguf_interop")
tmp = tempfile.mkdtemp(prefix="k2-gguf-")


def k2_inspect(path):
    out = subprocess.run([k2_bin(), "inspect", "--json", "--tensors", path], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def field_value(f):
    """A GGUFReader field as a Python value (lists for arrays)."""
    t = f.types[0]
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if t == gguf.GGUFValueType.ARRAY:
        et = f.types[1] if len(f.types) > 1 else None
        if et == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    return f.parts[f.data[0]].tolist()[0]


# 1. k2 writer -> gguf reader
sample = os.path.join(tmp, "sample.gguf")
subprocess.run([os.path.join(build_dir(), "tests", "gguf_write_sample"), sample], check=True)
r = gguf.GGUFReader(sample)
fields = {k: field_value(f) for k, f in r.fields.items() if not k.startswith("GGUF.")}
expect = {
    "general.architecture": "deepseek2", "general.name": "sample ünïcode",
    "s.u8": 255, "s.i8": -128, "s.u16": 65535, "s.i16": -32768, "s.u32": 4294967295, "s.i32": -2147483648,
    "s.u64": 18446744073709551615, "s.i64": -9223372036854775808, "s.f32": 3.25, "s.f64": -1.0e300, "s.bool": False,
    "s.arr_i16": [-1, 2, -3, 4], "s.arr_f64": [0.5, -2.5], "tokenizer.ggml.tokens": ["[BOS]", "hello", "", "中"],
}
for k, v in expect.items():
    c.check(fields.get(k) == v, f"k2-written {k}: gguf reads {fields.get(k)!r}, expected {v!r}")
c.check(set(fields) == set(expect), f"unexpected keys {set(fields) ^ set(expect)}")
types = {f.name: f.types for f in r.fields.values()}
c.check(types["s.u8"][0] == gguf.GGUFValueType.UINT8 and types["s.i64"][0] == gguf.GGUFValueType.INT64, "scalar types kept")
tens = {t.name: t for t in r.tensors}
c.check(list(tens) == ["token_embd.weight", "blk.0.ffn_down.weight", "output_norm.weight"], f"tensor order {list(tens)}")
emb = np.arange(4 * 64, dtype=np.float32) / np.float32(7.0)
c.check(np.array_equal(np.asarray(tens["token_embd.weight"].data).reshape(-1), emb), "f32 tensor data")
c.check(tens["blk.0.ffn_down.weight"].tensor_type == gguf.GGMLQuantizationType.Q6_K, "q6_k type")
c.check(list(tens["blk.0.ffn_down.weight"].shape) == [256, 3], f"q6_k shape {tens['blk.0.ffn_down.weight'].shape}")
c.check(list(tens["output_norm.weight"].shape) == [32, 2, 1], f"bf16 shape {tens['output_norm.weight'].shape}")

# 2. gguf writer -> k2 reader
pyfile = os.path.join(tmp, "py.gguf")
w = gguf.GGUFWriter(pyfile, "deepseek2")
w.add_uint32("deepseek2.block_count", 61)
w.add_float32("deepseek2.rope.freq_base", 50000.0)
w.add_bool("deepseek2.expert_weights_norm", True)
w.add_string("tokenizer.ggml.pre", "kimi-k2")
w.add_array("tokenizer.ggml.merges", ["a b", "ab c"])
w.add_array("deepseek2.ints", [1, 2, 3])
w.add_int64("x.i64", -5)
w.add_float64("x.f64", 2.5)
w.add_tensor("a", np.arange(32 * 3, dtype=np.float32).reshape(3, 32))
w.add_tensor("b", np.ones((2, 16), dtype=np.float16))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
j = k2_inspect(pyfile)
hp = j["hyperparameters"]
c.check(hp.get("block_count") == 61 and hp.get("rope.freq_base") == 50000.0 and hp.get("expert_weights_norm") is True, f"hp {hp}")
c.check(hp.get("ints") == [1, 2, 3], f"ints {hp.get('ints')}")
c.check(j["metadata"].get("tokenizer.ggml.pre") == "kimi-k2" and j["metadata"].get("x.i64") == -5 and j["metadata"].get("x.f64") == 2.5, "metadata")
c.check(j["tokenizer"].get("merges") == 2, "merges count")
tl = {t["name"]: t for t in j["tensors"]}
c.check(tl["a"]["type"] == "F32" and tl["a"]["shape"] == [32, 3], f"a {tl['a']}")
c.check(tl["b"]["type"] == "F16" and tl["b"]["shape"] == [16, 2], f"b {tl['b']}")

# 3. every fixture model: metadata and tensor table equal gguf.GGUFReader's
shared = shared_dir()
models = sorted(glob.glob(os.path.join(shared, "fixtures", "models", "*.gguf"))) + \
    sorted(glob.glob(os.path.join(shared, "fixtures", "tokenizer", "llama-cpp-vocab", "*.gguf")))
c.check(len(models) >= 16, "fixture models found")
for m in models:
    r = gguf.GGUFReader(m)
    j = k2_inspect(m)
    arch = j["architecture"]
    name = os.path.basename(m)
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        v = field_value(f)
        if arch and k.startswith(arch + "."):
            got = j["hyperparameters"].get(k[len(arch) + 1:])
        else:
            got = j["metadata"].get(k)
        if isinstance(got, dict) and got.get("type") == "array":
            ok = got["length"] == len(v)
        elif isinstance(v, float):
            ok = got is not None and np.float32(got) == np.float32(v)
        else:
            ok = got == v
        c.check(ok, f"{name}: {k}: k2 {str(got)[:80]} vs gguf {str(v)[:80]}")
    c.check(j["tensor_count"] == len(r.tensors), f"{name}: tensor count")
    for t, kt in zip(r.tensors, j["tensors"]):
        ok = (t.name == kt["name"] and t.tensor_type.name == kt["type"] and list(map(int, t.shape)) == kt["shape"]
              and int(t.data_offset) == j["files"][0]["data_offset"] + kt["offset"] and int(t.n_bytes) == kt["bytes"])
        c.check(ok, f"{name}: tensor {t.name} differs: {kt}")
c.report()
