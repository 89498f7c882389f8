#!/usr/bin/env python3
"""A Web Push service and a push gateway on loopback, for the relay's push tests.

An independent receiver: it holds a subscription key pair of its own, decrypts every push with
the PyPI `http_ece` package (RFC 8188/8291), verifies the VAPID token (RFC 8292) with the
`cryptography` package's ES256 verification (py_vapid only signs), and records what it saw. Tests tell it what to answer next.

Prints one JSON line on stdout when listening: {"port", "p256dh", "auth"} (base64url).

Routes:
  POST /push/<name>        a Web Push request; answers the next queued status (default 201)
  POST /gateway            a gateway notification; answers 200 {"rejected": [...]}
  POST /count/<name>       a push that is only counted (for throughput measurements)
  GET  /_count             {"<name>": count, …}
  POST /_control/<name>    {"statuses": [..], "rejected": [..]}: what <name> answers next
  GET  /_seen              every request recorded so far (JSON list)
"""

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


PRIVATE = ec.generate_private_key(ec.SECP256R1())
PUBLIC = PRIVATE.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
)
AUTH = os.urandom(16)

LOCK = threading.Lock()
SEEN = []
STATUSES = {}
REJECTED = {}
COUNTS = {}


def verify_vapid(header: str, origin: str):
    """Checks `vapid t=<jwt>, k=<key>`: ES256 under k, aud = origin, exp in (now, now + 24 h]."""
    if not header.startswith("vapid "):
        return {"ok": False, "why": "scheme"}
    params = dict(
        part.strip().split("=", 1) for part in header[len("vapid "):].split(",")
    )
    token, key = params.get("t", ""), params.get("k", "")
    try:
        head_b64, claims_b64, sig_b64 = token.split(".")
        head = json.loads(unb64u(head_b64))
        claims = json.loads(unb64u(claims_b64))
        sig = unb64u(sig_b64)
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64u(key))
        der = encode_dss_signature(
            int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        )
        public.verify(der, f"{head_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))
    except (ValueError, KeyError, InvalidSignature) as err:
        return {"ok": False, "why": repr(err)}
    now = time.time()
    ok = (
        head.get("alg") == "ES256"
        and len(sig) == 64
        and claims.get("aud") == origin
        and now < claims.get("exp", 0) <= now + 24 * 3600
        and str(claims.get("sub", "")).startswith(("mailto:", "https://"))
    )
    return {"ok": ok, "claims": claims, "k": key, "why": "" if ok else "claims"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status: int, body: bytes = b"", content_type="application/json"):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", content_type)
        self.end_headers()
        self.wfile.write(body)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def next_status(self, name: str, default: int) -> int:
        with LOCK:
            queue = STATUSES.get(name, [])
            return queue.pop(0) if queue else default

    def do_GET(self):
        if self.path == "/_count":
            with LOCK:
                data = json.dumps(COUNTS).encode()
            return self.reply(200, data)
        if self.path == "/_seen":
            with LOCK:
                data = json.dumps(SEEN).encode()
            return self.reply(200, data)
        self.reply(404)

    def do_POST(self):
        raw = self.body()
        if self.path.startswith("/_control/"):
            name = self.path[len("/_control/"):]
            cmd = json.loads(raw or b"{}")
            with LOCK:
                STATUSES[name] = list(cmd.get("statuses", []))
                REJECTED[name] = list(cmd.get("rejected", []))
            return self.reply(204)
        if self.path.startswith("/count/"):
            with LOCK:
                COUNTS[self.path[len("/count/"):]] = COUNTS.get(self.path[len("/count/"):], 0) + 1
            return self.reply(201)
        if self.path == "/gateway":
            status = self.next_status("gateway", 200)
            record = {"kind": "gateway", "path": self.path, "status": status,
                      "received_at": time.time()}
            try:
                record["json"] = json.loads(raw)
            except ValueError:
                record["json"] = None
            with LOCK:
                SEEN.append(record)
                rejected = REJECTED.get("gateway", [])
            body = json.dumps({"rejected": rejected}).encode() if status == 200 else b""
            return self.reply(status, body)
        if self.path.startswith("/push/"):
            name = self.path[len("/push/"):]
            status = self.next_status(name, 201)
            origin = f"http://{self.headers.get('Host')}"
            record = {
                "kind": "web_push",
                "name": name,
                "status": status,
                "received_at": time.time(),
                "ttl": self.headers.get("TTL"),
                "urgency": self.headers.get("Urgency"),
                "content_encoding": self.headers.get("Content-Encoding"),
                "body_len": len(raw),
                "vapid": verify_vapid(self.headers.get("Authorization", ""), origin),
                "headers": sorted(k.lower() for k in self.headers.keys()),
            }
            try:
                plaintext = http_ece.decrypt(
                    raw, private_key=PRIVATE, auth_secret=AUTH, version="aes128gcm"
                )
                record["plaintext"] = b64u(plaintext)
            except Exception as err:  # noqa: BLE001 - any failure is the test's finding
                record["plaintext"] = None
                record["decrypt_error"] = repr(err)
            with LOCK:
                SEEN.append(record)
            return self.reply(status)
        self.reply(404)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(
        json.dumps({"port": server.server_address[1], "p256dh": b64u(PUBLIC), "auth": b64u(AUTH)}),
        flush=True,
    )
    # Stop when the test (our parent) closes stdin.
    threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
    server.serve_forever()


if __name__ == "__main__":
    main()
