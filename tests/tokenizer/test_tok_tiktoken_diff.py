"""Differential test against PyPI tiktoken with Kimi K2's exact pattern (spec §2.1):
k2's tiktoken.model loader and its GGUF loader (k2-tiny), and the 128k vocabulary,
on thousands of random strings from all Unicode planes, with invalid UTF-8 repaired as
Python's decode(errors="replace") does, and with special tokens allowed."""
import json
import os
import random
import sys

import tiktoken
from k2tok import KIMI_PAT, load_tiktoken_ranks, rand_text, run_batch, shared_dir

N = int(os.environ.get("K2_TOK_DIFF_N", "3000"))


def main():
    sh = shared_dir()
    rng = random.Random(1234)
    failures = 0
    for name, n in (("k2-tiny", N), ("kimi-pattern-128k", N // 2)):
        d = os.path.join(sh, "fixtures", "tokenizer", name)
        ranks = load_tiktoken_ranks(os.path.join(d, "tiktoken.model"))
        special = json.load(open(os.path.join(d, "special_tokens.json")))
        enc = tiktoken.Encoding(name=name, pat_str=KIMI_PAT, mergeable_ranks=ranks, special_tokens=special)
        texts = [rand_text(rng) for _ in range(n)]
        inputs = [t.encode() for t in texts]
        # Invalid UTF-8: random bytes spliced into valid text.
        for _ in range(n // 10):
            b = bytearray(rng.choice(texts).encode())
            for _ in range(rng.randrange(1, 4)):
                b.insert(rng.randrange(0, len(b) + 1), rng.randrange(0x80, 0x100))
            inputs.append(bytes(b))
        want = [enc.encode_ordinary(b.decode("utf-8", "replace")) for b in inputs]
        want_sp = [enc.encode(b.decode("utf-8", "replace"), allowed_special="all") for b in inputs]
        runs = [("tiktoken.model", ["--tiktoken", os.path.join(d, "tiktoken.model"), os.path.join(d, "special_tokens.json")])]
        if name == "k2-tiny":
            runs.append(("GGUF", ["--gguf", os.path.join(sh, "fixtures", "models", "k2-tiny-f32.gguf")]))
        for label, args in runs:
            for sp, w in ((False, want), (True, want_sp)):
                got = run_batch(args + (["--special"] if sp else []), inputs)
                bad = [i for i in range(len(inputs)) if got[i] != w[i]]
                for i in bad[:5]:
                    print(f"{name} {label} special={sp}: {inputs[i]!r}\n  k2:       {got[i]}\n  tiktoken: {w[i]}")
                print(f"{name} via {label}, parse_special={sp}: {len(inputs) - len(bad)}/{len(inputs)} identical")
                failures += len(bad)
    sys.exit(1 if failures else 0)


main()
