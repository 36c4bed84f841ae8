"""Liveness and readiness probes (public, no session needed)."""
from __future__ import annotations

from flask import Blueprint, jsonify

from costguardian.db import pending_migrations
from costguardian.extensions import db, limiter

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@limiter.exempt
def healthz():
    """The process is up and serving."""
    return jsonify(status="ok")


@bp.get("/readyz")
@limiter.exempt
def readyz():
    """Ready for traffic: the database answers with no pending migrations,
    and the task queue is reachable."""
    checks = {"database": _check_database(), "queue": _check_queue()}
    ready = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503


def _check_database() -> str:
    try:
        with db.connection_context():  # its own connection, returned afterwards
            db.execute_sql("SELECT 1")
            pending = pending_migrations(db.obj)
    except Exception as exc:  # any driver error means "not ready"
        return f"error: {type(exc).__name__}"
    return f"pending migrations: {', '.join(pending)}" if pending else "ok"


def _check_queue() -> str:
    from tasks import huey

    try:
        huey.storage.queue_size()
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"
