"""The gateway's proxy: one call from an OpenAI- or Anthropic-style request
to the provider and back.

    reply = proxy.handle(org, api_key, "chat.completions", body, headers, request_id)
    # the view sends reply.body, then calls reply.finish() (recording)

Steps: parse the body, attribute the call (attribution), pick the provider,
credential and URL (routing), hold its budget (admission.admit, 429 in the
caller's format when a hard budget has no room), forward it with the
provider's own authentication, and answer with the provider's own status,
body and retry headers — or a stream relayed event by event (streams).
Errors the gateway itself answers are in the caller's wire format: 400/404
before forwarding, 504 when the provider timed out, 502 when it could not be
reached. `finish`, run after the answer was sent, records the call
(recording) and then settles the admission.
"""
from __future__ import annotations

import dataclasses
import http.cookiejar
import json
import logging
import math
import os
import threading
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
from flask import current_app
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.exceptions import ConnectTimeoutError, HTTPError as Urllib3Error, NewConnectionError, ReadTimeoutError

from costguardian import clock
from costguardian.observability import metrics
from costguardian.services.gateway import (admission, anthropic_wire, attribution, openai_wire, recording,
                                           request_log, routing, streams, translate, upstream)
from costguardian.services.gateway.providers import ANTHROPIC, OPENAI
from costguardian.services.gateway.recording import CallRecord
from costguardian.services.notifications import webhook_urls
from costguardian.services.usage.ingest import storable

log = logging.getLogger(__name__)

USER_AGENT = "CostGuardian-Gateway/1"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 600.0  # between two bytes of an answer: as long as the OpenAI SDK waits
# The provider's headers the caller gets back: its retry advice, rate-limit state and request id.
PASSED_HEADERS = ("retry-after", "retry-after-ms", "x-should-retry", "x-request-id", "request-id",
                  "openai-processing-ms")
PASSED_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
# The caller's headers the provider gets: versions and betas of its API, nothing else.
CALLER_HEADERS = {ANTHROPIC: ("anthropic-version", "anthropic-beta"), OPENAI: ("openai-beta",)}
# Providers that refuse `stream_options` (they report usage in the last chunk anyway).
NO_STREAM_OPTIONS = {"mistral"}
STREAMING_KINDS = ("chat", "completions", "responses", "messages")


@dataclass
class Reply:
    status: int
    body: bytes | Iterable[bytes]
    headers: dict[str, str]
    content_type: str = "application/json"
    finish: Callable[[], None] | None = None  # run after the answer was sent
    record: CallRecord | None = None  # what is known of the call (complete once `finish` ran)


def new_request_id() -> str:
    return "gw_" + uuid.uuid4().hex


def error_reply(wire: str, status: int, message: str, request_id: str, *, code: str | None = None,
                kind: str | None = None, headers: dict | None = None, param: str | None = None) -> Reply:
    """An error the gateway answers itself, in the caller's wire format
    (`param`: the request parameter at fault, where OpenAI's shape has a place for it)."""
    if wire == ANTHROPIC:
        body = anthropic_wire.error_body(status, message, kind=kind, request_id=request_id)
    else:
        body = openai_wire.error_body(status, message, code=code, kind=kind, param=param)
    return Reply(status, json.dumps(body).encode(), {"X-CG-Request-Id": request_id, **(headers or {})})


def organization_refusal(org) -> tuple[str, str] | None:
    """(code, message) when the organization may not call through the gateway
    at all now: suspended by the platform's administrators, or on a plan (or a
    feature override) without the gateway. Every caller of `handle` asks this
    first: the SDK endpoints, the onboarding test call, the chat."""
    from costguardian.services.billing import limits
    from costguardian.services.platform import orgs as platform_orgs

    if org.suspended_at is not None:
        return "organization_suspended", platform_orgs.suspension_detail(org)
    refusal = limits.gateway_refusal(org)
    return ("plan_limit", refusal) if refusal else None


