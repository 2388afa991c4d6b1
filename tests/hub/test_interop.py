"""Cache interoperability with the real PyPI huggingface_hub: files k2 downloaded
are found by hf_hub_download(..., local_files_only=True), and files Python
downloaded from the local Hub are used by k2 offline (spec/hub.md §4)."""
import os
import shutil
import subprocess
import sys
import tempfile

import hubtest
from hubtest import Checker, Hub, k2, write_random

SCRIPT = r'''
import json, os, sys
from huggingface_hub import hf_hub_download, try_to_load_from_cache
mode, repo = sys.argv[1], sys.argv[2]
files = sys.argv[3:]
out = {}
for f in files:
    if mode == "cached":
        out[f] = hf_hub_download(repo, f, local_files_only=True)
        out["try:" + f] = try_to_load_from_cache(repo, f)
    else:
        out[f] = hf_hub_download(repo, f)
print(json.dumps(out))
'''


def py(mode, repo, files, hub, cache, offline=False):
    env = hubtest.env_for(hub, cache, {"HF_HUB_OFFLINE": "1"} if offline else None)
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    p = subprocess.run([hubtest.PY, "-c", SCRIPT, mode, repo] + files, env=env, capture_output=True, text=True, timeout=120)
    return p


def main():
    c = Checker("test_interop")
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        hubtest.skip("huggingface_hub is not installed in the test Python")
    if not os.path.exists(hubtest.K2):
        hubtest.skip("k2 binary not built")
    root = tempfile.mkdtemp(prefix="k2interop.")
    write_random(f"{root}/acme/inter/Q4_K_M/inter-Q4_K_M-00001-of-00002.gguf", 600_000, 11)
    write_random(f"{root}/acme/inter/Q4_K_M/inter-Q4_K_M-00002-of-00002.gguf", 500_000, 12)
    with open(f"{root}/acme/inter/config.json", "w") as f:
        f.write('{"architectures": ["DeepseekV3ForCausalLM"]}\n')
    open(f"{root}/acme/inter/empty.txt", "w").close()
    files = ["Q4_K_M/inter-Q4_K_M-00001-of-00002.gguf", "Q4_K_M/inter-Q4_K_M-00002-of-00002.gguf", "config.json",
             "empty.txt"]
    work = tempfile.mkdtemp(prefix="k2interopc.")
    import json
    with Hub(root) as hub:
        # k2 -> Python
        cache = os.path.join(work, "a")
        p = k2(["pull", "acme/inter:Q4_K_M", "--include", "config.json", "--include", "empty.txt",
                "--chunk-size", "256K"], hub, cache)
        c.check(p.returncode == 0 and len(p.stdout.split()) == 4, "k2 pull (including an empty file)", p.stderr)
        q = py("cached", "acme/inter", files, None, cache, offline=True)
        ok = q.returncode == 0
        res = json.loads(q.stdout) if ok else {}
        c.check(ok, "hf_hub_download(local_files_only=True) finds k2's files", q.stderr)
        if ok:
            for f in files:
                c.check(res[f] == res["try:" + f] and os.path.exists(res[f]) and
                        hubtest.same_file(res[f], os.path.join(root, "acme/inter", f)),
                        "python resolves %s in k2's cache to the right bytes" % f)
            c.check(sorted(p.stdout.split()) == sorted(res[f] for f in files), "same snapshot paths in both tools")

        # Python -> k2 (offline)
        cache = os.path.join(work, "b")
        q = py("download", "acme/inter", files, hub, cache)
        c.check(q.returncode == 0, "hf_hub_download from the local Hub", q.stderr)
        hub.reset()
        p = k2(["pull", "acme/inter:Q4_K_M"], None, cache, {"HF_HUB_OFFLINE": "1"})
        c.check(p.returncode == 0 and len(p.stdout.split()) == 2, "k2 offline uses Python's cache", p.stderr)
        p = k2(["pull", "acme/inter:Q4_K_M", "--include", "config.json", "--include", "empty.txt"], hub, cache)
        c.check(p.returncode == 0 and len(p.stdout.split()) == 4, "k2 online sees Python's files as cached", p.stderr)
        st = hub.stats()
        c.check(sum(st["bytes"].values()) == 0, "nothing downloaded again", json.dumps(st["bytes"]))
        c.check(p.stderr.count("(cached)") == 4, "plan marks Python's files as cached", p.stderr)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
