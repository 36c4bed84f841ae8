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


def _in_a_thread(request):
    """Run `request` in a thread of its own and return its answer, as a
    thread-per-request server (`flask run`) does."""
    import threading

    answers = []
    thread = threading.Thread(target=lambda: answers.append(request()))
    thread.start()
    thread.join()
    assert answers, "the request raised"
    return answers[0]


def _in_use():
    """Connections checked out of the pool (none for an unpooled database)."""
    from costguardian.extensions import db

    return len(getattr(db.obj, "_in_use", {}))


def test_signed_in_probes_give_their_connections_back(owner_client):
    """Signed-in probes once loaded the session's user, which took a pool
    connection nobody returned: 16 of them and every page answered 500."""
    client, _, _ = owner_client
    before = _in_use()  # the test's own connection, if any
    for i in range(100):
        path = "/readyz" if i % 2 else "/healthz"
        assert _in_a_thread(lambda: client.get(path)).status_code == 200, path
        assert _in_use() == before, f"{path} kept a connection (probe {i + 1})"
    assert _in_a_thread(lambda: client.get("/account/")).status_code == 200
    assert _in_a_thread(lambda: client.get("/readyz")).status_code == 200
    assert _in_use() == before


def test_probes_do_not_load_the_signed_in_user(app, owner_client):
    from flask import g, request_finished

    client, _, _ = owner_client
    seen = []

    def record(sender, response, **extra):
        seen.append(("_login_user" in g, g.get("org")))

    request_finished.connect(record, app)
    try:
        for path in ("/healthz", "/readyz"):
            assert client.get(path).status_code == 200
    finally:
        request_finished.disconnect(record, app)
    assert seen == [(False, None), (False, None)]


@pytest.mark.parametrize("method, path", [
    ("get", "/static/css/app.css"),  # static files open no connection of their own
    ("get", "/static/no-such-file.css"),  # their 404 page shows who is signed in
    ("get", "/no-such-page"),
    ("post", "/healthz"),  # 405
    ("post", "/account/verify-email"),  # the rate limiter loads the user before any other hook
    ("get", "/account/"),
])
def test_no_signed_in_request_keeps_a_connection(owner_client, method, path):
    client, _, _ = owner_client
    before = _in_use()
    for _ in range(5):  # past the per-user limit of 3 an hour, too
        _in_a_thread(lambda: getattr(client, method)(path))
    assert _in_use() == before
