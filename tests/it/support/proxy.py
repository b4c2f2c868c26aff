"""A forward HTTP proxy for tests: absolute-form requests (http:// URLs) are forwarded and
CONNECT (https:// URLs) is tunnelled; each request line is appended to --log with the headers
the proxy saw. Prints its port on stdout, then serves until killed."""
import argparse
import http.client
import http.server
import json
import select
import socket
import urllib.parse

parser = argparse.ArgumentParser()
parser.add_argument("--log", required=True)
args = parser.parse_args()


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *_):
        pass

    def record(self):
        with open(args.log, "a") as f:
            f.write(json.dumps({"method": self.command, "target": self.path, "headers": dict(self.headers)}) + "\n")

    def do_GET(self):
        self.record()
        url = urllib.parse.urlsplit(self.path)
        upstream = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        upstream.request("GET", (url.path or "/") + (f"?{url.query}" if url.query else ""), headers=headers)
        response = upstream.getresponse()
        body = response.read()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def do_CONNECT(self):
        self.record()
        host, port = self.path.rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)), timeout=30)
        self.send_response(200, "Connection established")
        self.end_headers()
        sockets = [self.connection, upstream]
        while True:
            readable, _, _ = select.select(sockets, [], [], 30)
            if not readable:
                break
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                (upstream if s is self.connection else self.connection).sendall(data)


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
print(server.server_address[1], flush=True)
server.serve_forever()
