"""Fixtures for every test: one app per session on the chosen backend, a
clean database per test, test clients that speak CSRF and htmx, factories.

`pytest --backend=sqlite` (default) uses SQLite files and a SQLite Huey;
`pytest --backend=postgres` uses TEST_DATABASE_URL and TEST_REDIS_URL, and an
unreachable server fails the run instead of skipping it.

`pytest --today=2027-03-28T01:30 --tz=Europe/Berlin` (or CG_TEST_TODAY and
CG_TEST_TZ) runs the suite as if it were that local instant, with time flowing
on from it, and makes the zone the default of every organization the tests
create; `-m dated` picks the tests whose subject is the calendar. Without the
option the suite runs at the real date.
"""
from __future__ import annotations

import os
import tempfile
import uuid

import pytest
from cryptography.fernet import Fernet

pytest_plugins = ["tests.fakes.fixtures"]


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("sqlite", "postgres"), default="sqlite",
                     help="database and queue the suite runs against")
    parser.addoption("--today", default=os.environ.get("CG_TEST_TODAY") or None,
                     help="run as if it were this instant: YYYY-MM-DD (midday) or YYYY-MM-DDTHH:MM, "
                          "local to --tz (env CG_TEST_TODAY)")
    parser.addoption("--tz", default=os.environ.get("CG_TEST_TZ") or None,
                     help="time zone of --today and default zone of the tests' organizations (env CG_TEST_TZ)")


