"""The Huey instance and every task: one import point for the consumer
(`huey_consumer tasks.huey`). Tasks call services; they never hold logic."""
from __future__ import annotations

import functools
import logging
import os
from urllib.parse import urlparse

from flask import has_app_context
from huey import RedisHuey, SqliteHuey, crontab

from costguardian.config import huey_url


def make_huey(url: str, name: str | None = None):
    """SQLite file queue for the embedded default, Redis for scale-out. The
    name (HUEY_NAME) keys the queue in Redis: two deployments sharing one Redis
    server need different names."""
    name = name or os.environ.get("HUEY_NAME") or "costguardian"
    scheme = urlparse(url).scheme
    if scheme in ("redis", "rediss"):
        return RedisHuey(name, url=url, results=False)
    if scheme == "sqlite":
        return SqliteHuey(name, filename=url[len("sqlite:///"):], results=False)
    raise ValueError(f"HUEY_URL must start with sqlite:/// or redis://, got {url!r}")


huey = make_huey(huey_url())


@huey.on_startup()
def _consumer_started() -> None:
    """In each consumer worker, before its first task: logs in the configured
    format with request ids, and Sentry (with its Huey integration) from the
    same settings as the web process."""
    from costguardian import config as settings
    from costguardian.observability import logs, sentry

    config = settings.from_environ()
    logs.configure_consumer(config)
    sentry.init(config)


@huey.pre_execute()
def _take_request_id(task) -> None:
    """The request id carried with the message (services/queue.py) is the
    task's while it runs; the task function never sees the argument, nor
    Sentry's trace headers when this consumer runs without Sentry."""
    from costguardian.observability import context

    task.kwargs.pop("sentry_headers", None)
    carried = task.kwargs.pop(context.TASK_KWARG, None)
    task.cg_context = (carried, context.request_id.get(), context.task_name.get())
    if carried:
        context.request_id.set(carried)
    context.task_name.set(task.name)


@huey.post_execute()
def _restore_request_id(task, task_value, exc) -> None:
    """Count the run; put the id back on the message (a retry carries it
    again) and the previous one back in place (immediate mode: the request's)."""
    from costguardian.observability import context, metrics

    metrics.task_run(task.name, exc is None)
    carried, previous_id, previous_task = getattr(task, "cg_context", (None, None, None))
    if carried:
        task.kwargs[context.TASK_KWARG] = carried
    context.request_id.set(previous_id)
    context.task_name.set(previous_task)


_worker_app = None


def _app():
    """The Flask app the consumer runs tasks in, built on first use."""
    global _worker_app
    if _worker_app is None:
        from costguardian import create_app

        _worker_app = create_app()
    return _worker_app


