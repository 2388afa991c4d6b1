"""Load: 32 concurrent streaming clients for a bounded time against --parallel 4 with a
queue of 16 (test mode, so the run is cheap): the only failures allowed are the documented
503 server_overloaded answers; some clients leave mid-stream; afterwards no slot or queue
entry is leaked and the resident memory stayed flat."""
import os
import random
import threading
import time

import k2server
import k2test

import openai
from openai import OpenAI

C = k2test.Checker("server.load")
check = C.check

DURATION = float(os.environ.get("K2_LOAD_SECONDS", "8"))
CLIENTS = 32


def sanitized():
    """ASan keeps freed memory in quarantine, so resident size says nothing there."""
    cache = os.path.join(os.environ.get("K2_BUILD_DIR", ""), "CMakeCache.txt")
    try:
        return "CMAKE_BUILD_TYPE:STRING=Sanitize" in open(cache).read()
    except OSError:
        return False


def main():
    with k2server.Server("--test-mode", "--parallel", "4", "--queue-size", "16") as srv:
        stats = {"ok": 0, "503": 0, "left": 0, "other": []}
        lock = threading.Lock()
        stop_at = time.time() + DURATION
        rss = []

        def client(seed):
            rnd = random.Random(seed)
            cl = OpenAI(base_url=srv.base + "/v1", api_key="none", max_retries=0, timeout=30)
            while time.time() < stop_at:
                n = rnd.randint(5, 30)
                pieces = [f"t{i} " for i in range(n)]
                leave = rnd.random() < 0.2
                try:
                    text = ""
                    stream = cl.chat.completions.create(
                        model="k2-tiny", stream=True, messages=[{"role": "user", "content": f"client {seed}"}],
                        extra_body={"test_script": {"pieces": pieces, "piece_delay_ms": 3}})
                    for i, ch in enumerate(stream):
                        if leave and i == 3:
                            stream.close()
                            break
                        if ch.choices and ch.choices[0].delta.content:
                            text += ch.choices[0].delta.content
                    with lock:
                        if leave:
                            stats["left"] += 1
                        elif text == "".join(pieces):
                            stats["ok"] += 1
                        else:
                            stats["other"].append(f"bad text {text[:40]!r}")
                except openai.InternalServerError as e:
                    with lock:
                        if e.status_code == 503 and e.code == "server_overloaded":
                            stats["503"] += 1
                        else:
                            stats["other"].append(f"{e.status_code} {e.code}")
                    time.sleep(0.05)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        stats["other"].append(f"{type(e).__name__}: {e}")

        def sampler():
            while time.time() < stop_at:
                rss.append(srv.rss_kb())
                time.sleep(0.5)
        ts = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)] + [threading.Thread(target=sampler)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        print(f"load: {stats['ok']} ok, {stats['503']} x 503, {stats['left']} left early, "
              f"{len(stats['other'])} other; rss {rss[:1]} .. {rss[-1:]} kB", flush=True)
        check(not stats["other"], f"unexpected failures: {stats['other'][:5]}")
        check(stats["ok"] > 50, "requests completed")
        t0 = time.time()
        while time.time() - t0 < 3:
            st, h = srv.health()
            if h["slots_busy"] == 0 and h["queue_length"] == 0:
                break
            time.sleep(0.05)
        check(h["slots_busy"] == 0 and h["queue_length"] == 0, f"no leaked slots {h}")
        m = srv.metrics()
        check(m["llm_requests_running"] == 0 and m["llm_requests_queued"] == 0, "metrics gauges back to 0")
        # memory: after the first half the resident size must not keep growing
        half = rss[len(rss) // 2:]
        if len(half) >= 2 and not sanitized():
            check(max(half) - half[0] < 20 * 1024, f"memory flat: {half[0]} -> {max(half)} kB")
    C.report()


if __name__ == "__main__":
    main()
