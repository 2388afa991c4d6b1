"""k2 serve against the real `openai` Python client (spec/server-api.md §8.3), in test mode
on the k2-tiny vocabulary: scripted pieces stand in for sampled tokens, everything downstream
(stop strings, UTF-8 hold-back, the Kimi parser, SSE, usage, cancellation) is the real path."""
import asyncio
import http.client
import json
import sys
import threading
import time

import k2server
import k2test

import openai
from openai import OpenAI, AsyncOpenAI

C = k2test.Checker("server.openai")
check = C.check

SB, SE, CB, AB, CE = ("<|tool_calls_section_begin|>", "<|tool_calls_section_end|>", "<|tool_call_begin|>",
                      "<|tool_call_argument_begin|>", "<|tool_call_end|>")
END = "<|im_end|>"
WEATHER = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                             "parameters": {"type": "object",
                                                            "properties": {"city": {"type": "string"}},
                                                            "required": ["city"]}}}]
MSGS = [{"role": "user", "content": "hi"}]


def script(pieces, **kw):
    d = {"pieces": pieces}
    d.update(kw)
    return {"test_script": d}


def expect_error(fn, cls, status=None, param=None, code=None, what=""):
    try:
        fn()
    except cls as e:
        ok = True
        if status is not None:
            ok &= check(e.status_code == status, f"{what}: status {e.status_code} != {status}")
        body = e.body if isinstance(e.body, dict) else {}
        if param is not None:
            ok &= check(body.get("param") == param, f"{what}: param {body.get('param')!r} != {param!r}")
        if code is not None:
            ok &= check(body.get("code") == code, f"{what}: code {body.get('code')!r} != {code!r}")
        return e
    except Exception as e:  # noqa: BLE001
        check(False, f"{what}: raised {type(e).__name__}: {e}")
        return None
    check(False, f"{what}: no exception")
    return None


def collect_stream(stream):
    content, role_count, finish, ids, usage, calls = "", 0, [], set(), None, {}
    chunks = list(stream)
    for ch in chunks:
        ids.add((ch.id, ch.created, ch.model, ch.object))
        if ch.usage is not None:
            usage = ch.usage
        for c in ch.choices:
            d = c.delta
            if d.role:
                role_count += 1
            if d.content:
                content += d.content
            if c.finish_reason:
                finish.append(c.finish_reason)
            for tc in d.tool_calls or []:
                ent = calls.setdefault(tc.index, {"id": None, "name": None, "arguments": ""})
                if tc.id:
                    check(ent["id"] is None, "tool-call id repeated in a later delta")
                    ent["id"] = tc.id
                if tc.function and tc.function.name:
                    ent["name"] = tc.function.name
                if tc.function and tc.function.arguments:
                    ent["arguments"] += tc.function.arguments
    return dict(chunks=chunks, content=content, role_count=role_count, finish=finish, ids=ids, usage=usage,
                calls=calls)


