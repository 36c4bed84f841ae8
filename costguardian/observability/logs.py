"""Log lines: one JSON object per line in production (CG_LOG_FORMAT=json, the
default when CG_ENV=production), readable text in development. Every line
carries the request id of the request or task it belongs to.

What we log never holds a secret by construction (the request line names the
route's rule, never the raw path with its tokens; services log ids, not
keys). As a second guard, anything shaped like a credential that still
reaches a line (an API key, a bearer token, a webhook or provider secret) is
cut down to its prefix here."""
from __future__ import annotations

import json
import logging
import re
import sys
from datetime import datetime, timezone

from costguardian.observability import context

FORMATS = ("json", "text")

# Credentials by shape -> what of them may stay: the public part only.
_CREDENTIALS = [
    (re.compile(r"\b(cg_(?:live|test)_[a-z0-9]{12}_)[A-Za-z0-9_-]{8,}"), r"\1…"),  # our API keys: prefix kept
    (re.compile(r"\b(whsec_)[A-Za-z0-9_-]{8,}"), r"\1…"),  # webhook and Stripe signing secrets
    (re.compile(r"\b(sk-(?:ant-|proj-)?)[A-Za-z0-9_-]{8,}"), r"\1…"),  # OpenAI / Anthropic keys
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), r"\1…"),
]


def redact(text: str) -> str:
    for pattern, replacement in _CREDENTIALS:
        text = pattern.sub(replacement, text)
    return text


def message_of(record: logging.LogRecord) -> str:
    """The record's message; peewee's DEBUG query lines keep the SQL but not
    the parameters, which hold whatever the rows hold (an email with a reset
    link, a session key, a ciphertext)."""
    if record.name == "peewee" and isinstance(record.msg, tuple) and len(record.msg) == 2:
        sql, params = record.msg
        return f"{sql} -- {len(params or ())} parameters"
    return record.getMessage()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC), level, logger, message, the
    request id and task when known, the request line's fields, the traceback."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
                            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": message_of(record),
        }
        request_id = getattr(record, "request_id", None) or context.request_id.get()
        if request_id:
            line["request_id"] = request_id
        task = context.task_name.get()
        if task:
            line["task"] = task
        line.update(getattr(record, "cg", None) or {})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return redact(json.dumps(line, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """Development: `time LEVEL [request id] logger: message`."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s [%(cg_request_id)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.cg_request_id = context.request_id.get() or "-"
        if record.name == "peewee":
            record = logging.makeLogRecord({**record.__dict__, "msg": message_of(record), "args": ()})
        return redact(super().format(record))


class _StderrHandler(logging.StreamHandler):
    """A stream handler on whatever sys.stderr is now (a test's capture may
    replace it), marked as ours so that configuring again replaces it."""

    cg_handler = True

    def __init__(self):
        super().__init__()

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def formatter_for(name: str) -> logging.Formatter:
    return JsonFormatter() if name == "json" else TextFormatter()


def chosen_format(config) -> str:
    """CG_LOG_FORMAT, else json in production and text elsewhere."""
    name = str(config.get("CG_LOG_FORMAT") or "").lower()
    if name:
        return name
    return "json" if config.get("CG_ENV") == "production" else "text"


def configure(config) -> None:
    """Root logger: one handler of ours on stderr with the chosen format and
    CG_LOG_LEVEL (replacing ours from an earlier call, leaving others')."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "cg_handler", False)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(formatter_for(chosen_format(config)))
    root.addHandler(handler)
    root.setLevel(str(config.get("CG_LOG_LEVEL") or "INFO").upper())


def configure_consumer(config) -> None:
    """In the task consumer: our handler on the root logger, and huey's own
    handler (stderr or --logfile) given our format; huey's lines stop there
    instead of reaching the root handler a second time."""
    configure(config)
    huey_logger = logging.getLogger("huey")
    if huey_logger.handlers:
        for handler in huey_logger.handlers:
            handler.setFormatter(formatter_for(chosen_format(config)))
        huey_logger.propagate = False
