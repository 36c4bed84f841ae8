"""Per request: the request id (X-Request-Id in and out), one log line, the
request metrics; and GET /metrics for Prometheus."""
from __future__ import annotations

import hmac
import ipaddress
import logging
import time

from flask import Blueprint, Flask, Response, current_app, g, request

from costguardian import for_gateway_calls
from costguardian.extensions import limiter
from costguardian.observability import context, metrics

log = logging.getLogger("costguardian.request")

bp = Blueprint("observability", __name__)


class RequestObserver:
    """WSGI middleware around the whole app (error pages, 404s and streamed
    answers included): sets the request id for everything the request logs
    or enqueues, answers it as X-Request-Id, and when the answer is done
    (a stream: when its last byte went) writes the request line and metrics."""

    def __init__(self, wsgi_app):
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        request_id = context.chosen_or_new(environ.get("HTTP_X_REQUEST_ID"))
        environ["cg.request_id"] = request_id
        context.request_id.set(request_id)
        started = time.perf_counter()
        answer = {"status": 500}

        def start(status, headers, exc_info=None):
            answer["status"] = int(status.split(" ", 1)[0])
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append(("X-Request-Id", request_id))
            return start_response(status, headers, exc_info)

        def done():
            try:
                _finished(environ, request_id, answer["status"], time.perf_counter() - started)
            finally:
                if context.request_id.get() == request_id:  # not yet another request's (a redirect followed)
                    context.request_id.set(None)

        try:
            body = self.wsgi_app(environ, start)
        except BaseException:
            done()
            raise
        if not (environ.get("cg.request") or {}).get("streamed"):
            done()  # the body is built: the answer is complete
            return body
        return _Observed(body, done)


class _Observed:
    """A streamed answer's body, calling `done` once: after its last chunk,
    or when the server closes it early (a caller that went away mid-stream)."""

    def __init__(self, body, done):
        self.body, self.done, self.chunks = body, done, None

    def __iter__(self):
        self.chunks = iter(self.body)
        return self

    def __next__(self):
        try:
            return next(self.chunks)
        except StopIteration:
            self.finish()
            raise

    def close(self):
        try:
            if hasattr(self.body, "close"):
                self.body.close()
        finally:
            self.finish()

    def finish(self):
        done, self.done = self.done, None
        if done is not None:
            done()


def _finished(environ, request_id: str, status: int, seconds: float) -> None:
    seen = environ.get("cg.request") or {}
    endpoint = seen.get("endpoint")
    method = environ.get("REQUEST_METHOD", "")
    try:
        metrics.http_request(endpoint, method, status, seconds)
    except Exception:  # a metrics failure never fails a request
        log.warning("could not count a request", exc_info=True)
    fields = {"method": method, "route": seen.get("route"), "endpoint": endpoint, "status": status,
              "duration_ms": round(seconds * 1000, 1), "org_id": seen.get("org_id"), "user_id": seen.get("user_id")}
    if seen.get("api_key_id"):
        fields["api_key_id"] = seen["api_key_id"]
    log.info("%s %s %s %.1fms", method, seen.get("route") or "(no route)", status, seconds * 1000,
             extra={"request_id": request_id, "cg": {k: v for k, v in fields.items() if v is not None}})


@for_gateway_calls
def _note_request(response):
    """after_request (registered first, so it runs last): what the request
    line says besides status and time, known only inside Flask."""
    org, key = g.get("org"), g.get("api_key")
    user = g.get("_login_user")  # flask-login's, only when this request loaded it
    request.environ["cg.request"] = {
        "endpoint": request.endpoint,
        "route": request.url_rule.rule if request.url_rule is not None else None,
        "org_id": getattr(org, "id", None),
        "user_id": user.id if user is not None and getattr(user, "is_authenticated", False) else None,
        "api_key_id": getattr(key, "id", None),
        "streamed": response.is_streamed,
    }
    return response


def init_app(app: Flask) -> None:
    app.after_request(_note_request)
    app.wsgi_app = RequestObserver(app.wsgi_app)
    app.register_blueprint(bp)


# --- GET /metrics -------------------------------------------------------------------

@bp.get("/metrics")
@limiter.exempt
def scrape():
    """Prometheus's scrape. With CG_METRICS_TOKEN: only with that bearer token
    (401 otherwise). Without one: only straight from a loopback or private
    address, never through a proxy (a forwarded request answers 404, as does
    anyone else), so a server bound to a private network can be scraped as is."""
    token = current_app.config.get("CG_METRICS_TOKEN")
    if token:
        presented = request.headers.get("Authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Bearer {token}".encode()):
            return Response("A bearer token is required.\n", 401, {"WWW-Authenticate": 'Bearer realm="metrics"'},
                            mimetype="text/plain")
    elif not _private_caller():
        return Response("Not found.\n", 404, mimetype="text/plain")  # as if there were no such page
    from prometheus_client import CONTENT_TYPE_LATEST

    return Response(metrics.exposition(), 200, {"Cache-Control": "no-store"}, content_type=CONTENT_TYPE_LATEST)


def _private_caller() -> bool:
    if request.headers.get("X-Forwarded-For") or request.headers.get("Forwarded"):
        return False
    try:
        address = ipaddress.ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return address.is_loopback or any(address in network for network in _PRIVATE_NETWORKS)


# Where a private scraper may be: RFC 1918 and unique-local IPv6 (Python's
# is_private would also admit documentation and other reserved ranges).
_PRIVATE_NETWORKS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")]