def protocol_checks(srv):
    cl = OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0)
    # 1. models
    ms = cl.models.list()
    check(len(ms.data) == 1 and ms.data[0].object == "model", "models.list")
    mid = ms.data[0].id
    check(cl.models.retrieve(mid).id == mid, "models.retrieve")
    expect_error(lambda: cl.models.retrieve("nope"), openai.NotFoundError, 404, code="model_not_found",
                 what="retrieve unknown")
    # 2. non-stream chat
    r = cl.chat.completions.create(model=mid, messages=MSGS, extra_body=script(["Hel", "lo", " world", END]))
    check(r.object == "chat.completion" and r.id.startswith("chatcmpl-") and len(r.id) == 33, f"chat id {r.id}")
    check(abs(r.created - time.time()) < 5, "created")
    m = r.choices[0].message
    check(m.role == "assistant" and m.content == "Hello world", f"content {m.content!r}")
    check(r.choices[0].finish_reason == "stop", "finish stop")
    check(r.usage.completion_tokens == 4, f"completion_tokens {r.usage.completion_tokens}")
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "total tokens")
    check(r.system_fingerprint.startswith("fp_") and len(r.system_fingerprint) == 13, "fingerprint")
    check(r._request_id == r.id, "x-request-id")
    # 3. max_tokens
    for kw in ({"max_tokens": 1}, {"max_completion_tokens": 1}):
        r = cl.chat.completions.create(model=mid, messages=MSGS, extra_body=script(["a", "b", "c"]), **kw)
        check(r.choices[0].message.content == "a" and r.choices[0].finish_reason == "length", f"max tokens {kw}")
    # 4/5. stream
    pieces = ["Hel", "lo", " wor", "ld"]
    ns = cl.chat.completions.create(model=mid, messages=MSGS, extra_body=script(pieces))
    s = collect_stream(cl.chat.completions.create(model=mid, messages=MSGS, stream=True, extra_body=script(pieces)))
    check(len(s["ids"]) == 1, "stream envelope constant")
    check(s["chunks"][0].choices[0].delta.role == "assistant" and s["role_count"] == 1, "role once, first")
    check(s["content"] == ns.choices[0].message.content, "stream content == non-stream")
    check(s["finish"] == ["stop"] and s["chunks"][-1].choices[0].finish_reason == "stop", "one finish, last")
    check(s["usage"] is None, "no usage without include_usage")
    s = collect_stream(cl.chat.completions.create(model=mid, messages=MSGS, stream=True,
                                                  stream_options={"include_usage": True}, extra_body=script(pieces)))
    last = s["chunks"][-1]
    check(last.choices == [] and last.usage is not None, "usage chunk")
    check(last.usage.completion_tokens == ns.usage.completion_tokens and
          last.usage.prompt_tokens == ns.usage.prompt_tokens, "usage equal to non-stream")
    check(all(c.usage is None for c in s["chunks"][:-1]), "earlier chunks usage null")
    # 6. stream() helper
    with cl.chat.completions.stream(model=mid, messages=MSGS, extra_body=script(pieces)) as st:
        for _ in st:
            pass
        fin = st.get_final_completion()
    check(fin.choices[0].message.content == "Hello world" and fin.choices[0].finish_reason == "stop", "stream helper")
    # 9. stop sequences
    stop_pieces = ["Hel", "lo ", "##", "EN", "D## wo", "rld"]
    for stop in ("##END##", ["x", "##END##"]):
        r = cl.chat.completions.create(model=mid, messages=MSGS, stop=stop, extra_body=script(stop_pieces))
        check(r.choices[0].message.content == "Hello " and r.choices[0].finish_reason == "stop", f"stop {stop}")
        s = collect_stream(cl.chat.completions.create(model=mid, messages=MSGS, stop=stop, stream=True,
                                                      extra_body=script(stop_pieces)))
        deltas = [c.choices[0].delta.content or "" for c in s["chunks"] if c.choices]
        check(s["content"] == "Hello " and not any("#" in d for d in deltas), f"stream stop {stop}: {deltas}")
    # 11. in-stream error
    try:
        for _ in cl.chat.completions.create(model=mid, messages=MSGS, stream=True,
                                            extra_body=script(["a", "b", "c", "d"], fail_after=3)):
            pass
        check(False, "in-stream error not raised")
    except openai.APIError as e:
        check("scripted failure" in e.message and e.code == "internal_error", f"in-stream error {e.message}")
    # 12. validation
    bad = [({"n": 2}, "n"), ({"temperature": 3}, "temperature"), ({"top_p": 1.5}, "top_p"),
           ({"presence_penalty": -3}, "presence_penalty"), ({"top_logprobs": 3}, "top_logprobs")]
    for kw, param in bad:
        extra = {k: v for k, v in kw.items() if k not in ("n", "temperature", "top_p", "presence_penalty",
                                                             "top_logprobs")}
        expect_error(lambda: cl.chat.completions.create(model=mid, messages=MSGS, extra_body=extra,
                                                        **{k: v for k, v in kw.items() if k not in extra}),
                     openai.BadRequestError, 400, param=param, what=f"validation {kw}")
    expect_error(lambda: cl.chat.completions.create(model=mid, messages=[]), openai.BadRequestError, 400,
                 param="messages", what="empty messages")
    expect_error(lambda: cl.chat.completions.create(model=mid, messages=[{"role": "function", "content": "x"}]),
                 openai.BadRequestError, 400, param="messages[0].role", what="unknown role")
    expect_error(lambda: cl.chat.completions.create(model=mid, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]), openai.BadRequestError, 400,
                 param="messages[0].content[0].type", code="unsupported_value", what="image part")
    expect_error(lambda: cl.chat.completions.create(model=mid, messages=MSGS, tool_choice="required"),
                 openai.BadRequestError, 400, param="tool_choice", what="required without tools")
    expect_error(lambda: cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER + WEATHER),
                 openai.BadRequestError, 400, param="tools[1].function.name", what="duplicate tools")
    expect_error(lambda: cl.chat.completions.create(model=mid, messages=MSGS, extra_body={"temperature": "0.7"}),
                 openai.BadRequestError, 400, code="invalid_type", what="string temperature")
    expect_error(lambda: cl.chat.completions.create(model="gpt-4o", messages=MSGS), openai.NotFoundError, 404,
                 param="model", code="model_not_found", what="unknown model")
    expect_error(lambda: cl.chat.completions.create(model=mid, messages=MSGS,
                                                    response_format={"type": "json_object"}),
                 openai.BadRequestError, 400, param="response_format", code="unsupported_value",
                 what="json_object")
    expect_error(lambda: cl.chat.completions.create(model=mid, messages=MSGS, extra_body={"functions": []}),
                 openai.BadRequestError, 400, code="unsupported_parameter", what="functions")
    r = cl.chat.completions.create(model=mid, messages=MSGS, user="u1", metadata={"a": "b"},
                                   extra_body=script(["ok"]))
    check(r.choices[0].message.content == "ok", "unknown fields accepted")
    # 13. completions
    r = cl.completions.create(model=mid, prompt="Hi", extra_body=script([str(i) for i in range(20)]))
    check(r.object == "text_completion" and r.id.startswith("cmpl-"), "text completion")
    check(r.choices[0].text == "".join(str(i) for i in range(16)) and r.choices[0].finish_reason == "length",
          f"default max_tokens 16: {r.choices[0].text!r}")
    text = "".join(c.choices[0].text for c in cl.completions.create(model=mid, prompt="Hi", stream=True,
                                                                      extra_body=script(["a", "b"])) if c.choices)
    check(text == "ab", f"completion stream {text!r}")
    for kw, param in (({"echo": True}, "echo"), ({"best_of": 2}, "best_of"), ({"suffix": "x"}, "suffix"),
                      ({"prompt": ["a", "b"]}, "prompt")):
        args = {"model": mid, "prompt": "Hi"}
        args.update(kw)
        expect_error(lambda: cl.completions.create(**args), openai.BadRequestError, 400, param=param,
                     what=f"completions {kw}")
    # 23. one tool call
    tc_pieces = [SB, CB, "functions.get_weather:0", AB, '{"city": "Paris"}', CE, SE, END]
    r = cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, extra_body=script(tc_pieces))
    m = r.choices[0].message
    check(r.choices[0].finish_reason == "tool_calls" and m.content is None, "tool call finish/content")
    check(len(m.tool_calls or []) == 1, "one tool call")
    if m.tool_calls:
        t = m.tool_calls[0]
        check(t.id == "functions.get_weather:0" and t.type == "function" and t.function.name == "get_weather" and
              json.loads(t.function.arguments) == {"city": "Paris"}, f"tool call {t}")
    s = collect_stream(cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, stream=True,
                                                  extra_body=script(tc_pieces)))
    check(s["calls"].get(0, {}).get("arguments") == '{"city": "Paris"}' and
          s["calls"][0]["id"] == "functions.get_weather:0", f"streamed call {s['calls']}")
    check(s["finish"] == ["tool_calls"], "streamed finish tool_calls")
    with cl.chat.completions.stream(model=mid, messages=MSGS, tools=WEATHER, extra_body=script(tc_pieces)) as st:
        done_args = [ev.arguments for ev in st if ev.type == "tool_calls.function.arguments.done"]
        fin = st.get_final_completion()
    check(done_args == ['{"city": "Paris"}'], f"arguments.done events {done_args}")
    check(fin.choices[0].message.tool_calls[0].function.arguments == '{"city": "Paris"}', "helper final call")
    # 23b. logprobs (§3.4) in test mode: entries only for the tokens whose text went into
    # content (not tool-call markup, ids or arguments, not a cut stop string, not the end token)
    lp_pieces = ["Let", " me", " check.", SB, CB, "functions.get_weather:0", AB, '{"city": "Paris"}', CE, SE, END]
    r = cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, logprobs=True, top_logprobs=0,
                                   extra_body=script(lp_pieces))
    ents = r.choices[0].logprobs.content if r.choices[0].logprobs else []
    check([e.token for e in ents] == ["Let", " me", " check."] and
          all(e.logprob <= 0 and e.top_logprobs == [] for e in ents) and r.choices[0].logprobs.refusal is None,
          f"logprobs entries around a tool call: {ents}")
    sl = collect_stream(cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, logprobs=True,
                                                   stream=True, extra_body=script(lp_pieces)))
    got = [e.token for ch in sl["chunks"] for c in ch.choices if c.logprobs for e in c.logprobs.content]
    check(got == ["Let", " me", " check."], f"streamed logprobs entries {got}")
    check(all((c.logprobs is None) == (not c.delta.content) for ch in sl["chunks"] for c in ch.choices),
          "logprobs exactly on content chunks")
    r = cl.chat.completions.create(model=mid, messages=MSGS, logprobs=True, stop=["XY"],
                                   extra_body=script(["ab", "cX", "Yd", "e"]))
    check(r.choices[0].message.content == "abc" and
          [e.token for e in r.choices[0].logprobs.content] == ["ab", "cX"], f"logprobs with a stop string {r}")
    r = cl.completions.create(model=mid, prompt="Hi", logprobs=2, extra_body=script(["h\u00e9", "llo"]))
    lp = r.choices[0].logprobs
    check(r.choices[0].text == "h\u00e9llo" and lp.tokens == ["h\u00e9", "llo"] and lp.text_offset == [0, 2],
          f"completions logprobs text_offset in code points {lp}")
    # 24. content before calls, parallel calls, whitespace, empty args
    p2 = ["Let me", " check.", SB, CB, " functions.get_weather:0 ", AB, ' {"city": "Paris"} ', CE,
          CB, "functions.get_weather:1", AB, "{}", CE, SE, END]
    r = cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, extra_body=script(p2))
    m = r.choices[0].message
    check(m.content == "Let me check." and [t.function.arguments for t in m.tool_calls] == ['{"city": "Paris"}', "{}"]
          and [t.id for t in m.tool_calls] == ["functions.get_weather:0", "functions.get_weather:1"],
          f"parallel calls {m}")
    s = collect_stream(cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, stream=True,
                                                  extra_body=script(p2)))
    check([s["calls"][k]["arguments"] for k in sorted(s["calls"])] == ['{"city": "Paris"}', "{}"] and
          s["content"] == "Let me check.", "parallel calls streamed")
    # 25. tolerance: no SB/SE, no CE, duplicate ids
    p3 = [CB, "functions.get_weather:0", AB, '{"a":1}', CB, "functions.get_weather:0", AB, '{"b":2}', END]
    r = cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, extra_body=script(p3))
    ids = [t.id for t in r.choices[0].message.tool_calls or []]
    check(len(ids) == 2 and ids[0] == "functions.get_weather:0" and ids[1].startswith("call_"), f"dup ids {ids}")
    r = cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, parallel_tool_calls=False,
                                   extra_body=script(p3))
    check(len(r.choices[0].message.tool_calls or []) == 1, "parallel_tool_calls false keeps one")
    # 26. truncation inside the arguments
    r = cl.chat.completions.create(model=mid, messages=MSGS, tools=WEATHER, max_tokens=5,
                                   extra_body=script([SB, CB, "functions.get_weather:0", AB, '{"ci', 'ty": 1}', CE]))
    check(r.choices[0].finish_reason == "length" and r.choices[0].message.tool_calls[0].function.arguments == '{"ci',
          "truncated call")
    # 27. reasoning tags spelled as text pieces
    r = cl.chat.completions.create(model=mid, messages=MSGS, extra_body=script(["<th", "ink>Plan", "</thi", "nk>Answer"]))
    check(r.choices[0].message.content == "Answer" and
          getattr(r.choices[0].message, "reasoning_content", None) == "Plan", f"reasoning {r.choices[0].message}")
    r = cl.chat.completions.create(model=mid, messages=MSGS,
                                   extra_body={**script(["<think>x</think>y"]), "reasoning_format": "none"})
    check(r.choices[0].message.content == "<think>x</think>y", "reasoning_format none")
    # 28. marker strings as text pieces stay text
    r = cl.chat.completions.create(model=mid, messages=MSGS, extra_body=script(["<|tool_call", "_begin|>"]))
    check(r.choices[0].message.content == "<|tool_call_begin|>", "look-alike marker text")
    # 22. async client
    async def run_async():
        acl = AsyncOpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0)

        async def one():
            out = ""
            async for ch in await acl.chat.completions.create(model=mid, messages=MSGS, stream=True,
                                                              extra_body=script(["as", "ync"])):
                if ch.choices and ch.choices[0].delta.content:
                    out += ch.choices[0].delta.content
            return out
        res = await asyncio.gather(*[one() for _ in range(4)])
        await acl.close()
        return res
    check(asyncio.run(run_async()) == ["async"] * 4, "async gather")
    return cl, mid


