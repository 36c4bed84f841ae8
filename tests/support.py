"""Test helpers: factories, a CSRF-aware test client, database reset."""
from __future__ import annotations

import contextlib
import os
import contextvars
import re

from peewee import PostgresqlDatabase, sort_models

from costguardian.extensions import db
from costguardian.models import ALL_MODELS, User
from costguardian.services.team import accounts, orgs
from costguardian.services.actor import Actor

PASSWORD = "correct horse battery staple"
SYSTEM = Actor.system()


def make_user(email: str = "user@example.com", password: str = PASSWORD, name: str = "",
              superadmin: bool = False, platform_role: str = "") -> User:
    user = accounts.sign_up(email, name, password, SYSTEM)
    if superadmin or platform_role:
        user.platform_role = platform_role or "superadmin"
        user.save()
    return user


def make_org(name: str = "Acme", owner: User | None = None, time_zone: str | None = None):
    """An organization in `time_zone`, by default the zone the run is set to (--tz, else UTC)."""
    owner = owner or make_user(f"owner-{name.lower().replace(' ', '-')}@example.com")
    return orgs.create_organization(name, owner, SYSTEM, time_zone=time_zone or os.environ.get("CG_TEST_TZ") or "UTC")


def add_member(org, user: User, role: str):
    return orgs.add_member(org, user, role, SYSTEM)


def reset_schema(database) -> None:
    """Start the session from an empty database."""
    with database.connection_context():
        if isinstance(database, PostgresqlDatabase):
            database.execute_sql("DROP SCHEMA public CASCADE")
            database.execute_sql("CREATE SCHEMA public")
        else:
            for table in database.get_tables():
                database.execute_sql(f'DROP TABLE IF EXISTS "{table}"')


def empty_tables() -> None:
    """Delete every row the test wrote (the schema stays)."""
    # DELETE, children first, in one transaction: on PostgreSQL a TRUNCATE of
    # every table costs ~120 ms per test (file work for each table), the
    # DELETEs of a test's few rows ~6 ms. Ids keep counting up across tests.
    with db.connection_context(), db.atomic():
        for model in reversed(sort_models(ALL_MODELS)):
            model.delete().execute()


_SESSION_RENEWING = {"/login", "/logout", "/signup"}
_CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')


class Client:
    """Flask's test client that fetches and sends the CSRF token like a browser.

    Each request runs in an empty contextvars context: a test holding an app
    context (the `app_ctx` fixture) would otherwise lend it, and its `g`, to
    every request, which never happens in a real server."""

    def __init__(self, app):
        self.app = app
        self._http = app.test_client()
        self.http = _Isolated(self._http)
        self._token = None

    def csrf_token(self) -> str:
        if self._token is None:  # any page carries it: /account/, or /login when signed out
            page = self.http.get("/account/", follow_redirects=True)
            self._token = _CSRF.search(page.get_data(as_text=True)).group(1)
        return self._token

    def get(self, url, htmx: bool = False, **kwargs):
        headers = kwargs.pop("headers", {})
        if htmx:
            headers["HX-Request"] = "true"
        return self.http.get(url, headers=headers, **kwargs)

    def post(self, url, data=None, htmx: bool = False, csrf: bool = True, **kwargs):
        headers = kwargs.pop("headers", {})
        data = dict(data or {})
        if htmx:
            headers["HX-Request"] = "true"
            if csrf:
                headers["X-CSRFToken"] = self.csrf_token()
        elif csrf:
            data.setdefault("csrf_token", self.csrf_token())
        response = self.http.post(url, data=data, headers=headers, **kwargs)
        if url.split("?")[0] in _SESSION_RENEWING or url.startswith("/reset-password/"):
            self._token = None  # sign-in and sign-out start a new session, with a new token
        return response

    def sign_in(self, email: str, password: str = PASSWORD):
        response = self.post("/login", {"email": email, "password": password})
        assert response.status_code == 302, response.get_data(as_text=True)
        return response

    def sign_out(self):
        return self.post("/logout")


class _Isolated:
    """Proxy of a test client whose requests each run in a fresh context."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if name in ("get", "post", "put", "delete", "patch", "open"):
            return lambda *a, **kw: contextvars.Context().run(attr, *a, **kw)
        return attr


@contextlib.contextmanager
def other_app(**overrides):
    """A second app with different settings; the shared database handle that
    create_app re-points is restored afterwards."""
    from costguardian import create_app
    from tests.conftest import TEST_CONFIG

    previous = db.obj
    try:
        yield create_app({**TEST_CONFIG, **overrides})
    finally:
        db.initialize(previous)


@contextlib.contextmanager
def serving(app, name: str):
    """The app on http://127.0.0.1:<free port>, in a thread, while the block runs."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def python_command(args: list[str]) -> list[str]:
    """A Python command that runs `args` (a module's main) on the test's clock
    when the run is moved in time (--today), so every process agrees on "now":
    the process travels by the test's offset from the real time, and its
    clock ticks from its start (time-machine starts ticking at the first
    reading, which in a process still importing could be seconds later)."""
    import sys

    import time_machine

    from costguardian import clock

    if not os.environ.get("CG_TEST_TODAY"):
        return [sys.executable, *args]

    module, *rest = args[1:]  # ["-m", module, ...]
    offset = clock.now_aware().timestamp() - time_machine.escape_hatch.time.time()
    start = ("import runpy, sys, time, time_machine; "
             "time_machine.travel(time.time() + float(sys.argv.pop(1)), tick=True).start(); time.time(); "
             f"sys.argv[0] = {module!r}; runpy.run_module({module!r}, run_name='__main__', alter_sys=True)")
    return [sys.executable, "-c", start, repr(offset), *rest]
