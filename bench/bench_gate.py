"""What the secret gate in front of podinfo costs, each beside a baseline measured in the same run.

    PYTHONPATH=layers/common:. python bench/bench_gate.py [--runs N]

Rows:
- token check: `secretgate.verify_token` of a podinfo token against three staged values (the worst
  case: the token is signed with the last one) vs one bare HMAC-SHA256 over the same bytes;
- proxied request: `GET /readyz` through the gate (`secretgate.make_server`) to a local upstream
  HTTP server, vs the same request sent straight to that upstream; one new connection per request,
  as the Lambda Web Adapter and the ALB health checks do.
"""

# ruff: noqa: T201 - a script that prints its table
from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "layers" / "common"), str(ROOT)]

from bench_verify import per_call, print_rows  # noqa: E402 - the sibling script, same folder

from secretgate import make_server, sign_token, verify_token  # noqa: E402


class Upstream(BaseHTTPRequestHandler):
    """podinfo's /readyz, as small and quick as it gets."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b'{"status":"OK"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def get(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    connection.request("GET", "/readyz")
    reply = connection.getresponse()
    reply.read()
    connection.close()
    if reply.status != 200:
        raise RuntimeError(f"GET /readyz on {port}: {reply.status}")


def serve(server: ThreadingHTTPServer) -> int:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return int(server.server_address[1])


def main() -> None:
    options = argparse.ArgumentParser()
    options.add_argument("--runs", type=int, default=15)
    args = options.parse_args()

    staged = ["current-" + "a" * 40, "previous-" + "b" * 40, "pending-" + "c" * 40]
    token, _ = sign_token(staged[-1], name="bench", ttl=3600)
    header_claims, signature = token.rsplit(".", 1)[0].encode(), token.rsplit(".", 1)[1]

    def bare_hmac() -> bool:
        return hmac.compare_digest(hmac.new(staged[-1].encode(), header_claims, hashlib.sha256).hexdigest(), signature)

    def gate_check() -> object:
        return verify_token(token, staged)

    upstream = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    upstream.daemon_threads = True
    upstream_port = serve(upstream)
    gate = make_server(None, ("127.0.0.1", 0), upstream=("127.0.0.1", upstream_port))
    gate_port = serve(gate)

    rows = [
        ("token check, 3 staged values (gate)", per_call(gate_check, args.runs), "one bare HMAC-SHA256",
         per_call(bare_hmac, args.runs)),
        ("GET /readyz through the gate", per_call(lambda: get(gate_port), args.runs), "GET /readyz direct",
         per_call(lambda: get(upstream_port), args.runs)),
    ]
    gate.shutdown()
    upstream.shutdown()
    print(f"python {sys.version.split()[0]}; median of {args.runs} batches of 20")
    print_rows(rows)


if __name__ == "__main__":
    main()
