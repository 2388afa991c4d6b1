"""The main job (`make run` -> scripts/main-job) offline, in a temporary demo folder: the
demo model repository is written, served by the local Hub, downloaded with progress,
loaded and streamed with a timing summary; a second run is served from the cache; the
Hub server is stopped at the end."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from k2test import Checker, build_dir  # noqa: E402

SRC = os.environ.get("K2_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def main():
    ck = Checker("test_main_job")
    tmp = tempfile.mkdtemp(prefix="k2demo.")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["K2_DEMO_DIR"] = os.path.join(tmp, "demo")
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"   # must be overridden by the job
    env["http_proxy"] = env["https_proxy"] = "http://127.0.0.1:9"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    try:
        job = [os.path.join(SRC, "scripts", "main-job"), os.path.abspath(build_dir())]
        p = subprocess.run(job, env=env, capture_output=True, text=True, timeout=300)
        out = p.stdout + p.stderr
        ck.check(p.returncode == 0, f"main-job rc {p.returncode}:\n{out}")
        for want in ("writing the demo model repository", "to download)", "downloaded k2-demo-Q4_K_M.gguf",
                     "k2: loading ", "k2: model ready", "generated tokens (length); load"):
            ck.check(want in out, f"first run lacks {want!r}:\n{out}")
        ck.check(os.path.isdir(os.path.join(tmp, "demo", "hf-home", "hub", "models--k2-demo--Kimi-K2-Demo-GGUF")),
                 "cache under the demo folder")
        print(out)
        p2 = subprocess.run(job, env=env, capture_output=True, text=True, timeout=300)
        out2 = p2.stdout + p2.stderr
        ck.check(p2.returncode == 0 and "writing the demo model" not in out2 and "(0 B to download)" in out2
                 and "downloaded" not in out2 and "generated tokens" in out2, f"second run:\n{out2}")
        # the same seed gives the same text on both runs
        ck.check(p.stdout.splitlines()[-2:] == p2.stdout.splitlines()[-2:], "same answer twice")
        # the Hub server is gone
        port = json.load(open(os.path.join(tmp, "demo", "hubserver.json")))["hub"]
        s = socket.socket()
        try:
            s.settimeout(2)
            refused = s.connect_ex(("127.0.0.1", port)) != 0
        finally:
            s.close()
        ck.check(refused, "the Hub server was stopped")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ck.report()


if __name__ == "__main__":
    main()
