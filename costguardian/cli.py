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

from costguardian import permissions
from costguardian.db import connected, migrate as apply_migrations, migration_runner
from costguardian.extensions import db
from costguardian.models import ALL_MODELS, Organization, User
from costguardian.services import accounts, orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import ServiceError


def init_app(app: Flask) -> None:
    for command in (migrate, make_migration, create_user, create_org, add_member, seed_demo):
        app.cli.add_command(command)


def _fail(message: str):
    raise click.ClickException(message)


@click.command("migrate")
def migrate():
    """Apply pending database migrations."""
    applied = apply_migrations(db.obj)
    click.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


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
    # Callable defaults (utcnow, dict) live in Python, not in the schema, so the
    # generator's reminders about them are noise; every other note stays.
    body = "\n".join(line for line in template(diff).splitlines()
                     if not (line.startswith("# TODO:") and "must be added by hand" in line)) + "\n"
    click.echo(migration_runner(db.obj).create(name, body=body))


@click.command("create-user")
@click.argument("email")
@click.option("--password", help="Set this password (default: a generated one, printed).")
@click.option("--name", default="", help="Display name.")
@click.option("--superadmin", is_flag=True, help="Make the user a platform superadmin.")
def create_user(email: str, password: str | None, name: str, superadmin: bool):
    """Create a user (the only way to make a superadmin)."""
    generated = password is None
    password = password or secrets.token_urlsafe(12)
    try:
        user = accounts.sign_up(email, name, password, Actor.system())
    except ServiceError as exc:
        _fail(exc.message)
    if superadmin:
        user.is_superadmin = True
        user.save(only=[User.is_superadmin])
    click.echo(f"created {user.email}" + (" (superadmin)" if superadmin else ""))
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
    from costguardian.services import demo, demo_usage

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
    click.echo(
        "\n  Demo sign-in:  {email}  /  {password}\n  (owner of \"{org}\"; more demo people share the password: "
        "{others})\n".format(**credentials)
    )
