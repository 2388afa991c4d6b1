"""k2 run on Hub references served by scripts/hubserver.py: the k2-tiny greedy golden through
the full chat path (download with progress, load, streamed completion, timing summary),
the cache on a second run, a tokenizer fetched from another Hub repo, and the errors a
stream reports (missing repo, failing download, corrupt GGUF) with their stages."""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from k2test import Checker, shared_dir  # noqa: E402
from hubtest import Hub, k2  # noqa: E402

SYSTEM = "You are Kimi, an AI assistant created by Moonshot AI."


def main():
    ck = Checker("test_run_hub")
    sd = shared_dir()
    model = os.path.join(sd, "fixtures", "models", "k2-tiny-f32.gguf")
    golden = json.load(open(os.path.join(sd, "fixtures", "golden", "k2-tiny-f32", "greedy.json")))
    n_sure = next((i for i, m in enumerate(golden["margin"]) if m < 0.005), len(golden["margin"]))
    tmp = tempfile.mkdtemp(prefix="k2runhub.")
    try:
        root = os.path.join(tmp, "hub")
        repo = os.path.join(root, "k2test", "k2-tiny-GGUF")
        os.makedirs(repo)
        shutil.copy(model, os.path.join(repo, "k2-tiny-F32.gguf"))
        with open(os.path.join(repo, "README.md"), "w") as f:
            f.write("k2-tiny for tests\n")
        tokrepo = os.path.join(root, "k2test", "k2-tiny-tokenizer")
        os.makedirs(tokrepo)
        for name in ("tiktoken.model", "special_tokens.json"):
            shutil.copy(os.path.join(sd, "fixtures", "tokenizer", "k2-tiny", name), tokrepo)
        # corrupt: the first half of the model
        bad = os.path.join(root, "k2test", "broken-GGUF")
        os.makedirs(bad)
        with open(model, "rb") as f:
            data = f.read()
        with open(os.path.join(bad, "broken-F32.gguf"), "wb") as f:
            f.write(data[: len(data) // 2])

        cache = os.path.join(tmp, "cache")
        base = ["run", "--system", SYSTEM, "-p", "What is 2+2?", "--temp", "0", "-n", "32", "--ignore-eos",
                "--cache", "f32", "-t", "1"]
        with Hub(root) as hub:
            # 1. the golden, through download -> load -> chat template -> stream
            p = k2(base + ["k2test/k2-tiny-GGUF:F32", "--json"], hub, cache, timeout=300)
            ck.check(p.returncode == 0, f"run via hub: rc {p.returncode}: {p.stderr}")
            lines = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
            ids = [i for x in lines[:-1] for i in x.get("ids", [])]
            final = lines[-1] if lines else {}
            ck.check(final.get("usage", {}).get("prompt_tokens") == len(golden["prompt"]),
                     f"prompt tokens {final.get('usage')} vs golden {len(golden['prompt'])}")
            same = 0
            while same < min(len(ids), len(golden["generated"])) and ids[same] == golden["generated"][same]:
                same += 1
            ck.check(same >= n_sure, f"greedy golden via hub: {same} ids agree, {n_sure} required: {ids}")
            print(f"golden via hub: {same}/{len(golden['generated'])} ids agree ({n_sure} required)")
            err = p.stderr
            ck.check("k2test/k2-tiny-GGUF @" in err and "to download" in err, f"plan line: {err}")
            ck.check("downloaded k2-tiny-F32.gguf" in err, f"download progress: {err}")
            ck.check("k2: loading " in err and "k2: model ready" in err, f"load progress: {err}")
            ck.check("k2 run: 51 prompt + 32 generated tokens (length); load" in err, f"summary: {err}")
            print(err)

            # 2. plain text, second run: from the cache (nothing downloaded)
            p2 = k2(base + ["k2test/k2-tiny-GGUF:F32"], hub, cache, timeout=300)
            ck.check(p2.returncode == 0 and "downloaded" not in p2.stderr and "0 B to download" in p2.stderr,
                     f"cached run: {p2.stderr}")
            text = "".join(x.get("text", "") for x in lines[:-1])
            ck.check(p2.stdout == text + "\n", f"plain text {p2.stdout!r} vs json {text!r}")

            # 3. K2_MODEL names the default model
            p3 = k2(base, hub, cache, extra_env={"K2_MODEL": "k2test/k2-tiny-GGUF:F32"}, timeout=300)
            ck.check(p3.returncode == 0 and p3.stdout == p2.stdout, f"K2_MODEL: {p3.returncode} {p3.stderr}")

            # 4. a tokenizer from another Hub repo replaces the GGUF's (same vocabulary: same answer)
            p4 = k2(base + ["k2test/k2-tiny-GGUF:F32", "--tokenizer", "k2test/k2-tiny-tokenizer"], hub, cache,
                    timeout=300)
            ck.check(p4.returncode == 0 and p4.stdout == p2.stdout, f"hub tokenizer: {p4.returncode} {p4.stderr}")
            ck.check("tiktoken.model" in p4.stderr or "k2test/k2-tiny-tokenizer" in p4.stderr,
                     f"tokenizer fetch progress: {p4.stderr}")

            # 5. errors arrive as ERROR chunks with their stage
            e = k2(["run", "k2test/no-such-repo", "-p", "hi", "--json"], hub, cache, timeout=120)
            el = [json.loads(x) for x in e.stdout.splitlines() if x.strip()]
            ck.check(e.returncode == 1 and el and el[-1].get("error", {}).get("stage") == "download",
                     f"missing repo: {e.returncode} {e.stdout} {e.stderr}")
            ck.check("k2 run: download:" in e.stderr and "no-such-repo" in e.stderr, f"missing repo message: {e.stderr}")

            hub.faults({"kind": "status", "code": 500, "where": "cdn", "count": -1})
            e = k2(["run", "k2test/k2-tiny-GGUF:F32", "-p", "hi", "--json", "--max-retries", "0"], hub,
                   os.path.join(tmp, "cache2"), timeout=120)
            el = [json.loads(x) for x in e.stdout.splitlines() if x.strip()]
            ck.check(e.returncode == 1 and el and el[-1].get("error", {}).get("stage") == "download",
                     f"failing download: {e.returncode} {e.stdout} {e.stderr}")
            print("failing download:", e.stderr.strip().splitlines()[-1] if e.stderr.strip() else "")
            hub.reset()

            e = k2(["run", "k2test/broken-GGUF", "-p", "hi", "--json"], hub, cache, timeout=120)
            el = [json.loads(x) for x in e.stdout.splitlines() if x.strip()]
            ck.check(e.returncode == 1 and el and el[-1].get("error", {}).get("stage") == "load"
                     and "broken-F32.gguf" in el[-1]["error"].get("message", ""),
                     f"corrupt GGUF: {e.returncode} {e.stdout} {e.stderr}")
            print("corrupt GGUF:", e.stderr.strip().splitlines()[-1] if e.stderr.strip() else "")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ck.report()


if __name__ == "__main__":
    main()
