"""The Huey instance and every task: one import point for the consumer
(`huey_consumer tasks.huey`). Tasks call services; they never hold logic."""
from __future__ import annotations

import functools
from urllib.parse import urlparse

from flask import has_app_context
from huey import RedisHuey, SqliteHuey

from costguardian.config import huey_url


def make_huey(url: str):
    """SQLite file queue for the embedded default, Redis for scale-out."""
    scheme = urlparse(url).scheme
    if scheme in ("redis", "rediss"):
        return RedisHuey("costguardian", url=url, results=False)
    if scheme == "sqlite":
        return SqliteHuey("costguardian", filename=url[len("sqlite:///"):], results=False)
    raise ValueError(f"HUEY_URL must start with sqlite:/// or redis://, got {url!r}")


huey = make_huey(huey_url())

_worker_app = None


def _app():
    """The Flask app the consumer runs tasks in, built on first use."""
    global _worker_app
    if _worker_app is None:
        from costguardian import create_app

        _worker_app = create_app()
    return _worker_app


def app_task(**task_options):
    """`huey.task` that runs inside an app context with an open database
    connection, closed again after the task (the consumer keeps no idle ones)."""

    def decorate(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            if has_app_context():  # immediate mode inside a request or test
                return _with_connection(fn, args, kwargs)
            with _app().app_context():
                return _with_connection(fn, args, kwargs)

        return huey.task(name=fn.__name__, **task_options)(run)

    return decorate


def _with_connection(fn, args, kwargs):
    from costguardian.db import connected
    from costguardian.extensions import db

    with connected(db):
        return fn(*args, **kwargs)


@app_task(retries=5, retry_delay=30)
def deliver_email(message_id: int) -> None:
    from costguardian.services import mail

    mail.deliver(message_id)


@app_task(retries=3, retry_delay=60)
def reprice_model(org_id: int, provider: str, model: str) -> None:
    """Bring an organization's stored usage of one model in line with its
    prices (after an override was created, changed or deleted)."""
    from costguardian.services import repricing

    repricing.reprice_by_id(org_id, provider, model)