def handle(org, api_key, endpoint_name: str, raw_body: bytes, headers: Mapping[str, str], request_id: str,
           extra_tags: tuple[str, ...] = ()) -> Reply:
    """One call through the gateway. `extra_tags`: tags the product itself
    adds (the chat's `source:chat`; a caller's headers may not set `source:`),
    counted by admission and recorded like the caller's."""
    exchange = _Exchange(org, api_key, routing.ENDPOINTS[endpoint_name], headers, request_id)
    exchange.extra_tags = tuple(extra_tags)
    try:
        reply = exchange.run(raw_body)
        reply.record = exchange.record
        return reply
    except Exception:
        log.exception("gateway request %s failed inside the gateway", request_id)
        exchange.abandon()
        return error_reply(exchange.endpoint.wire, 500, "The gateway failed unexpectedly; the error was logged.",
                           request_id)


# --- one call ------------------------------------------------------------------------

_sessions: dict[bool, requests.Session] = {}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
_sessions_lock = threading.Lock()
# Connections kept open to one provider host: as many as calls can be in
# flight in a worker (gunicorn.conf.py's threads), so none is opened per call.
POOL_SIZE = 256


def _session(guarded: bool) -> requests.Session:
    """The session every thread of the process shares (keep-alive to the
    providers from one pool: a session per thread kept a connection per
    thread, and a call landing on a thread without one paid a new TCP
    connection); for admin-typed URLs the SSRF-guarded one (the peer checked
    on connect). Cookies are refused: one organization's provider must not
    set what is sent with another's calls."""
    session = _sessions.get(guarded)
    if session is None:
        with _sessions_lock:
            session = _sessions.get(guarded)
            if session is None:
                if guarded:
                    session = webhook_urls.session(pool_maxsize=POOL_SIZE)
                else:
                    session = requests.Session()
                    # The environment's CA bundle read once (requests reads it per call in
                    # Session.request, which _post skips); its proxy variables only when set
                    # (then requests applies them, no_proxy included, per URL).
                    session.trust_env = any(os.environ.get(name) for name in PROXY_VARIABLES)
                    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
                    adapter = requests.adapters.HTTPAdapter(pool_connections=webhook_urls.POOL_HOSTS,
                                                            pool_maxsize=POOL_SIZE)
                    session.mount("http://", adapter)
                    session.mount("https://", adapter)
                session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
                _sessions[guarded] = session
    return session


_prepared_urls: dict[str, str] = {}
PREPARED_URLS = 4096
_pool_manager: urllib3.PoolManager | None = None


def _pool() -> urllib3.PoolManager:
    """The connections every thread of the process shares to the providers
    when neither the SSRF guard nor a proxy applies (see _post)."""
    global _pool_manager
    if _pool_manager is None:
        with _sessions_lock:
            if _pool_manager is None:
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or DEFAULT_CA_BUNDLE_PATH
                where = {"ca_cert_dir": bundle} if os.path.isdir(bundle) else {"ca_certs": bundle}
                _pool_manager = urllib3.PoolManager(num_pools=webhook_urls.POOL_HOSTS, maxsize=POOL_SIZE,
                                                    retries=False, cert_reqs="CERT_REQUIRED", **where)
    return _pool_manager


def _post(guarded: bool, url: str, body: bytes, headers: dict, timeouts: tuple[float, float]):
    """`_session(guarded).post(url, data=body, headers=headers, stream=True, timeout=timeouts,
    allow_redirects=False)`.

    Straight on urllib3 (the library requests sends with) when the session
    adds nothing to it: not the SSRF-guarded one (its adapter checks each
    peer) and no proxy variable set. requests' Session.send and adapter
    (hooks, cookie extraction twice, proxy and certificate lookups, the
    Response built around urllib3's) were about 5% of a call's CPU. The
    answer (_Answer) has the names of requests.Response the gateway reads,
    and failures raise requests' exceptions, as before."""
    session = _session(guarded)
    if not guarded and not session.trust_env:
        timeout = urllib3.Timeout(connect=timeouts[0], read=timeouts[1])
        try:
            raw = _pool().urlopen("POST", url, body=body, headers=headers, preload_content=False, redirect=False,
                                  retries=False, timeout=timeout)
        except NewConnectionError as exc:  # (a ConnectTimeoutError too, for urllib3's old callers)
            raise requests.ConnectionError(exc) from exc
        except ConnectTimeoutError as exc:
            raise requests.ConnectTimeout(exc) from exc
        except ReadTimeoutError as exc:
            raise requests.ReadTimeout(exc) from exc
        except (Urllib3Error, OSError) as exc:
            raise requests.ConnectionError(exc) from exc
        return _Answer(raw)
    return _post_with_requests(session, url, body, headers, timeouts)


