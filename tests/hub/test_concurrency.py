"""Two concurrent `k2 pull` processes of the same repo: one download, both succeed.
`kill -9` mid-download, then pull again: it resumes from the journal and the bytes
fetched twice stay under one chunk."""
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import hubtest
from hubtest import Checker, Hub, k2, write_random

MB = 1 << 20


def main():
    c = Checker("test_concurrency")
    if not os.path.exists(hubtest.K2):
        hubtest.skip("k2 binary not built")
    root = tempfile.mkdtemp(prefix="k2conc.")
    work = tempfile.mkdtemp(prefix="k2concc.")
    size = 4 * MB + 777
    src = f"{root}/acme/con/con.gguf"
    write_random(src, size, 21)
    with Hub(root) as hub:
        # ---- two processes at once ----
        hub.faults({"kind": "throttle", "bps": 1_500_000, "where": "cdn", "count": -1})
        cache = os.path.join(work, "two")
        args = [hubtest.K2, "pull", "acme/con", "--connections", "2", "--chunk-size", "512K", "--retry-base-ms", "50"]
        env = hubtest.env_for(hub, cache)
        p1 = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
        p2 = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        o1, e1 = p1.communicate(timeout=120)
        o2, e2 = p2.communicate(timeout=120)
        c.check(p1.returncode == 0 and p2.returncode == 0, "both concurrent pulls succeed", e1 + e2)
        c.check(o1.strip() == o2.strip() and o1.strip() and hubtest.same_file(o1.strip(), src), "same, correct file")
        served = hub.stats()["bytes"].get("con.gguf", 0)
        c.check(served == size, "downloaded once (%d bytes served for %d)" % (served, size))
        c.check("waiting for its lock" in e1 + e2, "the second process waited on the blob lock", e1 + e2)

        # ---- kill -9 mid-download, then resume ----
        hub.reset()
        chunk = 512 * 1024
        hub.faults({"kind": "throttle", "bps": 400_000, "where": "cdn", "count": -1})
        cache = os.path.join(work, "kill")
        args = [hubtest.K2, "pull", "acme/con", "--connections", "1", "--chunk-size", "512K"]
        p = subprocess.Popen(args, env=hubtest.env_for(hub, cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        jpat = os.path.join(hubtest.repo_dir(cache, "acme/con"), "blobs", "*.k2.incomplete.json")
        t0 = time.time()
        done = 0
        while time.time() - t0 < 30:
            js = glob.glob(jpat)
            if js:
                try:
                    done = sum(json.load(open(js[0]))["chunks"])
                except (ValueError, OSError):
                    done = 0
                if done >= 3 * chunk // 2:
                    break
            time.sleep(0.05)
        time.sleep(0.3)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        first = hub.stats()["bytes"].get("con.gguf", 0)
        c.check(done >= chunk and first < size, "killed mid-download (%d bytes served, journal %d)" % (first, done))
        c.check(glob.glob(jpat), "journal left behind")
        hub.reset()
        q = k2(["pull", "acme/con", "--connections", "1", "--chunk-size", "512K"], hub, cache)
        second = hub.stats()["bytes"].get("con.gguf", 0)
        c.check(q.returncode == 0 and hubtest.same_file(q.stdout.strip(), src), "pull after kill -9 completes", q.stderr)
        c.check("resuming" in q.stderr, "it resumed", q.stderr)
        c.check(first + second - size < chunk, "bytes fetched twice (%d) stay under one chunk (%d)" % (first + second - size, chunk))
        c.check(not glob.glob(jpat), "journal removed after completion")

        # ---- Ctrl-C: cancels promptly, keeps a resumable temp file ----
        hub.reset()
        hub.faults({"kind": "throttle", "bps": 400_000, "where": "cdn", "count": -1})
        cache = os.path.join(work, "int")
        p = subprocess.Popen(args, env=hubtest.env_for(hub, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        jpat = os.path.join(hubtest.repo_dir(cache, "acme/con"), "blobs", "*.k2.incomplete.json")
        t0 = time.time()
        while time.time() - t0 < 30 and not glob.glob(jpat):
            time.sleep(0.05)
        time.sleep(0.5)
        t1 = time.time()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        c.check(p.returncode == 130 and time.time() - t1 < 2.0 and "cancelled" in err, "SIGINT cancels promptly", err)
        c.check(glob.glob(jpat) and glob.glob(jpat[:-5]), "temp file and journal kept")
        hub.reset()
        q = k2(["pull", "acme/con", "--connections", "1", "--chunk-size", "512K"], hub, cache)
        c.check(q.returncode == 0 and "resuming" in q.stderr and hubtest.same_file(q.stdout.strip(), src),
                "pull after Ctrl-C resumes", q.stderr)
        c.check(hub.stats()["bytes"].get("con.gguf", 0) < size, "only the rest was downloaded")

        # ---- resume with a damaged prefix: the bytes already on disk are hashed too ----
        hub.reset()
        hub.faults({"kind": "throttle", "bps": 400_000, "where": "cdn", "count": -1})
        cache = os.path.join(work, "bad")
        p = subprocess.Popen(args, env=hubtest.env_for(hub, cache), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        jpat = os.path.join(hubtest.repo_dir(cache, "acme/con"), "blobs", "*.k2.incomplete.json")
        t0 = time.time()
        while time.time() - t0 < 30 and not glob.glob(jpat):
            time.sleep(0.05)
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=30)
        tmpf = glob.glob(jpat[:-5])
        if tmpf:
            with open(tmpf[0], "r+b") as fh:
                b = fh.read(1)
                fh.seek(0)
                fh.write(bytes([b[0] ^ 0xFF]))
        hub.reset()
        q = k2(["pull", "acme/con", "--connections", "1", "--chunk-size", "512K"], hub, cache)
        c.check(tmpf and q.returncode == 0 and "resuming" in q.stderr and "sha256 mismatch" in q.stderr and
                hubtest.same_file(q.stdout.strip(), src),
                "damaged resumed prefix: mismatch detected, full retry gives the right file", q.stderr)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
