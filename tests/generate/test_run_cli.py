"""k2 run on k2-tiny: JSON lines vs plain output, stream text == one-shot detokenization,
stop strings, seeds, context overflow and usage errors."""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
from k2test import Checker, k2_bin, shared_dir  # noqa: E402


def k2(*args, stdin=None):
    return subprocess.run([k2_bin(), *args], input=stdin, capture_output=True, timeout=300)


def main():
    ck = Checker("test_run_cli")
    model = os.path.join(shared_dir(), "fixtures", "models", "k2-tiny-f32.gguf")
    base = ["run", "-m", model, "--threads", "1", "-p", "Tell me about Paris.", "--system", "Be brief."]

    r = k2(*base, "--temp", "0", "-n", "12", "--ignore-eos", "--json")
    ck.check(r.returncode == 0, f"k2 run --json exited {r.returncode}: {r.stderr}")
    lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
    deltas, final = lines[:-1], lines[-1] if lines else {}
    ids = [i for d in deltas for i in d["ids"]]
    text = "".join(d["text"] for d in deltas)
    ck.check(final.get("finish_reason") == "length", f"final line {final}")
    ck.check(final.get("usage", {}).get("completion_tokens") == 12 and len(ids) == 12, f"{final} ids {ids}")
    ck.check(final["usage"]["total_tokens"] == final["usage"]["prompt_tokens"] + 12, "total_tokens")
    ck.check(b"generated tokens (length)" in r.stderr, f"summary line: {r.stderr}")
    d = k2("detokenize", "--skip-special", "-m", model, json.dumps(ids))
    ck.check(d.stdout.decode() == text + "\n", f"stream text {text!r} != one-shot {d.stdout!r}")

    p = k2(*base, "--temp", "0", "-n", "12", "--ignore-eos")
    ck.check(p.returncode == 0 and p.stdout.decode() == text + "\n", f"plain output {p.stdout!r} vs {text!r}")

    # a stop string taken from the greedy text cuts it before its first occurrence
    if len(text) >= 8:
        stop = text[4:7]
        s = k2(*base, "--temp", "0", "-n", "12", "--ignore-eos", "--stop", stop, "--json")
        sl = [json.loads(x) for x in s.stdout.decode().splitlines()]
        stext = "".join(x.get("text", "") for x in sl[:-1])
        ck.check(sl[-1].get("finish_reason") == "stop", f"stop: {sl[-1]}")
        ck.check(stext == text[:text.find(stop)], f"stop {stop!r}: {stext!r} vs {text!r}")

    # seeds: same seed same text, sampling on
    a = k2(*base, "-n", "10", "--seed", "5", "--top-k", "20", "--ignore-eos")
    b = k2(*base, "-n", "10", "--seed", "5", "--top-k", "20", "--ignore-eos")
    ck.check(a.returncode == 0 and a.stdout == b.stdout, "same seed, same output")

    # raw prompt from stdin
    w = k2("run", "-m", model, "--threads", "1", "--raw", "-n", "3", "--temp", "0", "--json", stdin=b"Once upon")
    wl = [json.loads(x) for x in w.stdout.decode().splitlines()]
    ck.check(w.returncode == 0 and wl[-1]["usage"]["prompt_tokens"] >= 2, f"raw stdin: {w.stdout!r} {w.stderr!r}")

    e = k2(*base, "--ctx", "8")
    ck.check(e.returncode == 1 and b"prompt:" in e.stderr and b"maximum context length is 8 tokens" in e.stderr,
             f"overflow: rc {e.returncode} {e.stderr!r}")
    e = k2(*base, "--ctx", "8", "--json")
    el = [json.loads(x) for x in e.stdout.decode().splitlines()]
    ck.check(e.returncode == 1 and el and el[-1].get("error", {}).get("stage") == "prompt", f"json error: {e.stdout!r}")
    e = k2("run", "-m", os.path.join(shared_dir(), "no-such.gguf"), "-p", "x")
    ck.check(e.returncode == 1 and b"load:" in e.stderr, f"missing model: {e.stderr!r}")
    e = k2(*base, "--temp", "abc")
    ck.check(e.returncode == 2, "bad value is a usage error")
    e = k2(*base, "--top-p", "3")
    ck.check(e.returncode == 1 and b"top_p" in e.stderr, f"out-of-range option: {e.stderr!r}")
    ck.report()


if __name__ == "__main__":
    main()
