"""``python manage.py receive_webhooks``: a local webhook receiver for trying the service out.

Listens on 127.0.0.1, prints every request (method, path, our headers, body) and, given
``--secret``, verifies the signature the way a receiver would: ``sha256=``/``sha1=`` with the
seed's ``verify_signature`` logic, Standard Webhooks with the same HMAC over
``id.timestamp.body``, or a JWT with pyjwt. ``--status`` sets the answer (e.g. 503 to watch
retries). Stops on Ctrl-C.
"""
import base64
import hashlib
import hmac
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
from django.core.management.base import BaseCommand, CommandError

from vocelio_webhooks.commands import bounded_int


def verify(headers, body: bytes, secret: str) -> str:
    """Return a one-line verdict for the request's signature, trying each scheme we send."""
    signature = headers.get("X-Vocelio-Signature")
    if signature:
        algorithm = signature.split("=", 1)[0]
        expected = f"{algorithm}=" + hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).hexdigest()
        return f"{algorithm} signature {'OK' if hmac.compare_digest(expected, signature) else 'MISMATCH'}"
    if headers.get("webhook-signature"):
        key = base64.b64decode(secret.removeprefix("whsec_"))
        signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        ok = any(hmac.compare_digest(part.split(",", 1)[-1], expected) for part in headers["webhook-signature"].split())
        return f"standard-webhooks signature {'OK' if ok else 'MISMATCH'}"
    auth = headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        try:
            claims = jwt.decode(auth[7:], secret, algorithms=["HS256"])
        except jwt.InvalidTokenError as exc:
            return f"JWT INVALID ({exc})"
        bound = claims.get("body_sha256") == hashlib.sha256(body).hexdigest()
        return f"JWT OK (jti={claims.get('jti')}, body hash {'matches' if bound else 'DIFFERS'})"
    return "no signature header"


class Command(BaseCommand):
    help = "Run a local webhook receiver that prints and verifies what it gets."

    def add_arguments(self, parser):
        # Bounded like every operator option (vocelio_webhooks.commands): bind() raised OverflowError
        # (a traceback) beyond 65,535, and a status outside 100-599 is no HTTP answer.
        parser.add_argument("--port", type=bounded_int(1, 65_535), default=9000,
                            help="Port on 127.0.0.1 to listen on (default 9000).")
        parser.add_argument("--secret", default="", help="Endpoint secret, to verify signatures.")
        parser.add_argument("--status", type=bounded_int(100, 599), default=200,
                            help="HTTP status to answer with (100 to 599; default 200).")

    def handle(self, *args, port: int, secret: str, status: int, **options):
        out = self.stdout

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                out.write(f"\n{self.command} {self.path}")
                for name, value in self.headers.items():
                    if name.lower().startswith(("x-vocelio", "webhook-", "x-api-key", "authorization", "content-type")):
                        out.write(f"  {name}: {value}")
                try:
                    out.write(json.dumps(json.loads(body), indent=2, ensure_ascii=False) if body else "  (no body)")
                except ValueError:
                    out.write(body.decode("utf-8", errors="replace"))
                if secret:
                    out.write(f"  => {verify(self.headers, body, secret)}")
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:  # port taken (EADDRINUSE) or not allowed: a sentence, not a traceback
            raise CommandError(f"Cannot listen on 127.0.0.1:{port}: {exc.strerror}. Pick another --port.") from exc
        out.write(f"Receiving webhooks on http://127.0.0.1:{port}/ (answering {status}); Ctrl-C to stop.")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
