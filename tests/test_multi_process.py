"""Past one machine: two gunicorn app processes (two workers each) and two
Huey consumers (two threads each, both running the periodic scheduler) share
one PostgreSQL database and one Redis queue and nothing else. Ingest batches
go to both apps at once from eight threads, the same event ids racing to
both; afterwards every event is stored and counted once, rollups and budget
counters equal the events' costs, each threshold alert exists once, and each
alert reached the webhook receiver once and each recipient's mailbox once.

PostgreSQL + Redis only: the embedded SQLite default is one process by design
(gunicorn.conf.py, docs/OPERATIONS.md)."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import requests
from peewee import fn

from costguardian import clock, crypto
from costguardian.extensions import db
from costguardian.models import (
    BudgetAlert,
    BudgetSpend,
    Delivery,
    OutboxMessage,
    UsageEvent,
    UsageRollup,
    UsageTagRollup,
    WebhookEndpoint,
)
from costguardian.services.budgets import budgets
from costguardian.services.keys import create_key
from costguardian.services.notifications import deliveries as delivery_service
from tests.fakes.smtp import free_port
from tests.support import SYSTEM, add_member, make_org, make_user, python_command

ROOT = Path(__file__).resolve().parent.parent
THREADS, BATCHES, OWN, SHARED = 8, 25, 15, 5  # per batch: 15 ids of its own, 5 racing to the other app
RETRY_EVERY = 5  # every 5th batch is sent again to the other app, as a client retrying elsewhere would
TAG = "team:search"
THRESHOLDS = (50, 80, 100)
STARTUP, INGEST, DRAIN = 30, 30, 25  # seconds at most for each phase (the whole test: < 90 s)


@pytest.fixture
def postgres_only(backend):
    if backend != "postgres":
        pytest.skip("several app processes need PostgreSQL and Redis; SQLite is the one-process embedded mode")


def _event(event_id: str) -> dict:
    """The same content every time an id is sent, so a duplicate is a true retry."""
    n = sum(event_id.encode())
    event = {"event_id": event_id, "provider": "openai", "model": "gpt-4o",
             "input_tokens": 1000 + n % 97, "output_tokens": 200 + n % 13}
    if n % 2:
        event["tags"] = [TAG]
    return event


def _batches(thread: int) -> list[tuple[int, list[dict]]]:
    """(app index, events) in sending order for one thread. Threads t and t+4
    share 5 ids per batch and send to different apps, so those ids race."""
    app = thread // (THREADS // 2)
    sent = []
    for b in range(BATCHES):
        batch = [_event(f"t{thread}-b{b}-{k}") for k in range(OWN)]
        batch += [_event(f"s{thread % (THREADS // 2)}-b{b}-{k}") for k in range(SHARED)]
        sent.append((app, batch))
        if b % RETRY_EVERY == RETRY_EVERY - 1:
            sent.append((1 - app, batch))
    return sent


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # a file, not a pipe: a full pipe would stall the process
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # its own process group, workers included


def _stop(process: subprocess.Popen, sig: int) -> None:
    """Signal the whole group; kill it if it has not ended after 15 s."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
    except ProcessLookupError:
        pass
    try:  # workers left behind by a master that died first
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _nanos(cost_usd: str) -> int:
    return int(Decimal(cost_usd) * 1_000_000_000)


