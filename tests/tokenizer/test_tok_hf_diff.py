"""Differential test against PyPI `tokenizers` on DeepSeek-V3's tokenizer.json: the golden
strings plus a few thousand random strings (mixed scripts, emoji, whitespace runs, digits).
Random code points are drawn from those assigned in Python's Unicode tables, so that the
regex engines' Unicode versions (PCRE2 in k2, Oniguruma in tokenizers) agree on them."""
import json
import os
import random
import sys

from tokenizers import Tokenizer
from k2tok import rand_text, run_batch, shared_dir

N = int(os.environ.get("K2_TOK_DIFF_N", "3000"))


def main():
    sh = shared_dir()
    d = os.path.join(sh, "fixtures", "tokenizer", "deepseek-v3")
    path = os.path.join(d, "tokenizer.json")
    hf = Tokenizer.from_file(path)
    golden = json.load(open(os.path.join(d, "golden.json")))
    rng = random.Random(99)
    texts = [c["text"] for c in golden["ordinary"]] + [rand_text(rng, assigned_only=True) for _ in range(N)]
    want = [hf.encode(t, add_special_tokens=False).ids for t in texts]
    got = run_batch(["--json", path, "--special"], [t.encode() for t in texts])
    bad = [i for i in range(len(texts)) if got[i] != want[i]]
    for i in bad[:8]:
        print(f"{texts[i]!r}\n  k2:         {got[i]}\n  tokenizers: {want[i]}")
    print(f"deepseek-v3 tokenizer.json: {len(texts) - len(bad)}/{len(texts)} identical to tokenizers")
    sys.exit(1 if bad else 0)


main()