class _Answer:
    """An upstream answer read through urllib3 with the names of
    requests.Response that the gateway reads: status_code, headers (merged
    like requests' when a name repeats), content (read once; a failure while
    reading raises requests.ConnectionError wrapping urllib3's error, as
    requests does), raw (the stream), close() (requests' way: the
    connection goes back to the pool once the body was read, else it is
    closed)."""

    __slots__ = ("raw", "status_code", "headers", "_content")

    def __init__(self, raw: urllib3.BaseHTTPResponse):
        self.raw, self.status_code = raw, raw.status
        self.headers = CaseInsensitiveDict(raw.headers.itermerged())
        self._content: bytes | None = None

    @property
    def content(self) -> bytes:
        if self._content is None:
            try:
                self._content = self.raw.read()
            except (Urllib3Error, OSError) as exc:
                raise requests.ConnectionError(exc) from exc
        return self._content

    def close(self) -> None:
        if self._content is None:
            self.raw.close()
        self.raw.release_conn()


def _post_with_requests(session: requests.Session, url: str, body: bytes, headers: dict,
                        timeouts: tuple[float, float]):
    """_post through the session, without Session.request's merging of the
    session's params, cookies, auth and hooks into every call (the gateway's
    sessions set none of them). The URL is prepared (IDNA, quoting) once."""
    prepared = requests.PreparedRequest()
    prepared.method = "POST"
    prepared.url = _prepared_urls.get(url)
    if prepared.url is None:
        prepared.prepare_url(url, None)
        if len(_prepared_urls) >= PREPARED_URLS:
            _prepared_urls.clear()
        _prepared_urls[url] = prepared.url
    prepared.prepare_headers(headers)
    prepared.prepare_body(body, None)
    prepared.prepare_hooks({})
    return session.send(prepared, stream=True, timeout=timeouts, allow_redirects=False)


