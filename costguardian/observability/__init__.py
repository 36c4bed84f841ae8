"""Observability: structured logs carrying a request id (also into the tasks
a request enqueues), Prometheus metrics at /metrics, and Sentry.
docs/OPERATIONS.md "Observability" is the operator's side of it."""
from __future__ import annotations

from flask import Flask

from costguardian.config import ConfigError
from costguardian.observability import http, logs, sentry


def init_app(app: Flask) -> None:
    """Before web.init_app: the request line's after_request hook must be the
    first registered, so that it runs last and sees the final answer."""
    name = logs.chosen_format(app.config)
    if name not in logs.FORMATS:
        raise ConfigError(f"CG_LOG_FORMAT must be json or text, got {name!r}")
    # The test suite's own log capture stays as it is unless a test asks for a format.
    if not app.config.get("TESTING") or app.config.get("CG_LOG_FORMAT"):
        logs.configure(app.config)
    sentry.init(app.config)
    http.init_app(app)
