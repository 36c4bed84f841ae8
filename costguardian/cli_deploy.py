"""`flask --app app check-deploy`: is this a production configuration?

Checks the settings (secrets set and strong, an https base URL, secure
cookies, mail, backups) and the services they name (the database and its
migrations, the queue and its consumer's heartbeat, the rate-limit storage,
a superadmin), prints each check with what is wrong and how to fix it, and
exits 1 when any check fails. Warnings (SQLite in production, no trusted
proxy, ...) are printed but do not fail the run. docs/OPERATIONS.md
"Production deployment".
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlparse

import click
from flask import Flask, current_app

from costguardian import clock, signing
from costguardian.config import is_production

MIN_SECRET_LENGTH = 32
MIN_DISTINCT_CHARACTERS = 10
# Values that turn up in tutorials, .env examples and our own tests.
KNOWN_WEAK_SECRETS = {"dev", "development", "secret", "secret-key", "secret_key", "secretkey", "changeme",
                      "change-me", "change_me", "test", "test-secret-key", "your-secret-key", "default",
                      "password", "costguardian", "cost-guardian", "insecure"}
GENERATE_SECRET = "python3 -c \"import secrets; print(secrets.token_urlsafe(48))\""
GENERATE_FERNET = (".venv/bin/python -c "
                   "\"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\"")
MAIL_SCHEMES = {"smtp", "smtps", "resend", "sendgrid"}


def register(app: Flask) -> None:
    app.cli.add_command(check_deploy)


@dataclass
class Check:
    """One check's outcome: no problems and no warnings means ok."""
    name: str
    ok_text: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)  # (what is wrong, how to fix it)
    warnings: list[tuple[str, str]] = field(default_factory=list)

    def problem(self, what: str, fix: str) -> None:
        self.problems.append((what, fix))

    def warn(self, what: str, fix: str) -> None:
        self.warnings.append((what, fix))


def _weakness(secret: str) -> str:
    """Why a secret key is weak ("" when it is not)."""
    if secret.strip().lower() in KNOWN_WEAK_SECRETS or "change" in secret.lower() or "example" in secret.lower():
        return "is a placeholder or well-known value"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"is {len(secret)} characters long (at least {MIN_SECRET_LENGTH} random ones are needed)"
    if len(set(secret)) < MIN_DISTINCT_CHARACTERS:
        return f"uses only {len(set(secret))} different characters: it is not random"
    return ""


def check_environment(config) -> Check:
    check = Check("environment", "CG_ENV=production")
    if not is_production(config):
        check.problem(f"CG_ENV is {config.get('CG_ENV')!r}: cookies are not Secure, there is no HSTS, and missing "
                      "secrets are generated into instance/ instead of refusing to start",
                      "set CG_ENV=production in the environment file")
    return check


def check_secret_key(config) -> Check:
    check = Check("secret key", "SECRET_KEY is set and strong")
    secret = str(config.get("SECRET_KEY") or "")
    if not secret:
        check.problem("SECRET_KEY is not set", f"set SECRET_KEY to the output of: {GENERATE_SECRET}")
    elif weakness := _weakness(secret):
        check.problem(f"SECRET_KEY {weakness}", f"set SECRET_KEY to the output of: {GENERATE_SECRET} (and do not "
                      "keep the weak one in SECRET_KEY_FALLBACKS: everybody signs in again)")
    for old in signing.secret_keys(config)[:-1]:
        if old != secret and (weakness := _weakness(old)):
            check.problem(f"a key in SECRET_KEY_FALLBACKS {weakness}: it still verifies cookies and links",
                          "remove it from SECRET_KEY_FALLBACKS")
    fallbacks = signing.secret_keys(config)[:-1]
    if secret and secret in fallbacks:
        check.warn("SECRET_KEY_FALLBACKS holds SECRET_KEY itself", "remove it from SECRET_KEY_FALLBACKS")
    if fallbacks:
        check.ok_text += f" ({len(fallbacks)} old key(s) still accepted in SECRET_KEY_FALLBACKS)"
    return check


def check_encryption_keys(config) -> Check:
    from cryptography.fernet import Fernet

    check = Check("encryption keys", "CG_ENCRYPTION_KEYS holds valid Fernet keys")
    keys = [k.strip() for k in str(config.get("CG_ENCRYPTION_KEYS") or "").split(",") if k.strip()]
    if not keys:
        check.problem("CG_ENCRYPTION_KEYS is not set", f"set CG_ENCRYPTION_KEYS to the output of: {GENERATE_FERNET}")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            check.problem(f"key {position} of CG_ENCRYPTION_KEYS is not a Fernet key (32 url-safe base64-encoded "
                          "bytes)", f"replace it with the output of: {GENERATE_FERNET}")
    if len(set(keys)) != len(keys):
        check.warn("CG_ENCRYPTION_KEYS lists a key twice", "remove the duplicate")
    return check


