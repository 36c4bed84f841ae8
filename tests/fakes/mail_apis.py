"""Local fakes of the Resend and SendGrid HTTP APIs: real HTTP servers on
127.0.0.1 (Werkzeug, in a thread) that check the bearer key and the shape of
each request the way the real services document it, and keep what they accept."""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response
from tests.fakes.server import LocalServer


@dataclass
class FakeMailApi(LocalServer):
    """`kind` is "resend" or "sendgrid". `fail_with` answers that status (and
    `fail_body`) to every request while it is set."""

    kind: str
    api_key: str = "test-key-123"
    messages: list[dict] = field(default_factory=list)  # accepted request bodies
    rejected: list[tuple[int, str]] = field(default_factory=list)
    fail_with: int | None = None
    fail_body: str = '{"message": "internal error, try later"}'
    lock: threading.Lock = field(default_factory=threading.Lock)
    _server: object = None
    _thread: threading.Thread | None = None

    @property
    def thread_name(self) -> str:
        return f"fake-{self.kind}"

    @property
    def base(self) -> str:
        return self.address

    def url(self, key: str | None = None) -> str:
        """A MAIL_URL pointing at this fake."""
        return f"{self.kind}://{key or self.api_key}?api_base={self.base}"

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.rejected.clear()
            self.fail_with = None

    # --- the API ---------------------------------------------------------------

    @Request.application
    def _app(self, request: Request) -> Response:
        path = {"resend": "/emails", "sendgrid": "/v3/mail/send"}[self.kind]
        if request.method != "POST" or request.path != path:
            return self._refuse(404, '{"message": "not found"}')
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return self._refuse(401 if self.kind == "resend" else 403, '{"message": "invalid api key"}')
        if self.fail_with:
            return self._refuse(self.fail_with, self.fail_body)
        try:
            body = json.loads(request.get_data(as_text=True))
        except ValueError:
            return self._refuse(400, '{"message": "body is not JSON"}')
        problem = (_check_resend if self.kind == "resend" else _check_sendgrid)(body)
        if problem:
            return self._refuse(422 if self.kind == "resend" else 400, json.dumps({"message": problem}))
        with self.lock:
            self.messages.append(body)
        if self.kind == "resend":
            return Response(json.dumps({"id": f"fake-{len(self.messages)}"}), 200, mimetype="application/json")
        return Response("", 202)

    def _refuse(self, status: int, body: str) -> Response:
        with self.lock:
            self.rejected.append((status, body))
        return Response(body, status, mimetype="application/json")


def _check_resend(body) -> str:
    if not isinstance(body, dict):
        return "body must be an object"
    for key in ("from", "to", "subject"):
        if not body.get(key):
            return f"missing `{key}`"
    if not isinstance(body["to"], (list, str)):
        return "`to` must be a list or a string"
    if not (body.get("text") or body.get("html")):
        return "`text` or `html` is required"
    if "headers" in body and not isinstance(body["headers"], dict):
        return "`headers` must be an object"
    return ""


def _check_sendgrid(body) -> str:
    if not isinstance(body, dict):
        return "body must be an object"
    personalizations = body.get("personalizations")
    if not (isinstance(personalizations, list) and personalizations
            and all(isinstance(p, dict) and p.get("to") for p in personalizations)):
        return "personalizations with `to` are required"
    if not (isinstance(body.get("from"), dict) and body["from"].get("email")):
        return "`from.email` is required"
    if not body.get("subject"):
        return "`subject` is required"
    content = body.get("content")
    if not (isinstance(content, list) and content):
        return "`content` is required"
    kinds = [c.get("type") for c in content]
    if kinds[0] != "text/plain" or ("text/html" in kinds and kinds.index("text/html") < kinds.index("text/plain")):
        return "text/plain must come first in content"
    if "headers" in body and not isinstance(body["headers"], dict):
        return "`headers` must be an object"
    return ""
