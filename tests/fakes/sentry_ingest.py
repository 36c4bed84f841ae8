"""A local fake of Sentry's ingestion endpoint: accepts the envelopes the
official sentry-sdk POSTs to the DSN's host (`/api/<project>/envelope/`,
gzip-compressed or not) and keeps the events they carry.

    fake = SentryIngest().start();  dsn = fake.dsn  # http://public@127.0.0.1:<port>/1
    sentry_sdk.flush();  fake.events  # the error events, parsed;  fake.raw: every body as text
"""
from __future__ import annotations

import gzip
import json
import threading
import zlib

from werkzeug.wrappers import Request, Response

from tests.fakes.server import LocalServer


class SentryIngest(LocalServer):
    thread_name = "fake-sentry"
    project = "1"

    def __init__(self):
        self.raw: list[str] = []
        self.events: list[dict] = []
        self.lock = threading.Lock()

    @property
    def dsn(self) -> str:
        return self.address.replace("http://", "http://public@") + "/" + self.project

    def clear(self) -> None:
        with self.lock:
            self.raw, self.events = [], []

    def _app(self, environ, start_response):
        request = Request(environ)
        if request.method != "POST" or request.path != f"/api/{self.project}/envelope/":
            return Response("not found", 404)(environ, start_response)
        if "sentry_key=public" not in request.headers.get("X-Sentry-Auth", ""):
            return Response("bad auth", 401)(environ, start_response)
        body = request.get_data()
        encoding = request.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        text = body.decode("utf-8", "replace")
        with self.lock:
            self.raw.append(text)
            self.events.extend(_events(text))
        return Response(json.dumps({"id": "0" * 32}), 200, mimetype="application/json")(environ, start_response)


def _events(envelope: str) -> list[dict]:
    """The `event` items of an envelope: a header line, then per item a
    header line and a payload line (the sdk always sends a length-less item
    of one line of JSON for events)."""
    lines = envelope.split("\n")
    found = []
    index = 1
    while index + 1 < len(lines):
        header = json.loads(lines[index]) if lines[index].strip() else {}
        payload = lines[index + 1]
        if header.get("type") == "event":
            found.append(json.loads(payload))
        index += 2
    return found