def check_base_url(config) -> Check:
    check = Check("base URL", f"CG_BASE_URL is {config.get('CG_BASE_URL')}")
    url = str(config.get("CG_BASE_URL") or "")
    parts = urlparse(url)
    if not url:
        check.problem("CG_BASE_URL is not set: links in emails take their host from the request, which a forged "
                      "Host header controls", "set CG_BASE_URL=https://<your host name>")
    elif parts.scheme != "https" or not parts.hostname:
        check.problem(f"CG_BASE_URL {url!r} is not an https:// address", "set CG_BASE_URL=https://<your host name>")
    elif parts.hostname in ("localhost", "127.0.0.1", "::1"):
        check.problem(f"CG_BASE_URL {url!r} points at this machine: emailed links would not work elsewhere",
                      "set CG_BASE_URL to the public address people use")
    return check


def check_cookies(config) -> Check:
    check = Check("cookies", "session and remember-me cookies are Secure and HttpOnly")
    for name in ("SESSION_COOKIE", "REMEMBER_COOKIE"):
        if not config.get(f"{name}_SECURE"):
            check.problem(f"{name}_SECURE is off: the cookie would travel over plain http",
                          "set CG_ENV=production (it turns Secure cookies on)")
        if not config.get(f"{name}_HTTPONLY"):
            check.problem(f"{name}_HTTPONLY is off", "do not override it")
    return check


def check_proxy(config) -> Check:
    check = Check("reverse proxy", f"X-Forwarded-* trusted from {config.get('CG_TRUSTED_PROXIES')} proxy(ies)")
    if not config.get("CG_TRUSTED_PROXIES"):
        check.warn("CG_TRUSTED_PROXIES is 0: behind a reverse proxy every request seems to come from the proxy "
                   "(one shared sign-in rate limit, the proxy's address in the audit log)",
                   "set CG_TRUSTED_PROXIES=1 when one proxy (Caddy, nginx, a load balancer) forwards to the app")
    return check


def check_mail(config) -> Check:
    from costguardian.services.platform import settings as platform_settings

    url = str(config.get("MAIL_URL") or "")
    scheme = urlparse(url).scheme
    check = Check("mail", f"MAIL_URL sends through {scheme}")
    if scheme == "console" or not url:
        check.problem("MAIL_URL is console://: emails (invitations, password resets, alerts) are only printed",
                      "set MAIL_URL=smtp://user:password@host:587 (or smtps://, resend://KEY, sendgrid://KEY)")
    elif scheme not in MAIL_SCHEMES:
        check.problem(f"MAIL_URL scheme {scheme!r} is not supported", "use smtp://, smtps://, resend:// or sendgrid://")
    sender = ""
    try:
        sender = str(platform_settings.get("mail_from") or "")
    except Exception:  # the database is reported by its own check
        sender = str(config.get("MAIL_FROM") or "")
    if sender and sender.rstrip(">").endswith("@localhost"):
        check.problem(f"the sender is {sender!r}: receiving servers reject or junk mail from @localhost",
                      "set MAIL_FROM=\"Cost Guardian <costguardian@your-domain>\" (or the console's Email sender)")
    return check


def check_database(config, database) -> Check:
    from costguardian.db import pending_migrations

    backend = "PostgreSQL" if str(config["DATABASE_URL"]).startswith(("postgres://", "postgresql://")) else "SQLite"
    check = Check("database", f"{backend} reachable, every migration applied")
    try:
        pending = pending_migrations(database)
    except Exception as exc:  # any driver error means "not reachable"
        check.problem(f"the database cannot be reached: {type(exc).__name__}: {str(exc).strip()[:300]}",
                      "check DATABASE_URL, that PostgreSQL runs and accepts this user (pg_hba.conf)")
        return check
    if pending:
        check.problem(f"{len(pending)} migration(s) pending: {', '.join(pending[:5])}"
                      + (" …" if len(pending) > 5 else ""), "run: .venv/bin/flask --app app migrate")
    if backend == "SQLite":
        check.warn("the database is SQLite: one writer, one web process, no scale-out",
                   "use PostgreSQL (DATABASE_URL=postgresql://…) for production")
    return check


