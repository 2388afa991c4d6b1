"""Log-probabilities (spec/server-api.md §3.4) with the real k2-tiny model: well-formed
chat and completions logprobs, values equal to a NumPy log-softmax of the raw logits from
`k2 logits`, greedy choice = best alternative, streaming = non-streaming, raw logits
(logit_bias does not change them), validation."""
import json
import os
import subprocess
import tempfile

import numpy as np

import k2server
import k2test

from openai import OpenAI
import openai

C = k2test.Checker("server.logprobs")
check = C.check
MSGS = [{"role": "user", "content": "Tell me about foxes."}]


def log_softmax(row):
    row = row.astype(np.float64)
    m = row.max()
    return row - (m + np.log(np.exp(row - m).sum()))


def raw_rows(ids):
    """Rows of raw logits for every position of ids (k2 logits on the same model)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "o.f32")
        p = subprocess.run([k2test.k2_bin(), "logits", "-m", k2server.tiny_model(), "--tokens",
                            ",".join(map(str, ids)), "--out", out], capture_output=True, text=True)
        check(p.returncode == 0, f"k2 logits: {p.stderr}")
        return np.fromfile(out, dtype="<f4").reshape(len(ids), -1)


def greedy_ids(ids, n):
    p = subprocess.run([k2test.k2_bin(), "generate", "-m", k2server.tiny_model(), "--tokens", ",".join(map(str, ids)),
                        "-n", str(n), "--greedy", "--ids"], capture_output=True, text=True)
    check(p.returncode == 0, f"k2 generate: {p.stderr}")
    return [int(x) for x in p.stdout.strip().split(",")]


def check_chat_entries(lp, content, n_top, what):
    ents = lp.content
    check(lp.refusal is None, f"{what}: refusal null")
    check(len(ents) > 0, f"{what}: entries")
    for e in ents:
        check(e.logprob <= 0, f"{what}: logprob <= 0")
        check(bytes(e.bytes).decode("utf-8", "replace") == e.token, f"{what}: token = bytes {e}")
        tops = [t.logprob for t in e.top_logprobs]
        check(len(tops) == n_top, f"{what}: {len(tops)} alternatives, want {n_top}")
        check(tops == sorted(tops, reverse=True), f"{what}: alternatives sorted")
        check(all(t <= 0 for t in tops), f"{what}: alternatives <= 0")
        if n_top:
            # temperature 0: the chosen token is the best one
            check(e.top_logprobs[0].bytes == e.bytes and abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6,
                  f"{what}: greedy choice is top_logprobs[0]: {e}")
    joined = b"".join(bytes(e.bytes) for e in ents)
    # the parser strips the leading whitespace of content (§7.4), the token keeps its bytes;
    # bytes that are not valid UTF-8 (the tiny model emits byte tokens) reach content as U+FFFD
    joined = joined.lstrip(b" \t\r\n")
    check(joined.decode("utf-8", "replace") == content, f"{what}: bytes {joined!r} == content {content!r}")
    try:
        check(joined.decode("utf-8") == content, f"{what}: valid bytes == content")
    except UnicodeDecodeError:
        pass
    return ents


def main():
    with k2server.Server("--parallel", "1", "--ctx-size", "512", "--threads", "1") as srv:
        cl = OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0)
        # ---- chat, non-streaming and streaming ----
        for n_top in (0, 3, 20):
            r = cl.chat.completions.create(model="k2-tiny", messages=MSGS, max_tokens=10, temperature=0,
                                           logprobs=True, top_logprobs=n_top)
            content = r.choices[0].message.content
            ents = check_chat_entries(r.choices[0].logprobs, content, n_top, f"chat top {n_top}")
            st = cl.chat.completions.create(model="k2-tiny", messages=MSGS, max_tokens=10, temperature=0,
                                            logprobs=True, top_logprobs=n_top, stream=True)
            sents, scontent = [], ""
            for ch in st:
                for c in ch.choices:
                    if c.delta.content:
                        scontent += c.delta.content
                        check(c.logprobs is not None, "content chunk carries logprobs")
                        sents += c.logprobs.content
                    elif c.logprobs is not None:
                        check(False, f"chunk without content has logprobs {c}")
            check(scontent == content, f"stream content {scontent!r} == {content!r}")
            check([(e.token, e.bytes, e.logprob, [(t.token, t.logprob) for t in e.top_logprobs]) for e in sents] ==
                  [(e.token, e.bytes, e.logprob, [(t.token, t.logprob) for t in e.top_logprobs]) for e in ents],
                  f"stream entries == non-stream entries (top {n_top})")
        r = cl.chat.completions.create(model="k2-tiny", messages=MSGS, max_tokens=4, temperature=0)
        check(r.choices[0].logprobs is None, "no logprobs unless asked")
        # chat values against the raw logits: the rendered prompt + the greedy ids
        st_, _, b = srv.post("/apply-template", {"messages": MSGS})
        prompt_text = json.loads(b)["prompt"]
        st_, _, b = srv.post("/tokenize", {"content": prompt_text, "add_special": True, "parse_special": True})
        pids = json.loads(b)["tokens"]
        gen = greedy_ids(pids, 6)
        rows = raw_rows(pids + gen[:-1])
        r = cl.chat.completions.create(model="k2-tiny", messages=MSGS, max_tokens=6, temperature=0, logprobs=True,
                                       top_logprobs=5)
        ents = r.choices[0].logprobs.content
        check(r.usage.prompt_tokens == len(pids), f"prompt ids {r.usage.prompt_tokens} vs {len(pids)}")
        check(len(ents) == len(gen), f"{len(ents)} entries for {len(gen)} tokens")
        for i, e in enumerate(ents[:len(gen)]):
            ls = log_softmax(rows[len(pids) - 1 + i])
            check(abs(e.logprob - ls[gen[i]]) < 1e-3, f"chat token {i}: {e.logprob} vs numpy {ls[gen[i]]}")
            best = np.sort(ls)[::-1][:5]
            check(np.abs(np.array([t.logprob for t in e.top_logprobs]) - best).max() < 1e-3,
                  f"chat token {i}: alternatives match numpy")
        # raw logits: a logit_bias forcing another token does not change the reported values
        forced = int(np.argsort(log_softmax(rows[len(pids) - 1]))[-7])
        r = cl.chat.completions.create(model="k2-tiny", messages=MSGS, max_tokens=1, temperature=0, logprobs=True,
                                       logit_bias={str(forced): 100})
        e = r.choices[0].logprobs.content
        want = log_softmax(rows[len(pids) - 1])[forced]
        check(len(e) == 1 and abs(e[0].logprob - want) < 1e-3,
              f"biased token reports its raw logprob {want}: {e}")

        # ---- completions ----
        st_, _, b = srv.post("/tokenize", {"content": "The quick brown fox"})
        cids = json.loads(b)["tokens"]
        gen = greedy_ids(cids, 8)
        rows = raw_rows(cids + gen[:-1])
        for k in (0, 2, 5):
            r = cl.completions.create(model="k2-tiny", prompt=cids, max_tokens=8, temperature=0, logprobs=k)
            text, lp = r.choices[0].text, r.choices[0].logprobs
            n = len(lp.tokens)
            check(n == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == len(gen),
                  f"completions k={k}: parallel arrays of {len(gen)}")
            check(lp.text_offset == sorted(lp.text_offset) and (n == 0 or lp.text_offset[0] == 0),
                  f"text_offset ascending {lp.text_offset}")
            for i in range(n):
                nxt = lp.text_offset[i + 1] if i + 1 < n else len(text)
                if "\ufffd" not in lp.tokens[i]:
                    check(text[lp.text_offset[i]:nxt] == lp.tokens[i],
                          f"text_offset {i}: {text[lp.text_offset[i]:nxt]!r} vs {lp.tokens[i]!r}")
                ls = log_softmax(rows[len(cids) - 1 + i])
                check(abs(lp.token_logprobs[i] - ls[gen[i]]) < 1e-3,
                      f"completion token {i}: {lp.token_logprobs[i]} vs numpy {ls[gen[i]]}")
                tops = list(lp.top_logprobs[i].values())
                check(len(tops) <= k and (k == 0 or len(tops) >= 1) and tops == sorted(tops, reverse=True),
                      f"top_logprobs {i} with k={k}: {lp.top_logprobs[i]}")
                if k:
                    check(abs(tops[0] - lp.token_logprobs[i]) < 1e-6, f"greedy token is the best alternative {i}")
            # streaming gives the same arrays, chunk by chunk
            s = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            stext = ""
            for ch in cl.completions.create(model="k2-tiny", prompt=cids, max_tokens=8, temperature=0, logprobs=k,
                                            stream=True):
                for c in ch.choices:
                    stext += c.text
                    if c.logprobs is not None:
                        for key in s:
                            s[key] += getattr(c.logprobs, key)
            check(stext == text, "completions stream text")
            check(s == {"tokens": lp.tokens, "token_logprobs": lp.token_logprobs, "top_logprobs": lp.top_logprobs,
                        "text_offset": lp.text_offset}, f"completions stream logprobs k={k}")
        r = cl.completions.create(model="k2-tiny", prompt=cids, max_tokens=3, temperature=0)
        check(r.choices[0].logprobs is None, "completions: no logprobs unless asked")

        # ---- validation ----
        for kw, param in (({"top_logprobs": 3}, "top_logprobs"), ({"logprobs": True, "top_logprobs": 21}, "top_logprobs")):
            try:
                cl.chat.completions.create(model="k2-tiny", messages=MSGS, max_tokens=1, **kw)
                check(False, f"{kw} accepted")
            except openai.BadRequestError as e:
                check(e.body.get("param") == param, f"{kw}: param {e.body}")
        try:
            cl.completions.create(model="k2-tiny", prompt="x", max_tokens=1, logprobs=6)
            check(False, "logprobs 6 accepted")
        except openai.BadRequestError as e:
            check(e.body.get("param") == "logprobs", f"logprobs 6: {e.body}")
    C.report()


if __name__ == "__main__":
    main()
