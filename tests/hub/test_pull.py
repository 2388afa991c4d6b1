"""k2 pull / ls / cache against a real local Hub (scripts/hubserver.py): selection,
cache layout, resume and every injected fault with its expected outcome."""
import json
import os
import shutil
import sys
import tempfile
import time

import hubtest
from hubtest import Checker, Hub, blobs, k2, repo_dir, same_file, write_random

MB = 1 << 20
FAST = ["--retry-base-ms", "40", "--chunk-size", "256K"]


def make_root(root):
    # a GGUF repo with several quants, shards in a folder, small git files
    write_random(f"{root}/acme/multi/Q8_0/m-Q8_0-00001-of-00003.gguf", 700_000, 1)
    write_random(f"{root}/acme/multi/Q8_0/m-Q8_0-00002-of-00003.gguf", 700_000, 2)
    write_random(f"{root}/acme/multi/Q8_0/m-Q8_0-00003-of-00003.gguf", 300_000, 3)
    write_random(f"{root}/acme/multi/m-UD-Q4_K_XL.gguf", 400_000, 4)
    write_random(f"{root}/acme/multi/m-Q4_K_XL.gguf", 500_000, 5)
    write_random(f"{root}/acme/multi/mmproj-m-F16.gguf", 100_000, 6)
    with open(f"{root}/acme/multi/README.md", "w") as f:
        f.write("# multi\n")
    with open(f"{root}/acme/multi/config.json", "w") as f:
        f.write('{"model_type": "deepseek2"}\n')
    # one big LFS file for fault tests
    write_random(f"{root}/acme/one/one.gguf", 3 * MB + 12345, 7)
    with open(f"{root}/acme/one/tokenizer_config.json", "w") as f:
        f.write('{"bos_token": "<s>"}\n')
    # gated
    write_random(f"{root}/acme/gated/g.gguf", 200_000, 8)
    with open(f"{root}/acme/gated/.gated", "w") as f:
        f.write("hf_secret_test_token\n")


def snapshot_files(cache, repo):
    d = os.path.join(repo_dir(cache, repo), "snapshots")
    out = []
    for base, _, names in os.walk(d):
        for n in names:
            out.append(os.path.relpath(os.path.join(base, n), d))
    return sorted(out)


def no_partials(cache, repo):
    return [b for b in blobs(cache, repo) if ".incomplete" in b]


