"""The LLM gateway's endpoints: OpenAI-compatible under /v1/ and
Anthropic-compatible under /anthropic/v1/, so the official SDKs work with
only `base_url` and `api_key` changed.

Authenticated by a Cost Guardian API key with the `gateway` scope, sent as
`Authorization: Bearer cg_…` (the OpenAI SDK) or `x-api-key: cg_…` (the
Anthropic SDK); every error, the gateway's own included, is in the caller's
provider's error format, never problem+json. Each answer carries
`X-CG-Request-Id`. The call is recorded after the answer was sent
(`call_on_close`), so recording adds nothing to the caller's wait.
"""
from __future__ import annotations

import functools
import json
import logging
import threading
import weakref

from flask import Blueprint, current_app, g, request

from costguardian import settings_cache, web
from costguardian.extensions import csrf, db
from costguardian.services import keys
from costguardian.services.gateway import models_list, proxy, ratelimits, recording
from costguardian.services.gateway.providers import ANTHROPIC, OPENAI

log = logging.getLogger(__name__)

bp = Blueprint("gateway", __name__)
csrf.exempt(bp)

MAX_BODY = 32 * 1024 * 1024  # prompts with images: Anthropic takes up to 32 MB
MISSING_KEY = ("Send your Cost Guardian gateway key as 'Authorization: Bearer cg_…' (the OpenAI SDK's api_key) "
               "or 'x-api-key: cg_…' (the Anthropic SDK's api_key).")


@bp.before_request
def _allow_prompt_sized_bodies():
    request.max_content_length = MAX_BODY


