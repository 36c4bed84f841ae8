"""System health for the platform console: the database, the task queue and
its consumer, the periodic tasks' last runs, failed deliveries, server errors
per route, version and uptime.

Bookkeeping written here: every periodic task's runs (TaskRun, by
`tasks.app_periodic_task`), the consumer's heartbeat (TaskRun
"consumer.heartbeat", every minute) and 5xx responses per route and minute
(ErrorCount, by web.py).

Huey's messages carry no enqueue time, so the age of the oldest pending task
is measured from when it was first *seen* pending: the heartbeat and every
view of the health page note the ids at the head of the queue (the next
ones to run, i.e. the oldest) with the moment each was first seen, in the
queue's own key-value store. The age shown is therefore a lower bound, exact
to about a minute while the consumer runs; with the consumer stopped it
counts from the first health page view that saw the task.
"""
from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from peewee import EXCLUDED, JOIN, PostgresqlDatabase, fn

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import Delivery, ErrorCount, Organization, TaskRun

log = logging.getLogger(__name__)

HEARTBEAT = "consumer.heartbeat"  # the TaskRun the consumer writes every minute
HEARTBEAT_STALE = timedelta(minutes=3)  # older than this: "the consumer is not running"
ERROR_RETENTION = timedelta(days=2)  # ErrorCount minutes kept
ERROR_WINDOW = timedelta(hours=1)  # what the page sums
PENDING_SEEN_KEY = "cg:pending-first-seen"  # in Huey's key-value store: {task id: ISO time first seen}
PENDING_WATCHED = 100  # how many of the queue's oldest tasks are watched
FAILED_SHOWN = 50
ROUTES_SHOWN = 50

_VERSION: str | None = None


# --- bookkeeping (tasks and web.py) -------------------------------------------------

def task_started(name: str) -> None:
    """A periodic task (or the heartbeat) began: its row says "running"."""
    now = clock.now()
    (TaskRun.insert(name=name, last_started_at=now, last_status="running", last_error="")
     .on_conflict(conflict_target=[TaskRun.name],
                  update={TaskRun.last_started_at: now, TaskRun.last_status: "running"}).execute())


def task_finished(name: str, error: BaseException | None = None) -> None:
    """The run ended: ok, or its error; counts the run (and the failure)."""
    failed = error is not None
    text = f"{type(error).__name__}: {error}"[:2000] if failed else ""
    update = {TaskRun.last_finished_at: clock.now(), TaskRun.last_status: "error" if failed else "ok",
              TaskRun.runs: TaskRun.runs + 1, TaskRun.failures: TaskRun.failures + int(failed)}
    if failed:
        update[TaskRun.last_error] = text  # an ok run keeps the last error for the page
    TaskRun.update(update).where(TaskRun.name == name).execute()


def heartbeat() -> None:
    """Every minute, from the consumer (its TaskRun row is the heartbeat
    itself): note the queue's oldest pending tasks and purge old error counts."""
    observe_pending()
    purge_error_counts()


def count_error(route: str, status: int, error: str = "") -> None:
    """One more server error for this route in the current minute (one upsert)."""
    minute = clock.now().replace(second=0, microsecond=0)
    (ErrorCount.insert(minute=minute, route=route[:128], status=status, count=1, last_error=error[:1000])
     .on_conflict(conflict_target=[ErrorCount.minute, ErrorCount.route, ErrorCount.status],
                  update={ErrorCount.count: ErrorCount.count + 1,
                          ErrorCount.last_error: fn.COALESCE(fn.NULLIF(EXCLUDED.last_error, ""),
                                                             ErrorCount.last_error)})
     .execute())


def purge_error_counts() -> int:
    return ErrorCount.delete().where(ErrorCount.minute < clock.now() - ERROR_RETENTION).execute()


# --- the queue ----------------------------------------------------------------------

def _huey():
    from tasks import huey  # lazy: the task module builds the consumer's app

    return huey


def observe_pending(now: datetime | None = None) -> datetime | None:
    """Note when each of the queue's oldest pending tasks was first seen;
    returns the first-seen time of the oldest one still pending (None: empty)."""
    huey = _huey()
    now = now or clock.now()
    ids = [task.id for task in huey.pending(limit=PENDING_WATCHED)]
    seen = huey.get(PENDING_SEEN_KEY, peek=True) or {}
    kept = {task_id: seen.get(task_id, now.isoformat()) for task_id in ids}
    if kept != seen:
        huey.put(PENDING_SEEN_KEY, kept)
    return datetime.fromisoformat(kept[ids[0]]) if ids else None


@dataclass
class QueueHealth:
    ok: bool
    error: str = ""
    pending: int = 0
    scheduled: int = 0
    oldest_seen_at: datetime | None = None  # when the oldest pending task was first seen
    oldest_age: timedelta | None = None
    heartbeat: TaskRun | None = None
    heartbeat_age: timedelta | None = None
    consumer_running: bool = False


