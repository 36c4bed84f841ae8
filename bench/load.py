"""A load test with locust on the loopback: ingest, the gateway through the
fake provider, signed-in pages and the bell's poll, for ten minutes, under
gunicorn on PostgreSQL + Redis; then nothing may be lost or counted twice.

    .venv/bin/python bench/load.py [--run-time 10m] [--users 4,8,12] [--spawn-rate 2]

What it does, every server real and on 127.0.0.1:
1. A scratch PostgreSQL database (postgresql://postgres@127.0.0.1:5432/<new
   name>, dropped at the end) and a queue of its own on the Redis at
   redis://127.0.0.1:6379/0 (a new HUEY_NAME); migrates, and seeds an
   organization: an owner, admins, a billing member, members and viewers
   (each signs in), an ingest key, a gateway key, an OpenAI credential in the
   vault pointing at the fake, and three budgets with thresholds (a soft one
   on everything and one on the tag feature:search, sized to be crossed
   mid-run so alerts, notifications and emails happen under load; a hard
   $10M cap, so every gateway call is admitted with a reservation).
2. Starts the tests' fake provider (tests/fakes/llm_upstream.py, a process of
   its own; streams trickle 16 events 50 ms apart), Cost Guardian under
   gunicorn with gunicorn.conf.py as it is (one process, gthread), and one
   huey_consumer as deploy/costguardian-worker.service runs it.
3. Runs locust headless (bench/locustfile.py; locust is installed on first
   use into bench/.venv-locust, never a project dependency) with the users
   given as ingest services, gateway apps and signed-in people.
4. Waits for the queue to drain and every gateway call to be settled, then
   compares the database with what locust was answered: usage events = the
   distinct ingest ids accepted + the gateway calls answered 200 (ids and
   costs, one by one); every repeat answered "duplicate"; rollup sums = event
   sums; each budget's counters = the cost of the events in its scope; no
   reservation left; every alert delivered; zero failures, zero 5xx, no
   traceback in the servers' logs.
Prints p50/p95/p99 and requests/s per endpoint, the machine's load, and the
check. Not a test: results go to docs/PERFORMANCE.md. Exits 1 if the check fails.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.gateway import (  # the gateway benchmark's servers, reused
    FAKE_OPENAI_KEY,
    free_port,
    start,
    start_cost_guardian,
    start_fake,
    stop,
    wait_until_up,
)

LOCUST_VERSION = "2.47.0"
LOCUST_VENV = ROOT / "bench" / ".venv-locust"
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
REDIS = "redis://127.0.0.1:6379/0"
PASSWORD = "load password 1"
SEARCH_TAG = "feature:search"
THRESHOLDS = "50,80,100"
PEOPLE = [("owner@load.example.com", "Olga Owner", "owner"), ("admin1@load.example.com", "Adam Admin", "admin"),
          ("admin2@load.example.com", "Ada Admin", "admin"), ("billing@load.example.com", "Bill Billing", "billing"),
          *[(f"member{n}@load.example.com", f"Member {n}", "member") for n in range(1, 11)],
          ("viewer1@load.example.com", "Vera Viewer", "viewer"), ("viewer2@load.example.com", "Vic Viewer", "viewer")]


def locust_binary() -> Path:
    binary = LOCUST_VENV / "bin" / "locust"
    if not binary.exists():
        print(f"installing locust=={LOCUST_VERSION} into {LOCUST_VENV} (once)…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(LOCUST_VENV)], check=True)
        pip = subprocess.run([str(LOCUST_VENV / "bin" / "pip"), "install", "-q", f"locust=={LOCUST_VERSION}"],
                             check=False, capture_output=True, text=True)
        if pip.returncode:
            raise SystemExit(f"installing locust failed:\n{pip.stdout[-2000:]}{pip.stderr[-2000:]}")
    return binary


# --- the scratch database and the organization ----------------------------------------

def _postgres(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as connection:
        connection.execute(sql)


def seed(folder: Path, database_url: str, upstream: str, budget_usd: int) -> dict:
    """Migrate the scratch database and fill it; the environment is set first
    (the app and the queue read it when imported) and inherited by every
    server started afterwards."""
    os.environ.update({"CG_INSTANCE_PATH": str(folder), "DATABASE_URL": database_url, "HUEY_URL": REDIS,
                       "HUEY_NAME": f"cg-load-{uuid.uuid4().hex[:8]}", "CG_PROVIDER_BASE_URLS": f"openai={upstream}/v1"})
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    from costguardian import create_app
    from costguardian.db import migrate
    from costguardian.extensions import db
    from costguardian.services import keys
    from costguardian.services.actor import Actor
    from costguardian.services.budgets import budgets
    from costguardian.services.gateway import vault
    from costguardian.services.team import accounts, orgs

    app = create_app()
    migrate(db.obj)
    with app.app_context(), db.connection_context():
        email, name, _ = PEOPLE[0]
        owner = accounts.sign_up(email, name, PASSWORD, Actor.system())
        org = orgs.create_organization("Load", owner, Actor.system())
        for email, name, role in PEOPLE[1:]:
            orgs.add_member(org, accounts.sign_up(email, name, PASSWORD, Actor.system()), role, Actor.system())
        actor = Actor(user=owner)
        vault.add(org, actor, "openai", "Production", FAKE_OPENAI_KEY)
        watched = {
            "everything": budgets.create(org, actor, {"name": "Everything", "amount_usd": str(budget_usd),
                                                      "thresholds": THRESHOLDS}).id,
            "search": budgets.create(org, actor, {"name": "Search feature", "amount_usd": str(budget_usd // 2),
                                                  "tag": SEARCH_TAG, "thresholds": THRESHOLDS}).id,
            "cap": budgets.create(org, actor, {"name": "Hard cap", "amount_usd": "10000000", "enforcement": "hard",
                                               "thresholds": "90"}).id,
        }
        ingest_key = keys.create_key(org, actor, "load ingest", ["ingest"])
        gateway_key = keys.create_key(org, actor, "load gateway", ["gateway"])
        return {"app": app, "database": database_url.rsplit("/", 1)[1], "org": org.id, "budgets": watched, "ingest_key": ingest_key.plaintext,
                "ingest_key_id": ingest_key.key.id, "gateway_key": gateway_key.plaintext,
                "gateway_key_id": gateway_key.key.id}


# --- watching the machine ---------------------------------------------------------------

def group_cpu(pgid: int) -> float:
    """CPU seconds used so far by the live processes of a process group."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid:  # fields after the name: state, ppid, pgrp, …, utime (12), stime (13)
                total += int(fields[11]) + int(fields[12])
    return total / tick


