"""Operator commands: `flask --app app <command>`."""
from __future__ import annotations

import secrets
import tempfile
from pathlib import Path

import click
from flask import Flask, current_app
from peewee import SqliteDatabase
from playhouse.migrations import template
from playhouse.schema_diff import diff_models

from costguardian import clock
from costguardian import cli_billing, cli_ops, migrations_batched, permissions
from costguardian import cli_deploy
from costguardian.db import connected, migrate as apply_migrations, migration_runner
from costguardian.extensions import db
from costguardian.models import ALL_MODELS, Organization, User
from costguardian.services.team import accounts, orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import ServiceError


def init_app(app: Flask) -> None:
    for command in (migrate, make_migration, create_user, create_org, add_member, seed_demo, create_api_key):
        app.cli.add_command(command)
    app.cli.add_command(verify_domain)
    app.cli.add_command(rotate_encryption)
    cli_billing.register(app)
    cli_ops.register(app)
    cli_deploy.register(app)


def _fail(message: str):
    raise click.ClickException(message)


@click.command("migrate")
@click.option("--backfills", is_flag=True,
              help="Also run the data backfills too big to run at once, to their end (resumable; the app can "
                   "serve meanwhile).")
@click.option("--batch-rows", type=click.IntRange(1), default=migrations_batched.BATCH_ROWS, show_default=True,
              help="Rows per backfill batch (one short transaction each).")
@click.option("--pause", type=click.FloatRange(0), default=0.0, show_default=True,
              help="Seconds between backfill batches (leaves room to other writers on a busy SQLite).")
def migrate(backfills: bool, batch_rows: int, pause: float):
    """Apply pending database migrations (and the data backfills of small tables)."""
    applied = apply_migrations(db.obj)
    click.echo("applied: " + ", ".join(applied) if applied else "database is up to date")
    with connected(db.obj):
        from costguardian.services.ops import partitions

        created = partitions.ensure_ahead()  # PostgreSQL: this month and the next three (the daily task's job)
        if created:
            click.echo("usage_event partitions created: " + ", ".join(created))
        for progress in migrations_batched.pending(db.obj):
            if not backfills:
                left = migrations_batched.rows_left(db.obj, progress)
                click.echo(f"backfill {progress.name} pending: about {left:,} rows of {progress.table} left; "
                           "run `flask migrate --backfills`")
                continue
            click.echo(f"backfill {progress.name}: from {progress.table}.id > {progress.last_id:,}")
            done = migrations_batched.run(
                db.obj, progress.name, batch_rows, pause=pause,
                report=lambda p: click.echo(f"  {p.table}.id ≤ {p.last_id:,}: {p.rows_done:,} rows changed in "
                                            f"{p.batches:,} batches" + (" — finished" if p.finished else "")))
            click.echo(f"backfill {done.name} finished")


