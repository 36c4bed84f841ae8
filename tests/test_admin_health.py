"""The console's System health page: who may see and act, the database and
migrations, periodic-task runs recorded through the real task wrapper, the
consumer heartbeat and its warning, the oldest pending task, failed
deliveries with retry, server errors counted per route, and Sentry."""
from __future__ import annotations

import gzip
import json
import re
import threading
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import time_machine
from huey import crontab

import tasks
from costguardian.extensions import db
from costguardian.models import AuditLog, Delivery, ErrorCount, Organization, TaskRun, User
from costguardian.services.platform import health
from tests.support import Client, make_org, make_user, other_app

NOW = datetime(2026, 5, 6, 10, 0)
PAGE = "/admin/health/"


@pytest.fixture
def pinned(app):
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def people(app_ctx, pinned):
    clients = {}
    for email, role in (("root@example.com", "superadmin"), ("help@example.com", "support"),
                        ("owner@acme.com", "")):
        make_user(email, platform_role=role)
        clients[role or "owner"] = Client(app_ctx)
        clients[role or "owner"].sign_in(email)
    return clients


@pytest.fixture
def failed_delivery(people):
    org = make_org("Acme", owner=User.by_email("owner@acme.com"))
    return Delivery.create(organization=org, channel="email", event_id="ev1", event_type="budget.threshold",
                           recipient="owner@acme.com", status="failed", attempts=6, last_error="SMTP 550 no such user")


def _section(html: str, testid: str) -> str:
    return html.split(f'data-testid="{testid}"', 1)[1].split("</table>", 1)[0]


def test_anonymous_and_owners_are_refused(client, people, failed_delivery):
    anonymous = client.get(PAGE)
    assert anonymous.status_code == 302 and anonymous.headers["Location"].startswith("/login")
    assert people["owner"].get(PAGE).status_code == 403
    assert people["owner"].post(f"/admin/health/deliveries/{failed_delivery.id}/retry").status_code == 403


def test_support_reads_the_page_but_cannot_retry(people, failed_delivery):
    html = people["support"].get(PAGE).get_data(as_text=True)
    row = _section(html, "failed-deliveries")
    assert "Acme" in row and "SMTP 550 no such user" in row and "Retry" not in row

    response = people["support"].post(f"/admin/health/deliveries/{failed_delivery.id}/retry")
    assert response.status_code == 403
    assert Delivery.select().count() == 1


def test_a_superadmin_retries_a_failed_delivery(people, failed_delivery):
    html = people["superadmin"].get(PAGE).get_data(as_text=True)
    assert f"/admin/health/deliveries/{failed_delivery.id}/retry" in _section(html, "failed-deliveries")

    response = people["superadmin"].post(f"/admin/health/deliveries/{failed_delivery.id}/retry")

    assert response.status_code == 302 and response.headers["Location"].endswith("/admin/health/#failed-deliveries")
    copy = Delivery.select().where(Delivery.id != failed_delivery.id).get()
    assert (copy.event_id, copy.recipient, copy.channel) == ("ev1", "owner@acme.com", "email")
    assert Delivery.get_by_id(failed_delivery.id).status == "failed"  # its history stays
    audit = AuditLog.select().where(AuditLog.action == "platform.delivery_retried").get()
    assert audit.organization_id == failed_delivery.organization_id and audit.detail["new_delivery"] == copy.id
    html = people["superadmin"].get(PAGE).get_data(as_text=True)
    # Sent again: no longer listed (the new delivery shows if it fails in turn).
    assert f'data-delivery="{failed_delivery.id}"' not in _section(html, "failed-deliveries")
    assert health.failed_delivery_count() == (1 if Delivery.get_by_id(copy.id).status == "failed" else 0)
    assert people["superadmin"].post("/admin/health/deliveries/999999/retry").status_code == 404


def test_database_reachable_with_every_migration_applied(people):
    html = people["support"].get(PAGE).get_data(as_text=True)
    database = html.split('data-testid="database"', 1)[1].split("</article>", 1)[0]
    assert "reachable" in database and " MB" in database
    assert re.search(r"migrations: all applied \((\d+) of \1\)", database)
    report = health.database()
    assert report.all_applied and report.migrations_total >= 20 and not report.unknown


