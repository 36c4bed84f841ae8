"""Operator commands for backups: `flask --app app backup PATH` and
`flask --app app restore PATH [--force]` (services/ops; docs/OPERATIONS.md),
and `flask --app app build-day-rollups` after an upgrade to 0029."""
from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app

from costguardian import clock
from costguardian.db import connected
from costguardian.extensions import db
from costguardian.services.ops.connection import OpsError


def register(app: Flask) -> None:
    app.cli.add_command(backup_command)
    app.cli.add_command(restore_command)
    app.cli.add_command(build_day_rollups_command)


def _size(count: int) -> str:
    return f"{count / 1048576:,.1f} MB" if count >= 1048576 else f"{count / 1024:,.1f} KB"


@click.command("backup")
@click.argument("path", type=click.Path(path_type=Path))
def backup_command(path: Path):
    """Write a consistent backup archive of the database to PATH while the app
    runs (a directory: a dated archive in it). Never overwrites a file."""
    from costguardian.services.ops import backup

    if path.is_dir():
        path = path / backup.archive_name(clock.now())
    try:
        result = backup.create(path)
    except OpsError as exc:
        raise click.ClickException(str(exc)) from None
    described = result.manifest
    click.echo(f"wrote {result.path} ({_size(result.bytes)}): {described['backend']} at schema "
               f"{described['schema_version']}, {len(described['tables'])} tables, {result.rows:,} rows, "
               f"dump SHA-256 {described['dump']['sha256']}")


@click.command("restore")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Replace a database that already holds data.")
def restore_command(path: Path, force: bool):
    """Restore the backup archive at PATH into the database (stop the app and
    the queue consumers first), check every table's row count against the
    archive's manifest and apply the migrations this release adds."""
    from costguardian.services.ops import restore

    try:
        result = restore.run(path, current_app.config["DATABASE_URL"], force=force)
    except OpsError as exc:
        raise click.ClickException(str(exc)) from None
    described = result.manifest
    click.echo(f"restored {path}: taken {described['created_at']} by version {described.get('app_version')}, "
               f"{result.tables} tables, {result.rows:,} rows, every count matches the manifest")
    click.echo("migrated forward: " + ", ".join(result.migrated) if result.migrated
               else "schema is current: no migration to apply")
    with connected(db.obj):
        unreadable = restore.unreadable_secrets()
    if unreadable:
        click.echo("warning: CG_ENCRYPTION_KEYS cannot open " + ", ".join(unreadable) + ": set the keys of the "
                   "installation that wrote the backup (they are not in the archive)", err=True)


@click.command("build-day-rollups")
def build_day_rollups_command():
    """Sum the daily rollups of every organization that lacks them (after the
    upgrade to migration 0029, or a stopped build) now, instead of waiting for
    the hourly task. Safe while the app serves: short transactions, resumable."""
    import time

    from costguardian.services.usage import days

    with connected(db):
        stale = days.stale_organizations()
        if not stale:
            click.echo("every organization's daily rollups are complete")
            return
        for org_id in stale:
            started = time.monotonic()
            days.build(org_id)
            click.echo(f"organization {org_id}: daily rollups built in {time.monotonic() - started:.1f} s")