def raw_stream(srv, body):
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def framing_checks(srv):
    # 7. framing; U+2028 escaped; 8. UTF-8 split
    body = k2server.chat_body(["a\u2028b", [0xF0, 0x9F], [0x98, 0x80], "\u0085"], stream=True)
    resp, data = raw_stream(srv, body)
    check(resp.status == 200 and resp.getheader("Content-Type", "").startswith("text/event-stream"), "SSE headers")
    check(resp.getheader("Transfer-Encoding") == "chunked", "chunked")
    events = data.decode().split("\n\n")
    check(events[-1] == "" and events[-2] == "data: [DONE]", "ends with [DONE]")
    content = ""
    for ev in events[:-2]:
        lines = ev.split("\n")
        check(len(lines) == 1 and (lines[0].startswith("data: ") or lines[0].startswith(":")), f"event {ev!r}")
        if lines[0].startswith("data: "):
            raw = lines[0][6:]
            check("\u2028" not in raw and "\u0085" not in raw, "raw U+2028/U+0085 in data line")
            j = json.loads(raw)
            for c in j.get("choices", []):
                content += c["delta"].get("content") or ""
    check(content == "a\u2028b\U0001F600\u0085", f"content intact {content!r}")
    check("\ufffd" not in content, "no U+FFFD")
    # 10. keep-alive before the first data line
    resp, data = raw_stream(srv, k2server.chat_body(["x"], stream=True,
                                                    test_script={"pieces": ["x"], "prompt_delay_ms": 2500}))
    txt = data.decode()
    check(": keep-alive\n\n" in txt and txt.index(": keep-alive") < txt.index("data:"), "keep-alive comment")
    # 11. raw in-stream error then [DONE]
    resp, data = raw_stream(srv, k2server.chat_body(["a", "b"], stream=True,
                                                    test_script={"pieces": ["a", "b"], "fail_after": 1}))
    evs = [e for e in data.decode().split("\n\n") if e]
    check(evs[-1] == "data: [DONE]" and '"error"' in evs[-2], f"raw error event {evs[-2:]}")


