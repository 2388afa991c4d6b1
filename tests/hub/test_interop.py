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
from huggingface_hub import hf_hub_download, try_to_load_from_cache, snapshot_download, _CACHED_NO_EXIST
from huggingface_hub.errors import EntryNotFoundError
mode, repo = sys.argv[1], sys.argv[2]
files = sys.argv[3:]
out = {}
if mode == "snapshot":
    out["dir"] = snapshot_download(repo, allow_patterns=files)
    files = []
elif mode == "tree":
    from huggingface_hub import get_cached_repo_tree
    out["files"] = sorted([f.path, f.size] for f in get_cached_repo_tree(repo))
    files = []
elif mode == "offline_snapshot":
    try:
        out["dir"] = snapshot_download(repo, allow_patterns=files)
    except Exception as e:
        out["error"] = type(e).__name__
    files = []
for f in files:
    if mode == "try":
        r = try_to_load_from_cache(repo, f)
        out[f] = "NO_EXIST" if r is _CACHED_NO_EXIST else r
    elif mode == "probe":
        try:
            out[f] = hf_hub_download(repo, f)
        except EntryNotFoundError:
            out[f] = "ENTRY_NOT_FOUND"
    elif mode == "cached":
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
    with open(f"{root}/acme/inter/notes.txt", "w") as f:
        f.write("notes\n")
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
        p = k2(["pull", "acme/inter", "--include", "vocab.json"], None, cache, {"HF_HUB_OFFLINE": "1"})
        c.check(p.returncode != 0 and "no such file" not in p.stderr, "k2 offline: unknown file is not called absent", p.stderr)
        p = k2(["pull", "acme/inter:Q4_K_M", "--include", "config.json", "--include", "empty.txt"], hub, cache)
        c.check(p.returncode == 0 and len(p.stdout.split()) == 4, "k2 online sees Python's files as cached", p.stderr)
        st = hub.stats()
        c.check(sum(st["bytes"].values()) == 0, "nothing downloaded again", json.dumps(st["bytes"]))
        c.check(p.stderr.count("(cached)") == 4, "plan marks Python's files as cached", p.stderr)

        # ---- .no_exist markers (§4.6): Python -> k2 ----
        q = py("probe", "acme/inter", ["missing.txt"], hub, cache)
        c.check(q.returncode == 0 and json.loads(q.stdout)["missing.txt"] == "ENTRY_NOT_FOUND",
                "python: missing.txt -> EntryNotFound (writes .no_exist)", q.stdout + q.stderr)
        commit = open(os.path.join(hubtest.repo_dir(cache, "acme/inter"), "refs", "main")).read().strip()
        p = k2(["pull", "acme/inter", "--include", "missing.txt"], None, cache, {"HF_HUB_OFFLINE": "1"})
        c.check(p.returncode != 0 and "missing.txt: no such file in this commit" in p.stderr and ".no_exist" in p.stderr,
                "k2 offline reports Python's known-absent file as absent", p.stderr)
        hub.reset()
        p = k2(["pull", "acme/inter@" + commit, "--include", "missing.txt", "--include", "config.json"], hub, cache)
        st = hub.stats()
        c.check(p.returncode == 0 and len(p.stdout.split()) == 1 and "missing.txt: not in" in p.stderr,
                "k2 @commit: cached + known-absent paths resolved", p.stdout + p.stderr)
        c.check(sum(st["requests"].values()) == 0, "k2 @commit: no network request at all", json.dumps(st["requests"]))

        # ---- .no_exist markers: k2 -> Python ----
        cache = os.path.join(work, "c")
        p = k2(["pull", "acme/inter:Q4_K_M", "--include", "config.json", "--include", "tokenizer.json"], hub, cache)
        marker = os.path.join(hubtest.repo_dir(cache, "acme/inter"), ".no_exist", commit, "tokenizer.json")
        c.check(p.returncode == 0 and len(p.stdout.split()) == 3 and "tokenizer.json: not in" in p.stderr,
                "k2: an explicit path missing from the listing is skipped and reported", p.stdout + p.stderr)
        c.check(os.path.isfile(marker) and os.path.getsize(marker) == 0, "k2 writes .no_exist/<commit>/tokenizer.json")
        hub.reset()
        hub.faults({"kind": "status", "code": 404, "error_code": "EntryNotFound", "where": "resolve", "path": "notes.txt"})
        p = k2(["pull", "acme/inter", "--include", "notes.txt"], hub, cache)
        c.check(p.returncode != 0 and "not found" in p.stderr, "404 EntryNotFound on /resolve: file fails", p.stderr)
        q = py("try", "acme/inter", ["tokenizer.json", "notes.txt", "config.json"], None, cache, offline=True)
        res = json.loads(q.stdout) if q.returncode == 0 else {}
        c.check(res.get("tokenizer.json") == "NO_EXIST", "python try_to_load_from_cache: _CACHED_NO_EXIST for k2's marker",
                q.stdout + q.stderr)
        c.check(res.get("notes.txt") == "NO_EXIST", "404 EntryNotFound -> marker Python honours", q.stdout + q.stderr)
        c.check(res.get("config.json") and os.path.exists(res["config.json"]), "python finds k2's config.json")

        # ---- trees/<commit>.json (§4.9): k2 -> Python ----
        tree = os.path.join(hubtest.repo_dir(cache, "acme/inter"), "trees", commit + ".json")
        c.check(os.path.isfile(tree), "k2 writes trees/<commit>.json after a listing")
        q = py("tree", "acme/inter", [], None, cache, offline=True)
        want = sorted([os.path.relpath(os.path.join(b, n), os.path.join(root, "acme/inter")), os.path.getsize(os.path.join(b, n))]
                      for b, _, ns in os.walk(os.path.join(root, "acme/inter")) for n in ns)
        c.check(q.returncode == 0 and json.loads(q.stdout)["files"] == want,
                "python get_cached_repo_tree reads k2's listing (complete, unfiltered)", q.stdout + q.stderr)
        q = py("offline_snapshot", "acme/inter", ["*.txt"], None, cache, offline=True)
        c.check(q.returncode == 0 and json.loads(q.stdout).get("error") == "IncompleteSnapshotError",
                "python snapshot_download(local_files_only) trusts k2's listing (incomplete snapshot)", q.stdout + q.stderr)
        hub.reset()
        p = k2(["pull", "acme/inter", "--include", "notes.txt", "--include", "vocab.json"], hub, cache)
        st = hub.stats()["requests"]
        c.check(p.returncode == 0 and st.get("api", 0) == 1 and "vocab.json: not in" in p.stderr,
                "k2 reuses trees/<commit>.json: only the revision call, no listing", json.dumps(st) + p.stderr)
        p = k2(["pull", "acme/inter", "--include", "empty.txt"], None, cache, {"HF_HUB_OFFLINE": "1"})
        c.check(p.returncode != 0 and "incomplete" in p.stderr and "empty.txt" in p.stderr,
                "k2 offline with a tree listing reports the missing file", p.stderr)

        # ---- trees/<commit>.json: Python -> k2 ----
        cache = os.path.join(work, "d")
        q = py("snapshot", "acme/inter", ["config.json"], hub, cache)
        c.check(q.returncode == 0, "python snapshot_download writes its tree listing", q.stderr)
        hub.reset()
        p = k2(["pull", "acme/inter@" + commit + ":Q4_K_M"], hub, cache)
        st = hub.stats()["requests"]
        c.check(p.returncode == 0 and len(p.stdout.split()) == 2 and st.get("api", 0) == 0,
                "k2 @commit uses Python's trees/<commit>.json: no API call", json.dumps(st) + p.stderr)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