def main():
    c = Checker("test_pull")
    if not os.path.exists(hubtest.K2):
        hubtest.skip("k2 binary not built")
    root = tempfile.mkdtemp(prefix="k2hubroot.")
    work = tempfile.mkdtemp(prefix="k2hubwork.")
    make_root(root)
    n = [0]

    def fresh():
        n[0] += 1
        return os.path.join(work, "cache%d" % n[0])

    with Hub(root, page_size=2) as hub:
        # ---- ls with pagination (page size 2 => several pages) ----
        cache = fresh()
        p = k2(["ls", "acme/multi"], hub, cache)
        c.check(p.returncode == 0 and "Q8_0/m-Q8_0-00002-of-00003.gguf" in p.stdout and "README.md" in p.stdout
                and "# 8 file(s)" in p.stdout, "ls follows Link pagination", p.stdout + p.stderr)
        c.check(hub.stats()["requests"].get("api", 0) >= 5, "ls used several tree pages")

        # ---- pull by quant folder, case-insensitive ----
        p = k2(["pull", "acme/multi:q8_0"] + FAST, hub, cache)
        paths = p.stdout.split()
        c.check(p.returncode == 0 and len(paths) == 3, "pull :q8_0 selects the complete shard set", p.stdout + p.stderr)
        c.check("3 file(s)" in p.stderr and "to download" in p.stderr, "plan with total size printed before downloading", p.stderr)
        ok = all(same_file(pp, os.path.join(root, "acme/multi", os.path.relpath(pp, os.path.dirname(os.path.dirname(paths[0])))))
                 for pp in paths) if len(paths) == 3 else False
        c.check(ok, "downloaded bytes equal the source")
        link = os.readlink(paths[0]) if paths else ""
        c.check(link.startswith("../../../blobs/") and len(os.path.basename(link)) == 64, "relative symlink to blobs/<sha256>", link)
        ref = open(os.path.join(repo_dir(cache, "acme/multi"), "refs", "main")).read()
        c.check(len(ref) == 40 and "\n" not in ref, "refs/main holds the commit without newline", repr(ref))
        c.check(not no_partials(cache, "acme/multi"), "no temp files left")
        c.check(os.path.exists(os.path.join(cache, ".locks", "models--acme--multi")), ".locks/<repo> used")

        # exact tag preferred over the UD- variant, mmproj never chosen as model
        p = k2(["pull", "acme/multi:Q4_K_XL"] + FAST, hub, cache)
        c.check(p.returncode == 0 and p.stdout.strip().endswith("m-Q4_K_XL.gguf") and "UD-" not in p.stdout,
                ":Q4_K_XL prefers the exact tag over UD-Q4_K_XL", p.stdout + p.stderr)
        p = k2(["pull", "acme/multi:UD-Q4_K_XL"] + FAST, hub, cache)
        c.check(p.returncode == 0 and p.stdout.strip().endswith("m-UD-Q4_K_XL.gguf"), ":UD-Q4_K_XL", p.stdout + p.stderr)
        p = k2(["pull", "acme/multi:Q5_K_M"] + FAST, hub, cache)
        c.check(p.returncode != 0 and "Q5_K_M" in p.stderr and "available" in p.stderr, "unknown quant: clear error", p.stderr)

        # ---- ambiguity and globs ----
        p = k2(["pull", "acme/multi"] + FAST, hub, cache)
        c.check(p.returncode != 0 and "--all" in p.stderr, "bare ref over several quants is refused", p.stderr)
        p = k2(["pull", "acme/multi", "--include", "*.gguf"] + FAST, hub, cache)
        c.check(p.returncode != 0 and "different GGUF models" in p.stderr, "ambiguous glob refused", p.stderr)
        p = k2(["pull", "acme/multi", "--include", "*.json", "--include", "README.md"] + FAST, hub, cache)
        c.check(p.returncode == 0 and len(p.stdout.split()) == 2, "--include globs (fnmatch)", p.stdout + p.stderr)
        p = k2(["pull", "acme/multi", "--include", "Q8_0/*-00002-of-*"] + FAST, hub, cache)
        c.check(p.returncode == 0 and len(p.stdout.split()) == 3, "one shard selected => complete set", p.stdout + p.stderr)
        hub.reset()
        p = k2(["pull", "acme/multi", "--all"] + FAST, hub, cache)
        c.check(p.returncode == 0 and len(p.stdout.split()) == 8, "--all takes everything", p.stdout + p.stderr)
        st = hub.stats()
        c.check(st["bytes"].get("Q8_0/m-Q8_0-00001-of-00003.gguf", 0) == 0, "cached files are not downloaded again", json.dumps(st["bytes"]))

        # ---- revisions ----
        commit = ref
        p = k2(["pull", "acme/multi@" + commit + ":Q8_0"] + FAST, hub, cache)
        c.check(p.returncode == 0 and commit in p.stdout, "@COMMIT works", p.stderr)
        p = k2(["pull", "acme/multi:Q8_0", "--revision", "nosuchbranch"] + FAST, hub, cache)
        c.check(p.returncode != 0 and "revision not found" in p.stderr, "unknown revision: clear error", p.stderr)
        p = k2(["pull", "acme/nosuchrepo"] + FAST, hub, cache)
        c.check(p.returncode != 0 and "needs a token" in p.stderr, "missing repo: not found or needs a token", p.stderr)

        # ---- offline / no network ----
        p = k2(["pull", "acme/multi:Q8_0"], None, cache, {"HF_HUB_OFFLINE": "1"})
        c.check(p.returncode == 0 and len(p.stdout.split()) == 3, "HF_HUB_OFFLINE resolves via refs/ and snapshots/", p.stderr)
        p = k2(["pull", "acme/multi:Q8_0", "--max-retries", "0"], None, cache)
        c.check(p.returncode == 0 and "without network" in p.stderr, "unreachable endpoint falls back to the cache", p.stderr)
        p = k2(["pull", "acme/one"], None, cache, {"HF_HUB_OFFLINE": "1"})
        c.check(p.returncode != 0 and "not in the cache" in p.stderr, "offline and not cached: clear error", p.stderr)

        # ---- cache ls / rm ----
        p = k2(["cache", "ls"], hub, cache)
        c.check(p.returncode == 0 and "acme/multi" in p.stdout, "cache ls", p.stdout)
        p = k2(["cache", "rm", "acme/multi"], hub, cache)
        c.check(p.returncode == 0 and not os.path.exists(repo_dir(cache, "acme/multi")), "cache rm", p.stderr)

        one_src = os.path.join(root, "acme/one/one.gguf")
        size = os.path.getsize(one_src)

        def pull_one(extra=(), env=None):
            cache = fresh()
            t0 = time.time()
            p = k2(["pull", "acme/one", "--include", "*.gguf"] + FAST + list(extra), hub, cache, env)
            return cache, p, time.time() - t0

        def good(cache, p):
            paths = p.stdout.split()
            return p.returncode == 0 and len(paths) == 1 and same_file(paths[0], one_src) and not no_partials(cache, "acme/one")

        # ---- parallel ranges ----
        hub.reset()
        cache, p, _ = pull_one(["--connections", "4"])
        rng = [r for r in hub.stats()["ranges"] if r[0] == "cdn"]
        c.check(good(cache, p) and len(rng) >= 12, "parallel ranged download (%d ranges)" % len(rng), p.stderr)
        c.check(hub.stats()["requests"].get("resolve_get", 0) == 1, "one resolver hit for all ranges (signed URL reused)")
        c.check(hub.stats()["cdn_auth"] == 0 and hub.stats()["requests"].get("cdn_auth", 0) == 0,
                "no Authorization sent to the CDN origin")

        # ---- HF_HUB_DISABLE_SYMLINKS: plain files in snapshots/, blob moved (§4.4) ----
        hub.reset()
        cache, p, _ = pull_one(env={"HF_HUB_DISABLE_SYMLINKS": "1"})
        paths = p.stdout.split()
        c.check(p.returncode == 0 and len(paths) == 1 and not os.path.islink(paths[0]) and same_file(paths[0], one_src)
                and not [b for b in blobs(cache, "acme/one") if len(b) == 64],
                "no-symlink mode: regular snapshot file, nothing left in blobs/", p.stderr)
        p = k2(["pull", "acme/one", "--include", "*.gguf"] + FAST, hub, cache, {"HF_HUB_DISABLE_SYMLINKS": "1"})
        c.check(p.returncode == 0 and "(cached)" in p.stderr and hub.stats()["bytes"].get("one.gguf", 0) == size,
                "no-symlink mode: the plain file counts as cached", p.stderr)

        # ---- connection drops mid-body: resume with Range ----
        hub.reset()
        hub.faults({"kind": "drop", "after": 100_000, "where": "cdn", "count": 3})
        cache, p, _ = pull_one(["--connections", "1"])
        served = hub.stats()["bytes"].get("one.gguf", 0)
        c.check(good(cache, p), "drops mid-body: download completes", p.stderr)
        c.check(served <= size + 3 * 256 * 1024, "drops: resumed, not restarted (served %d of %d)" % (served, size))
        c.check("retrying" in p.stderr, "drops: retries reported", p.stderr)

        # ---- 429 with Retry-After ----
        hub.reset()
        hub.faults({"kind": "status", "code": 429, "retry_after": 1, "where": "cdn", "count": 1})
        cache, p, dt = pull_one()
        c.check(good(cache, p) and dt >= 1.0, "429 + Retry-After honoured (%.2fs)" % dt, p.stderr)

        hub.reset()
        hub.faults({"kind": "status", "code": 429, "ratelimit_t": 1, "where": "resolve", "count": 1})
        cache, p, dt = pull_one()
        c.check(good(cache, p) and dt >= 2.0, "429 + RateLimit r=0;t=1 waits t+1 s (%.2fs)" % dt, p.stderr)

        # ---- 500s ----
        hub.reset()
        hub.faults({"kind": "status", "code": 500, "where": "cdn", "count": 2},
                   {"kind": "status", "code": 503, "where": "api", "count": 1})
        cache, p, _ = pull_one()
        c.check(good(cache, p), "500/503 retried with backoff", p.stderr)
        hub.reset()
        hub.faults({"kind": "status", "code": 500, "where": "cdn", "count": -1})
        cache, p, _ = pull_one(["--max-retries", "2"])
        c.check(p.returncode != 0 and "HTTP 500" in p.stderr and "giving up" in p.stderr, "persistent 500: clear error", p.stderr)
        c.check(not [b for b in blobs(cache, "acme/one") if len(b) == 64], "persistent 500: nothing in blobs/")
        hub.reset()

        # ---- wrong Content-Range ----
        hub.faults({"kind": "bad_range", "where": "cdn", "count": -1})
        cache, p, _ = pull_one(["--max-retries", "2"])
        c.check(p.returncode != 0 and "Content-Range" in p.stderr, "wrong Content-Range: clear error", p.stderr)
        c.check(not [b for b in blobs(cache, "acme/one") if len(b) == 64] and not snapshot_files(cache, "acme/one"),
                "wrong Content-Range: nothing corrupt in the cache")
        hub.reset()
        hub.faults({"kind": "bad_range", "where": "cdn", "count": 1})
        cache, p, _ = pull_one()
        c.check(good(cache, p), "one wrong Content-Range: retried and completed", p.stderr)

        # ---- server ignores Range ----
        hub.reset()
        hub.faults({"kind": "ignore_range", "where": "cdn", "count": -1})
        cache, p, _ = pull_one(["--connections", "4"])
        c.check(good(cache, p), "200 to ranged requests: falls back to one stream", p.stderr)

        # ---- corrupted bytes ----
        hub.reset()
        hub.faults({"kind": "corrupt", "where": "cdn", "count": -1})
        cache, p, _ = pull_one()
        c.check(p.returncode != 0 and "sha256 mismatch" in p.stderr, "corrupt bytes: hash mismatch reported", p.stderr)
        c.check(not blobs(cache, "acme/one") and not snapshot_files(cache, "acme/one"),
                "corrupt bytes: temp deleted, nothing in the cache", str(blobs(cache, "acme/one")))
        hub.reset()
        hub.faults({"kind": "corrupt", "where": "cdn", "count": 1})
        cache, p, _ = pull_one()
        c.check(good(cache, p), "one corrupt chunk: automatic full retry succeeds", p.stderr)

        # ---- expired signed URL ----
        hub.reset()
        hub.faults({"kind": "expired", "where": "cdn", "count": 1})
        cache, p, _ = pull_one()
        st = hub.stats()
        c.check(good(cache, p) and st["requests"].get("resolve_get", 0) >= 2 and st["bytes"].get("one.gguf", 0) < 2 * size,
                "expired signed URL: resolved again and resumed", p.stderr + json.dumps(st["requests"]))
        hub.reset()
        hub.faults({"kind": "expired", "where": "cdn", "count": -1})
        cache, p, _ = pull_one()
        c.check(p.returncode != 0 and "refused twice" in p.stderr, "signed URL refused twice: clear error", p.stderr)

        # ---- gated repo ----
        hub.reset()
        cache = fresh()
        p = k2(["pull", "acme/gated"] + FAST, hub, cache)
        c.check(p.returncode != 0 and "gated" in p.stderr and "401" in p.stderr, "gated repo without token: 401 explained", p.stderr)
        c.check(not blobs(cache, "acme/gated"), "gated: nothing downloaded")
        p = k2(["pull", "acme/gated"] + FAST, hub, cache, {"HF_TOKEN": "wrong"})
        c.check(p.returncode != 0 and "403" in p.stderr, "gated repo with a token not on the list: 403", p.stderr)
        os.makedirs(os.path.join(cache, "_hfhome"), exist_ok=True)
        with open(os.path.join(cache, "_hfhome", "token"), "w") as f:
            f.write("  hf_secret_test_token\r\n")
        p = k2(["pull", "acme/gated"] + FAST, hub, cache)
        c.check(p.returncode == 0, "gated repo with the token file ($HF_HOME/token)", p.stderr)
        st = hub.stats()
        c.check(st["requests"].get("resolve_auth", 0) >= 1 and st["cdn_auth"] == 0,
                "token sent to the Hub, never to the CDN", json.dumps(st["requests"]))

        # ---- listing with ../ ----
        hub.reset()
        hub.faults({"kind": "evil_listing", "count": -1})
        cache = fresh()
        p = k2(["pull", "acme/one", "--include", "*.json"] + FAST, hub, cache)
        c.check(p.returncode != 0 and "unsafe file name '../evil.bin'" in p.stderr, "listing with ../ rejected", p.stderr)
        c.check(not os.path.exists(os.path.join(cache, "evil.bin")) and not os.path.exists(os.path.join(repo_dir(cache, "acme/one"), "evil.bin")),
                "../ path: nothing written outside")
        hub.reset()

        # ---- --no-verify still checks sizes ----
        hub.faults({"kind": "corrupt", "where": "cdn", "count": -1})
        cache, p, _ = pull_one(["--no-verify"])
        c.check(p.returncode == 0, "--no-verify skips hashing", p.stderr)
        hub.reset()

        # ---- disk space check (the listing claims a 1 PB file) ----
        hub.faults({"kind": "listing_size", "size": 10 ** 15, "path": "one.gguf", "count": -1})
        cache = fresh()
        p = k2(["pull", "acme/one", "--include", "*.gguf"] + FAST, hub, cache)
        c.check(p.returncode != 0 and "not enough disk space" in p.stderr, "disk-space check before starting", p.stderr)
        c.check(not blobs(cache, "acme/one"), "disk-space failure: no temp file created")
        hub.reset()

    shutil.rmtree(root, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    c.finish()


if __name__ == "__main__":
    main()
