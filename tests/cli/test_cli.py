"""The k2 command's common behaviour: --help, --version, usage errors exit 2 with one
line, `k2 inspect` text and JSON on a model k2 itself wrote (no shared/ needed) and on
a fixture, `k2 mkmodel` output that the PyPI gguf package reads."""
import json
import os
import subprocess
import tempfile

import gguf
import numpy as np

from k2test import Checker, k2_bin, shared_dir

c = Checker("test_cli")
k2 = k2_bin()


def run(*args):
    return subprocess.run([k2, *args], capture_output=True, text=True)


r = run("--help")
c.check(r.returncode == 0 and "inspect" in r.stdout and "usage: k2 COMMAND" in r.stdout, f"--help: {r.returncode} {r.stdout[:200]}")
r = run("--version")
c.check(r.returncode == 0 and r.stdout.startswith("k2 "), f"--version: {r.stdout!r}")
r = run()
c.check(r.returncode == 2, "no command exits 2")
for bad in (["frobnicate"], ["--frobnicate"], ["inspect", "--bogus", "x"], ["inspect"], ["mkmodel"], ["mkmodel", "--out", "x", "--type", "q9_z"]):
    r = run(*bad)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    c.check(r.returncode == 2 and len(lines) == 1 and lines[0].startswith("k2"), f"{bad}: rc {r.returncode}, stderr {r.stderr!r}")
for cmd in ("inspect", "mkmodel"):
    r = run(cmd, "--help")
    c.check(r.returncode == 0 and r.stdout.startswith("usage: k2 " + cmd), f"{cmd} --help")
r = run("inspect", "/nonexistent/model.gguf")
c.check(r.returncode == 1 and "/nonexistent/model.gguf" in r.stderr, f"missing file: {r.stderr!r}")

tmp = tempfile.mkdtemp(prefix="k2-cli-")
model = os.path.join(tmp, "demo.gguf")
r = run("mkmodel", "--preset", "tiny", "--type", "q4_k_m", "--out", model)
c.check(r.returncode == 0 and os.path.exists(model), f"mkmodel: {r.stderr}")
rd = gguf.GGUFReader(model)
finite = all(np.isfinite(gguf.quants.dequantize(t.data, t.tensor_type)).all() for t in rd.tensors)
c.check(finite, "every mkmodel tensor dequantizes to finite values")
j = json.loads(run("inspect", "--json", model).stdout)
c.check(j["format_version"] == 1 and j["architecture"] == "deepseek2" and j["tensor_count"] == 52, "inspect --json basics")
c.check(j["hyperparameters"]["expert_count"] == 16 and j["tokenizer"]["pre"] == "kimi-k2" and j["tokenizer"]["vocab_size"] == 2048, "hparams/tokenizer")
c.check(set(j["types"]) == {"F32", "Q8_0", "Q4_K", "Q6_K"}, f"types {set(j['types'])}")
c.check("tensors" not in j, "no tensor list without --tensors")
t = run("inspect", model).stdout
c.check("architecture:  deepseek2" in t and "Q4_K" in t and "kimi-k2" in t, "inspect text")
for ty in ("q8_0", "iq4_xs", "iq2_xxs", "iq1_m", "q2_k_mix", "bf16"):
    p = os.path.join(tmp, f"m-{ty}.gguf")
    r = run("mkmodel", "--type", ty, "--layers", "2", "--out", p)
    ok = r.returncode == 0
    if ok:
        rd = gguf.GGUFReader(p)
        ok = all(np.isfinite(gguf.quants.dequantize(t.data, t.tensor_type)).all() for t in rd.tensors)
    c.check(ok, f"mkmodel --type {ty}: {r.stderr}")

sd = shared_dir()
fx = os.path.join(sd, "fixtures", "models", "k2-tiny-iq2_xxs.gguf")
t = run("inspect", "--tensors", fx).stdout
c.check("blk.2.ffn_down_exps.weight" in t and "IQ2_XXS" in t, "fixture --tensors listing")
c.report()
