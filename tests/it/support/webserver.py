"""A small HTTP(S) server for podinit's tests: redirects, files with Range/ETag, faults.

Started by support/web.rs, one process per server. Prints its port on the first line of
stdout, then serves until killed. Every request is appended to --log as one JSON object
(method, path, headers), so a test can tell what reached which server.

Routes (--route PATH=SPEC, repeatable; the longest matching prefix wins):
  redirect:STATUS:URL   answer STATUS with Location: URL (the request's path appended when
                        URL ends with '*')
  status:STATUS:BODY    answer STATUS with BODY
Files under --root are served with Accept-Ranges, ETag, Last-Modified, If-None-Match,
If-Modified-Since, Range and If-Range, unless --no-ranges.
"""

import argparse
import email.utils
import hashlib
import http.server
import json
import os
import socketserver
import ssl
import sys
import threading


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--root")
    p.add_argument("--no-ranges", action="store_true")
    p.add_argument("--route", action="append", default=[])
    p.add_argument("--log")
    args = p.parse_args()
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

        def do_GET(self):
            self.record()
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
            try:
                with open(path, "rb") as f:
                    data = f.read()
                st = os.stat(path)
            except OSError:
                return self.answer(404, [], b"not found")
            etag = '"%s"' % hashlib.sha256(data).hexdigest()[:16]
            modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            headers = [("ETag", etag), ("Last-Modified", modified)]
            if not args.no_ranges:
                headers.append(("Accept-Ranges", "bytes"))
            if self.headers.get("If-None-Match") == etag:
                return self.answer(304, headers)
            rng = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            if rng and not args.no_ranges and (if_range is None or if_range == etag or if_range == modified):
                start, end = rng.split("=", 1)[1].split("-")
                start = int(start)
                end = int(end) if end else len(data) - 1
                if start >= len(data):
                    return self.answer(416, [("Content-Range", "bytes */%d" % len(data))])
                end = min(end, len(data) - 1)
                headers.append(("Content-Range", "bytes %d-%d/%d" % (start, end, len(data))))
                return self.answer(206, headers, data[start:end + 1])
            self.answer(200, headers, data)

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
