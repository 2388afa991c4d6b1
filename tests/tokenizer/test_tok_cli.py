"""k2 tokenize / k2 detokenize with the three vocabulary sources."""
import json
import os
import subprocess
import sys

from k2tok import shared_dir


def k2(*args, stdin=None):
    return subprocess.run([os.environ["K2_BIN"], *args], input=stdin, capture_output=True, text=True)


def main():
    sh = shared_dir()
    tk = os.path.join(sh, "fixtures", "tokenizer", "k2-tiny")
    gguf = os.path.join(sh, "fixtures", "models", "k2-tiny-f32.gguf")
    ds = os.path.join(sh, "fixtures", "tokenizer", "deepseek-v3", "tokenizer.json")
    bad = 0
    text = "<|im_user|>user<|im_middle|>Hello, 世界!<|im_end|>"
    a = k2("tokenize", "--tiktoken", tk, "--special", "--ids", text)
    b = k2("tokenize", "-m", gguf, "--special", "--json", "-", stdin=text)
    ids_a = [int(x) for x in a.stdout.split()]
    ids_b = json.loads(b.stdout)
    bad += ids_a != ids_b or ids_a[0] != 2030
    d = k2("detokenize", "--tiktoken", tk, a.stdout.strip())
    bad += d.stdout != text + "\n"
    d = k2("detokenize", "--skip-special", "-m", gguf, json.dumps(ids_b))
    bad += d.stdout != "userHello, 世界!\n"
    c = k2("tokenize", "--tokenizer", ds, "--ids", "Hello world")
    bad += c.stdout.split() != ["19923", "2058"]
    e = k2("tokenize", "--tokenizer", "/nonexistent.json", "x")
    bad += e.returncode != 1 or "nonexistent" not in e.stderr
    u = k2("tokenize", "x")
    bad += u.returncode != 2
    print("cli checks failed:", bad)
    sys.exit(1 if bad else 0)


main()