def _travel(config) -> None:
    """Move the process clock to --today before any test module is imported
    (module-level NOW = clock.now() must see it). Time keeps ticking from there."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    import time_machine

    zone_name = config.getoption("--tz")
    if zone_name:
        ZoneInfo(zone_name)  # an unknown zone fails the run here, not in some test
        os.environ["CG_TEST_TZ"] = zone_name  # read by tests.support.make_org
    today = config.getoption("--today")
    if not today:
        return
    try:
        moment = datetime.fromisoformat(today if "T" in today else f"{today}T12:00")
    except ValueError as exc:
        raise pytest.UsageError(f"--today must be YYYY-MM-DD or YYYY-MM-DDTHH:MM, got {today!r}") from exc
    moment = moment.replace(tzinfo=ZoneInfo(zone_name or "UTC"))
    os.environ["CG_TEST_TODAY"] = today  # subprocesses the tests start (a queue consumer) travel too
    config.cg_traveller = time_machine.travel(moment, tick=True)
    config.cg_traveller.start()


def pytest_report_header(config):
    today, zone_name = config.getoption("--today"), config.getoption("--tz")
    if today or zone_name:
        return f"Cost Guardian clock: {today or 'real date'} in {zone_name or 'UTC'}"


def _is_xdist_controller(config) -> bool:
    """True in the process that hands the tests to pytest-xdist workers (`-n N`,
    N > 0): it runs no test, so it needs no clock, instance, database or queue
    of its own. Each worker runs pytest_configure itself and gets all of them."""
    return (not hasattr(config, "workerinput") and getattr(config.option, "dist", "no") != "no"
            and bool(getattr(config.option, "tx", None)) and not config.getoption("collectonly"))


def pytest_configure(config):
    if _is_xdist_controller(config):
        if config.getoption("--backend") == "postgres":  # fail once, early, not in every worker
            database_url, redis_url = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
            if not database_url or not redis_url:
                raise pytest.UsageError("--backend=postgres needs TEST_DATABASE_URL and TEST_REDIS_URL")
            _require_reachable(database_url, redis_url)
        config.cg_backend = config.getoption("--backend")
        return
    _travel(config)
    backend = config.getoption("--backend")
    instance = tempfile.mkdtemp(prefix="cg-test-")
    os.environ["CG_INSTANCE_PATH"] = instance
    if backend == "postgres":
        database_url, redis_url = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
        if not database_url or not redis_url:
            raise pytest.UsageError("--backend=postgres needs TEST_DATABASE_URL and TEST_REDIS_URL")
        _require_reachable(database_url, redis_url)
        # A database of its own for this run, so that two runs on one server
        # (a developer and CI, or parallel sessions) never wipe each other's rows.
        config.cg_database = _create_run_database(database_url)
        os.environ["DATABASE_URL"], os.environ["HUEY_URL"] = config.cg_database, redis_url
        os.environ["RATELIMIT_STORAGE_URI"] = redis_url
        os.environ["HUEY_NAME"] = f"cg-test-{uuid.uuid4().hex[:8]}"  # a queue of its own on the shared Redis
    else:
        os.environ["DATABASE_URL"] = f"sqlite:///{instance}/test.db"
        os.environ["HUEY_URL"] = f"sqlite:///{instance}/huey.db"
        os.environ["RATELIMIT_STORAGE_URI"] = f"cg-sqlite:///{instance}/ratelimits.sqlite"  # the default's kind
    config.cg_backend = backend


def _create_run_database(server_url: str) -> str:
    import psycopg

    name = f"cg_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def pytest_unconfigure(config):
    traveller = getattr(config, "cg_traveller", None)
    if traveller is not None:
        traveller.stop()
    url = getattr(config, "cg_database", None)
    if url:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(os.environ["TEST_DATABASE_URL"], autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _require_reachable(database_url: str, redis_url: str) -> None:
    import psycopg
    import redis

    try:
        psycopg.connect(database_url, connect_timeout=5).close()
    except Exception as exc:
        raise pytest.UsageError(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {exc}") from exc
    try:
        redis.Redis.from_url(redis_url, socket_connect_timeout=5).ping()
    except Exception as exc:
        raise pytest.UsageError(f"Redis at TEST_REDIS_URL is unreachable: {exc}") from exc


TEST_CONFIG = {
    "TESTING": True,
    "SECRET_KEY": "test-secret-key",
    "CG_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "MAIL_URL": "console://",
    "MAIL_FROM": "Cost Guardian <no-reply@costguardian.example.com>",
    "CG_ALLOW_PRIVATE_WEBHOOKS": True,
}


@pytest.fixture(scope="session")
def backend(pytestconfig) -> str:
    return pytestconfig.cg_backend


@pytest.fixture(scope="session")
def app(oidc_provider):
    """The application, on a database built by the migrations."""
    from costguardian import create_app
    from costguardian.db import migrate
    from costguardian.extensions import db

    # Keys of its own on a shared Redis (xdist workers, parallel runs): the
    # gateway's limits use the prefix as their storage's; Flask-Limiter puts it
    # in its keys, and its storage's own prefix (default "LIMITS", which
    # limiter.reset() wipes) is made distinct too.
    prefix = f"cgtest-{uuid.uuid4().hex[:8]}"
    app = create_app({**TEST_CONFIG, **oidc_provider.app_config(), "RATELIMIT_KEY_PREFIX": prefix,
                      "RATELIMIT_STORAGE_OPTIONS": {"key_prefix": f"{prefix}-limiter"}})
    from tests.support import reset_schema

    reset_schema(db.obj)
    migrate(db.obj)
    return app


@pytest.fixture(scope="session", autouse=True)
def _immediate_tasks():
    """Tasks run inline (STYLE.md: huey.immediate = True); tests that need the
    real queue switch it off themselves."""
    from tasks import huey

    huey.immediate = True
    yield
    huey.immediate = False


@pytest.fixture(autouse=True)
def _clean_state(request):
    yield
    if "app" not in request.fixturenames:
        return
    from costguardian.extensions import limiter
    from tests.support import empty_tables

    from costguardian.services.gateway import admission, leases

    app = request.getfixturevalue("app")
    leases.registry(app).stop(write=False)  # the gateway's budget leases of this test: their rows go with the tables
    admission._hard_orgs.clear()  # which organizations had hard budgets: the next test's reuse these ids
    with app.app_context():
        empty_tables()
        limiter.reset()


@pytest.fixture
def app_ctx(app):
    from costguardian.db import connected
    from costguardian.extensions import db

    with app.app_context(), connected(db):
        yield app


@pytest.fixture
def client(app):
    from tests.support import Client

    return Client(app)


@pytest.fixture
def make_user(app_ctx):
    from tests.support import make_user

    return make_user


@pytest.fixture
def make_org(app_ctx):
    from tests.support import make_org

    return make_org


@pytest.fixture
def owner_client(app, make_user, make_org):
    """A signed-in owner of a fresh organization: (client, user, org)."""
    from tests.support import Client

    user = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=user)
    client = Client(app)
    client.sign_in(user.email)
    return client, user, org


@pytest.fixture
def real_queue(app):
    """The task queue as a consumer sees it (tasks wait until something
    dequeues them), instead of the suite's immediate mode; emptied around
    the test."""
    from tasks import huey

    huey.immediate = False
    huey.flush()
    yield huey
    huey.flush()
    huey.immediate = True
