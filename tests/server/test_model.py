"""k2 serve with the real k2-tiny model (no test mode): greedy determinism, seed
reproducibility, continuous batching giving every request the tokens it gets alone,
prefix reuse, context limits, and a failed load reported on /health."""
import json
import threading

import k2server
import k2test

from openai import OpenAI
import openai

C = k2test.Checker("server.model")
check = C.check

PROMPTS = ["The quick brown fox", "Once upon a time", "In the beginning there was", "1, 2, 3, 4,",
           "Kimi K2 is a model", "Hello"]


def main():
    with k2server.Server("--parallel", "4", "--ctx-size", "2048", "--threads", "1") as srv:
        cl = OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0)

        def comp(p, **kw):
            return cl.completions.create(model="k2-tiny", prompt=p, max_tokens=12, temperature=0, **kw)

        alone = {p: comp(p).choices[0].text for p in PROMPTS}
        check(all(len(v) > 0 for v in alone.values()), "generated text")
        # same greedy tokens with 6 concurrent requests on 4 slots (two wait in the queue)
        got = {}

        def run(p):
            got[p] = comp(p).choices[0].text
        ts = [threading.Thread(target=run, args=(p,)) for p in PROMPTS]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        check(got == alone, f"batched == alone: {got} vs {alone}")
        # stream == non-stream
        s = "".join(c.choices[0].text for c in comp(PROMPTS[0], stream=True) if c.choices)
        check(s == alone[PROMPTS[0]], f"stream {s!r} == non-stream {alone[PROMPTS[0]]!r}")
        # seeds
        a = cl.completions.create(model="k2-tiny", prompt="Hello", max_tokens=16, temperature=0.8, seed=42)
        b = cl.completions.create(model="k2-tiny", prompt="Hello", max_tokens=16, temperature=0.8, seed=42)
        check(a.choices[0].text == b.choices[0].text, "same seed, same text")
        # top_k 1 == greedy
        k1 = cl.completions.create(model="k2-tiny", prompt=PROMPTS[1], max_tokens=12, temperature=1.0,
                                   extra_body={"top_k": 1})
        check(k1.choices[0].text == alone[PROMPTS[1]], "top_k 1 == greedy")
        # chat: prefix reuse reported as cached tokens on a repeated conversation
        msgs = [{"role": "user", "content": "Tell me a story about a fox and a dog."}]
        r1 = cl.chat.completions.create(model="k2-tiny", messages=msgs, max_tokens=4, temperature=0)
        r2 = cl.chat.completions.create(model="k2-tiny", messages=msgs, max_tokens=4, temperature=0)
        check(r1.choices[0].message.content == r2.choices[0].message.content, "chat deterministic")
        check(r2.usage.prompt_tokens_details.cached_tokens > 0, f"cached tokens {r2.usage.prompt_tokens_details}")
        # tool_choice none never yields tool calls; tools declared
        r = cl.chat.completions.create(model="k2-tiny", messages=msgs, max_tokens=8, temperature=1.0, seed=1,
                                       tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="none")
        check(not r.choices[0].message.tool_calls, "tool_choice none")
        # context: too long a prompt, and max_tokens past the context end
        long = "word " * 700
        try:
            cl.completions.create(model="k2-tiny", prompt=long, max_tokens=4)
            check(False, "context_length_exceeded not raised")
        except openai.BadRequestError as e:
            check(e.body["code"] == "context_length_exceeded", f"ctx error {e.body}")
        r = cl.completions.create(model="k2-tiny", prompt="word " * 200, max_tokens=1000, temperature=0)
        check(r.choices[0].finish_reason == "length" and r.usage.prompt_tokens + r.usage.completion_tokens == 512,
              f"ends at the slot context: {r.usage}")
        m = srv.metrics()
        check(m["llm_generated_tokens_total"] > 50 and m["llm_prompt_tokens_cached_total"] > 0, "token counters")
    # a failed load is reported on /health (and the log), the process keeps serving it
    srv = k2server.Server(model="/nonexistent/model.gguf", wait_ready=False)
    try:
        body = None
        import time
        t0 = time.time()
        while time.time() - t0 < 10:
            st, _, b = srv.get("/health")
            body = json.loads(b)
            if body["error"]["code"] != "model_loading":
                break
            time.sleep(0.05)
        check(st == 503 and body["error"]["code"] == "model_load_failed" and "nonexistent" in body["error"]["message"],
              f"failed load on /health: {body}")
        check(srv.post("/v1/completions", {"prompt": "x"})[0] == 503, "completions while failed")
    finally:
        srv.stop()
    check("failed to load" in srv.read_log(), "failure logged")
    C.report()


if __name__ == "__main__":
    main()