def check_queue(config) -> Check:
    url = str(config.get("HUEY_URL") or "")
    scheme = urlparse(url).scheme
    check = Check("queue", f"the task queue ({scheme}) is reachable")
    try:
        if scheme in ("redis", "rediss"):
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5).ping()
        else:
            from tasks import make_huey

            make_huey(url).pending_count()
    except Exception as exc:
        check.problem(f"the task queue at HUEY_URL cannot be reached: {type(exc).__name__}: {str(exc)[:300]}",
                      "check HUEY_URL and that Redis runs (systemctl status redis-server)")
        return check
    if scheme == "sqlite" and str(config["DATABASE_URL"]).startswith(("postgres://", "postgresql://")):
        check.warn("the queue is a SQLite file while the database is PostgreSQL: consumers on other hosts "
                   "cannot share it", "set HUEY_URL=redis://127.0.0.1:6379/0")
    return check


def check_rate_limits(config) -> Check:
    uri = str(config.get("RATELIMIT_STORAGE_URI") or "memory://")  # (finalize fills the default)
    check = Check("rate limits", f"rate-limit counters in {urlparse(uri).scheme}")
    if uri.startswith("memory://"):
        workers = os.environ.get("WEB_CONCURRENCY") or str(min(2, os.cpu_count() or 1))  # gunicorn.conf.py's default
        if workers.isdigit() and int(workers) > 1:
            check.problem(f"RATELIMIT_STORAGE_URI is memory:// with WEB_CONCURRENCY={workers}: each process "
                          "lets the full limit through", "unset RATELIMIT_STORAGE_URI (a SQLite file shared by "
                          "this host's processes) or, for several hosts, set RATELIMIT_STORAGE_URI=redis://…")
        return check
    try:
        from limits.storage import storage_from_string

        reachable = storage_from_string(uri).check()
    except Exception as exc:
        reachable, error = False, f"{type(exc).__name__}: {str(exc)[:300]}"
    else:
        error = ""
    if not reachable:
        check.problem("the rate-limit storage cannot be reached" + (f": {error}" if error else "")
                      + " (gateway calls then go through without limits)",
                      "check RATELIMIT_STORAGE_URI (and that Redis runs, or that the SQLite file's folder is "
                      "writable)")
    return check


def check_consumer() -> Check:
    from costguardian.models import TaskRun
    from costguardian.services.platform.health import HEARTBEAT, HEARTBEAT_STALE, describe

    check = Check("consumer", "the queue consumer's heartbeat is fresh")
    beat = TaskRun.get_or_none(TaskRun.name == HEARTBEAT)
    beat_at = (beat.last_finished_at or beat.last_started_at) if beat is not None else None
    start = "systemctl enable --now costguardian-worker (deploy/costguardian-worker.service)"
    if beat_at is None:
        check.problem("no queue consumer has ever run against this database: no emails, webhooks or budget checks",
                      f"start one: {start}")
    elif (age := clock.now() - beat_at) > HEARTBEAT_STALE:
        check.problem(f"the consumer's last heartbeat is {describe(age)} old: it is not running",
                      f"start it, and read its log: {start}; journalctl -u costguardian-worker")
    else:
        check.ok_text += f" ({describe(max(age, timedelta(0)))} ago)"
    return check


def check_backups(config) -> Check:
    from costguardian.services.ops import backup
    from costguardian.services.ops.connection import OpsError

    check = Check("backups", f"scheduled backups at {config.get('CG_BACKUP_SCHEDULE')!r} (UTC)")
    try:
        chosen = backup.settings(config)
    except OpsError as exc:
        check.problem(str(exc), "set CG_BACKUP_SCHEDULE to a crontab such as \"30 2 * * *\"")
        return check
    if not chosen.schedule:
        check.problem("no scheduled backup (CG_BACKUP_SCHEDULE is unset)",
                      "set CG_BACKUP_SCHEDULE=\"30 2 * * *\" and CG_BACKUP_DIR, and copy the archives off the "
                      "machine (docs/OPERATIONS.md \"Backups\")")
        return check
    check.ok_text += f", {chosen.keep} kept in {chosen.directory}"
    existing = next((p for p in [chosen.directory, *chosen.directory.parents] if p.exists()), None)
    if existing is None or not os.access(existing, os.W_OK):
        check.problem(f"the backup directory {chosen.directory} cannot be written by this user",
                      f"create it, owned by the service user: install -d -o costguardian {chosen.directory}")
    if str(config["DATABASE_URL"]).startswith(("postgres://", "postgresql://")) and not shutil.which("pg_dump"):
        check.problem("pg_dump is not installed: the scheduled backups of PostgreSQL will fail",
                      "apt install postgresql-client (the server's major version or newer)")
    return check