def test_a_periodic_task_run_is_recorded(people):
    tasks.sweep_gateway_reservations()  # immediate mode: runs inline through the real wrapper

    run = TaskRun.get_by_id("sweep_gateway_reservations")
    assert (run.last_status, run.runs, run.failures, run.last_error) == ("ok", 1, 0, "")
    assert run.last_started_at is not None and run.last_finished_at >= run.last_started_at
    tasks.sweep_gateway_reservations()
    assert TaskRun.get_by_id("sweep_gateway_reservations").runs == 2

    html = people["support"].get(PAGE).get_data(as_text=True)
    table = _section(html, "periodic-tasks")
    row = re.search(r'<tr data-task="sweep_gateway_reservations">.*?</tr>', table, re.S).group(0)
    assert "Every 10 minutes" in row and ">ok<" in row and "<td>2</td>" in row
    never = re.search(r'<tr data-task="sync_billing">.*?</tr>', table, re.S).group(0)  # listed though never run
    assert "never" in never
    assert 'data-task="consumer.heartbeat"' not in table  # shown apart


def test_a_failing_periodic_task_records_its_error(app_ctx):
    def explode_weekly():
        """Weekly: fails on purpose (this test's own task)."""
        raise RuntimeError("the upstream is gone")

    task = tasks.app_periodic_task(crontab(day_of_week="0", hour="3", minute="0"))(explode_weekly)
    try:
        with pytest.raises(RuntimeError):
            task.call_local()
        run = TaskRun.get_by_id("explode_weekly")
        assert (run.last_status, run.runs, run.failures) == ("error", 1, 1)
        assert run.last_error == "RuntimeError: the upstream is gone"
        assert "explode_weekly" in [t.name for t in health.periodic_tasks()]
    finally:
        tasks.huey._registry.unregister(task.task_class)


def test_heartbeat_age_and_the_consumer_not_running_warning(people, pinned):
    html = people["support"].get(PAGE).get_data(as_text=True)
    assert 'data-testid="consumer-warning"' in html and "No heartbeat was ever recorded" in html

    tasks.consumer_heartbeat()
    beat = TaskRun.get_by_id(health.HEARTBEAT)
    assert beat.last_status == "ok" and beat.runs == 1

    html = people["support"].get(PAGE).get_data(as_text=True)
    assert 'data-testid="consumer-warning"' not in html
    assert ">running<" in html.split('data-testid="heartbeat"', 1)[1].split("</article>", 1)[0]

    pinned.move_to(NOW + timedelta(minutes=2, seconds=30))
    assert 'data-testid="consumer-warning"' not in people["support"].get(PAGE).get_data(as_text=True)
    pinned.move_to(NOW + timedelta(minutes=3, seconds=30))
    html = people["support"].get(PAGE).get_data(as_text=True)
    assert 'data-testid="consumer-warning"' in html and "The task consumer is not running" in html
    assert "The last heartbeat is 3 min old" in html


def test_the_heartbeat_purges_error_counts_older_than_two_days(app_ctx, pinned):
    old, recent = NOW - timedelta(days=2, minutes=1), NOW - timedelta(days=1)
    for minute in (old, recent):
        ErrorCount.create(minute=minute, route="GET /x", status=500, count=1)
    tasks.consumer_heartbeat()
    assert [r.minute for r in ErrorCount.select()] == [recent]



def test_oldest_pending_task_is_aged_from_when_it_was_first_seen(people, pinned, real_queue):
    assert health.queue(NOW).oldest_age is None  # nothing waiting
    tasks.deliver(424242)  # no consumer runs: it waits
    tasks.deliver(424243)
    assert health.queue(NOW).pending == 2
    first = health.queue(NOW)
    assert first.oldest_seen_at is not None and first.oldest_age < timedelta(minutes=1)

    pinned.move_to(NOW + timedelta(minutes=7))
    html = people["support"].get(PAGE).get_data(as_text=True)
    assert re.search(r'data-testid="queue-pending">2<', html)
    assert "at least 7 min" in html

    real_queue.dequeue()  # the oldest ran; the next was first seen at the same moment
    assert health.queue(NOW + timedelta(minutes=8)).oldest_age >= timedelta(minutes=7)


def _app_with_failing_routes(**overrides):
    """A fresh app (routes can be added before its first request) with views that fail."""
    return other_app(**overrides)


def _add_failing_routes(app):
    def boom():
        raise RuntimeError("kaboom in a view")

    def unavailable():
        return "down for a moment", 503

    app.add_url_rule("/test-only/boom", "test_boom", boom)
    app.add_url_rule("/test-only/unavailable", "test_unavailable", unavailable)
    app.view_functions["test_boom"].personal = app.view_functions["test_unavailable"].personal = True


