"""Optional error reports to Sentry (SENTRY_DSN), from the web process and
the task consumer alike: both call `init` with the same configuration, so
both have the Flask and Huey integrations. The Huey one adds a
`sentry_headers` argument to each task it enqueues (the trace to continue)
and the consumer's takes it out again; tasks/__init__.py also drops it for
a consumer started without Sentry, so a task never receives it.

No personal data leaves: send_default_pii stays off, no local variables are
sent, and before_send drops the request's cookies, credential headers, body,
query string and client address, the user, and any e-mail address or
credential-shaped string anywhere in the event."""
from __future__ import annotations

import re

from costguardian.observability.logs import redact

# Request headers that carry credentials (ours, the gateway's and the providers').
_SECRET_HEADERS = {"authorization", "cookie", "x-api-key", "x-csrftoken", "proxy-authorization", "api-key",
                   "x-goog-api-key", "x-forwarded-for", "x-real-ip", "forwarded"}
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_FILTERED = "[Filtered]"


def init(config) -> bool:
    """Start Sentry for this process when SENTRY_DSN is set (once per DSN:
    the consumer's app and its start-up hook both ask). True when it is on."""
    dsn = config.get("SENTRY_DSN")
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.integrations.huey import HueyIntegration

    from costguardian.services.platform.health import version

    client = sentry_sdk.get_client()
    if client.is_active() and str(client.dsn) == dsn:
        return True
    # send_default_pii is left unset, which means off (setting it at all is
    # deprecated since sentry-sdk 2.7x in favour of data_collection).
    sentry_sdk.init(dsn=dsn, integrations=[FlaskIntegration(), HueyIntegration()],
                    auto_enabling_integrations=False, include_local_variables=False,
                    before_send=scrub_event, before_breadcrumb=_scrub_breadcrumb,
                    release=f"costguardian@{version()}", environment=str(config.get("CG_ENV") or "development"))
    return True


def scrub_event(event: dict, hint=None) -> dict:
    """Sentry's before_send: nothing that identifies a person or opens a door."""
    request = event.get("request")
    if isinstance(request, dict):
        for field in ("cookies", "data", "query_string", "env"):
            request.pop(field, None)
        headers = request.get("headers")
        if isinstance(headers, dict):
            request["headers"] = {k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}
        if isinstance(request.get("url"), str):
            request["url"] = request["url"].split("?", 1)[0]
    event.pop("user", None)
    return _scrubbed(event)


def _scrub_breadcrumb(crumb: dict, hint=None) -> dict:
    return _scrubbed(crumb)


def _scrubbed(value):
    """Every string in the event without e-mail addresses or credentials."""
    if isinstance(value, str):
        return redact(_EMAIL.sub(_FILTERED, value))
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrubbed(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_scrubbed(v) for v in value)
    return value
