"""The request id of the work in progress: set by the web process for each
request (from a sane incoming X-Request-Id, else generated), carried with
every task the request enqueues, and set again while the consumer runs that
task, so that every log line of both carries it."""
from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

request_id: ContextVar[str | None] = ContextVar("cg_request_id", default=None)
task_name: ContextVar[str | None] = ContextVar("cg_task_name", default=None)

# What a client may choose as its request id: a short token, nothing a log
# reader could mistake for structure (no spaces, quotes or control characters).
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")

# The keyword argument a task message carries the id in; the queue's
# pre-execute hook takes it out before the task function is called.
TASK_KWARG = "cg_request_id"


def new_request_id() -> str:
    return uuid.uuid4().hex


def chosen_or_new(incoming: str | None) -> str:
    """The caller's X-Request-Id when it is a sane token, else a new id."""
    if incoming and _SANE.fullmatch(incoming):
        return incoming
    return new_request_id()
