"""A small HTTP(S) server for podinit's tests: redirects, files with Range/ETag, faults.

Started by support/web.rs, one process per server. Prints its port on the first line of
stdout, then serves until killed. Every request is appended to --log as one JSON object
(method, path, headers), so a test can tell what reached which server.

Routes (--route PATH=SPEC, repeatable; the longest matching prefix wins):
  redirect:STATUS:URL   answer STATUS with Location: URL (the request's path appended when
                        URL ends with '*')
  status:STATUS:BODY    answer STATUS with BODY
Files under --root are served with Accept-Ranges, ETag, Last-Modified, If-None-Match,
If-Modified-Since, Range and If-Range, unless --no-ranges. The ETag is a hash of the content
(read once per size and mtime), so a file rewritten between requests has another one. Faults
for files: --fail N:STATUS[:RETRY_AFTER] answers the first N requests with STATUS;
--cut-after BYTES --cut-times N sends the first N bodies only up to BYTES, then closes the
connection; --throttle BYTES_PER_SEC slows every body down; --swap N:NAME serves the file NAME
(under --root) for every file request after the first N (a file replaced mid-download).
--git ROOT hands every request under /git/ to Debian git's `git http-backend` (smart HTTP, as a
CGI) for the repositories below ROOT; --auth USER:PASS (or bearer:TOKEN) makes those answer
401 without that Authorization.
"""

import argparse
import base64
import email.utils
import hashlib
import http.server
import json
import os
import socket
import socketserver
import ssl
import subprocess
import sys
import threading
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--root")
    p.add_argument("--no-ranges", action="store_true")
    p.add_argument("--route", action="append", default=[])
    p.add_argument("--log")
    p.add_argument("--fail")
    p.add_argument("--cut-after", type=int)
    p.add_argument("--cut-times", type=int, default=1)
    p.add_argument("--throttle", type=int)
    p.add_argument("--swap")
    p.add_argument("--git")
    p.add_argument("--auth")
    args = p.parse_args()
    faults = {"fail": 0, "cut": 0, "files": 0}
    etags = {}
    routes = []
    for r in args.route:
        path, spec = r.split("=", 1)
        routes.append((path, spec))
    routes.sort(key=lambda r: -len(r[0]))
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def record(self):
            if args.log:
                with lock, open(args.log, "a") as f:
                    f.write(json.dumps({"method": self.command, "path": self.path, "headers": dict(self.headers.items())}) + "\n")

        def answer(self, status, headers, body=b""):
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def git(self):
            body = self.body()
            if args.auth:
                got = self.headers.get("Authorization", "")
                if args.auth.startswith("bearer:"):
                    ok = got == "Bearer " + args.auth[len("bearer:"):]
                else:
                    ok = got == "Basic " + base64.b64encode(args.auth.encode()).decode()
                if not ok:
                    return self.answer(401, [("WWW-Authenticate", 'Basic realm="git"')], b"authentication required")
            path, _, query = self.path[len("/git"):].partition("?")
            env = dict(os.environ, GIT_PROJECT_ROOT=args.git, GIT_HTTP_EXPORT_ALL="1", PATH_INFO=path,
                       QUERY_STRING=query, REQUEST_METHOD=self.command, REMOTE_USER="test", REMOTE_ADDR="127.0.0.1",
                       CONTENT_TYPE=self.headers.get("Content-Type", ""), CONTENT_LENGTH=str(len(body)),
                       GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
                       HTTP_CONTENT_ENCODING=self.headers.get("Content-Encoding", ""))
            out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
            sep = out.find(b"\r\n\r\n")
            head, rest = (out[:sep], out[sep + 4:]) if sep >= 0 else out.split(b"\n\n", 1)
            status, headers = 200, []
            for line in head.replace(b"\r\n", b"\n").split(b"\n"):
                name, _, value = line.decode().partition(":")
                if name.lower() == "status":
                    status = int(value.split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.answer(status, headers, rest)

        def do_GET(self):
            self.record()
            if args.git and self.path.startswith("/git/"):
                return self.git()
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            for prefix, spec in routes:
                if self.path.startswith(prefix):
                    kind, rest = spec.split(":", 1)
                    if kind == "redirect":
                        status, url = rest.split(":", 1)
                        if url.endswith("*"):
                            url = url[:-1] + self.path
                        return self.answer(int(status), [("Location", url)])
                    if kind == "status":
                        status, body = rest.split(":", 1)
                        return self.answer(int(status), [("Content-Type", "application/json")], body.encode())
            if args.root:
                return self.file()
            self.answer(404, [], b"not found")

        do_HEAD = do_GET
        do_POST = do_GET
        do_PUT = do_GET

        def file(self):
            path = os.path.join(args.root, self.path.split("?")[0].lstrip("/"))
            with lock:
                faults["files"] += 1
                if args.swap and faults["files"] > int(args.swap.split(":", 1)[0]):
                    path = os.path.join(args.root, args.swap.split(":", 1)[1])
            try:
                st = os.stat(path)
                f = open(path, "rb")
            except OSError:
                return self.answer(404, [], b"not found")
            with f:
                with lock:
                    if args.fail:
                        n, status, *after = args.fail.split(":")
                        if faults["fail"] < int(n):
                            faults["fail"] += 1
                            extra = [("Retry-After", after[0])] if after else []
                            return self.answer(int(status), extra, b"try later")
                    key = (path, st.st_size, st.st_mtime_ns)
                    if key not in etags:
                        h = hashlib.sha256()
                        for block in iter(lambda: f.read(1 << 20), b""):
                            h.update(block)
                        etags[key] = '"%s"' % h.hexdigest()[:16]
                    etag = etags[key]
                size = st.st_size
                modified = email.utils.formatdate(st.st_mtime, usegmt=True)
                headers = [("ETag", etag), ("Last-Modified", modified)]
                if not args.no_ranges:
                    headers.append(("Accept-Ranges", "bytes"))
                if self.headers.get("If-None-Match") == etag:
                    return self.answer(304, headers)
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                start, end, status = 0, size - 1, 200
                if rng and not args.no_ranges and (if_range is None or if_range == etag or if_range == modified):
                    first, last = rng.split("=", 1)[1].split("-")
                    start = int(first)
                    end = min(int(last) if last else size - 1, size - 1)
                    if start >= size:
                        return self.answer(416, [("Content-Range", "bytes */%d" % size)])
                    headers.append(("Content-Range", "bytes %d-%d/%d" % (start, end, size)))
                    status = 206
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(end + 1 - start))
                self.end_headers()
                if self.command == "HEAD":
                    return
                limit = end + 1 - start
                with lock:
                    if args.cut_after is not None and faults["cut"] < args.cut_times:
                        faults["cut"] += 1
                        limit = min(limit, args.cut_after)
                        self.close_connection = True
                f.seek(start)
                sent = 0
                step = 1 << 16
                try:
                    while sent < limit:
                        block = f.read(min(step, limit - sent))
                        if not block:
                            break
                        self.wfile.write(block)
                        sent += len(block)
                        if args.throttle:
                            time.sleep(len(block) / args.throttle)
                    if sent < end + 1 - start:
                        self.wfile.flush()
                        self.connection.shutdown(socket.SHUT_RDWR)
                except (BrokenPipeError, ConnectionResetError):
                    # The client went away (a dropped first response, a killed podinit).
                    self.close_connection = True

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        allow_reuse_address = True

    server = Server(("127.0.0.1", args.port), Handler)
    if args.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls[0], args.tls[1])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    sys.stdout.close()
    server.serve_forever()


main()
