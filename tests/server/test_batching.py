"""Continuous batching in k2 serve: N concurrent greedy requests (completions and chat,
streamed and not, prompts of very different lengths) produce exactly the tokens each
produces when served alone, while the scheduler really evaluates several slots per forward
pass (llm_batch_* metrics). A small --batch-size splits the long prompts into chunks that
share forward passes with decoding slots. Runs on k2-tiny q4_k_m (fast mode, quantized
activations) and f32."""
import threading

import k2server
import k2test

from openai import OpenAI

C = k2test.Checker("server.batching")
check = C.check

PROMPTS = ["The quick brown fox", "Once upon a time, in a land far away, there lived a king who " * 6,
           "1, 2, 3, 4,", "Hello", "Kimi K2 is a model " * 12, "In the beginning there was",
           "Zebras and lions", "A"]


def run_model(kind):
    n = len(PROMPTS)
    with k2server.Server("--parallel", str(n), "--ctx-size", str(n * 256), "--threads", "2",
                         "--batch-size", "24", model=k2server.tiny_model(kind)) as srv:
        cl = OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0, timeout=120)

        def comp(i, stream=False):
            kw = dict(model="k2-tiny", max_tokens=20, temperature=0)
            if i % 2:
                msgs = [{"role": "user", "content": PROMPTS[i]}]
                if stream:
                    return "".join(c.choices[0].delta.content or "" for c in
                                   cl.chat.completions.create(messages=msgs, stream=True, **kw) if c.choices)
                return cl.chat.completions.create(messages=msgs, **kw).choices[0].message.content
            if stream:
                return "".join(c.choices[0].text for c in cl.completions.create(prompt=PROMPTS[i], stream=True, **kw)
                               if c.choices)
            return cl.completions.create(prompt=PROMPTS[i], **kw).choices[0].text

        alone = [comp(i) for i in range(n)]
        check(all(len(a) > 0 for a in alone), f"{kind}: generated text {alone}")
        m0 = srv.metrics()
        for rnd, stream in ((0, False), (1, True)):
            got = [None] * n
            errs = []

            def run(i):
                try:
                    got[i] = comp(i, stream)
                except Exception as e:  # noqa: BLE001 - reported below
                    errs.append(repr(e))
            ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
            check(not errs, f"{kind}: errors {errs}")
            for i in range(n):
                check(got[i] == alone[i], f"{kind} round {rnd}: request {i}: concurrent {got[i]!r} != alone {alone[i]!r}")
        m1 = srv.metrics()
        evals = m1["llm_batch_evals_total"] - m0["llm_batch_evals_total"]
        seqs = m1["llm_batch_sequences_total"] - m0["llm_batch_sequences_total"]
        check(evals > 0 and seqs / evals > 2.0,
              f"{kind}: {seqs:.0f} slot steps in {evals:.0f} forward passes (expected several slots per pass)")
        print(f"{kind}: {seqs / max(evals, 1):.2f} slots per forward pass under {n} concurrent requests")


def main():
    run_model("q4_k_m")
    run_model("f32")
    C.report()


if __name__ == "__main__":
    main()