def _in_app(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        if has_app_context():  # immediate mode inside a request or test
            return _with_connection(fn, args, kwargs)
        with _app().app_context():
            return _with_connection(fn, args, kwargs)

    return run


def app_task(**task_options):
    """`huey.task` that runs inside an app context with an open database
    connection, closed again after the task (the consumer keeps no idle ones)."""

    def decorate(fn):
        return huey.task(name=fn.__name__, **task_options)(_in_app(fn))

    return decorate


def app_periodic_task(validate_datetime, recorded_as: str | None = None):
    """`huey.periodic_task`, in an app context like `app_task`; every run is
    recorded in TaskRun under `recorded_as` (default: the task's name) for
    the console's system health page."""

    def decorate(fn):
        name = recorded_as or fn.__name__
        task = huey.periodic_task(validate_datetime, name=fn.__name__)(_in_app(_recorded(name, fn)))
        task.task_class.recorded_as = name
        return task

    return decorate


def _recorded(name: str, fn):
    """Run `fn`, noting its start, end and any error in TaskRun. The note
    never stops the task: a failure to write it is only logged."""

    def note(step: str, *args):
        from costguardian.services.platform import health

        try:
            getattr(health, step)(name, *args)
        except Exception:
            logging.getLogger(__name__).warning("could not record task run %s", name, exc_info=True)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        note("task_started")
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            note("task_finished", exc)
            raise
        note("task_finished")
        return result

    return run


def _with_connection(fn, args, kwargs):
    from costguardian.db import connected
    from costguardian.extensions import db

    with connected(db):
        return fn(*args, **kwargs)


@app_task(retries=5, retry_delay=30)
def deliver_email(message_id: int) -> None:
    from costguardian.services.notifications import mail

    mail.deliver(message_id)


@app_task()
def deliver(delivery_id: int) -> None:
    """One attempt of a notification delivery; the service schedules retries
    itself (exponential backoff), so Huey's own retries stay off."""
    from costguardian.services.notifications import deliveries

    deliveries.attempt(delivery_id)


@app_periodic_task(crontab(minute="*"))
def sweep_deliveries() -> None:
    """Every minute: re-enqueue deliveries that are due and held by no task."""
    from costguardian.services.notifications import deliveries

    deliveries.sweep()


@app_periodic_task(crontab(minute="*"), recorded_as="consumer.heartbeat")
def consumer_heartbeat() -> None:
    """Every minute: the consumer's heartbeat (its TaskRun row, read by the
    system health page); also notes the queue's oldest pending tasks and
    purges server-error counts older than two days."""
    from costguardian.services.platform import health

    health.heartbeat()


@app_periodic_task(crontab(minute="*/5"))
def check_budgets() -> None:
    """Every 5 minutes: thresholds ingest could not see (a lowered threshold,
    repriced history), forecasts and forecast alerts, new-period notices —
    inline for up to 500 budgets, else one check_budget_batch task per 500,
    staggered (services/budgets/periodic.py)."""
    from costguardian.services.budgets import periodic

    periodic.run()


@app_task()
def check_budget_batch(budget_ids: list[int], now_iso: str) -> None:
    """One batch of the periodic budget check, at the run's own instant."""
    from datetime import datetime

    from costguardian.services.budgets import periodic

    periodic.check_batch(budget_ids, datetime.fromisoformat(now_iso))


@app_periodic_task(crontab(minute="*/10"))
def sweep_gateway_reservations() -> None:
    """Every 10 minutes: delete gateway budget reservations whose calls never
    settled (they stopped counting when they expired; this keeps the table small)."""
    from costguardian.services.gateway import admission

    admission.sweep_expired()


@app_periodic_task(crontab(minute="25"))
def purge_request_bodies() -> None:
    """Hourly: delete the gateway request bodies older than their
    organization's retention (request logging), in batches."""
    from costguardian.services.gateway import request_log

    request_log.sweep_expired()


@app_periodic_task(crontab(minute="15", hour="8"))
def warn_expiring_keys() -> None:
    """Daily: tell admins about API keys that expire within a week."""
    from costguardian.services import keys

    keys.warn_expiring()


@app_periodic_task(crontab(minute="5"))
def send_digests() -> None:
    """Hourly: one digest email per member who chose a daily digest and whose
    last one is at least 23 hours old."""
    from costguardian.services.notifications import email as notification_email

    notification_email.send_digests()


@app_periodic_task(crontab(minute="35"))
def report_meter_usage() -> None:
    """Hourly (billing on): tracked events beyond metered plans' allowances
    to Stripe's meter; failed reports are sent again (services/billing/meter.py)."""
    from costguardian.services.billing import meter

    meter.report_usage()


@app_periodic_task(crontab(minute="45"))
def check_plan_allowances() -> None:
    """Hourly (billing on): count tracked events this billing period and warn
    at 80% and 100% of the plan's allowance."""
    from costguardian.services.billing import limits

    limits.check_allowances()


@app_periodic_task(crontab(minute="20", hour="4"))
def recheck_domains() -> None:
    """Daily: verified domains whose DNS TXT record disappeared stop letting
    people join; the owners are told."""
    from costguardian.services.team import domain_verification

    domain_verification.recheck_all()


@app_periodic_task(crontab(minute="40", hour="2"))
def purge_deleted_organizations() -> None:
    """Daily: delete the organizations whose deletion grace period is over
    (scheduled in the platform console), each with an audit row."""
    from costguardian.services.platform import orgs

    orgs.purge_due()


@app_periodic_task(crontab(minute="30", hour="2"))
def prune_usage_events() -> None:
    """Daily: delete raw usage events and gateway request rows older than their
    organization's retention (or its plan's), in batches; rollups are kept."""
    from costguardian.services.ops import retention

    retention.prune_all()


@app_periodic_task(crontab(minute="10", hour="1"))
def create_usage_partitions() -> None:
    """Daily (PostgreSQL): the usage_event partitions of this month and the
    next three exist (services/ops/partitions.py); a no-op on SQLite."""
    from costguardian.services.ops import partitions

    partitions.ensure_ahead()


@app_task()
def build_org_export(export_id: int) -> None:
    """An owner's export of the whole organization: the zip archive, then a
    notification to the owner who asked (services/ops/org_export.py)."""
    from costguardian.services.ops import org_export

    org_export.build(export_id)


@app_periodic_task(crontab(minute="55"))
def clean_org_exports() -> None:
    """Hourly: delete organization exports older than 7 days and orphan
    archives; fail exports whose builder stopped mid-way."""
    from costguardian.services.ops import org_export

    org_export.cleanup()


@app_periodic_task(crontab(minute="50", hour="3"))
def sync_billing() -> None:
    """Nightly (billing on): re-read every subscription, payment method and
    invoice from Stripe, repairing any webhook that never arrived."""
    from costguardian.services.billing import sync

    sync.sync_all()


@app_task(retries=3, retry_delay=60)
def reprice_model(org_id: int, provider: str, model: str) -> None:
    """Bring an organization's stored usage of one model in line with its
    prices (after an override was created, changed or deleted)."""
    from costguardian.services.usage import repricing

    repricing.reprice_by_id(org_id, provider, model)


@app_task(retries=3, retry_delay=60)
def realign_rollups(move_id: int) -> None:
    """Move one batch of an organization's rollups to its new zone's bucket
    alignment, then enqueue the next (services/usage/realign.py)."""
    from costguardian.services.usage import realign

    realign.run(move_id)


def _backup_due(moment) -> bool:
    """The scheduled backup's minutes: CG_BACKUP_SCHEDULE (a UTC crontab); never while unset."""
    from flask import current_app

    from costguardian.services.ops import backup

    config = current_app.config if has_app_context() else _app().config
    try:
        return backup.schedule_due(config.get("CG_BACKUP_SCHEDULE"), moment)
    except Exception:  # a malformed schedule: System health shows it; the scheduler goes on
        logging.getLogger(__name__).warning("CG_BACKUP_SCHEDULE is not a valid crontab", exc_info=True)
        return False


@app_periodic_task(_backup_due, recorded_as="ops.backup")
def scheduled_backup() -> None:
    """As CG_BACKUP_SCHEDULE says (off when unset): a backup archive into
    CG_BACKUP_DIR, the oldest beyond CG_BACKUP_KEEP deleted, the success recorded."""
    from costguardian.services.ops import backup

    backup.run_scheduled()


@app_periodic_task(crontab(minute="17"))
def realign_stale_rollups() -> None:
    """Hourly: organizations whose rollups are not yet in their zone's local
    hours (created before 0027, in Kolkata or Kathmandu) start moving them."""
    from costguardian.services.usage import realign

    realign.realign_stale()


@app_task(retries=3, retry_delay=60)
def build_day_rollups(org_id: int) -> None:
    """Sum an organization's daily rollups again from its hourly ones (after a
    change of time zone), in steps (services/usage/days.py)."""
    from costguardian.services.usage import days

    days.build(org_id)


@app_periodic_task(crontab(minute="19"))
def build_stale_day_rollups() -> None:
    """Hourly: organizations whose daily rollups are missing (from before
    0029), unfinished (a lost task) or in another zone get them built."""
    from costguardian.services.usage import days

    days.build_stale()


@app_periodic_task(crontab(minute="12"))
def sync_provider_usage() -> None:
    """Hourly: pull what OpenAI and Anthropic report through their admin APIs
    (incremental, from each connection's cursors) and check for shadow usage."""
    from costguardian.services.provider_sync import sync

    sync.sync_all()


@app_task()
def sync_provider_connection(connection_id: int) -> None:
    """One connection's sync now: the 30-day backfill after connecting, or
    "Sync now"; it resumes from the cursors if stopped."""
    from costguardian.services.provider_sync import sync

    sync.sync_by_id(connection_id)