def tokenizer_checks(srv):
    for text in ("Hello world", "日本語のテキスト", "emoji 😀 ok"):
        st, _, b = srv.post("/tokenize", {"content": text, "with_pieces": True})
        toks = json.loads(b)["tokens"]
        ids = [t["id"] for t in toks]
        st2, _, b2 = srv.post("/detokenize", {"tokens": ids})
        check(st == 200 and st2 == 200 and json.loads(b2)["content"] == text, f"round trip {text!r}")
        joined = b"".join(t["piece"].encode() if isinstance(t["piece"], str) else bytes(t["piece"]) for t in toks)
        check(joined.decode() == text, "pieces concatenate")
    _, _, b = srv.post("/tokenize", {"content": "a<|im_end|>"})
    check(2029 in json.loads(b)["tokens"], "parse_special default true")
    _, _, b = srv.post("/tokenize", {"content": "a<|im_end|>", "parse_special": False})
    check(2029 not in json.loads(b)["tokens"], "parse_special false")
    for bad in (-1, 2048):
        st, _, b = srv.post("/detokenize", {"tokens": [1, bad]})
        check(st == 400 and json.loads(b)["error"]["param"] == "tokens[1]", f"detokenize {bad}")
    st, h, b = srv.get("/metrics")
    check(st == 200 and h.get("Content-Type", "").startswith("text/plain; version=0.0.4"), "metrics content type")
    lines = b.decode().splitlines()
    helps = [l.split()[2] for l in lines if l.startswith("# HELP")]
    types = [l.split()[2] for l in lines if l.startswith("# TYPE")]
    check(len(helps) == len(set(helps)) and sorted(helps) == sorted(types), "one HELP/TYPE per family")
    for fam in ("llm_requests_running", "llm_http_requests_total", "llm_prompt_tokens_total",
                "llm_time_to_first_token_seconds", "process_start_time_seconds", "llm_requests_cancelled_total"):
        check(fam in helps, f"family {fam}")
    m = srv.metrics()
    check(m['llm_request_duration_seconds_bucket{le="+Inf"}'] == m["llm_request_duration_seconds_count"], "+Inf == count")
    st, _, b = srv.post("/apply-template", {"messages": [{"role": "user", "content": "Hi"}]})
    p = json.loads(b)["prompt"]
    check(st == 200 and p.startswith("<|im_system|>system<|im_middle|>") and
          p.endswith("<|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|>"),
          f"apply-template {p!r}")


