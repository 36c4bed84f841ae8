"""A real HTTP webhook receiver on 127.0.0.1 (Werkzeug in a thread).

It keeps every request it gets, checks the signature with the verification
code published in docs/API.md (that very code block, executed here, so the
documentation cannot drift from what works), and can be told to fail the
first N requests or to answer with a given status and body.
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from werkzeug.datastructures import Headers
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"
_EXAMPLE = re.compile(r"<!-- webhook-verify-example[^>]*-->\s*```python\n(.*?)```", re.S)


def documented_example() -> str:
    """The Python verification example from docs/API.md, as text."""
    match = _EXAMPLE.search(API_DOC.read_text(encoding="utf-8"))
    if match is None:
        raise AssertionError("docs/API.md lost its webhook-verify-example code block")
    return match.group(1)


def documented_verifier():
    """`verify_signature(secret, header, body, tolerance=300)` as documented."""
    namespace: dict = {}
    exec(compile(documented_example(), str(API_DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify_signature"]


verify_signature = documented_verifier()


@dataclass
class Received:
    path: str
    headers: Headers  # case-insensitive
    body: bytes
    verified: bool | None  # None when the receiver had no secret to check with

    def json(self):
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    host: str = "127.0.0.1"
    port: int = 0
    secret: str | None = None  # set it to check signatures
    fail_first: int = 0  # answer `fail_status` to this many requests first
    fail_status: int = 500
    status: int = 200
    body: str = "ok"
    delay: float = 0  # seconds to wait before answering (timeouts)
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: object = None
    _thread: threading.Thread | None = None

    def start(self) -> "WebhookReceiver":
        self._server = make_server(self.host, self.port, self._app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def url(self, path: str = "/hook") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.secret, self.fail_first, self.fail_status = None, 0, 500
            self.status, self.body, self.delay = 200, "ok", 0

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def _app(self, environ, start_response):
        request = Request(environ)
        raw = request.get_data()
        with self.lock:
            delay = self.delay
            verified = None
            if self.secret is not None:
                verified = verify_signature(self.secret, request.headers.get("X-CostGuardian-Signature", ""), raw)
            self.received.append(Received(request.path, Headers(request.headers), raw, verified))
            if self.fail_first > 0:
                self.fail_first -= 1
                response = Response(f"failing on purpose ({self.fail_status})", status=self.fail_status)
            elif verified is False:
                response = Response("bad signature", status=400)
            else:
                response = Response(self.body, status=self.status)
        if delay:  # recorded already, so a late answer never lands in the next test
            time.sleep(delay)
        return response(environ, start_response)
