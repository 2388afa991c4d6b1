#!/usr/bin/env python3
"""A small local Hugging Face Hub for tests and offline demos (standard library only).

Serves every repository found as ROOT/<org>/<repo>/... with the Hub's endpoints
(spec/hub.md §1):
  GET  /api/models/<org>/<repo>[/revision/<rev>]        repo info ("sha", "siblings")
  GET  /api/models/<org>/<repo>/tree/<rev>[/<path>]     paginated listing (Link: rel="next")
  HEAD|GET /<org>/<repo>/resolve/<rev>/<path>            small files: 200 + ETag (git sha1);
                                                         LFS files: 302 to the "CDN" origin with
                                                         X-Linked-Etag / X-Linked-Size / X-Repo-Commit
  HEAD|GET /cdn/<org>/<repo>/<sha256>?exp=..             the CDN origin (another port), Range support
Each repo has one fixed fake commit (sha1 of its id); revision "main" and the commit
resolve to it. A repo containing a file named `.gated` is gated: /resolve answers 401
GatedRepo unless `Authorization: Bearer <contents of .gated>` is sent.

Fault injection (per request, consumed in order) through --fault JSON (repeatable),
the HUBSERVER_FAULTS env var (a JSON list) or POST /_control/faults (a JSON list):
  {"kind": "throttle", "bps": N}               per-connection rate limit of bodies
  {"kind": "drop", "after": BYTES}             close the connection after BYTES of body
  {"kind": "status", "code": 429|500|503, "retry_after": S, "ratelimit_t": T}
                                               optional "error_code" (X-Error-Code; "EntryNotFound"
                                               on /resolve also sends X-Repo-Commit)
  {"kind": "bad_range"}                        206 with a wrong Content-Range start
  {"kind": "ignore_range"}                     200 + whole body to a ranged request
  {"kind": "corrupt"}                          flip bytes of the body (hash mismatch)
  {"kind": "expired"}                          CDN answers 403 (expired signature)
  {"kind": "evil_listing"}                     the tree listing contains "../evil.bin"
  {"kind": "listing_size", "size": N}          the tree listing reports N bytes for the path
Common keys: "count" (times to apply, default 1, -1 = forever), "where" ("cdn", "hub",
"resolve", "api" or "any"), "path" (fnmatch on the repo path; default any).
GET /_control/stats returns counters (body bytes per path, requests, ranges, auth seen
by the CDN); POST /_control/reset clears stats and faults.

Usage: python3 scripts/hubserver.py --root DIR [--port 0] [--cdn-port 0] [--port-file F]
"""
import argparse
import fnmatch
import hashlib
import http.server
import json
import os
import socketserver
import sys
import threading
import time
import urllib.parse

LFS_SUFFIXES = (".gguf", ".bin", ".safetensors", ".pt", ".pth", ".model", ".npy", ".onnx")
LFS_MIN_SIZE = 10 * 1024 * 1024