def limits_checks(srv):
    s = srv.connect()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (1024 * 1024 + 10))
    resp = http.client.HTTPResponse(s)
    resp.begin()
    check(resp.status == 413 and json.loads(resp.read())["error"]["code"] == "request_too_large", f"413 {resp.status}")
    s.close()
    st, h, b = srv.get("/nope")
    check(st == 404 and json.loads(b)["error"]["code"] == "unknown_url", "404")
    st, h, b = srv.get("/v1/chat/completions")
    check(st == 405 and h.get("Allow") == "POST", "405 Allow")
    st, h, b = srv.post("/v1/chat/completions", b"{bad json")
    check(st == 400 and json.loads(b)["error"]["code"] == "invalid_json", "malformed json")
    st, h, b = srv.post("/v1/chat/completions", b"[1,2]")
    check(st == 400 and json.loads(b)["error"]["code"] == "invalid_json", "array body")
    st, h, b = srv.post("/v1/chat/completions", b"[" * 200 + b"]" * 200)
    check(st == 400 and json.loads(b)["error"]["code"] == "invalid_json", "deep nesting")
    # 21. control endpoints answer quickly while slots are busy
    t = threading.Thread(target=lambda: srv.post("/v1/chat/completions",
                                                 k2server.chat_body(["x"] * 30, test_script={"pieces": ["x"] * 30,
                                                                                             "piece_delay_ms": 50})))
    t.start()
    time.sleep(0.3)
    t0 = time.time()
    st, hb = srv.health()
    dt = time.time() - t0
    check(st == 200 and hb["slots_busy"] >= 1 and dt < 0.1, f"health under load {hb} {dt:.3f}s")
    t.join()


