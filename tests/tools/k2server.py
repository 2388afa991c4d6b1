"""Starts `k2 serve` on 127.0.0.1 with a free port for the server tests."""
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import k2test


def tiny_model(kind="f32"):
    return os.path.join(k2test.shared_dir(), "fixtures", "models", f"k2-tiny-{kind}.gguf")


class Server:
    def __init__(self, *args, model=None, wait_ready=True, env=None):
        self.tmp = tempfile.mkdtemp(prefix="k2serve-")
        self.port_file = os.path.join(self.tmp, "port")
        self.log_path = os.path.join(self.tmp, "log")
        self.log = open(self.log_path, "wb")
        cmd = [k2test.k2_bin(), "serve", model or tiny_model(), "--port", "0", "--port-file", self.port_file,
               "--quiet", *[str(a) for a in args]]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("k2 serve did not start: " + self.read_log())
            time.sleep(0.02)
        self.port = int(open(self.port_file).read())
        self.base = f"http://127.0.0.1:{self.port}"
        if wait_ready:
            self.wait_ready()

    def read_log(self):
        try:
            if not self.log.closed:
                self.log.flush()
            return open(self.log_path, "rb").read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_ready(self, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                st, _, _ = self.get("/health")
                if st == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("k2 serve never became ready: " + self.read_log())

    def request(self, method, path, body=None, headers=None, timeout=30):
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def health(self):
        st, _, b = self.get("/health")
        return st, json.loads(b)

    def metrics(self, headers=None):
        st, _, b = self.get("/metrics", headers=headers)
        out = {}
        for line in b.decode().splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                out[k] = float(v)
        return out

    def rss_kb(self):
        for line in open(f"/proc/{self.proc.pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        rc = self.stop()
        if exc[0] is None and rc not in (0, None):
            print(self.read_log(), file=sys.stderr)
            raise RuntimeError(f"k2 serve exited with {rc}")


def chat_body(pieces=None, **kw):
    body = {"model": "k2-tiny", "messages": [{"role": "user", "content": "hi"}]}
    if pieces is not None:
        body["test_script"] = {"pieces": pieces}
    body.update(kw)
    return body
