#!/usr/bin/env python3
"""Hub download benchmark on loopback against scripts/hubserver.py.

1. Single-file throughput: `k2 pull` vs `curl -o` of the same signed CDN URL, same run.
2. Per-connection throttling: parallel ranged requests (4 connections) vs one stream.

usage: bench/hub_bench.py [--k2 build/k2] [--size-mb 256] [--throttle-mbps 8] [--repeat 3]
Prints a Markdown table."""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "tools"))
import hubtest  # noqa: E402


def cdn_url(hub, repo, path):
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    op = urllib.request.build_opener(NoRedirect)
    try:
        op.open(urllib.request.Request("%s/%s/resolve/main/%s" % (hub.endpoint, repo, path), method="HEAD"))
    except urllib.error.HTTPError as e:
        return e.headers["Location"]
    raise RuntimeError("no redirect")


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--k2", default=os.environ.get("K2_BIN", os.path.join(hubtest.SRC, "build", "k2")))
    ap.add_argument("--size-mb", type=int, default=256)
    ap.add_argument("--throttled-size-mb", type=int, default=48)
    ap.add_argument("--throttle-mbps", type=float, default=8.0, help="per-connection limit, MB/s")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    hubtest.K2 = a.k2
    a.repeat = max(1, a.repeat)
    root = tempfile.mkdtemp(prefix="k2bench.")
    work = tempfile.mkdtemp(prefix="k2benchc.")
    size = a.size_mb << 20
    tsize = a.throttled_size_mb << 20
    hubtest.write_random(f"{root}/bench/big/big.gguf", size, 1)
    hubtest.write_random(f"{root}/bench/thr/thr.gguf", tsize, 2)
    rows = []
    with hubtest.Hub(root) as hub:
        # warm the server's hash cache (listing) and the page cache
        hubtest.k2(["ls", "bench/big"], hub, work)
        hubtest.k2(["ls", "bench/thr"], hub, work)
        url = cdn_url(hub, "bench/big", "big.gguf")
        n = [0]

        def k2pull(ref, extra):
            n[0] += 1
            cache = os.path.join(work, "c%d" % n[0])
            p = hubtest.k2(["pull", ref, "-q"] + extra, hub, cache, timeout=900)
            if p.returncode != 0:
                raise RuntimeError(p.stderr)

        out = os.path.join(work, "curl.out")

        def curl():
            subprocess.run(["curl", "-s", "-f", "-o", out, url], check=True)

        def curl_sha():
            curl()
            subprocess.run(["sha256sum", out], check=True, stdout=subprocess.DEVNULL)

        def best(f):
            ts = []
            for _ in range(a.repeat):
                ts.append(timed(f))
                # clean-up outside the timed part
                for d in os.listdir(work):
                    shutil.rmtree(os.path.join(work, d), ignore_errors=True)
                if os.path.exists(out):
                    os.unlink(out)
            return min(ts)

        t_curl = best(curl)
        t_curl_sha = best(curl_sha)
        t_k1 = best(lambda: k2pull("bench/big", ["--connections", "1"]))
        t_k1nv = best(lambda: k2pull("bench/big", ["--connections", "1", "--no-verify"]))
        t_k4 = best(lambda: k2pull("bench/big", ["--connections", "4"]))
        mb = size / 1e6
        rows.append(("single file %d MiB, curl -o" % a.size_mb, t_curl, mb / t_curl, 1.0))
        rows.append(("single file, curl -o then sha256sum", t_curl_sha, mb / t_curl_sha, t_curl / t_curl_sha))
        rows.append(("single file, k2 pull, 1 connection (sha256 on)", t_k1, mb / t_k1, t_curl / t_k1))
        rows.append(("single file, k2 pull, 1 connection, --no-verify", t_k1nv, mb / t_k1nv, t_curl / t_k1nv))
        rows.append(("single file, k2 pull, 4 connections (sha256 on)", t_k4, mb / t_k4, t_curl / t_k4))

        hub.faults({"kind": "throttle", "bps": int(a.throttle_mbps * 1e6), "where": "cdn", "count": -1})
        t_s = best(lambda: k2pull("bench/thr", ["--connections", "1", "--chunk-size", "8M"]))
        t_p = best(lambda: k2pull("bench/thr", ["--connections", "4", "--chunk-size", "8M"]))
        mb = tsize / 1e6
        rows.append(("throttled %.0f MB/s/conn, %d MiB, 1 stream" % (a.throttle_mbps, a.throttled_size_mb), t_s, mb / t_s, 1.0))
        rows.append(("throttled, 4 parallel ranges", t_p, mb / t_p, t_s / t_p))
    print("| case | seconds | MB/s | ratio |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print("| %s | %.2f | %.1f | %.2f× |" % r)
    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