def overload_checks():
    # 16. --parallel 1 --queue-size 1: three long requests, exactly one 503
    with k2server.Server("--test-mode", "--parallel", "1", "--queue-size", "1") as srv:
        cl = OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0)
        results = []

        def run():
            try:
                cl.chat.completions.create(model="k2-tiny", messages=MSGS,
                                           extra_body=script(["x"] * 10, piece_delay_ms=50))
                results.append("ok")
            except openai.InternalServerError as e:
                results.append((e.status_code, e.response.headers.get("retry-after"), e.code))
        ts = [threading.Thread(target=run) for _ in range(3)]
        for t in ts:
            t.start()
            time.sleep(0.1)
        for t in ts:
            t.join()
        check(results.count("ok") == 2 and (503, "1", "server_overloaded") in results, f"overload {results}")


def auth_checks():
    # 14. --api-key
    with k2server.Server("--test-mode", "--api-key", "k1,k2", "--max-concurrent-per-key", "1", "--parallel", "2") as srv:
        bad = OpenAI(base_url=srv.base + "/v1", api_key="wrong", max_retries=0)
        e = expect_error(lambda: bad.models.list(), openai.AuthenticationError, 401, code="invalid_api_key",
                         what="wrong key")
        if e is not None:
            check(e.response.headers.get("www-authenticate") == "Bearer", "WWW-Authenticate")
        good = OpenAI(base_url=srv.base + "/v1", api_key="k1", max_retries=0)
        check(len(good.models.list().data) == 1, "right key")
        st, _ = srv.health()
        check(st == 200, "health without key")
        check(srv.get("/metrics")[0] == 401 and srv.post("/tokenize", {"content": "a"})[0] == 401, "401 w/o key")
        check(srv.get("/metrics", headers={"Authorization": "bearer   k1 "})[0] == 200, "case-insensitive bearer")
        # 429 beyond --max-concurrent-per-key; another key is unaffected
        t = threading.Thread(target=lambda: good.chat.completions.create(
            model="k2-tiny", messages=MSGS, extra_body=script(["x"] * 20, piece_delay_ms=25)))
        t.start()
        time.sleep(0.2)
        e = expect_error(lambda: good.chat.completions.create(model="k2-tiny", messages=MSGS, extra_body=script(["y"])),
                         openai.RateLimitError, 429, code="rate_limit_exceeded", what="per-key limit")
        if e is not None:
            check(e.response.headers.get("retry-after") == "1", "429 Retry-After")
        other = OpenAI(base_url=srv.base + "/v1", api_key="k2", max_retries=0)
        check(other.chat.completions.create(model="k2-tiny", messages=MSGS, extra_body=script(["z"]))
              .choices[0].message.content == "z", "other key admitted")
        t.join()
        check(good.chat.completions.create(model="k2-tiny", messages=MSGS, extra_body=script(["w"]))
              .choices[0].message.content == "w", "key usable again")


