"""Helpers for the hub tests: a local Hub (scripts/hubserver.py) in a subprocess,
fault control, and running `k2` against it with an isolated cache."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

SRC = os.environ.get("K2_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
K2 = os.environ.get("K2_BIN") or os.path.join(SRC, "build", "k2")
PY = os.environ.get("K2_PYTHON") or sys.executable


def skip(msg):
    print("SKIP:", msg)
    sys.exit(77)


class Hub:
    """A running hubserver.py serving `root` (folders root/<org>/<repo>)."""

    def __init__(self, root, page_size=1000, lfs_min_size=None, faults=None):
        self.root = root
        self.tmp = tempfile.mkdtemp(prefix="k2hubsrv.")
        pf = os.path.join(self.tmp, "ports.json")
        cmd = [PY, os.path.join(SRC, "scripts", "hubserver.py"), "--root", root, "--port-file", pf,
               "--page-size", str(page_size)]
        if lfs_min_size is not None:
            cmd += ["--lfs-min-size", str(lfs_min_size)]
        for f in faults or []:
            cmd += ["--fault", json.dumps(f)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(200):
            if os.path.exists(pf):
                break
            if self.proc.poll() is not None:
                raise RuntimeError("hubserver exited: " + self.proc.stderr.read().decode())
            time.sleep(0.05)
        with open(pf) as f:
            info = json.load(f)
        self.endpoint = info["endpoint"]
        self.cdn_port = info["cdn"]

    def post(self, path, obj):
        req = urllib.request.Request(self.endpoint + path, data=json.dumps(obj).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def faults(self, *faults):
        return self.post("/_control/faults", list(faults))

    def reset(self):
        return self.post("/_control/reset", {})

    def stats(self):
        with urllib.request.urlopen(self.endpoint + "/_control/stats", timeout=10) as r:
            return json.load(r)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def env_for(hub, cache, extra=None):
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("HF_") or k.startswith("HUGGING"):
            del env[k]
    env["HF_ENDPOINT"] = hub.endpoint if hub else "http://127.0.0.1:9"
    env["HF_HUB_CACHE"] = cache
    env["HF_HOME"] = os.path.join(cache, "_hfhome")
    env.update(extra or {})
    return env


def k2(args, hub, cache, extra_env=None, timeout=120, check=None):
    """Runs k2 and returns CompletedProcess (text)."""
    p = subprocess.run([K2] + args, env=env_for(hub, cache, extra_env), capture_output=True, text=True,
                       timeout=timeout)
    if check is not None and p.returncode != check:
        raise AssertionError("k2 %s: rc=%d (want %d)\nstdout:\n%s\nstderr:\n%s" %
                             (" ".join(args), p.returncode, check, p.stdout, p.stderr))
    return p


def write_random(path, size, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    import random
    r = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(r.randbytes(n))
            left -= n


def repo_dir(cache, repo):
    return os.path.join(cache, "models--" + repo.replace("/", "--"))


def blobs(cache, repo):
    d = os.path.join(repo_dir(cache, repo), "blobs")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


class Checker:
    def __init__(self, name):
        self.name = name
        self.failures = 0
        self.checks = 0

    def check(self, cond, msg, detail=""):
        self.checks += 1
        if not cond:
            self.failures += 1
            print("FAIL: %s %s" % (msg, detail[-3000:] if detail else ""))
        else:
            print("ok: %s" % msg)

    def finish(self):
        print("%s: %d checks, %d failed" % (self.name, self.checks, self.failures))
        sys.exit(1 if self.failures else 0)