class _Exchange:
    def __init__(self, org, api_key, endpoint: routing.Endpoint, headers: Mapping[str, str], request_id: str):
        self.org, self.api_key, self.endpoint, self.headers = org, api_key, endpoint, headers
        self.request_id = request_id
        self.started = clock.monotonic()
        self.record = CallRecord(request_id, org, api_key, endpoint.name, clock.now())
        self.admission: admission.Admission | None = None
        self.extra_tags: tuple[str, ...] = ()
        self.body: dict = {}
        self.route: routing.Route | None = None
        self.relay: streams.Relay | None = None
        self.reader: streams.Reader | None = None
        config = current_app.config
        self.timeouts = (float(config.get("CG_GATEWAY_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT),
                         float(config.get("CG_GATEWAY_READ_TIMEOUT") or DEFAULT_READ_TIMEOUT))
        self.private_allowed = webhook_urls.private_allowed()

    @property
    def wire(self) -> str:
        return self.endpoint.wire

    # --- before forwarding

    def run(self, raw_body: bytes) -> Reply:
        if self.endpoint.records:  # the bodies, when the organization logs requests (request_log)
            self.record.bodies = request_log.capture(self.org, raw_body)
        try:
            body = json.loads(raw_body or b"null")
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            return self.refuse(400, "We could not parse the JSON body of your request: send one JSON object.",
                               "invalid_json")
        self.body = body
        self.record.requested_model = str(body.get("model") or "")[:200]
        if self.endpoint.kind in STREAMING_KINDS and not isinstance(body.get("stream"), (bool, type(None))):
            # As the providers refuse it: a truthy `stream: 1` would be streamed by a lenient
            # server while the gateway waited for one JSON answer (a 502).
            return self.refuse(400, "Invalid type for `stream`: expected a boolean.", "invalid_type", param="stream")
        if isinstance(body.get("model"), str) and not storable(body["model"]):
            # A NUL or a lone surrogate: the call could be forwarded but never recorded.
            self.record.requested_model = (self.record.requested_model.replace("\x00", "")
                                           .encode("utf-8", "replace").decode("utf-8"))
            return self.refuse(400, "Invalid value for `model`: it contains a NUL or an unpaired surrogate.",
                               "invalid_value", param="model")
        try:
            who = attribution.from_request(self.org, self.api_key, self.headers, body)
        except attribution.AttributionError as exc:
            return self.refuse(exc.status, exc.message, exc.code)
        if self.extra_tags:
            who = dataclasses.replace(who, tags=[*who.tags, *(t for t in self.extra_tags if t not in who.tags)])
        self.record.user, self.record.department, self.record.tags = who.user, who.department, who.tags
        try:
            self.route = route = routing.resolve(self.org, self.endpoint, body.get("model"))
        except routing.RouteError as exc:
            return self.refuse(exc.status, exc.message, exc.code)
        self.record.provider, self.record.model = route.pricing_provider, route.pricing_model
        self.record.credential_id = route.credential.id
        if self.record.bodies is not None:
            self.record.bodies.secret = route.credential.secret or ""  # redacted from what is kept
        stream = body.get("stream") is True and self.endpoint.kind in STREAMING_KINDS
        try:
            outgoing, caller_wants_usage = self.upstream_body(body, route, stream)
        except translate.Unsupported as exc:  # a parameter the provider's format has no place for
            return self.refuse(400, exc.message, exc.code, param=exc.param)
        if self.endpoint.records:
            refusal = self.admit(who)
            if refusal is not None:
                return refusal
        return self.forward(outgoing, stream, caller_wants_usage)

    def upstream_body(self, body: dict, route: routing.Route, stream: bool) -> tuple[dict, bool]:
        outgoing = {**body, "model": routing.upstream_model(route, self.endpoint)}
        if route.translation:  # the provider's format (translate); the caller's body stays the one admitted
            outgoing = translate.request(route, outgoing)
        caller_wants_usage = True
        if stream and route.endpoint.kind in ("chat", "completions"):
            options = outgoing.get("stream_options") if isinstance(outgoing.get("stream_options"), dict) else {}
            caller_wants_usage = bool(options.get("include_usage"))
            if not caller_wants_usage and route.provider.key not in NO_STREAM_OPTIONS:
                outgoing["stream_options"] = {**options, "include_usage": True}
        return outgoing, caller_wants_usage

    def admit(self, who: attribution.Attribution) -> Reply | None:
        # The model priced: for Azure the one its deployment runs (the upstream is asked by deployment).
        call = admission.Call(org=self.org, api_key=self.api_key, provider=self.route.pricing_provider,
                              model=self.route.pricing_model, user=who.user_for(self.api_key),
                              department_id=who.department_id, tags=["source:gateway", *who.tags], body=self.body)
        try:
            self.admission = admission.admit(call)
        except admission.Blocked as exc:
            headers = {"x-should-retry": "false"}  # the SDKs' retries would only be refused again
            if exc.resets_at is not None:
                headers["retry-after"] = str(max(1, math.ceil((exc.resets_at - clock.now()).total_seconds())))
            return self.refuse(429, exc.message, "budget_exceeded", outcome=recording.BLOCKED, headers=headers,
                               kind="insufficient_quota" if self.wire == OPENAI else None)
        except admission.Unavailable as exc:
            return self.refuse(503, exc.message, "budget_check_unavailable", outcome=recording.BLOCKED)
        return None

    def refuse(self, status: int, message: str, code: str, *, outcome: str = recording.REFUSED,
               headers: dict | None = None, kind: str | None = None, param: str | None = None) -> Reply:
        reply = error_reply(self.wire, status, message, self.request_id, code=code, kind=kind, headers=headers,
                            param=param)
        self.record.status_code, self.record.outcome, self.record.error = status, outcome, f"{code}: {message}"
        self.record.latency_ms = self.elapsed_ms()
        reply.finish = self.finish if self.endpoint.records else None
        if self.record.bodies is not None:
            self.record.bodies.take_answer(reply.body)
        return reply

    # --- forwarding

    def forward(self, outgoing: dict, stream: bool, caller_wants_usage: bool) -> Reply:
        route = self.route
        url = routing.upstream_url(route, self.endpoint)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json",
                   "Accept-Encoding": "identity", "User-Agent": USER_AGENT, **routing.upstream_headers(route)}
        for name in CALLER_HEADERS.get(route.provider.wire, ()):
            if self.headers.get(name):
                headers[name] = self.headers[name]
        guarded = route.provider.custom_base_url and not self.private_allowed
        self.record.forwarded = self.endpoint.records
        metrics.gateway_overhead(clock.monotonic() - self.started)
        try:
            response = _post(guarded, url, json.dumps(outgoing).encode(), headers, self.timeouts)
        except requests.Timeout:
            return self.upstream_failed(504, recording.TIMEOUT, f"{route.provider.label} did not answer within "
                                        f"{self.timeouts[1]:g} s.", "upstream_timeout")
        except webhook_urls.ForbiddenAddress as exc:
            return self.upstream_failed(502, recording.UNREACHABLE, f"{exc} Only public addresses are called.",
                                        "upstream_unreachable")
        except requests.RequestException as exc:
            return self.upstream_failed(502, recording.UNREACHABLE, f"Could not connect to {route.provider.label} "
                                        f"({_host(url)}): {_reason(exc)}.", "upstream_unreachable")
        content_type = response.headers.get("Content-Type", "")
        if stream and response.status_code < 300 and content_type.startswith("text/event-stream"):
            return self.relay_stream(response, content_type, caller_wants_usage)
        return self.whole_answer(response, content_type)

    def upstream_failed(self, status: int, outcome: str, message: str, code: str) -> Reply:
        return self.refuse(status, message, code, outcome=outcome)

    def whole_answer(self, response: requests.Response | _Answer, content_type: str) -> Reply:
        try:
            content = response.content
        except requests.RequestException as exc:
            # requests reports a read timeout inside the body as a ConnectionError wrapping urllib3's.
            if isinstance(exc, requests.Timeout) or any(isinstance(a, ReadTimeoutError) for a in exc.args):
                return self.upstream_failed(504, recording.TIMEOUT, f"{self.route.provider.label} stopped sending "
                                            "the answer (read timed out).", "upstream_timeout")
            return self.upstream_failed(502, recording.UPSTREAM_ERROR, f"{self.route.provider.label} closed the "
                                        "connection before the answer was complete.", "upstream_disconnected")
        finally:
            response.close()
        record = self.record
        record.status_code, record.latency_ms = response.status_code, self.elapsed_ms()
        status = response.status_code
        if response.status_code < 300:
            if not self.read_answer(content):  # a success that is not an answer: the caller gets a clear error
                self.record.outcome, self.record.status_code = recording.UPSTREAM_ERROR, 502
                message = (f"{self.route.provider.label} answered HTTP {response.status_code} without a JSON "
                           f"object ({content_type or 'no content type'}, {len(content)} bytes).")
                self.record.error = f"upstream_invalid_answer: {message}"
                reply = error_reply(self.wire, 502, message, self.request_id, code="upstream_invalid_answer",
                                    headers=self.passed_headers(response))
                if record.bodies is not None:
                    record.bodies.take_answer(content)
                reply.finish = self.finish if self.endpoint.records else None
                return reply
            if self.route.translation:  # read as the provider answered, sent as the caller asked
                status, content = translate.answer(self.route, content)
                content_type = "application/json"
        else:
            secret = self.route.credential.secret
            record.outcome = recording.UPSTREAM_ERROR
            record.error = f"HTTP {response.status_code}: " + upstream.provider_message(content, secret)
            if len(secret) >= 8:  # the organization's provider key is not the caller's to see
                content = content.replace(secret.encode(), ("…" + secret[-4:]).encode())
            if self.route.translation:  # the provider's status and retry headers, the caller's error shape
                content, content_type = translate.error(self.route, response.status_code, content), "application/json"
        if record.bodies is not None:
            record.bodies.take_answer(content)
        return Reply(status, content, self.passed_headers(response),
                     content_type or "application/json", self.finish if self.endpoint.records else None)

    def read_answer(self, content: bytes) -> bool:
        """Read the usage of a successful answer; False when it is not a JSON
        object (its usage then estimated from the prompt: the provider may bill it)."""
        try:
            answer = json.loads(content)
        except (ValueError, RecursionError):
            answer = None
        if not self.endpoint.records:
            return isinstance(answer, dict) or not content.strip()
        valid = isinstance(answer, dict)
        answer = answer if valid else {}
        if isinstance(answer.get("model"), str) and answer["model"]:
            self.record.model = answer["model"]  # what served the call (a dated version, Azure's model)
        called = self.route.endpoint  # the provider's own format, translated or not
        wire_module = anthropic_wire if called.wire == ANTHROPIC else openai_wire
        usage = wire_module.answer_usage(answer)
        if usage is None:
            self.record.usage_estimated = True
            usage = (anthropic_wire.estimated_answer_usage(answer, self.input_estimate()) if called.wire == ANTHROPIC
                     else openai_wire.estimated_answer_usage(called.kind, answer, self.input_estimate()))
        self.record.usage = usage
        return valid

    def relay_stream(self, response: requests.Response | _Answer, content_type: str,
                     caller_wants_usage: bool) -> Reply:
        kind = self.route.endpoint.kind
        if self.route.translation:  # the provider's events read for usage, relayed in the caller's format
            self.reader = translate.stream_reader(self.route, self.body)
        elif kind == "messages":
            self.reader = anthropic_wire.MessagesStream()
        elif kind == "responses":
            self.reader = openai_wire.ResponsesStream()
        else:
            self.reader = openai_wire.ChatStream(caller_wants_usage)
        self.relay = streams.Relay(response, self.reader, self.started, capture=self.record.bodies)
        self.record.streamed, self.record.status_code = True, response.status_code
        headers = {**self.passed_headers(response), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Reply(response.status_code, self.relay, headers, content_type, self.finish)

    def passed_headers(self, response: requests.Response | _Answer) -> dict[str, str]:
        passed = {name: value for name, value in response.headers.items()
                  if name.lower() in PASSED_HEADERS or name.lower().startswith(PASSED_PREFIXES)}
        passed["X-CG-Request-Id"] = self.request_id
        return passed

    # --- after the answer was sent

    def finish(self) -> None:
        """Record the call and release its budget reservation (together:
        recording.record)."""
        try:
            if self.relay is not None:
                self.read_stream()
            recording.record(self.record, self.admission)
            self.admission = None  # released by the recording (or, if that failed, expiring)
        except Exception:
            log.exception("recording gateway request %s failed", self.request_id)
        finally:
            self.settle()

    def read_stream(self) -> None:
        relay, reader, record = self.relay, self.reader, self.record
        relay.close()
        record.latency_ms, record.ttft_ms = relay.latency_ms, relay.ttft_ms
        if reader.model:
            record.model = reader.model
        if reader.final:
            record.usage = reader.usage
        else:  # cut short, or a provider that never reports usage in a stream: what was seen
            record.usage, record.usage_estimated = reader.estimated_usage(self.input_estimate()), True
        if relay.failure:
            record.outcome = recording.TIMEOUT if relay.failure == "timeout" else recording.UPSTREAM_ERROR
            record.error = f"stream broken: {relay.failure}"
        elif reader.error:
            record.outcome, record.error = recording.UPSTREAM_ERROR, reader.error
        elif not relay.completed and not reader.final:  # the caller went away mid-stream
            record.outcome = recording.CANCELLED

    def settle(self) -> None:
        if self.admission is not None:
            admission.settle(self.admission)
            self.admission = None

    def abandon(self) -> None:
        """The gateway failed: release what the call holds."""
        if self.relay is not None:
            self.relay.close()
        self.settle()

    # --- helpers

    def input_estimate(self) -> int:
        if self.admission is not None and self.admission.input_tokens_estimate:
            return self.admission.input_tokens_estimate
        prompt = [self.body.get(k) for k in ("system", "instructions", "messages", "prompt", "input")]
        return max(1, math.ceil(len(json.dumps(prompt, ensure_ascii=False)) / 4))

    def elapsed_ms(self) -> int:
        return int((clock.monotonic() - self.started) * 1000)


def _host(url: str) -> str:
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused"
    if any(s in text for s in ("Name or service not known", "nodename nor servname",
                               "Temporary failure in name resolution", "No address associated")):
        return "the host name does not resolve"
    if "RemoteDisconnected" in text or "Connection aborted" in text or "reset by peer" in text:
        return "the server closed the connection without answering"
    return "the connection failed"

