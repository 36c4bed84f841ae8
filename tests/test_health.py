"""Liveness and readiness probes."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import other_app


def test_healthz_needs_nothing(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_readyz_checks_database_and_queue(client, backend):
    from tasks import huey

    huey.immediate = False  # probe the real queue storage (SQLite file or Redis)
    try:
        storage = type(huey.storage).__name__
        response = client.get("/readyz")
    finally:
        huey.immediate = True
    assert storage == ("RedisStorage" if backend == "postgres" else "SqliteStorage")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "checks": {"database": "ok", "queue": "ok"}}


def test_readyz_reports_an_unreachable_database():
    with other_app(DATABASE_URL="postgresql://postgres@127.0.0.1:1/none") as app:
        response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["checks"]["database"].startswith("error")


def test_readyz_reports_an_unreachable_queue(client):
    from tasks import huey, make_huey

    real = huey.storage
    huey.immediate = False
    huey.storage = make_huey("redis://127.0.0.1:1/0").storage
    try:
        response = client.get("/readyz")
    finally:
        huey.storage = real
        huey.immediate = True
    assert response.status_code == 503
    assert response.json["checks"] == {"database": "ok", "queue": "error: ConnectionError"}


def test_readyz_reports_pending_migrations(tmp_path):
    with other_app(DATABASE_URL=f"sqlite:///{tmp_path}/empty.db") as app:
        response = app.test_client().get("/readyz")
    from costguardian.db import MIGRATIONS_DIR

    every = sorted(p.stem for p in Path(MIGRATIONS_DIR).glob("[0-9]*.py"))
    assert response.status_code == 503
    assert every[:2] == ["0001_initial", "0002_usage"]
    assert response.json["checks"]["database"] == "pending migrations: " + ", ".join(every)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_probes_are_public(app, path):
    assert app.test_client().get(path).status_code in (200, 503)


def test_readyz_gives_its_connection_back(app):
    """Probes from many threads must not keep pool connections (a leak once
    exhausted the pool and failed every page)."""
    import threading

    from costguardian.extensions import db

    def probe():
        assert app.test_client().get("/readyz").status_code in (200, 503)

    threads = [threading.Thread(target=probe) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(getattr(db.obj, "_in_use", {})) == 0