class State:
    def __init__(self, root, page_size, lfs_min_size):
        self.root = os.path.abspath(root)
        self.page_size = page_size
        self.lfs_min_size = lfs_min_size
        self.lock = threading.Lock()
        self.faults = []
        self.meta_cache = {}
        self.reset_stats()
        self.hub_port = 0
        self.cdn_port = 0

    def reset_stats(self):
        self.stats = {"bytes": {}, "requests": {}, "ranges": [], "cdn_auth": 0,
                      "resolve_auth": 0, "api_auth": 0, "faults_applied": {}}

    def count(self, key, n=1, table="requests"):
        with self.lock:
            t = self.stats[table]
            t[key] = t.get(key, 0) + n

    def take_fault(self, where, path, kinds):
        """Consume the first matching fault of one of `kinds`."""
        with self.lock:
            for f in self.faults:
                if f.get("kind") not in kinds:
                    continue
                w = f.get("where", "any")
                if w != "any" and w != where and not (w == "hub" and where in ("api", "resolve")):
                    continue
                pat = f.get("path")
                if pat and not fnmatch.fnmatchcase(path or "", pat):
                    continue
                c = f.get("count", 1)
                if c == 0:
                    continue
                if c > 0:
                    f["count"] = c - 1
                k = f["kind"]
                self.stats["faults_applied"][k] = self.stats["faults_applied"].get(k, 0) + 1
                return dict(f)
        return None

    # ---- repository model ----
    def repo_dir(self, org, name):
        d = os.path.join(self.root, org, name)
        if not os.path.isdir(d) or ".." in (org, name) or org.startswith("."):
            return None
        return d

    @staticmethod
    def commit_of(repo_id):
        return hashlib.sha1(("k2-hubserver:" + repo_id).encode()).hexdigest()

    def files(self, d):
        out = []
        for base, dirs, names in os.walk(d):
            dirs[:] = sorted(x for x in dirs if not x.startswith(".git"))
            for n in sorted(names):
                if n in (".gated",) or n.startswith(".hubserver"):
                    continue
                full = os.path.join(base, n)
                rel = os.path.relpath(full, d).replace(os.sep, "/")
                out.append(rel)
        return sorted(out)

    def meta(self, full, rel):
        st = os.stat(full)
        key = (full, st.st_size, st.st_mtime_ns)
        with self.lock:
            m = self.meta_cache.get(key)
        if m:
            return m
        lfs = rel.endswith(LFS_SUFFIXES) or st.st_size >= self.lfs_min_size
        m = {"size": st.st_size, "lfs": lfs, "sha1": None, "sha256": None}
        # precomputed hashes (tests with huge sparse files): <repo>/.hubserver-sha256.json {"path": "hex"}
        repo = full[:len(full) - len(rel)].rstrip(os.sep)
        side = os.path.join(repo, ".hubserver-sha256.json")
        if lfs and os.path.exists(side):
            with open(side) as fh:
                m["sha256"] = json.load(fh).get(rel)
        if m["sha256"] is None or not lfs:
            sha1 = hashlib.sha1(b"blob %d\0" % st.st_size)
            sha256 = hashlib.sha256()
            with open(full, "rb") as fh:
                while True:
                    b = fh.read(1 << 22)
                    if not b:
                        break
                    if lfs:
                        sha256.update(b)
                    else:
                        sha1.update(b)
            if lfs:
                m["sha256"] = sha256.hexdigest()
            else:
                m["sha1"] = sha1.hexdigest()
        if lfs:
            # the git object of an LFS file is its pointer file
            ptr = ("version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n"
                   % (m["sha256"], st.st_size)).encode()
            m["pointer_oid"] = hashlib.sha1(b"blob %d\0" % len(ptr) + ptr).hexdigest()
            m["pointer_size"] = len(ptr)
        with self.lock:
            self.meta_cache[key] = m
        return m

    def blob_path(self, d, sha256):
        for rel in self.files(d):
            full = os.path.join(d, rel)
            m = self.meta(full, rel)
            if m["lfs"] and m["sha256"] == sha256:
                return full
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hubserver/1"
    origin = "hub"

    def log_message(self, fmt, *args):
        if os.environ.get("HUBSERVER_VERBOSE"):
            sys.stderr.write("[%s] %s\n" % (self.origin, fmt % args))

    @property
    def st(self):
        return self.server.state

    def do_HEAD(self):
        self.handle_any(head=True)

    def do_GET(self):
        self.handle_any(head=False)

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if u.path == "/_control/faults":
            faults = json.loads(body or b"[]")
            with self.st.lock:
                self.st.faults.extend(faults if isinstance(faults, list) else [faults])
            return self.send_json(200, {"ok": True})
        if u.path == "/_control/reset":
            with self.st.lock:
                self.st.faults = []
                self.st.reset_stats()
            return self.send_json(200, {"ok": True})
        self.send_json(404, {"error": "not found"})

    # ---- helpers ----
    def send_json(self, code, obj, headers=None, head=False):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def send_error_code(self, code, err_code, msg, extra=None, head=False):
        h = {"X-Error-Code": err_code, "X-Error-Message": msg} if err_code else {"X-Error-Message": msg}
        h.update(extra or {})
        self.send_json(code, {"error": msg}, h, head=head)

    def auth_token(self):
        a = self.headers.get("Authorization") or ""
        return a[7:] if a.startswith("Bearer ") else None

    def status_fault(self, where, path, head, commit=None):
        f = self.st.take_fault(where, path, ("status",))
        if not f:
            return False
        h = {}
        if f.get("error_code") == "EntryNotFound" and commit:
            h["X-Repo-Commit"] = commit
        if f.get("retry_after") is not None:
            h["Retry-After"] = str(f["retry_after"])
        if f.get("ratelimit_t") is not None:
            h["RateLimit"] = '"resolvers";r=0;t=%d' % f["ratelimit_t"]
            h["RateLimit-Policy"] = '"fixed window";"resolvers";q=3000;w=300'
        self.send_error_code(int(f.get("code", 500)), f.get("error_code"), "injected fault", h, head=head)
        return True

    def handle_any(self, head):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query)
        parts = [urllib.parse.unquote(p) for p in u.path.split("/")[1:]]
        try:
            if u.path == "/_control/stats":
                with self.st.lock:
                    return self.send_json(200, self.st.stats)
            if self.origin == "cdn":
                return self.handle_cdn(parts, q, head)
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                return self.handle_api(parts[2:], q, head)
            if len(parts) >= 5 and parts[2] == "resolve":
                return self.handle_resolve(parts, head)
            self.send_error_code(404, None, "unknown route %s" % u.path, head=head)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def resolve_rev(self, org, name, rev):
        d = self.st.repo_dir(org, name)
        if d is None:
            return None, None
        commit = self.st.commit_of(org + "/" + name)
        if rev in ("main",) or (len(rev) >= 7 and commit.startswith(rev)):
            return d, commit
        return d, None

    def handle_api(self, p, q, head):
        org, name = p[0], p[1]
        if self.auth_token():
            self.st.count("api_auth", 1, "requests")
        self.st.count("api")
        if self.status_fault("api", "", head):
            return
        rest = p[2:]
        d = self.st.repo_dir(org, name)
        if d is None:
            return self.send_error_code(401, "RepoNotFound", "Repository Not Found for url: %s" % self.path, head=head)
        if not rest or rest[0] == "revision":
            rev = "/".join(rest[1:]) if rest else "main"
            d, commit = self.resolve_rev(org, name, rev or "main")
            if commit is None:
                return self.send_error_code(404, "RevisionNotFound", "Invalid rev id: %s" % rev, head=head)
            sibl = [{"rfilename": f} for f in self.st.files(d)]
            return self.send_json(200, {"id": org + "/" + name, "modelId": org + "/" + name, "sha": commit,
                                        "private": False, "gated": "manual" if os.path.exists(os.path.join(d, ".gated")) else False,
                                        "siblings": sibl}, head=head)
        if rest[0] == "tree" and len(rest) >= 2:
            rev = rest[1]
            sub = "/".join(rest[2:])
            d, commit = self.resolve_rev(org, name, rev)
            if commit is None:
                return self.send_error_code(404, "RevisionNotFound", "Invalid rev id: %s" % rev, head=head)
            recursive = q.get("recursive", ["false"])[0].lower() == "true"
            entries = []
            dirs_seen = set()
            for rel in self.st.files(d):
                if sub and not rel.startswith(sub.rstrip("/") + "/"):
                    continue
                tail = rel[len(sub.rstrip("/")) + 1:] if sub else rel
                if not recursive and "/" in tail:
                    top = (sub.rstrip("/") + "/" if sub else "") + tail.split("/")[0]
                    if top not in dirs_seen:
                        dirs_seen.add(top)
                        entries.append({"type": "directory", "path": top, "oid": "0" * 40, "size": 0})
                    continue
                if recursive:
                    segs = rel.split("/")
                    for i in range(1, len(segs)):
                        top = "/".join(segs[:i])
                        if top not in dirs_seen:
                            dirs_seen.add(top)
                            entries.append({"type": "directory", "path": top, "oid": "0" * 40, "size": 0})
                m = self.st.meta(os.path.join(d, rel), rel)
                fake = self.st.take_fault("api", rel, ("listing_size",))
                size = fake["size"] if fake else m["size"]
                e = {"type": "file", "path": rel, "size": size}
                if m["lfs"]:
                    e["oid"] = m["pointer_oid"]
                    e["lfs"] = {"oid": m["sha256"], "size": size, "pointerSize": m["pointer_size"]}
                else:
                    e["oid"] = m["sha1"]
                entries.append(e)
            if self.st.take_fault("api", "", ("evil_listing",)):
                entries.append({"type": "file", "path": "../evil.bin", "oid": "1" * 40, "size": 3})
            # server order is not sorted on purpose (spec §1.3: order is not guaranteed)
            entries.reverse()
            cursor = int(q.get("cursor", ["0"])[0])
            ps = self.st.page_size
            page = entries[cursor:cursor + ps]
            headers = {}
            if cursor + ps < len(entries):
                nq = dict((k, v[0]) for k, v in q.items())
                nq["cursor"] = str(cursor + ps)
                nxt = "http://127.0.0.1:%d%s?%s" % (self.st.hub_port, urllib.parse.urlsplit(self.path).path,
                                                    urllib.parse.urlencode(nq))
                headers["Link"] = '<%s>; rel="next"' % nxt
            return self.send_json(200, page, headers, head=head)
        self.send_error_code(404, None, "unknown api route", head=head)

    def handle_resolve(self, parts, head):
        org, name, rev = parts[0], parts[1], parts[3]
        rel = "/".join(parts[4:])
        self.st.count("resolve_head" if head else "resolve_get")
        if self.auth_token():
            self.st.count("resolve_auth", 1, "requests")
        if self.status_fault("resolve", rel, head, self.st.commit_of(org + "/" + name)):
            return
        d, commit = self.resolve_rev(org, name, rev)
        if d is None:
            return self.send_error_code(401, "RepoNotFound", "Repository Not Found", head=head)
        if commit is None:
            return self.send_error_code(404, "RevisionNotFound", "Invalid rev id: %s" % rev, head=head)
        gate = os.path.join(d, ".gated")
        if os.path.exists(gate):
            want = open(gate).read().strip()
            tok = self.auth_token()
            if tok is None:
                return self.send_error_code(401, "GatedRepo", "Access to model %s/%s is restricted. You must have access to it and be authenticated to access it. Please log in." % (org, name), head=head)
            if tok != want:
                return self.send_error_code(403, "GatedRepo", "Access to model %s/%s is restricted and you are not in the authorized list." % (org, name), head=head)
        full = os.path.normpath(os.path.join(d, rel))
        if not full.startswith(d + os.sep) or not os.path.isfile(full) or os.path.basename(full) == ".gated":
            return self.send_error_code(404, "EntryNotFound", "%s does not exist at %s" % (rel, commit),
                                        {"X-Repo-Commit": commit}, head=head)
        m = self.st.meta(full, rel)
        if m["lfs"]:
            exp = int(time.time()) + 3600
            loc = "http://127.0.0.1:%d/cdn/%s/%s/%s?exp=%d&sig=%s" % (
                self.st.cdn_port, org, name, m["sha256"], exp, hashlib.md5(str(exp).encode()).hexdigest())
            body = b"Found. Redirecting to " + loc.encode()
            self.send_response(302)
            self.send_header("Location", loc)
            self.send_header("X-Linked-Etag", '"%s"' % m["sha256"])
            self.send_header("X-Linked-Size", str(m["size"]))
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", '"%s"' % m["pointer_oid"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return
        self.serve_file(full, rel, head, {"ETag": '"%s"' % m["sha1"], "X-Repo-Commit": commit}, m["size"], "resolve")

    def handle_cdn(self, parts, q, head):
        self.st.count("cdn_head" if head else "cdn_get")
        if self.headers.get("Authorization"):
            self.st.count("cdn_auth", 1, "requests")
            with self.st.lock:
                self.st.stats["cdn_auth"] += 1
            return self.send_error_code(400, None, "Only one auth mechanism allowed", head=head)
        if len(parts) != 4 or parts[0] != "cdn":
            return self.send_error_code(404, None, "no such object", head=head)
        org, name, sha = parts[1], parts[2], parts[3]
        d = self.st.repo_dir(org, name)
        full = self.st.blob_path(d, sha) if d else None
        if full is None:
            return self.send_error_code(404, None, "no such object", head=head)
        rel = os.path.relpath(full, d).replace(os.sep, "/")
        if self.status_fault("cdn", rel, head):
            return
        exp = int(q.get("exp", ["0"])[0])
        if exp < time.time() or self.st.take_fault("cdn", rel, ("expired",)):
            return self.send_error_code(403, None, "Request has expired", head=head)
        self.serve_file(full, rel, head, {"ETag": '"cdn-%s-1"' % sha[:16]}, os.path.getsize(full), "cdn")

    def serve_file(self, full, rel, head, headers, size, where):
        rng = self.headers.get("Range")
        start, end = 0, size - 1
        status = 200
        if rng:
            with self.st.lock:
                self.st.stats["ranges"].append([where, rel, rng])
            if self.st.take_fault(where, rel, ("ignore_range",)):
                rng = None
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            try:
                start = int(a) if a else max(0, size - int(b))
                end = min(int(b), size - 1) if (a and b) else size - 1
            except ValueError:
                return self.send_error_code(400, None, "bad range", head=head)
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", "bytes */%d" % size)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        n = end - start + 1 if size > 0 else 0
        throttle = self.st.take_fault(where, rel, ("throttle",))
        drop = self.st.take_fault(where, rel, ("drop",)) if not head else None
        corrupt = self.st.take_fault(where, rel, ("corrupt",)) if not head else None
        self.send_response(status)
        self.send_header("Content-Length", str(n))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        if status == 206:
            cr_start = start
            if self.st.take_fault(where, rel, ("bad_range",)):
                cr_start = start + 1
            self.send_header("Content-Range", "bytes %d-%d/%d" % (cr_start, end, size))
        for k, v in headers.items():
            self.send_header(k, v)
        if drop:
            self.send_header("Connection", "close")
        self.end_headers()
        if head:
            return
        bps = throttle.get("bps") if throttle else None
        limit = drop.get("after", 0) if drop else None
        sent = 0
        t0 = time.monotonic()
        block = 64 * 1024
        if bps:
            block = max(1024, min(block, int(bps) // 20))
        with open(full, "rb") as fh:
            fh.seek(start)
            while sent < n:
                want = min(block, n - sent)
                if limit is not None and sent + want > limit:
                    want = limit - sent
                    if want <= 0:
                        break
                b = fh.read(want)
                if not b:
                    break
                if corrupt and sent == 0:
                    b = bytes([b[0] ^ 0xFF]) + b[1:]
                self.wfile.write(b)
                sent += len(b)
                self.st.count(rel, len(b), "bytes")
                if bps:
                    ahead = sent / bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        if limit is not None and sent < n:
            self.wfile.flush()
            self.close_connection = True
            try:
                import socket
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def make_servers(root, port=0, cdn_port=0, page_size=1000, lfs_min_size=LFS_MIN_SIZE, faults=None):
    state = State(root, page_size, lfs_min_size)
    state.faults = list(faults or [])

    class HubH(Handler):
        origin = "hub"

    class CdnH(Handler):
        origin = "cdn"

    hub = Server(("127.0.0.1", port), HubH)
    cdn = Server(("127.0.0.1", cdn_port), CdnH)
    hub.state = cdn.state = state
    state.hub_port = hub.server_address[1]
    state.cdn_port = cdn.server_address[1]
    return state, hub, cdn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--cdn-port", type=int, default=0)
    ap.add_argument("--port-file", help="write {\"hub\":P,\"cdn\":Q,\"endpoint\":URL} here once listening")
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--lfs-min-size", type=int, default=LFS_MIN_SIZE)
    ap.add_argument("--fault", action="append", default=[], help="JSON fault object (repeatable)")
    a = ap.parse_args()
    faults = [json.loads(f) for f in a.fault]
    if os.environ.get("HUBSERVER_FAULTS"):
        faults += json.loads(os.environ["HUBSERVER_FAULTS"])
    state, hub, cdn = make_servers(a.root, a.port, a.cdn_port, a.page_size, a.lfs_min_size, faults)
    threading.Thread(target=cdn.serve_forever, daemon=True).start()
    info = {"hub": state.hub_port, "cdn": state.cdn_port, "endpoint": "http://127.0.0.1:%d" % state.hub_port}
    if a.port_file:
        tmp = a.port_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(info, f)
        os.replace(tmp, a.port_file)
    print(json.dumps(info), flush=True)
    try:
        hub.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