@click.command("make-migration")
@click.argument("name")
def make_migration(name: str):
    """Write the next numbered migration from the difference between the
    models and the schema the existing migrations build."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = SqliteDatabase(str(Path(tmp) / "scratch.db"))
        previous = db.obj
        db.initialize(scratch)
        try:
            migration_runner(scratch).up()
            diff = diff_models(scratch, ALL_MODELS)
        finally:
            scratch.close()
            db.initialize(previous)
    if not diff:
        click.echo("the migrations already build the models; nothing to write")
        return
    # Callable defaults (clock.now, dict) live in Python, not in the schema, so the
    # generator's reminders about them are noise; every other note stays.
    body = "\n".join(line for line in template(diff).splitlines()
                     if not (line.startswith("#") and "must be added by hand" in line)) + "\n"
    click.echo(migration_runner(db.obj).create(name, body=body))


@click.command("rotate-encryption")
def rotate_encryption():
    """Re-encrypt every stored secret (provider keys, webhook signing
    secrets) under the first key of CG_ENCRYPTION_KEYS. Run it after putting
    a new key first; safe to run again. Then the old keys can be removed."""
    from costguardian.services import encryption

    with connected(db.obj):
        report = encryption.rotate_all()
    for what, count in report.rotated.items():
        click.echo(f"{what}: {count} re-encrypted, {report.current[what]} already under the newest key")
    if report.unreadable:
        shown = ", ".join(report.unreadable[:20]) + (" …" if len(report.unreadable) > 20 else "")
        _fail(f"{len(report.unreadable)} secret(s) no configured key can decrypt: {shown}. Keep every old key in "
              "CG_ENCRYPTION_KEYS until they are re-entered or deleted.")
    click.echo("every secret is under the newest key: older keys may now be removed from CG_ENCRYPTION_KEYS")


@click.command("create-user")
@click.argument("email")
@click.option("--password", help="Set this password (default: a generated one, printed).")
@click.option("--name", default="", help="Display name.")
@click.option("--superadmin", is_flag=True, help="Make the user a platform superadmin.")
@click.option("--support", is_flag=True, help="Make the user a platform support admin (reads, impersonates).")
def create_user(email: str, password: str | None, name: str, superadmin: bool, support: bool):
    """Create a user (the first superadmin is made here; later ones in the console)."""
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    try:
        user = accounts.sign_up(email, name, password, Actor.system())
    except ServiceError as exc:
        _fail(exc.message)
    role = "superadmin" if superadmin else "support" if support else ""
    if role:
        user.platform_role = role
        user.save(only=[User.platform_role])
    click.echo(f"created {user.email}" + (f" ({role})" if role else ""))
    if generated:
        click.echo(f"password: {password}")


@click.command("create-org")
@click.argument("name")
@click.option("--owner", "owner_email", required=True, help="Email of an existing user who becomes owner.")
@click.option("--time-zone", default="UTC", show_default=True)
def create_org(name: str, owner_email: str, time_zone: str):
    """Create an organization owned by an existing user."""
    owner = User.by_email(owner_email)
    if owner is None:
        _fail(f"no user {owner_email}; create it first with create-user")
    try:
        org = orgs.create_organization(name, owner, Actor.system(), time_zone=time_zone)
    except ServiceError as exc:
        _fail(exc.message)
    click.echo(f"created organization {org.name} (slug {org.slug}) owned by {owner.email}")


@click.command("add-member")
@click.argument("org_slug")
@click.argument("email")
@click.option("--role", type=click.Choice(list(permissions.ROLES)), default=permissions.MEMBER, show_default=True)
def add_member(org_slug: str, email: str, role: str):
    """Add an existing user to an organization with a role."""
    org = Organization.get_or_none(Organization.slug == org_slug)
    user = User.by_email(email)
    if org is None or user is None:
        _fail("no such organization" if org is None else f"no user {email}")
    try:
        orgs.add_member(org, user, role, Actor.system())
    except ServiceError as exc:
        _fail(exc.message)
    click.echo(f"{user.email} is now {role} of {org.name}")


@click.command("verify-domain")
@click.argument("org_slug")
@click.argument("domain")
def verify_domain(org_slug: str, domain: str):
    """Mark an organization's email domain verified: people signing in with a
    verified address there join it (with its join role, `member` by default)."""
    org = Organization.get_or_none(Organization.slug == org_slug)
    if org is None:
        _fail("no such organization")
    try:
        orgs.verify_join_domain(org, domain, Actor.system())
    except ServiceError as exc:
        _fail(exc.message)
    click.echo(f"{org.join_domain} is verified for {org.name}; people there join as {org.join_domain_role}")


@click.command("seed-demo")
@click.option("--events", type=click.IntRange(min=0), default=0,
              help="Also send this many usage events over the last 90 days, through the ingest service.")
@click.option("--if-empty", is_flag=True, help="Send the events only when the demo organization has none yet.")
@click.option("--seed", type=int, default=None, help="Random seed, for repeatable data.")
def seed_demo(events: int, if_empty: bool, seed: int | None):
    """Create the demo organization and its people (first run only), optionally
    with usage, and print the sign-in."""
    import time

    from costguardian.models import UsageEvent
    from costguardian.services.demo import seed as demo, usage as demo_usage

    with connected(db.obj):
        credentials = demo.seed(Path(current_app.instance_path))
        org = Organization.get_or_none(Organization.name == demo.DEMO_ORG)
        if events and org is not None and not (if_empty and UsageEvent.in_org(org).exists()):
            started = time.monotonic()
            with click.progressbar(length=events, label=f"Sending {events:,} demo events") as bar:
                done = [0]

                def progress(n):
                    bar.update(n - done[0])
                    done[0] = n

                totals = demo_usage.generate(org, events, seed=seed, progress=progress)
            elapsed = time.monotonic() - started
            click.echo(f"accepted {totals['accepted']:,} events in {elapsed:.1f} s "
                       f"({totals['accepted'] / max(elapsed, 1e-9):,.0f}/s)")
        if org is not None and (made := demo.seed_budgets(org)):  # once, sized from the usage above
            click.echo(f"created {made} demo budgets")
    click.echo(
        "\n  Demo sign-in:  {email}  /  {password}\n  (owner of \"{org}\"; more demo people share the password: "
        "{others})\n".format(**credentials)
    )


@click.command("create-api-key")
@click.argument("org_slug")
@click.option("--name", required=True, help="What uses the key, e.g. \"search-service prod\".")
@click.option("--scopes", default="ingest", show_default=True,
              help="Comma-separated scopes: ingest, gateway, read, admin.")
@click.option("--env", type=click.Choice(["live", "test"]), default="live", show_default=True)
@click.option("--user", "user_email", help="Attribute the key's usage to this member (email).")
@click.option("--department", help="Attribute the key's usage to this department (name).")
@click.option("--expires-days", type=click.IntRange(min=1), help="Expire after this many days (default: never).")
def create_api_key(org_slug: str, name: str, scopes: str, env: str, user_email: str | None,
                   department: str | None, expires_days: int | None):
    """Create an organization API key. The key alone goes to standard output
    (shown once; only its hash is stored), the details to standard error."""
    from datetime import timedelta

    from costguardian.models import Department, Membership
    from costguardian.models.org import caseless
    from costguardian.services import keys

    org = Organization.get_or_none(Organization.slug == org_slug)
    if org is None:
        _fail(f"no organization with the slug {org_slug!r}")
    user = None
    if user_email:
        user = User.by_email(user_email)
        if user is None:
            _fail(f"no user {user_email}")
        if Membership.of(user, org) is None:
            _fail(f"{user.email} is not a member of {org.name}")
    dept = None
    if department:
        dept = Department.in_org(org).where(Department.name_key == caseless(" ".join(department.split()))).first()
        if dept is None:
            known = ", ".join(sorted(d.name for d in Department.in_org(org))) or "none yet"
            _fail(f"no department {department!r} in {org.name} (departments: {known})")
    chosen = [s.strip() for s in scopes.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in keys.SCOPES]
    if unknown:
        _fail(f"unknown scope {', '.join(unknown)}; choose from {', '.join(keys.SCOPES)}")
    expires_at = clock.now() + timedelta(days=expires_days) if expires_days else None
    try:
        new = keys.create_key(org, Actor.system(), name, chosen, env=env, expires_at=expires_at,
                              user=user, department=dept)
    except ServiceError as exc:
        _fail(exc.message)
    key = new.key
    attribution = ", ".join(filter(None, [f"user {user.email}" if user else "",
                                          f"department {dept.name}" if dept else ""])) or "none (per event)"
    click.echo(f"created API key \"{key.name}\" ({key.display_key}) for {org.name}", err=True)
    click.echo(f"  scopes:      {', '.join(key.scope_list)}", err=True)
    click.echo(f"  environment: {key.env}", err=True)
    click.echo(f"  attribution: {attribution}", err=True)
    click.echo(f"  expires:     {key.expires_at.strftime('%Y-%m-%d %H:%M UTC') if key.expires_at else 'never'}",
               err=True)
    click.echo("Copy the key now; it will not be shown again:", err=True)
    click.echo(new.plaintext)
