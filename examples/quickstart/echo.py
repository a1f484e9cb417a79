"""The quickstart's stand-in for httpbin: answers every request with 200 and a JSON echo."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def _answer(self, body: bool) -> None:
        data = json.dumps({"path": self.path, "host": self.headers.get("Host", "")}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(False)

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Echo)
    # The bound port (the OS's choice for port 0), for whoever waits for it.
    print(server.server_address[1], flush=True)
    server.serve_forever()