def check_background_work() -> Check:
    from costguardian.services.platform import health

    check = Check("background work", "no backfill, rollup move or daily rollup build left running")
    backfills, moves, day_builds = health.background_work()
    if backfills:
        check.warn(f"{len(backfills)} backfill(s) still to run: {', '.join(backfills)}",
                   "run: .venv/bin/flask --app app migrate --backfills (batched, resumable)")
    if moves:
        check.warn(f"{moves} organization(s) still moving usage totals to a new time zone's hours",
                   "keep the task consumer running; the hourly realign_stale_rollups task resumes a stopped move")
    if day_builds:
        check.warn(f"{day_builds} organization(s) still summing daily rollups (their pages read the hourly ones)",
                   "keep the task consumer running; the hourly build_stale_day_rollups task builds them")
    from costguardian.services.ops import partitions

    if partitions.months_ahead() == 0:  # PostgreSQL only (None on SQLite)
        check.warn("usage_event has no partition for next month yet (ingest would create it under a brief lock)",
                   "keep the task consumer running (daily create_usage_partitions task) or run: "
                   ".venv/bin/flask --app app migrate")
    return check


def check_superadmin() -> Check:
    from costguardian.models import User

    check = Check("superadmin", "a platform superadmin exists")
    if not User.select().where(User.platform_role == "superadmin", User.is_disabled == False).exists():
        check.problem("no platform superadmin: nobody can open the console (/admin/)",
                      "run: .venv/bin/flask --app app create-user you@example.com --superadmin")
    return check


def _guarded(name: str, run) -> Check:
    """A check that reads the database: an unexpected error is its problem, not a traceback."""
    try:
        return run()
    except Exception as exc:
        failed = Check(name)
        failed.problem(f"the check itself failed: {type(exc).__name__}: {str(exc)[:300]}",
                       "fix the database problem above, then run check-deploy again")
        return failed


def _readable_secrets(secrets: Check) -> Check:
    from costguardian.services.ops.restore import unreadable_secrets

    if not secrets.problems and (unreadable := unreadable_secrets()):
        secrets.problem(f"stored secrets no key of CG_ENCRYPTION_KEYS opens: {', '.join(unreadable)}",
                        "add the key they were encrypted with back to CG_ENCRYPTION_KEYS")
    return secrets


def run_checks(app: Flask) -> list[Check]:
    from costguardian.db import connected
    from costguardian.extensions import db

    config = app.config
    secrets = check_encryption_keys(config)
    checks = [check_environment(config), check_secret_key(config), secrets, check_base_url(config),
              check_cookies(config), check_proxy(config)]
    database = check_database(config, db.obj)
    checks.append(database)
    if not database.problems:
        with connected(db.obj):
            _guarded("encryption keys", lambda: _readable_secrets(secrets))
            checks += [_guarded("mail", lambda: check_mail(config)), _guarded("consumer", check_consumer),
                       _guarded("superadmin", check_superadmin), _guarded("background work", check_background_work)]
    else:
        checks.append(check_mail(config))
        for name in ("consumer", "superadmin"):
            skipped = Check(name)
            skipped.problem("not checked: the database is not ready (above)", "fix the database first")
            checks.append(skipped)
    checks += [check_queue(config), check_rate_limits(config), check_backups(config)]
    return checks


@click.command("check-deploy")
def check_deploy():
    """Check that this configuration is ready for production: print every
    problem with how to fix it; exit 1 if there is any."""
    config = current_app.config
    click.echo(f"Cost Guardian deployment check: CG_ENV={config.get('CG_ENV')}, database "
               f"{urlparse(str(config['DATABASE_URL'])).scheme}, queue {urlparse(str(config['HUEY_URL'])).scheme}")
    checks = run_checks(current_app)
    for check in checks:
        if not check.problems:
            click.echo(f"  ok    {check.name}: {check.ok_text}")
        for what, fix in check.problems:
            click.echo(click.style(f"  FAIL  {check.name}: {what}", fg="red"))
            click.echo(f"        fix: {fix}")
        for what, fix in check.warnings:
            click.echo(click.style(f"  warn  {check.name}: {what}", fg="yellow"))
            click.echo(f"        fix: {fix}")
    problems = sum(len(c.problems) for c in checks)
    warnings = sum(len(c.warnings) for c in checks)
    if problems:
        click.echo(f"{problems} problem(s), {warnings} warning(s): not ready for production.")
        raise SystemExit(1)
    click.echo(f"ready for production ({warnings} warning(s)).")