def queue_depth() -> int | None:
    """Tasks waiting in the queue (None when the queue cannot be reached)."""
    try:
        return _huey().pending_count()
    except Exception:  # the queue's own driver errors: reported, never raised
        log.warning("the task queue is unreachable", exc_info=True)
        return None


def queue(now: datetime) -> QueueHealth:
    beat = TaskRun.get_or_none(TaskRun.name == HEARTBEAT)
    beat_at = (beat.last_finished_at or beat.last_started_at) if beat is not None else None
    age = max(now - beat_at, timedelta(0)) if beat_at is not None else None
    result = QueueHealth(ok=True, heartbeat=beat, heartbeat_age=age,
                         consumer_running=age is not None and age <= HEARTBEAT_STALE)
    try:
        huey = _huey()
        result.pending, result.scheduled = huey.pending_count(), huey.scheduled_count()
        result.oldest_seen_at = observe_pending(now)
    except Exception as exc:
        log.warning("the task queue is unreachable", exc_info=True)
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"[:300]
    if result.oldest_seen_at is not None:
        result.oldest_age = max(now - result.oldest_seen_at, timedelta(0))
    return result


@dataclass
class PeriodicTask:
    name: str
    schedule: str  # the task's own description (its docstring's first sentence)
    run: TaskRun | None


def periodic_tasks() -> list[PeriodicTask]:
    """Every periodic task Huey knows, with its TaskRun row (None: never ran here)."""
    classes = list(getattr(_huey()._registry, "_periodic_tasks", []))
    names = [getattr(cls, "recorded_as", cls.__name__) for cls in classes]
    runs = {r.name: r for r in TaskRun.select().where(TaskRun.name.in_(names))} if names else {}
    tasks = [PeriodicTask(name, (cls.__doc__ or "").strip().split("\n")[0].split(":")[0], runs.get(name))
             for cls, name in zip(classes, names)]
    return sorted(tasks, key=lambda t: t.name)


# --- the database -------------------------------------------------------------------

@dataclass
class DatabaseHealth:
    ok: bool
    backend: str
    error: str = ""
    size_bytes: int | None = None
    migrations_total: int = 0
    migrations_applied: int = 0
    pending: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # applied here, no file in this release
    backfills: list[str] = field(default_factory=list)  # batched backfills still to run (flask migrate --backfills)
    rollup_moves: int = 0  # organizations whose rollups are still moving to a new zone's hours
    day_rollup_builds: int = 0  # organizations whose daily rollups are being summed (pages read hourly ones)

    @property
    def all_applied(self) -> bool:
        return self.ok and not self.pending


def _is_postgres() -> bool:
    return isinstance(db.obj, PostgresqlDatabase)


def database() -> DatabaseHealth:
    from costguardian.db import migration_runner

    backend = "PostgreSQL" if _is_postgres() else "SQLite"
    try:
        if _is_postgres():
            size = db.execute_sql("SELECT pg_database_size(current_database())").fetchone()[0]
        else:
            pages = db.execute_sql("PRAGMA page_count").fetchone()[0]
            size = pages * db.execute_sql("PRAGMA page_size").fetchone()[0]
        status = migration_runner(db.obj).status()
    except Exception as exc:  # any driver error means "not reachable"
        log.warning("database health check failed", exc_info=True)
        return DatabaseHealth(ok=False, backend=backend, error=f"{type(exc).__name__}: {exc}"[:300])
    files = [m for m in status if m.path is not None]
    backfills, moves, day_builds = background_work()
    return DatabaseHealth(ok=True, backend=backend, size_bytes=int(size), migrations_total=len(files),
                          migrations_applied=sum(1 for m in files if m.applied),
                          pending=[m.name for m in files if not m.applied],
                          unknown=[m.name for m in status if m.path is None],
                          backfills=backfills, rollup_moves=moves, day_rollup_builds=day_builds)


def background_work() -> tuple[list[str], int, int]:
    """What an upgrade or a change of zone left running in the background:
    batched backfills not finished, organizations with a rollup move
    pending (services/usage/realign.py), and organizations whose daily
    rollups are still to be summed (services/usage/days.py). Empty on a
    database too old to have the tables (the migrations are reported pending then)."""
    from costguardian import migrations_batched
    from costguardian.models import RollupMove

    try:
        backfills = [progress.name for progress in migrations_batched.pending(db.obj)]
    except Exception:  # before the backfill table exists
        backfills = []
    try:
        moves = RollupMove.select(RollupMove.organization).distinct().count()
    except Exception:  # before 0027
        moves = 0
    try:
        from costguardian.services.usage import days

        day_builds = len(days.stale_organizations())
    except Exception:  # before 0029
        day_builds = 0
    return backfills, moves, day_builds