def test_server_errors_are_counted_per_route_and_minute(people, pinned):
    with _app_with_failing_routes() as app:
        _add_failing_routes(app)
        user_client = Client(app)
        user_client.sign_in("owner@acme.com")
        for _ in range(3):
            response = user_client.get("/test-only/boom")
            assert response.status_code == 500
            assert "kaboom" not in response.get_data(as_text=True)  # never shown to the user
        assert user_client.get("/test-only/unavailable").status_code == 503
        assert user_client.get("/no/such/page").status_code == 404  # not a server error

    with db.connection_context():
        rows = {(r.route, r.status): r for r in ErrorCount.select()}
    assert set(rows) == {("GET /test-only/boom", 500), ("GET /test-only/unavailable", 503)}
    boom = rows[("GET /test-only/boom", 500)]
    assert boom.count == 3 and boom.last_error == "RuntimeError: kaboom in a view"
    assert boom.minute == boom.minute.replace(second=0, microsecond=0)

    html = people["support"].get(PAGE).get_data(as_text=True)
    table = _section(html, "route-errors")
    assert "GET /test-only/boom" in table and "<td>3</td>" in table and "RuntimeError: kaboom in a view" in table
    pinned.move_to(NOW + timedelta(hours=1, minutes=2))
    assert "No server error in the last hour." in people["support"].get(PAGE).get_data(as_text=True)


def test_version_uptime_and_sentry_off(people):
    html = people["support"].get(PAGE).get_data(as_text=True)
    assert re.search(r'data-testid="version">\d+\.\d+\.\d+<', html)
    assert 'data-testid="uptime">' in html
    assert 'data-testid="sentry">off<' in html


class _SentryIngest(BaseHTTPRequestHandler):
    """A stand-in for Sentry's ingest endpoint: keeps every envelope posted."""

    received: list = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append(body.decode("utf-8", "replace"))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def sentry_ingest():
    server = HTTPServer(("127.0.0.1", 0), _SentryIngest)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _SentryIngest.received = []
    yield f"http://publickey@127.0.0.1:{server.server_port}/1"
    server.shutdown()
    server.server_close()


def test_sentry_gets_unexpected_errors_without_cookies_or_credentials(people, sentry_ingest):
    import sentry_sdk

    try:
        with _app_with_failing_routes(SENTRY_DSN=sentry_ingest) as app:
            _add_failing_routes(app)
            client = sentry_sdk.get_client()
            assert client.is_active() and client.get_integration("huey") is not None  # tests/test_sentry.py
            user_client = Client(app)
            user_client.sign_in("owner@acme.com")
            response = user_client.get("/test-only/boom", headers={"Authorization": "Bearer cg_live_secret"})
            assert response.status_code == 500
            sentry_sdk.flush(timeout=10)
            with app.app_context():
                html_client = Client(app)
                html_client.sign_in("help@example.com")
                assert 'data-testid="sentry">on<' in html_client.get(PAGE).get_data(as_text=True)
    finally:
        sentry_sdk.get_client().close()
        sentry_sdk.get_global_scope().set_client(None)  # inactive again for the rest of the run

    events = [e for e in _SentryIngest.received if "kaboom in a view" in e]
    assert events, _SentryIngest.received
    for envelope in events:
        event = json.loads(envelope.splitlines()[2])
        request = event.get("request", {})
        assert "cookies" not in request
        assert not {"authorization", "cookie"} & {k.lower() for k in request.get("headers", {})}
        assert "cg_live_secret" not in envelope and "cg_session" not in envelope


def test_background_work_left_running_shows_on_the_page_and_in_check_deploy(app, people):
    """An upgrade's batched backfill not yet run, and an organization whose
    rollups are still moving to a new zone's hours: System health and
    `flask check-deploy` both say so (a warning: nothing is wrong, work waits)."""
    from costguardian import migrations_batched as batched
    from costguardian.extensions import db
    from costguardian.models import RollupMove

    page = people["superadmin"].get(PAGE).get_data(as_text=True)
    assert 'data-testid="backfills"' not in page and 'data-testid="rollup-moves"' not in page
    assert 'data-testid="day-rollup-builds"' not in page
    org = make_org("Acme", owner=User.by_email("owner@acme.com"))
    RollupMove.create(organization=org, old=0, new=30, last_id=10)  # as a change to Asia/Kolkata leaves it
    Organization.update(day_rollup_zone=None).where(Organization.id == org.id).execute()  # as 0029 leaves it
    name = "0023_usage_event_credential"
    batched.register(db.obj, name)
    try:
        page = people["superadmin"].get(PAGE).get_data(as_text=True)
        assert name in page.split('data-testid="backfills"', 1)[1].split("</small>", 1)[0]
        assert "1 organization still moving" in page.split('data-testid="rollup-moves"', 1)[1]
        with app.app_context():
            output = app.test_cli_runner().invoke(args=["check-deploy"]).output
        assert f"warn  background work: 1 backfill(s) still to run: {name}" in output
        assert "warn  background work: 1 organization(s) still moving usage totals" in output
        assert "1 organization still summing daily usage totals" in page.split('data-testid="day-rollup-builds"', 1)[1]
        assert "warn  background work: 1 organization(s) still summing daily rollups" in output
    finally:
        batched.run(db.obj, name)  # leave the session's database with nothing pending
