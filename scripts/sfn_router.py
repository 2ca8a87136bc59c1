"""The lab's Lambda router for moto's Step Functions interpreter.

moto runs the real ASL and calls each Lambda Task at localhost:$MOTO_PORT. The lab starts moto with MOTO_PORT
pointing here, so this router answers `POST /2015-03-31/functions/<name or ARN>/invocations` itself, forwarding
to the Runtime API server (`cargo lambda watch`) that a test registered for that function name, and proxies
every other request to moto. It maps cargo-lambda's HTTP 500 for a function error to what real Lambda answers:
200 with `X-Amz-Function-Error: Unhandled` and the `{"errorType","errorMessage"}` body, so Retry and Catch see
the function's own errorType.

    POST /_router/functions {"name": "t1-notify", "invokeUrl": "http://127.0.0.1:PORT/2015-03-31/functions/t1-notify/invocations"}
"""
import json
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FUNCTIONS = {}
LOCK = threading.Lock()
UPSTREAM = sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:5000"


def function_name(path_part):
    """`t1-notify`, `arn:aws:lambda:REGION:ACCOUNT:function:t1-notify[:qualifier]` -> `t1-notify`."""
    name = urllib.request.unquote(path_part)
    if name.startswith("arn:"):
        name = name.split(":")[6]
    return name


class Router(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status, payload, headers=None):
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        parts = self.path.split("?")[0].split("/")
        if self.path == "/_router/functions":
            spec = json.loads(self.body())
            with LOCK:
                FUNCTIONS[spec["name"]] = spec["invokeUrl"]
            return self.answer(200, b'{"ok":true}', {"Content-Type": "application/json"})
        if len(parts) == 5 and parts[1] == "2015-03-31" and parts[2] == "functions" and parts[4] == "invocations":
            return self.invoke(function_name(parts[3]))
        return self.proxy()

    def invoke(self, name):
        with LOCK:
            url = FUNCTIONS.get(name)
        payload = self.body()
        if url is None:
            message = json.dumps({"Type": "User", "message": f"Function not found: {name}"}).encode()
            return self.answer(404, message, {"Content-Type": "application/json", "x-amzn-ErrorType": "ResourceNotFoundException"})
        request = urllib.request.Request(url, data=payload, method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=900) as response:
                return self.answer(200, response.read(), {"Content-Type": "application/json"})
        except urllib.error.HTTPError as error:
            # cargo lambda watch: HTTP 500 + {"errorType","errorMessage"}; real Lambda: 200 + this header.
            return self.answer(200, error.read(), {"Content-Type": "application/json", "X-Amz-Function-Error": "Unhandled"})
        except (urllib.error.URLError, TimeoutError) as error:
            body = json.dumps({"errorType": "Lambda.Unknown", "errorMessage": f"the function did not answer: {error}"}).encode()
            return self.answer(200, body, {"Content-Type": "application/json", "X-Amz-Function-Error": "Unhandled"})

    def proxy(self):
        payload = self.body() if self.command in ("POST", "PUT", "PATCH") else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
        request = urllib.request.Request(UPSTREAM + self.path, data=payload, method=self.command, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                status, body, reply_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as error:
            status, body, reply_headers = error.code, error.read(), error.headers
        keep = {k: v for k, v in reply_headers.items() if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date")}
        return self.answer(status, body, keep)

    do_GET = proxy
    do_PUT = proxy
    do_DELETE = proxy
    do_HEAD = proxy


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Router)
    server.daemon_threads = True
    server.serve_forever()
