"""k2's native Kimi K2 chat renderer against Jinja2 (PyPI) rendering the §6.2 template
(tests/tokenizer/data/kimi_k2_chat.jinja) on the same conversations, byte for byte; and
the exact examples of spec §6.3."""
import json
import os
import random
import sys

import jinja2
from k2tok import PIECES, run_chat

HERE = os.path.dirname(os.path.abspath(__file__))


def hf_tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def make_env():
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False)
    env.filters["tojson"] = hf_tojson
    return env


WEATHER_TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "description": "City name"}}, "required": ["city"]}}}]

EXAMPLES = [
    ({"messages": [{"role": "user", "content": "Hello"}], "add_generation_prompt": True},
     "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>\n<|im_user|>user<|im_middle|>Hello<|im_end|><|im_assistant|>assistant<|im_middle|>"),
    ({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "add_generation_prompt": True},
     "<|im_system|>system<|im_middle|>Be brief.<|im_end|><|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|>"),
    ({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}],
      "add_generation_prompt": False},
     "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>\n<|im_user|>user<|im_middle|>Hi<|im_end|><|im_assistant|>assistant<|im_middle|>Hello!<|im_end|><|im_user|>user<|im_middle|>Bye<|im_end|>"),
    ({"tools": WEATHER_TOOLS, "add_generation_prompt": True, "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What's the weather in Beijing?"},
        {"role": "assistant", "content": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Beijing"}}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": "{\"weather\": \"Sunny\"}"}]},
     "<|im_system|>tool_declare<|im_middle|>[{\"function\":{\"description\":\"Get weather\",\"name\":\"get_weather\",\"parameters\":{\"properties\":{\"city\":{\"description\":\"City name\",\"type\":\"string\"}},\"required\":[\"city\"],\"type\":\"object\"}},\"type\":\"function\"}]<|im_end|><|im_system|>system<|im_middle|>You are a helpful assistant.<|im_end|><|im_user|>user<|im_middle|>What's the weather in Beijing?<|im_end|><|im_assistant|>assistant<|im_middle|><|tool_calls_section_begin|><|tool_call_begin|>functions.get_weather:0<|tool_call_argument_begin|>{\"city\": \"Beijing\"}<|tool_call_end|><|tool_calls_section_end|><|im_end|><|im_system|>get_weather<|im_middle|>## Return of functions.get_weather:0\n{\"weather\": \"Sunny\"}<|im_end|><|im_assistant|>assistant<|im_middle|>"),
    ({"add_generation_prompt": False, "messages": [
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "Let me check.", "tool_calls": [
            {"type": "function", "function": {"name": "a", "arguments": {"x": 1}}},
            {"type": "function", "function": {"name": "b", "arguments": "{}"}}]},
        {"role": "tool", "content": "r1"}, {"role": "tool", "content": "r2"},
        {"role": "assistant", "content": "Done"}]},
     "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>\n<|im_user|>user<|im_middle|>Q<|im_end|><|im_assistant|>assistant<|im_middle|>Let me check.<|tool_calls_section_begin|><|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{\"x\": 1}<|tool_call_end|><|tool_call_begin|>functions.b:1<|tool_call_argument_begin|>{}<|tool_call_end|><|tool_calls_section_end|><|im_end|><|im_system|>tool<|im_middle|>## Return of functions.a:0\nr1<|im_end|><|im_system|>tool<|im_middle|>## Return of functions.b:1\nr2<|im_end|><|im_assistant|>assistant<|im_middle|>Done<|im_end|>"),
    ({"messages": [{"role": "user", "name": "alice", "content": "Hi"}], "add_generation_prompt": False},
     "<|im_system|>system<|im_middle|>You are Kimi, an AI assistant created by Moonshot AI.<|im_end|>\n<|im_user|>alice<|im_middle|>Hi<|im_end|>"),
]