def backends_cpu(database: str, seen: dict[int, float]) -> float:
    """CPU seconds of the PostgreSQL backends serving `database` (their process
    title names it); `seen` keeps the last reading of each, ended ones included."""
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if f" {database} ".encode() not in Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" "):
                    continue
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            seen[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    return sum(seen.values())


class Watcher(threading.Thread):
    """The load average, and the CPU of each server and of the database's
    backends, every 5 s while locust runs."""

    def __init__(self, groups: dict[str, int], database: str):
        super().__init__(daemon=True)
        self.groups, self.database, self.loads, self.cpu = groups, database, [], {}
        self.started, self.done = time.monotonic(), threading.Event()
        self.base = {name: group_cpu(pgid) for name, pgid in groups.items()}
        self.backends: dict[int, float] = {}
        self.base["postgres (this database)"] = backends_cpu(database, self.backends)

    def run(self) -> None:
        while not self.done.wait(5):
            self.loads.append(os.getloadavg()[0])
            elapsed = time.monotonic() - self.started
            for name, pgid in self.groups.items():
                used = group_cpu(pgid)
                if used:  # a group that already ended keeps its last reading
                    self.cpu[name] = (used - self.base[name], elapsed)
            name = "postgres (this database)"
            self.cpu[name] = (backends_cpu(self.database, self.backends) - self.base[name], elapsed)


# --- the run ------------------------------------------------------------------------------

def run_locust(args, base: str, seeded: dict, folder: Path, watcher_groups: dict) -> tuple[dict, Path, int]:
    """(the machine's load and each server's CPU, locust's stats file, its exit code)."""
    users = [int(n) for n in args.users.split(",")]
    env = {"CG_LOAD_RUN": f"r{int(time.time())}", "CG_LOAD_INGEST_KEY": seeded["ingest_key"],
           "CG_LOAD_GATEWAY_KEY": seeded["gateway_key"], "CG_LOAD_PASSWORD": PASSWORD,
           "CG_LOAD_PEOPLE": json.dumps([[email, role] for email, _, role in PEOPLE]), "CG_LOAD_USERS": args.users,
           "CG_LOAD_RESULTS": str(folder / "answers.json")}
    command = [str(locust_binary()), "-f", str(ROOT / "bench" / "locustfile.py"), "--headless",
               "-u", str(sum(users)), "-r", str(args.spawn_rate), "--run-time", args.run_time,
               "--stop-timeout", "30", "--csv", str(folder / "locust"), "--host", base, "--only-summary",
               "--loglevel", "WARNING"]
    print(f"locust: {' '.join(command[1:])}", flush=True)
    process = start(command, env=env, log=folder / "locust.log",
                    drop=("DATABASE_URL", "HUEY_URL", "HUEY_NAME", "CG_INSTANCE_PATH", "CG_PROVIDER_BASE_URLS"))
    watcher_groups["locust"] = process.pid
    watcher = Watcher(watcher_groups, seeded["database"])
    watcher.start()
    process.wait()
    watcher.done.set()
    watcher.join()
    return {"loads": watcher.loads, "cpu": watcher.cpu}, folder / "locust_stats.csv", process.returncode


def drain(seeded: dict, timeout: float) -> float:
    """Seconds until the queue is empty, every alert's deliveries are done and
    no gateway reservation is held (twice in a row)."""
    from costguardian.extensions import db
    from costguardian.models import Delivery, GatewayReservation
    from tasks import huey

    started, settled = time.monotonic(), 0
    while time.monotonic() - started < timeout:
        with seeded["app"].app_context(), db.connection_context():
            busy = (huey.pending_count() + Delivery.select().where(Delivery.status.in_(("queued", "retrying"))).count()
                    + GatewayReservation.select().count())
        settled = settled + 1 if busy == 0 else 0
        if settled == 2:
            return time.monotonic() - started
        time.sleep(1)
    raise SystemExit(f"the queue did not drain within {timeout:.0f} s")


def _ints(sums) -> tuple[int, int]:
    return tuple(int(value or 0) for value in sums)


def check(seeded: dict, answers: dict) -> list[tuple[str, str, bool]]:
    """(what, figures, exact?) for every comparison of the database with what locust was answered."""
    from peewee import fn

    from costguardian.extensions import db
    from costguardian.models import (
        BudgetAlert,
        BudgetSpend,
        Delivery,
        GatewayReservation,
        UsageEvent,
        UsageRollup,
        UsageTagRollup,
    )

    rows: list[tuple[str, str, bool]] = []
    accepted = Counter(event_id for event_id, _, _ in answers["accepted"])
    answered_cost = {event_id: cost for event_id, cost, _ in answers["accepted"]}
    tagged = {event_id for event_id, _, is_tagged in answers["accepted"] if is_tagged}
    gateway_ok = [request_id for request_id, status, _ in answers["gateway"] if status == 200]
    with seeded["app"].app_context(), db.connection_context():
        org = seeded["org"]
        events = list(UsageEvent.select(UsageEvent.event_id, UsageEvent.cost_nanos, UsageEvent.api_key,
                                        UsageEvent.tags).where(UsageEvent.organization == org).tuples())
        by_ingest = {e: c for e, c, key, _ in events if key == seeded["ingest_key_id"]}
        by_gateway = {e for e, _, key, _ in events if key == seeded["gateway_key_id"]}
        total = sum(c or 0 for _, c, _, _ in events)
        tag_total = sum(c or 0 for _, c, _, tags in events if SEARCH_TAG in tags)
        rollup = UsageRollup.select(fn.SUM(UsageRollup.cost_nanos), fn.SUM(UsageRollup.requests)).where(
            UsageRollup.organization == org).tuples()[0]
        tag_rollup = UsageTagRollup.select(fn.SUM(UsageTagRollup.cost_nanos), fn.SUM(UsageTagRollup.requests)).where(
            UsageTagRollup.organization == org, UsageTagRollup.tag == SEARCH_TAG).tuples()[0]
        spend = {name: BudgetSpend.select(fn.SUM(BudgetSpend.spend_nanos), fn.SUM(BudgetSpend.requests))
                 .where(BudgetSpend.budget == budget_id).tuples()[0] for name, budget_id in seeded["budgets"].items()}
        alerts = list(BudgetAlert.select(BudgetAlert.budget, BudgetAlert.kind, BudgetAlert.threshold).tuples())
        deliveries = Counter(Delivery.select(Delivery.status).where(Delivery.organization == org).tuples())
        held = GatewayReservation.select().count()
    # PostgreSQL's SUM of a bigint is a numeric: compare integers
    rollup, tag_rollup = _ints(rollup), _ints(tag_rollup)
    spend = {name: _ints(sums) for name, sums in spend.items()}
    tagged_events = sum(1 for *_, tags in events if SEARCH_TAG in tags)

    def add(what: str, figures: str, exact: bool) -> None:
        rows.append((what, figures, exact))

    add("ingest: each id accepted once", f"{len(accepted):,} ids, most answers for one id: "
        f"{max(accepted.values(), default=0)}", set(accepted.values()) <= {1})
    repeats = Counter(status for _, status in answers["repeats"])
    add("ingest: every repeat answered duplicate", f"{sum(repeats.values()):,} repeats: {dict(repeats)}",
        set(repeats) <= {"duplicate"})
    add("ingest: batches without an answer", f"{len(answers['unanswered']):,} ids", not answers["unanswered"])
    add("ingest events in the DB = accepted ids", f"{len(by_ingest):,} = {len(accepted):,}",
        set(by_ingest) == set(accepted))
    add("ingest events' costs = the answered costs", f"{sum(v or 0 for v in by_ingest.values()) / 1e9:,.4f} USD",
        by_ingest == answered_cost)
    statuses = Counter(status for _, status, _ in answers["gateway"])
    add("gateway events in the DB = calls answered 200", f"{len(by_gateway):,} = {len(gateway_ok):,} "
        f"(answers: {dict(statuses)})", by_gateway == set(gateway_ok) and len(gateway_ok) == len(set(gateway_ok)))
    add("usage events = accepted ingest ids + gateway 200s", f"{len(events):,} = {len(accepted):,} + "
        f"{len(gateway_ok):,}", len(events) == len(accepted) + len(gateway_ok))
    add("rollups = events (cost, requests)", f"{rollup[0] / 1e9:,.4f} USD, {rollup[1]:,}",
        rollup == (total, len(events)))
    add(f"tag rollups ({SEARCH_TAG}) = its events", f"{tag_rollup[0] / 1e9:,.4f} USD, {tag_rollup[1]:,}",
        tag_rollup == (tag_total, tagged_events) and tagged <= {e for e, *_, t in events if SEARCH_TAG in t})
    for name, scope_total, scope_count in (("everything", total, len(events)), ("search", tag_total, tagged_events),
                                           ("cap", total, len(events))):
        got = spend[name]
        add(f"budget counters '{name}' = events' cost", f"{got[0] / 1e9:,.4f} USD, {got[1]:,} requests",
            got == (scope_total, scope_count))
    add("gateway reservations left", str(held), held == 0)
    per_threshold = Counter(alerts)
    add("budget alerts, each once", f"{len(alerts)} ({', '.join(f'{k} {t}' for _, k, t in sorted(per_threshold))})",
        bool(alerts) and set(per_threshold.values()) == {1})
    add("alert deliveries all sent", str({status: n for (status,), n in deliveries.items()}),
        {status for (status,) in deliveries} <= {"sent"})
    return rows


def read_stats(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def report(stats: list[dict], failures: Path, machine: dict, seconds: float, logs: dict[str, str],
           checks: list[tuple[str, str, bool]], drained: float) -> bool:
    print(f"\n{'endpoint':56} {'requests':>9} {'fails':>6} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    for row in stats:
        print(f"{row['Name'] or row['Type']:56} {int(row['Request Count']):9,} {int(row['Failure Count']):6} "
              f"{float(row['Requests/s']):7.2f} {row['50%']:>7} {row['95%']:>7} {row['99%']:>7}")
    failed = [r for r in read_stats(failures)] if failures.exists() else []
    server_errors = sum(int(r["Occurrences"]) for r in failed if re.search(r"HTTP 5\d\d", r["Error"]))
    for r in failed:
        print(f"  failure ×{r['Occurrences']}: {r['Method']} {r['Name']}: {r['Error'][:200]}")
    loads = machine["loads"]
    print(f"\nload average (1 min) while locust ran: min {min(loads):.2f}, mean {sum(loads) / len(loads):.2f}, "
          f"max {max(loads):.2f} on {os.cpu_count()} cores")
    for name, (cpu, elapsed) in machine["cpu"].items():
        print(f"  {name}: {cpu / elapsed:.2f} cores on average ({cpu:.0f} CPU s in {elapsed:.0f} s)")
    tracebacks = {name: text.count("Traceback") for name, text in logs.items()}
    print(f"queue drained and gateway calls settled {drained:.1f} s after locust stopped; tracebacks in the logs: "
          f"{tracebacks}; 5xx answers: {server_errors}")
    print(f"\n{'exactness check':52} {'':>4} figures")
    for what, figures, exact in checks:
        print(f"{what:52} {'ok' if exact else 'FAIL':>4} {figures}")
    total = next((r for r in stats if r["Name"] == "Aggregated"), None)
    ok = (all(exact for *_, exact in checks) and not failed and not any(tracebacks.values())
          and total is not None and int(total["Failure Count"]) == 0)
    print(f"\nresult: {'EXACT, zero failures' if ok else 'NOT CLEAN (see above)'}")
    return ok


def _seconds(run_time: str) -> float:
    """Seconds in locust's --run-time (300, 20s, 10m, 1h30m)."""
    parts = re.findall(r"(\d+)([hms]?)", run_time)
    return sum(int(n) * {"h": 3600, "m": 60}.get(unit, 1) for n, unit in parts)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so the servers started are stopped
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-time", default="10m", help="locust's --run-time (10m, 60s …)")
    parser.add_argument("--users", default="12,16,16", help="ingest services, gateway apps, signed-in people")
    parser.add_argument("--spawn-rate", type=float, default=2.0, help="users started per second")
    parser.add_argument("--budget-usd", type=int,
                        help="the soft budget on everything (the tag budget is half); by default sized so that "
                             "100%% is crossed a little after half the run (an ingest service sends ~$34 a minute)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    if args.budget_usd is None:
        minutes = _seconds(args.run_time) / 60
        args.budget_usd = max(10, round(20 * int(args.users.split(",")[0]) * minutes))
    folder = Path(tempfile.mkdtemp(prefix="cg-bench-load-"))
    database = f"cg_load_{uuid.uuid4().hex[:10]}"
    print(f"logs in {folder}; database {database}", flush=True)
    locust_binary()
    _postgres(f'CREATE DATABASE "{database}"')
    processes: dict[str, subprocess.Popen] = {}
    ok = False
    try:
        fake_port, cg_port = free_port(), free_port()
        processes["fake provider"] = start_fake(fake_port, 0.05, folder)
        seeded = seed(folder, f"{POSTGRES}/{database}", f"http://127.0.0.1:{fake_port}", args.budget_usd)
        processes["gunicorn"] = start_cost_guardian(cg_port, {}, folder)
        processes["consumer"] = start([str(ROOT / ".venv" / "bin" / "huey_consumer"), "tasks.huey", "--workers", "4",
                                       "--worker-type", "thread", "--graceful-signal", "TERM"],
                                      log=folder / "consumer.log")
        base = f"http://127.0.0.1:{cg_port}"
        wait_until_up(f"{base}/readyz")
        if requests.get(f"{base}/readyz", timeout=10).status_code != 200:
            raise SystemExit("Cost Guardian is not ready: " + requests.get(f"{base}/readyz", timeout=10).text)
        started = time.monotonic()
        machine, stats_path, _ = run_locust(args, base, seeded, folder,
                                            {name: p.pid for name, p in processes.items()})
        seconds = time.monotonic() - started
        answers = json.loads((folder / "answers.json").read_text())
        drained = drain(seeded, timeout=180)
        checks = check(seeded, answers)
        for name in ("consumer", "gunicorn", "fake provider"):
            stop(processes.pop(name))
        logs = {name: (folder / log).read_text(errors="replace")
                for name, log in (("gunicorn", "gunicorn.log"), ("consumer", "consumer.log"))}
        print(f"\nlocust ran {seconds:.0f} s with {args.users} users (ingest, gateway, people); soft budget "
              f"${args.budget_usd:,} (tag budget ${args.budget_usd // 2:,}); browser retries of a GET on a kept-alive "
              f"connection the server had just closed: {len(answers['browser_retries'])}")
        print(f"ingest: {len(answers['accepted']):,} events accepted ({len(answers['accepted']) / seconds:,.0f}/s), "
              f"{len(answers['repeats']):,} repeats; gateway: {len(answers['gateway']):,} calls "
              f"({len(answers['gateway']) / seconds:.1f}/s)")
        ok = report(read_stats(stats_path), folder / "locust_failures.csv", machine, seconds, logs, checks, drained)
    finally:
        for process in processes.values():
            stop(process)
        if not args.keep:
            if "costguardian.extensions" in sys.modules:  # the seeding's pooled connections end first
                sys.modules["costguardian.extensions"].db.obj.close_all()
            _postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