class Sender:
    """Eight threads sending their batches to the two apps, a barrier before
    each round so that the racing ids really arrive at the same time."""

    def __init__(self, urls: list[str], key: str):
        self.urls, self.key = urls, key
        self.accepted: list[tuple[str, int]] = []  # (event id, cost) of every "accepted" answer
        self.tagged: set[str] = set()
        self.sent_ids: set[str] = set()
        self.sent_to: dict[str, set[int]] = {}
        self.errors: list[str] = []
        self.lock = threading.Lock()
        rounds = max(len(_batches(t)) for t in range(THREADS))
        self.barrier = threading.Barrier(THREADS, timeout=INGEST)
        self.plans = {t: _batches(t) for t in range(THREADS)}
        assert all(len(p) == rounds for p in self.plans.values())

    def run(self) -> None:
        threads = [threading.Thread(target=self._send, args=(t,), name=f"ingest-{t}") for t in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(INGEST + 10)

    def _send(self, thread: int) -> None:
        http = requests.Session()
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            for app, batch in self.plans[thread]:
                self.barrier.wait()
                answer = http.post(self.urls[app] + "/api/v1/usage", json={"events": batch}, headers=headers,
                                   timeout=30)
                if answer.status_code != 200:
                    raise AssertionError(f"app {app}: {answer.status_code} {answer.text[:500]}")
                results = answer.json()["results"]
                with self.lock:
                    for event, result in zip(batch, results):
                        assert result["event_id"] == event["event_id"] and result["status"] != "rejected", result
                        self.sent_ids.add(event["event_id"])
                        self.sent_to.setdefault(event["event_id"], set()).add(app)
                        if TAG in event.get("tags", ()):
                            self.tagged.add(event["event_id"])
                        if result["status"] == "accepted":
                            self.accepted.append((event["event_id"], _nanos(result["cost_usd"])))
        except Exception as exc:  # noqa: BLE001 - reported by the test; the others must not wait for this thread
            with self.lock:
                self.errors.append(f"thread {thread}: {type(exc).__name__}: {exc}")
            self.barrier.abort()


def test_two_apps_and_two_consumers_count_alert_and_deliver_exactly_once(
        postgres_only, app, real_queue, smtp_server, webhook_receiver, tmp_path):
    secret = "whsec_two_machines"
    with app.app_context(), db.connection_context():
        owner = make_user("owner@acme.com", name="Olga Owner")
        org = make_org("Acme", owner=owner)
        add_member(org, make_user("admin@acme.com", name="Adam Admin"), "admin")
        add_member(org, make_user("viewer@acme.com"), "viewer")  # no budget email for a viewer
        key = create_key(org, SYSTEM, "ingest", ["ingest"]).plaintext
        # A custom period around today: no period edge falls inside the run, whatever the day.
        today = clock.now_aware().astimezone(clock.zone(org.time_zone)).date()
        period = {"period": "custom", "custom_start": str(today - timedelta(days=1)),
                  "custom_end": str(today + timedelta(days=1)), "thresholds": ",".join(map(str, THRESHOLDS))}
        # ~$16 of distinct events in all (~$8 tagged): every threshold is crossed mid-run.
        whole = budgets.create(org, SYSTEM, {"name": "Everything", "amount_usd": "10", **period})
        tagged = budgets.create(org, SYSTEM, {"name": "Search", "amount_usd": "5", "tag": TAG, **period})
        WebhookEndpoint.create(organization=org, name="Ops", url=webhook_receiver.url("/cg"),
                               event_types="budget.threshold,budget.exceeded,budget.forecast",
                               secret_encrypted=crypto.encrypt(secret))
    webhook_receiver.secret = secret

    shared = {**os.environ, "SECRET_KEY": app.config["SECRET_KEY"],
              "CG_ENCRYPTION_KEYS": app.config["CG_ENCRYPTION_KEYS"], "MAIL_FROM": app.config["MAIL_FROM"],
              "MAIL_URL": smtp_server.url(starttls="0"), "CG_ALLOW_PRIVATE_WEBHOOKS": "1",
              "CG_BASE_URL": "https://cg.example.com", "CG_ENV": "development", "CG_RETRY_SCALE": "0.01"}
    assert shared["DATABASE_URL"].startswith("postgresql") and shared["HUEY_URL"].startswith("redis")
    shared.pop("PROMETHEUS_MULTIPROC_DIR", None)
    ports = [free_port(), free_port()]
    processes: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        for n in range(2):  # both with the periodic scheduler on: its tasks must be safe to run twice
            log = tmp_path / f"consumer-{n}.log"
            command = python_command(["-m", "huey.bin.huey_consumer", "tasks.huey", "--workers", "2",
                               "--worker-type", "thread", "--max-delay", "0.2"])
            processes.append((f"consumer {n}", _start(command, shared, log), log))
        for n, port in enumerate(ports):
            metrics_dir = tmp_path / f"prometheus-{n}"
            metrics_dir.mkdir()
            env = {**shared, "GUNICORN_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "4",
                   "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), "CG_LOG_LEVEL": "WARNING"}
            log = tmp_path / f"app-{n}.log"
            processes.append((f"app {n}", _start(python_command(["-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"]),
                                                 env, log), log))
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        deadline = time.monotonic() + STARTUP
        for url in urls:
            while True:
                dead = [(name, log.read_text()[-3000:]) for name, p, log in processes if p.poll() is not None]
                assert not dead, dead
                try:
                    if requests.get(url + "/readyz", timeout=5).status_code == 200:
                        break
                except requests.RequestException:  # bound by the master, workers still loading the app
                    pass
                assert time.monotonic() < deadline, f"{url} did not start"
                time.sleep(0.2)

        sender = Sender(urls, key)
        sender.run()
        assert sender.errors == []
        assert any(len(apps) == 2 for apps in sender.sent_to.values())  # ids did go to both apps

        # The queue drains: every alert notified, every delivery sent, the fakes got them.
        deadline = time.monotonic() + DRAIN
        while time.monotonic() < deadline:
            with app.app_context(), db.connection_context():
                alerts = list(BudgetAlert.select())
                events = {a.event_id for a in alerts}
                deliveries = list(Delivery.select().where(Delivery.event_id.in_(events))) if events else []
            if (len(alerts) >= 2 * len(THRESHOLDS) and "" not in events and "sending" not in events
                    and deliveries and {d.status for d in deliveries} == {"sent"}
                    and real_queue.pending_count() == 0
                    and webhook_receiver.count == sum(d.channel == "webhook" for d in deliveries)
                    and len(smtp_server.messages) == sum(d.channel == "email" for d in deliveries)):
                break
            time.sleep(0.3)
    finally:
        # Consumers first and gracefully (SIGINT lets running tasks finish), then the apps.
        for name, process, _ in processes:
            _stop(process, signal.SIGINT if name.startswith("consumer") else signal.SIGTERM)
    logs = {name: log.read_text() for name, _, log in processes}
    assert all(process.returncode is not None for _, process, _ in processes)
    assert not any(_listening(port) for port in ports)

    with app.app_context(), db.connection_context():
        # Events: every distinct id stored once, accepted by exactly one answer of either app.
        accepted = Counter(event_id for event_id, _ in sender.accepted)
        assert set(accepted) == sender.sent_ids and set(accepted.values()) == {1}
        assert len(sender.sent_ids) == THREADS * BATCHES * OWN + THREADS // 2 * BATCHES * SHARED
        stored = dict(UsageEvent.select(UsageEvent.event_id, UsageEvent.cost_nanos)
                      .where(UsageEvent.organization == org.id).tuples())
        assert set(stored) == sender.sent_ids
        answered = dict(sender.accepted)
        assert stored == answered  # each event's cost as the accepting app answered it
        total = sum(stored.values())
        tag_total = sum(stored[i] for i in sender.tagged)
        # Rollups and budget counters: the events' sums, nothing lost or counted twice.
        assert UsageRollup.select(fn.SUM(UsageRollup.cost_nanos), fn.SUM(UsageRollup.requests)).where(
            UsageRollup.organization == org.id).tuples()[0] == (total, len(stored))
        assert UsageTagRollup.select(fn.SUM(UsageTagRollup.cost_nanos), fn.SUM(UsageTagRollup.requests)).where(
            UsageTagRollup.organization == org.id, UsageTagRollup.tag == TAG).tuples()[0] == (tag_total,
                                                                                             len(sender.tagged))
        spend = {b: BudgetSpend.select(fn.SUM(BudgetSpend.spend_nanos), fn.SUM(BudgetSpend.requests))
                 .where(BudgetSpend.budget == b).tuples()[0] for b in (whole.id, tagged.id)}
        assert spend == {whole.id: (total, len(stored)), tagged.id: (tag_total, len(sender.tagged))}
        for budget in (whole, tagged):
            st = budgets.status(budget)
            assert st.spend == spend[budget.id][0] > st.limit  # the run went over every threshold

        # Alerts: each threshold of each budget once, each notified.
        alerts = list(BudgetAlert.select().order_by(BudgetAlert.id))
        thresholds = Counter((a.budget_id, a.threshold) for a in alerts if a.kind == "threshold")
        assert thresholds == Counter({(b, t): 1 for b in (whole.id, tagged.id) for t in THRESHOLDS})
        assert Counter((a.budget_id, a.kind, a.threshold) for a in alerts).most_common(1)[0][1] == 1
        events = {a.event_id: a for a in alerts}
        assert len(events) == len(alerts) and "" not in events and "sending" not in events

        # Deliveries: one webhook per alert event, one email per recipient, all sent, each once.
        deliveries = list(Delivery.select().where(Delivery.organization == org.id))
        assert {d.event_id for d in deliveries} == set(events)
        assert {d.status for d in deliveries} == {"sent"} and {d.attempts for d in deliveries} == {1}
        hooks = [d for d in deliveries if d.channel == "webhook"]
        emails = [d for d in deliveries if d.channel == "email"]
        assert Counter(d.event_id for d in hooks) == Counter(set(events))
        assert Counter((d.event_id, d.recipient) for d in emails) == Counter(
            {(e, r): 1 for e in events for r in ("admin@acme.com", "owner@acme.com")})
        outbox = list(OutboxMessage.select())
        assert len(outbox) == len(emails) and {m.status for m in outbox} == {"sent"}
    received = [r.json() for r in webhook_receiver.received]
    assert all(r.verified for r in webhook_receiver.received)
    assert Counter(body["id"] for body in received) == Counter(set(events))
    crossed = [(b["data"]["budget_id"], b["data"]["threshold"]) for b in received if b["type"] != "budget.forecast"]
    assert sorted(crossed) == sorted((a.budget_id, a.threshold) for a in alerts if a.kind == "threshold")
    mailed = Counter((m.rcpt_tos[0], m.message["Subject"]) for m in smtp_server.messages)
    assert len(smtp_server.messages) == len(emails) and set(mailed.values()) == {1}

    # No process failed a request or a task.
    for name, text in logs.items():
        assert "Traceback" not in text and "Unhandled exception" not in text, f"{name}:\n{text[-5000:]}"
    consumer_runs = "".join(text for name, text in logs.items() if name.startswith("consumer"))
    assert consumer_runs.count("tasks.deliver: ") >= 2 * len(deliveries)  # "Executing …" and "… executed in"


def test_a_new_delivery_is_due_whatever_the_consumers_clock(app_ctx, make_user, make_org):
    """Created on a web host whose clock runs ahead of the consumer's host, a
    delivery is still claimed at once; only a retry waits for its time."""
    org = make_org("Acme", owner=make_user("owner@acme.com"))
    ahead = clock.now() + timedelta(seconds=3)
    message = OutboxMessage.create(to_address="x@example.com", subject="s", text_body="t")
    new = Delivery.create(organization=org, channel="email", event_id="e1", event_type="system.test",
                          recipient="x@example.com", message=message, next_attempt_at=ahead)
    retry = Delivery.create(organization=org, channel="email", event_id="e2", event_type="system.test",
                            recipient="x@example.com", message=message, status="retrying", attempts=1,
                            next_attempt_at=ahead)
    assert delivery_service._claim(new.id) is not None
    assert delivery_service._claim(retry.id) is None