def rand_value(rng, depth=0):
    r = rng.random()
    if depth > 2 or r < 0.3:
        return rng.choice([rng.choice(PIECES), rng.randrange(-10 ** 6, 10 ** 6), rng.choice([0.5, 1e-05, 2.25, -3.0, 1e16, 123.456, 1e-4]),
                           True, False, None, "tab\there \"q\" back\\slash \x01 \u2028 é"])
    if r < 0.65:
        return {rng.choice(["b", "a", "Z", "é", "k", "type", "name", "ß", "10", "2"]) + str(i): rand_value(rng, depth + 1)
                for i in range(rng.randrange(0, 4))}
    return [rand_value(rng, depth + 1) for _ in range(rng.randrange(0, 4))]


def rand_content(rng):
    r = rng.random()
    if r < 0.1:
        return None
    if r < 0.25:
        parts = []
        for _ in range(rng.randrange(0, 4)):
            if rng.random() < 0.3:
                parts.append({"type": "image_url", "image_url": {"url": "http://x/y.png"}})
            else:
                parts.append({"type": "text", "text": rng.choice(PIECES)})
        return parts
    return "".join(rng.choice(PIECES + ["\n", " ", ""]) for _ in range(rng.randrange(0, 5)))


def rand_conv(rng):
    msgs = []
    if rng.random() < 0.5:
        msgs.append({"role": "system", "content": rand_content(rng) or "sys"})
    for _ in range(rng.randrange(0, 7)):
        role = rng.choice(["user", "assistant", "tool", "user", "assistant"])
        m = {"role": role, "content": rand_content(rng)}
        if rng.random() < 0.15:
            m["name"] = rng.choice(["alice", "", "bob", "工具"])
        if role == "assistant" and rng.random() < 0.5:
            calls = []
            for _ in range(rng.randrange(1, 4)):
                c = {"type": "function", "function": {"name": rng.choice(["f", "get_weather", "search"])}}
                c["function"]["arguments"] = rand_value(rng) if rng.random() < 0.5 else json.dumps(rand_value(rng))
                r = rng.random()
                if r < 0.3:
                    c["id"] = "call_%d" % rng.randrange(100)
                elif r < 0.6:
                    c["id"] = "functions.%s:%d" % (c["function"]["name"], rng.randrange(10))
                calls.append(c)
            m["tool_calls"] = calls
        if role == "tool" and rng.random() < 0.6:
            m["tool_call_id"] = rng.choice(["call_%d" % rng.randrange(100), "functions.f:%d" % rng.randrange(5), "x"])
        msgs.append(m)
    req = {"messages": msgs, "add_generation_prompt": rng.random() < 0.6}
    if rng.random() < 0.4:
        req["tools"] = [rand_value(rng) for _ in range(rng.randrange(0, 3))] if rng.random() < 0.5 else WEATHER_TOOLS
    return req


def main():
    tmpl = make_env().from_string(open(os.path.join(HERE, "data", "kimi_k2_chat.jinja")).read())
    rng = random.Random(7)
    reqs = [r for r, _ in EXAMPLES] + [rand_conv(rng) for _ in range(1500)]
    got = run_chat(reqs)
    bad = 0
    for i, r in enumerate(reqs):
        want = tmpl.render(messages=r["messages"], tools=r.get("tools"), add_generation_prompt=r["add_generation_prompt"])
        if i < len(EXAMPLES) and want != EXAMPLES[i][1]:
            print(f"example {i}: the Jinja oracle differs from spec §6.3:\n  {want!r}")
            bad += 1
        if got[i] != want:
            bad += 1
            if bad <= 5:
                print(f"case {i}: {json.dumps(r, ensure_ascii=False)}\n  k2:    {got[i]!r}\n  jinja: {want!r}")
    print(f"chat rendering: {len(reqs) - bad}/{len(reqs)} identical to Jinja2")
    sys.exit(1 if bad else 0)


main()
