"""Helpers for the observability tests: the log lines the process writes,
captured as JSON like production writes them, and Prometheus samples."""
from __future__ import annotations

import contextlib
import io
import json
import logging

from costguardian.observability.logs import JsonFormatter


class CapturedLogs:
    def __init__(self):
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@contextlib.contextmanager
def captured_logs(level: int = logging.DEBUG):
    """Every record any logger sends to the root (app, werkzeug, huey, the
    libraries), formatted by the production JSON formatter, at `level`."""
    captured = CapturedLogs()
    handler = logging.StreamHandler(captured.stream)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(level)
    root = logging.getLogger()
    huey_logger = logging.getLogger("huey")
    previous = root.level, huey_logger.propagate
    root.addHandler(handler)
    root.setLevel(level)
    huey_logger.propagate = True
    try:
        yield captured
    finally:
        root.removeHandler(handler)
        root.setLevel(previous[0])
        huey_logger.propagate = previous[1]


def sample(name: str, **labels) -> float:
    """A metric's current value in this process (0 when never counted)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0
