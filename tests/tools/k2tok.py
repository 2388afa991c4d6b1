"""Helpers for the tokenizer oracles: run tests/tokenizer/tok_batch over many inputs."""
import json
import os
import random
import subprocess
import sys

KIMI_PAT = "|".join([
    r"""[\p{Han}]+""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
])


def shared_dir():
    d = os.environ.get("K2_SHARED_DIR") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")
    if not os.path.isdir(d):
        if os.environ.get("CI") == "true":
            print("FAIL: shared/ fixtures are missing and CI=true")
            sys.exit(1)
        print("SKIP: shared/ fixtures not found (set K2_SHARED_DIR)")
        sys.exit(77)
    return d


def batch_exe():
    b = os.environ.get("K2_BUILD_DIR")
    for p in ([os.path.join(b, "tests", "tok_batch"), os.path.join(b, "tok_batch")] if b else []):
        if os.path.exists(p):
            return p
    print("FAIL: tok_batch helper not found (K2_BUILD_DIR)")
    sys.exit(1)


def run_batch(args, inputs):
    """inputs: list of bytes; returns list of id lists (or error strings)."""
    data = "".join(x.hex() + "\n" for x in inputs).encode()
    r = subprocess.run([batch_exe()] + args, input=data, capture_output=True, check=True)
    out = []
    for line in r.stdout.decode().split("\n")[: len(inputs)]:
        out.append(line if line.startswith("ERR") else [int(x) for x in line.split()])
    return out


def run_chat(requests):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in requests).encode()
    r = subprocess.run([batch_exe(), "--chat"], input=data, capture_output=True, check=True)
    res = []
    for line in r.stdout.decode().split("\n")[: len(requests)]:
        res.append(line if line.startswith("ERR") else bytes.fromhex(line).decode())
    return res


def load_tiktoken_ranks(path):
    import base64
    ranks = {}
    with open(path, "rb") as f:
        for line in f:
            line = line.strip()
            if line:
                b, r = line.split()
                ranks[base64.b64decode(b)] = int(r)
    return ranks


PIECES = ["Hello", " world", "HTTPServer", "iPhone", "don't", " DON'T", "we'Ve", "x'ſ", "'s", "McDonald's",
          "CamelCase", "aBc", "123", "1234567", "12〇3", "〇一二", "人々の生活", "你好，世界。", "世界世世", "——",
          "“Hello,”", "नमस्ते दुनिया", "a\u0301b", " \u0301x", "}\n///doc", "$hello", "emoji 😀😀 ok", "👩‍👩‍👧",
          "⼀⺀radicals", "x\u00a0\u00a0y", "tab\u180e \u180e", "\t\tfoo", "   leading", "end   ", "x\r\n\r\ny",
          "a  \n\n  b", "ǅungla", "ʕʔ", "Ⅻ", "½", "١٢٣", "مرحبا بالعالم", "Привет мир", "Ελληνικά", "한국어 텍스트",
          "カタカナ", "ひらがな", "ﾊﾝｶｸ", "ｆｕｌｌ", "\u200b", "\ufeff", "\x1c\x1d", "\u2028", "\u0085", "...!!!\n\n",
          "<|im_end|>", "<|im_user|>", "[EOS]", "<｜begin▁of▁sentence｜>", "?!", "@#$%", "'", "''", "'LL", " 's"]
WS = [" ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", "\u2003", "\n\n", " \n ", "\x0b", "\x0c"]


def rand_cp(rng, assigned_only=False):
    import unicodedata
    while True:
        r = rng.random()
        if r < 0.3:
            c = rng.randrange(0x20, 0x7F)
        elif r < 0.5:
            c = rng.randrange(0x80, 0x800)
        elif r < 0.75:
            c = rng.randrange(0x800, 0x10000)
        elif r < 0.85:
            c = rng.randrange(0x10000, 0x30000)
        else:
            c = rng.randrange(0, 0x110000)
        if 0xD800 <= c <= 0xDFFF:
            continue
        if assigned_only and unicodedata.category(chr(c)) in ("Cn", "Co", "Cs"):
            continue
        return chr(c)


def rand_text(rng, assigned_only=False, pieces=PIECES):
    parts = []
    for _ in range(rng.randrange(1, 12)):
        r = rng.random()
        if r < 0.35:
            parts.append(rng.choice(pieces))
        elif r < 0.55:
            parts.append(rng.choice(WS) * rng.randrange(1, 4))
        elif r < 0.65:
            parts.append(str(rng.randrange(0, 10 ** rng.randrange(1, 9))))
        else:
            parts.append("".join(rand_cp(rng, assigned_only) for _ in range(rng.randrange(1, 8))))
    return "".join(parts)