def _send(reply: proxy.Reply):
    admitted = g.get("gateway_limits")
    if admitted is not None:  # x-ratelimit-* of the key's and organization's limits (ratelimits)
        ratelimits.merge_headers(reply.headers, admitted.headers)
    response = current_app.response_class(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers.items():
        response.headers[name] = value
    if reply.finish is not None:
        after = _AfterSend(current_app._get_current_object(), reply.finish)
        response.call_on_close(after)
        # Werkzeug's development server skips close() when the caller reset the
        # connection (the OpenAI SDK closes right after `data: [DONE]`); the
        # answer is then freed as the request ends, so this finishes the call.
        weakref.finalize(response, _finish_collected, after).atexit = False
    return response


class _AfterSend:
    """Finish a call once, after its answer was sent (or the caller went
    away): outside the request, so with its own app context and database
    connection."""

    def __init__(self, app, finish):
        self.app, self.finish = app, finish
        self.lock = threading.Lock()
        self.done = False

    def __call__(self) -> None:
        with self.lock:
            if self.done:
                return
            self.done = True
        _after_send(self.app, self.finish)


def _finish_collected(after: _AfterSend) -> None:
    """The response was garbage-collected: finish the call unless its close()
    did. The collecting thread may be anywhere: inside a transaction of its
    own or writing a batch of recordings, which the call must not join (or
    wait for) — then on a thread of its own; otherwise at once, as the
    request's objects are released."""
    if after.done:
        return
    if recording.writing_here() or (not db.is_closed() and db.in_transaction()):
        threading.Thread(target=after, name="gateway-finish", daemon=True).start()
    else:
        after()


def _after_send(app, finish) -> None:
    try:
        with app.app_context():
            # A connection only if the finish needs one (a call whose recording another
            # thread writes does not: recording's group commit), returned afterwards.
            was_open = not db.is_closed()
            try:
                finish()
            finally:
                if not was_open and not db.is_closed():
                    db.close()
    except Exception:
        log.exception("finishing a gateway call failed")


def _presented_key() -> str | None:
    """The key as an Authorization value, from either header."""
    authorization = request.headers.get("Authorization", "").strip()
    x_api_key = request.headers.get("x-api-key", "").strip()
    if x_api_key.startswith("cg_") or (x_api_key and not authorization):
        return f"Bearer {x_api_key}"
    return authorization or None


def gateway_key_required(wire: str):
    """The view needs an API key with the `gateway` scope (g.api_key, g.org);
    refusals are in the provider's error format of `wire`."""

    def decorate(view):
        @functools.wraps(view)
        def wrapped(*args, **kwargs):
            g.gateway_request_id = proxy.new_request_id()
            presented = _presented_key()
            try:
                key = keys.authenticate(presented, "gateway")
            except keys.ApiKeyError as exc:
                detail = MISSING_KEY if presented is None else exc.detail
                return _send(proxy.error_reply(wire, exc.status, detail, g.gateway_request_id,
                                               code=exc.problem.replace("-", "_")))
            g.api_key, g.org = key, key.organization
            # Suspended, or a plan without the gateway (the organization row came with the key).
            refusal = proxy.organization_refusal(key.organization)
            if refusal:
                code, message = refusal
                return _send(proxy.error_reply(wire, 403, message, g.gateway_request_id, code=code))
            try:
                g.gateway_limits = ratelimits.admit(key.organization, key)
            except ratelimits.Limited as exc:  # not forwarded, not recorded (ratelimits)
                return _send(proxy.error_reply(wire, 429, exc.message, g.gateway_request_id,
                                               code="rate_limit_exceeded", headers=exc.headers,
                                               kind=exc.kind if wire == OPENAI else "rate_limit_error"))
            # The organization's budgets, credentials, aliases and prices as kept by this
            # process, if its settings have not changed since (settings_cache: one read).
            with settings_cache.pinned(key.organization_id, getattr(key, "settings_version", None)):
                return view(*args, **kwargs)

        wrapped.required_scope = "gateway"
        wrapped.api_key_auth = True
        wrapped.gateway_wire = wire
        return wrapped

    return decorate


def _forward(endpoint: str):
    headers = {name.lower(): value for name, value in request.headers.items()}
    reply = proxy.handle(g.org, g.api_key, endpoint, request.get_data(cache=False), headers, g.gateway_request_id)
    admitted = g.get("gateway_limits")
    if admitted is not None and admitted.token_limits and reply.finish is not None:
        reply.finish = _counting_tokens(reply.finish, admitted, reply)
    return _send(reply)


def _counting_tokens(finish, admitted, reply: proxy.Reply):
    """The call's finish, then its actual tokens added to its token limits."""

    def finish_and_count():
        try:
            finish()
        finally:
            admitted.charge(ratelimits.tokens_of(reply.record))

    return finish_and_count


def _listing(body: dict, status: int = 200):
    return _send(proxy.Reply(status, json.dumps(body).encode(), {"X-CG-Request-Id": g.gateway_request_id}))


# --- OpenAI-compatible ---------------------------------------------------------------

@bp.post("/v1/chat/completions")
@gateway_key_required(OPENAI)
def chat_completions():
    return _forward("chat.completions")


@bp.post("/v1/completions")
@gateway_key_required(OPENAI)
def completions():
    return _forward("completions")


@bp.post("/v1/embeddings")
@gateway_key_required(OPENAI)
def embeddings():
    return _forward("embeddings")


@bp.post("/v1/responses")
@gateway_key_required(OPENAI)
def responses():
    return _forward("responses")


@bp.get("/v1/models")
@gateway_key_required(OPENAI)
def openai_models():
    return _listing(models_list.openai_models(g.org))


@bp.get("/v1/models/<path:model>")
@gateway_key_required(OPENAI)
def openai_model(model):
    status, body = models_list.openai_model(g.org, model)
    return _listing(body, status)


# --- Anthropic-compatible ------------------------------------------------------------

@bp.post("/anthropic/v1/messages")
@gateway_key_required(ANTHROPIC)
def messages():
    return _forward("messages")


@bp.post("/anthropic/v1/messages/count_tokens")
@gateway_key_required(ANTHROPIC)
def count_tokens():
    return _forward("messages.count_tokens")


@bp.get("/anthropic/v1/models")
@gateway_key_required(ANTHROPIC)
def anthropic_models():
    return _listing(models_list.anthropic_models(g.org))


@bp.get("/anthropic/v1/models/<path:model_id>")
@gateway_key_required(ANTHROPIC)
def anthropic_model(model_id):
    status, body = models_list.anthropic_model(g.org, model_id)
    return _listing(body, status)


# --- errors outside the views (unknown path, wrong method, body too large) ------------

def _error_in(wire: str):
    def render(status: int, detail: str):
        request_id = g.get("gateway_request_id") or proxy.new_request_id()
        return _send(proxy.error_reply(wire, status, detail or "The request failed.", request_id))
    return render


web.ERROR_FORMATS.update({"/v1/": _error_in(OPENAI), "/anthropic/": _error_in(ANTHROPIC)})
