"""Raw-socket robustness of k2 serve: malformed requests, wrong types, huge bodies and
headers, slowloris, pipelining, keep-alive reuse, disconnects mid-stream. After all of it the
server must still answer and exit cleanly."""
import json
import socket
import time

import k2server
import k2test

C = k2test.Checker("server.raw")
check = C.check


def read_response(s, timeout=10):
    """Reads one HTTP/1.1 response (Content-Length or chunked) from a socket; returns
    (status, headers, body, rest-of-buffer)."""
    s.settimeout(timeout)
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            return None, {}, b"", buf
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    if "content-length" in headers:
        n = int(headers["content-length"])
        while len(rest) < n:
            d = s.recv(65536)
            if not d:
                break
            rest += d
        return status, headers, rest[:n], rest[n:]
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += s.recv(65536)
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line, 16)
            while len(rest) < size + 2:
                rest += s.recv(65536)
            body += rest[:size]
            rest = rest[size + 2:]
            if size == 0:
                return status, headers, body, rest
    return status, headers, rest, b""


def req(path, body=b"", method="POST", extra=""):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    return (f"{method} {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def error_code(body):
    try:
        e = json.loads(body)["error"]
        check(set(e) == {"message", "type", "param", "code"}, f"error keys {e}")
        return e["code"], e["param"]
    except Exception as ex:  # noqa: BLE001
        check(False, f"not an error body: {body[:200]!r} ({ex})")
        return None, None


def main():
    with k2server.Server("--test-mode", "--parallel", "2", "--read-timeout", "2", "--max-body-bytes", "65536") as srv:
        # malformed / wrong types, all on one persistent connection
        s = srv.connect()
        cases = [
            (b"{", "invalid_json", None), (b"", "invalid_json", None), (b'"str"', "invalid_json", None),
            (b'{"messages": [{"role": "user", "content": "\\ud800"}]}', "invalid_json", None),
            (b'{"messages": [{"role": "user", "content": "a\\u0000b"}]}', "invalid_json", None),
            (b'{"messages": "hi"}', "invalid_type", "messages"),
            (b'{"messages": [{"role": "user", "content": 5}]}', "invalid_type", "messages[0].content"),
            (b'{"messages": [{"role": "user"}]}', "missing_required_parameter", "messages[0].content"),
            (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 5.5}', "invalid_type", "max_tokens"),
            (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "invalid_value", "max_tokens"),
            (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "invalid_type", "stream"),
            (b'{"messages": [{"role": "user", "content": "x"}], "stop": [1]}', "invalid_type", "stop[0]"),
            (b'{"messages": [{"role": "user", "content": "x"}], "logit_bias": {"99999": 1}}', "invalid_value", None),
            (b'{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "bad name"}}]}',
             "invalid_value", "tools[0].function.name"),
            (b'{"messages": [{"role": "user", "content": "x"}], "seed": 99999999999999999999999}', "invalid_json", None),
            (b"\xff\xfe{}", "invalid_json", None),
        ]
        for body, code, param in cases:
            s.sendall(req("/v1/chat/completions", body))
            st, h, b, _ = read_response(s)
            c, p = error_code(b)
            check(st == 400 and c == code and (param is None or p == param), f"{body[:60]!r}: {st} {c} {p}")
            check(h.get("content-type") == "application/json", "error content type")
        # the same connection still works
        s.sendall(req("/v1/chat/completions", k2server.chat_body(["ok"])))
        st, h, b, _ = read_response(s)
        check(st == 200 and json.loads(b)["choices"][0]["message"]["content"] == "ok", "keep-alive reuse")
        s.close()
        # pipelined requests: three at once, answered in order
        s = srv.connect()
        s.sendall(req("/v1/chat/completions", k2server.chat_body(["one"])) +
                  req("/health", method="GET") +
                  req("/v1/chat/completions", k2server.chat_body(["two"], stream=True)))
        st1, _, b1, rest = read_response(s)
        st2 = st3 = None
        # responses may already be buffered in `rest`
        s2 = _Buffered(s, rest)
        st2, _, b2, rest = read_response(s2)
        s3 = _Buffered(s, rest)
        st3, h3, b3, _ = read_response(s3)
        check(st1 == 200 and json.loads(b1)["choices"][0]["message"]["content"] == "one", "pipelined 1")
        check(st2 == 200 and json.loads(b2)["status"] == "ok", "pipelined 2")
        check(st3 == 200 and b"two" in b3 and b3.endswith(b"data: [DONE]\n\n"), "pipelined 3 (stream)")
        s.close()
        # huge body by Content-Length: 413 without reading it; chunked body growing past the limit
        s = srv.connect()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n")
        st, _, b, _ = read_response(s)
        check(st == 413 and error_code(b)[0] == "request_too_large", f"413 by length {st}")
        s.close()
        s = srv.connect()
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(20):
                s.sendall(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
            s.sendall(b"0\r\n\r\n")
            st, _, b, _ = read_response(s)
            check(st == 413, f"413 chunked {st}")
        except (BrokenPipeError, ConnectionResetError):
            check(True, "")
        s.close()
        # huge header block
        s = srv.connect()
        try:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 200000 + b"\r\n\r\n")
            st, _, _, _ = read_response(s)
            check(st is None or st in (413, 431), f"huge headers {st}")
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.close()
        # slowloris: partial headers trickling in are cut after the read timeout
        s = srv.connect()
        s.sendall(b"GET /health HTTP/1.1\r\n")
        t0 = time.time()
        closed = False
        try:
            while time.time() - t0 < 6:
                s.sendall(b"X-A: b\r\n")
                s.settimeout(0.5)
                try:
                    if s.recv(1024) == b"":
                        closed = True
                        break
                except socket.timeout:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            closed = True
        check(closed and time.time() - t0 < 4.5, f"slowloris closed after {time.time() - t0:.1f}s")
        s.close()
        # meanwhile the server answers
        check(srv.health()[0] == 200, "health after slowloris")
        # client disconnect mid-stream frees the slot within one second
        s = srv.connect()
        s.sendall(req("/v1/chat/completions", k2server.chat_body(
            ["p"], stream=True, test_script={"pieces": ["p"] * 2000, "piece_delay_ms": 10})))
        s.settimeout(5)
        got = b""
        while got.count(b"data:") < 3:
            got += s.recv(4096)
        check(srv.health()[1]["slots_busy"] == 1, "streaming")
        s.close()
        t0 = time.time()
        while srv.health()[1]["slots_busy"] and time.time() - t0 < 3:
            time.sleep(0.02)
        check(time.time() - t0 < 1.0, f"slot freed {time.time() - t0:.2f}s after disconnect")
        # half-close (shutdown of the client's write side) while waiting for a non-stream answer
        s = srv.connect()
        s.sendall(req("/v1/chat/completions", k2server.chat_body(
            ["p"], test_script={"pieces": ["p"] * 2000, "piece_delay_ms": 10})))
        time.sleep(0.3)
        s.shutdown(socket.SHUT_WR)
        t0 = time.time()
        while srv.health()[1]["slots_busy"] and time.time() - t0 < 3:
            time.sleep(0.02)
        check(time.time() - t0 < 1.0, "half-closed client cancels")
        s.close()
        # garbage request line
        s = srv.connect()
        s.sendall(b"\x00\x01\x02 garbage\r\n\r\n")
        try:
            st, _, _, _ = read_response(s, timeout=5)
            check(st is None or st == 400, f"garbage request line {st}")
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        check(srv.health()[0] == 200, "alive at the end")
    C.report()


class _Buffered:
    """A socket view that first returns already-received bytes."""

    def __init__(self, s, pre):
        self.s, self.pre = s, pre

    def settimeout(self, t):
        self.s.settimeout(t)

    def recv(self, n):
        if self.pre:
            d, self.pre = self.pre, b""
            return d
        return self.s.recv(n)


if __name__ == "__main__":
    main()