def cancel_checks():
    # 17. cancellation while streaming; 19. while queued; 20. during prefill
    with k2server.Server("--test-mode", "--parallel", "1") as srv:
        cl = OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0)
        before = srv.metrics()['llm_requests_cancelled_total{reason="client_disconnect"}']
        stream = cl.chat.completions.create(model="k2-tiny", messages=MSGS, stream=True,
                                            extra_body=script(["p"] * 1000, piece_delay_ms=20))
        it = iter(stream)
        for _ in range(3):
            next(it)
        stream.close()
        t0 = time.time()
        while time.time() - t0 < 2 and srv.health()[1]["slots_busy"] != 0:
            time.sleep(0.02)
        check(time.time() - t0 < 1.0, f"slot freed after stream close in {time.time() - t0:.2f}s")
        after = srv.metrics()['llm_requests_cancelled_total{reason="client_disconnect"}']
        check(after == before + 1, f"cancel counted {before}->{after}")
        # non-stream with a client timeout
        tcl = OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0, timeout=1.0)
        try:
            tcl.chat.completions.create(model="k2-tiny", messages=MSGS, extra_body=script(["p"] * 1000, piece_delay_ms=20))
        except openai.APITimeoutError:
            pass
        t0 = time.time()
        while time.time() - t0 < 2 and srv.health()[1]["slots_busy"] != 0:
            time.sleep(0.02)
        check(time.time() - t0 < 1.0, f"non-stream slot freed in {time.time() - t0:.2f}s")
        # queued request whose client leaves never starts; A is unaffected
        resA = {}
        a_pieces = [f"a{i}" for i in range(40)]
        ta = threading.Thread(target=lambda: resA.setdefault("r", cl.chat.completions.create(
            model="k2-tiny", messages=MSGS, extra_body=script(a_pieces, piece_delay_ms=20))))
        ta.start()
        time.sleep(0.2)
        p0 = srv.metrics()["llm_prompt_tokens_total"]
        s = srv.connect()
        body = json.dumps(k2server.chat_body(["b"], messages=[{"role": "user", "content": "B " * 50}])).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(0.3)
        check(srv.health()[1]["queue_length"] == 1, "B queued")
        s.close()
        time.sleep(0.5)
        check(srv.health()[1]["queue_length"] == 0, "B left the queue")
        ta.join()
        check(resA["r"].choices[0].message.content == "".join(a_pieces), "A unchanged")
        p1 = srv.metrics()["llm_prompt_tokens_total"]
        check(p1 - p0 < 50, f"B's prompt never evaluated ({p0}->{p1})")
        # during prefill
        s = srv.connect()
        body = json.dumps(k2server.chat_body(["x"], test_script={"pieces": ["x"], "prompt_delay_ms": 5000})).encode()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        time.sleep(1.0)
        check(srv.health()[1]["slots_busy"] == 1, "prefilling")
        s.close()
        t0 = time.time()
        while time.time() - t0 < 2 and srv.health()[1]["slots_busy"] != 0:
            time.sleep(0.02)
        check(time.time() - t0 < 1.0, f"prefill cancelled in {time.time() - t0:.2f}s")


def main():
    with k2server.Server("--test-mode", "--parallel", "4", "--sse-keepalive", "1",
                         "--max-body-bytes", str(1024 * 1024)) as srv:
        protocol_checks(srv)
        framing_checks(srv)
        tokenizer_checks(srv)
        limits_checks(srv)
    overload_checks()
    auth_checks()
    cancel_checks()
    C.report()


if __name__ == "__main__":
    main()