# --- deliveries and errors ------------------------------------------------------------

def _unresolved_failures():
    """Failed deliveries not sent again since (a retry is a newer delivery of
    the same event to the same recipient)."""
    Later = Delivery.alias("later")
    retried = (Later.select(Later.id).where(Later.organization == Delivery.organization,
                                            Later.event_id == Delivery.event_id, Later.channel == Delivery.channel,
                                            Later.recipient == Delivery.recipient, Later.id > Delivery.id))
    return Delivery.select().where(Delivery.status == "failed", ~fn.EXISTS(retried))


def failed_delivery_count() -> int:
    return _unresolved_failures().count()


def failed_deliveries(limit: int = FAILED_SHOWN) -> list[Delivery]:
    """The latest failed deliveries nobody sent again, with their organizations."""
    query = (_unresolved_failures().select_extend(Organization).join(Organization, JOIN.INNER)
             .order_by(Delivery.updated_at.desc(), Delivery.id.desc()).limit(limit))
    return list(query)


def retryable(delivery_id: int) -> Delivery | None:
    """The failed delivery with this id (any organization), or None."""
    return Delivery.get_or_none(Delivery.id == delivery_id, Delivery.status == "failed")


def retry(delivery: Delivery, actor) -> Delivery:
    """Send a failed delivery again as a new delivery (its history stays), audit-logged."""
    from costguardian.services.notifications import deliveries
    from costguardian.services.team import audit

    copy = deliveries.redeliver(delivery)
    audit.record(actor, "platform.delivery_retried", org=delivery.organization_id, target=delivery,
                 channel=delivery.channel, event_type=delivery.event_type, new_delivery=copy.id)
    return copy


@dataclass
class RouteErrors:
    route: str
    status: int
    count: int
    last_minute: datetime
    last_error: str


def errors(now: datetime, window: timedelta = ERROR_WINDOW) -> list[RouteErrors]:
    """Server errors per route and status over the window, most first."""
    rows = (ErrorCount.select(ErrorCount.route, ErrorCount.status, fn.SUM(ErrorCount.count).alias("total"),
                              fn.MAX(ErrorCount.minute).alias("last"))
            .where(ErrorCount.minute >= now - window)
            .group_by(ErrorCount.route, ErrorCount.status).order_by(fn.SUM(ErrorCount.count).desc())
            .limit(ROUTES_SHOWN).tuples())
    result = []
    for route, status, total, last in rows:
        if isinstance(last, str):  # SQLite hands back an aggregate's datetime as text
            last = datetime.fromisoformat(last)
        latest = (ErrorCount.select(ErrorCount.last_error)
                  .where(ErrorCount.route == route, ErrorCount.status == status, ErrorCount.minute >= now - window,
                         ErrorCount.last_error != "")
                  .order_by(ErrorCount.minute.desc()).limit(1).scalar()) or ""
        result.append(RouteErrors(route, status, int(total), last, latest))
    return result


# --- the process ------------------------------------------------------------------

def version() -> str:
    """The release, from pyproject.toml (read once)."""
    global _VERSION
    if _VERSION is None:
        from costguardian.config import PROJECT_ROOT

        try:
            _VERSION = tomllib.loads(Path(PROJECT_ROOT, "pyproject.toml").read_text())["project"]["version"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            _VERSION = "unknown"
    return _VERSION


def started_at() -> datetime | None:
    """When this web process built its app (create_app)."""
    return current_app.extensions.get("costguardian.started_at")


def sentry_enabled() -> bool:
    return bool(current_app.config.get("SENTRY_DSN"))


def describe(span: timedelta | None) -> str:
    """A duration for people: "45 s", "3 min", "2 h 5 min", "4 days 3 h"."""
    if span is None:
        return "—"
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60 % 60, seconds // 3600 % 24, seconds // 86400
    if days:
        return f"{days} day{'s' if days != 1 else ''}" + (f" {hours} h" if hours else "")
    if hours:
        return f"{hours} h" + (f" {minutes} min" if minutes else "")
    return f"{minutes} min"


def backups():
    """The scheduled backup's settings and last success (services/ops/backup.py)."""
    from costguardian.services.ops import backup

    return backup.status()


def report(now: datetime) -> dict:
    """Everything the system health page shows."""
    started = started_at()
    return {
        "now": now, "database": database(), "queue": queue(now), "heartbeat_stale": HEARTBEAT_STALE,
        "periodic": [t for t in periodic_tasks() if t.name != HEARTBEAT],
        "failed": failed_deliveries(), "failed_total": failed_delivery_count(), "failed_shown": FAILED_SHOWN,
        "errors": errors(now), "version": version(), "started_at": started,
        "uptime": max(now - started, timedelta(0)) if started else None, "sentry": sentry_enabled(),
        "describe": describe, "backup": backups(),
    }
