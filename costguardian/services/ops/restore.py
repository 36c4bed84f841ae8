"""`flask restore`: put a backup archive back, then prove it.

Refusals (each an OpsError with what to do): a file that is not an archive
or whose dump is damaged (size or SHA-256 differ from the manifest); an
archive of the other backend; an archive from a newer schema (migrations
this release does not have); a database that already holds rows, unless
`force`. Then the dump replaces everything in the database (SQLite: the
backup API copies it into the database file under SQLite's own locks, so no
stale -wal file survives; PostgreSQL: every table is dropped and the dump
recreated in one transaction, `pg_restore`'s SQL run by `psql`),
every table's row count is checked against the manifest, and the migrations
this release adds are applied.

Stop the web processes and the queue consumers first: a restore replaces the
database under them.
"""
from __future__ import annotations

import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from costguardian.db import connect_database, migrate, migration_runner
from costguardian.services.ops import manifest
from costguardian.services.ops.connection import OpsError, Target, pg_tool
from costguardian.services.ops.manifest import ArchiveError


@dataclass
class RestoreResult:
    manifest: dict
    tables: int
    rows: int
    migrated: list[str] = field(default_factory=list)


def known_migrations() -> list[str]:
    from costguardian.db import MIGRATIONS_DIR
    from playhouse.migrations import Migration

    return [m.name for m in Migration.load_directory(MIGRATIONS_DIR)]


def check(path: Path, url: str, force: bool = False) -> manifest.Archive:
    """Every refusal, before anything is written; returns the opened archive."""
    try:
        archive = manifest.read(path)
    except ArchiveError as exc:
        raise OpsError(str(exc)) from None
    target = Target(url)
    if archive.backend != target.backend:
        raise OpsError(f"{path} is a {_name(archive.backend)} backup and DATABASE_URL is a {_name(target.backend)} "
                       f"database: restore it into a {_name(archive.backend)} database (then copy the data across "
                       f"with your own tools if you are moving between backends)")
    newer = [name for name in archive.migrations if name not in set(known_migrations())]
    if newer:
        raise OpsError(f"{path} comes from a newer schema: it has migration(s) {', '.join(newer)} that this release "
                       f"of Cost Guardian does not; upgrade Cost Guardian to the release that wrote it (version "
                       f"{archive.manifest.get('app_version', 'unknown')}) or later, then restore")
    if not force:
        filled = _filled_tables(target)
        if filled:
            shown = ", ".join(f"{table}: {count:,}" for table, count in list(filled.items())[:5])
            raise OpsError(f"the database {target.label} is not empty ({sum(filled.values()):,} rows in "
                           f"{len(filled)} tables, e.g. {shown}); a restore replaces everything in it — pass "
                           f"--force to do so (back it up first if in doubt)")
    return archive


def run(path: Path, url: str, force: bool = False) -> RestoreResult:
    """Check, restore, verify the counts, migrate forward."""
    archive = check(path, url, force)
    target = Target(url)
    with tempfile.TemporaryDirectory(prefix="cg-restore-") as scratch:
        try:
            dump = archive.extract_dump(Path(scratch))
        except ArchiveError as exc:
            raise OpsError(str(exc)) from None
        if target.backend == "sqlite":
            _restore_sqlite(target, dump)
        else:
            _restore_postgres(target, dump, Path(scratch))
    expected = archive.manifest["tables"]
    verify(target, expected)
    database = connect_database(url)
    try:
        migrated = migrate(database)
    finally:
        database.close_all() if hasattr(database, "close_all") else database.close()
    return RestoreResult(archive.manifest, len(expected), sum(expected.values()), migrated)


def verify(target: Target, expected: dict[str, int]) -> None:
    """The restored database holds exactly the tables and row counts of the manifest."""
    connection = target.connect()
    try:
        tables = _tables(target, connection)
        actual = manifest.row_counts(connection, [t for t in tables if t in expected])
    finally:
        connection.close()
    problems = [f"{table}: missing" for table in expected if table not in actual]
    problems += [f"{table}: {actual[table]:,} rows, the manifest says {count:,}"
                 for table, count in expected.items() if table in actual and actual[table] != count]
    problems += [f"{table}: not in the archive" for table in tables if table not in expected]
    if problems:
        raise OpsError("the restored database does not match the archive's manifest (" + "; ".join(problems[:10])
                       + "); do not start the app on it: restore again, or from another archive")


def schema_version(url: str) -> list[str]:
    """The migrations applied in the database at `url`."""
    database = connect_database(url)
    try:
        with database.connection_context():
            return [m.name for m in migration_runner(database).status() if m.applied]
    finally:
        database.close_all() if hasattr(database, "close_all") else database.close()


def unreadable_secrets(limit: int = 20) -> list[str]:
    """Encrypted secrets of the app's database that CG_ENCRYPTION_KEYS cannot
    open ("provider credentials #3"): a restore onto a server with other keys."""
    from cryptography.fernet import InvalidToken

    from costguardian import crypto
    from costguardian.services.encryption import ENCRYPTED_FIELDS

    found = []
    for model, field_name, what in ENCRYPTED_FIELDS:
        column = getattr(model, field_name)
        for row_id, token in model.select(model.id, column).tuples().iterator():
            try:
                crypto.decrypt(token)
            except (InvalidToken, ValueError):
                found.append(f"{what} #{row_id}")
                if len(found) >= limit:
                    return found
    return found


# --- helpers -------------------------------------------------------------------------

def _name(backend: str) -> str:
    return {"sqlite": "SQLite", "postgresql": "PostgreSQL"}[backend]


def _tables(target: Target, connection) -> list[str]:
    if target.backend == "sqlite":
        return manifest.sqlite_tables(connection)
    return manifest.postgres_tables(connection)


def _filled_tables(target: Target) -> dict[str, int]:
    """Tables holding rows (the migrations' own bookkeeping does not count)."""
    if target.backend == "sqlite" and not target.sqlite_path.exists():
        return {}
    try:
        connection = target.connect()
    except Exception as exc:
        raise OpsError(f"cannot connect to {target.label}: {exc}") from None
    try:
        tables = [t for t in _tables(target, connection) if t != manifest.MIGRATION_TABLE]
        counts = manifest.row_counts(connection, tables)
    finally:
        connection.close()
    return {table: count for table, count in sorted(counts.items(), key=lambda kv: -kv[1]) if count}


def _restore_sqlite(target: Target, dump: Path) -> None:
    source = sqlite3.connect(str(dump))
    destination = target.connect()
    try:
        source.backup(destination)  # replaces every page of the database, under its write lock
        destination.execute("PRAGMA journal_mode = WAL")
    except sqlite3.Error as exc:
        raise OpsError(f"could not write {target.label}: {exc} (is the app still running? stop it first)") from None
    finally:
        destination.close()
        source.close()


def _restore_postgres(target: Target, dump: Path, scratch: Path) -> None:
    """One transaction drops every table and function of the schema and
    recreates the archive's: `pg_restore` writes the dump as SQL, piped into `psql
    --single-transaction` after the DROPs, so a failure leaves the database as
    it was. (`pg_restore --clean` alone cannot: it fails on constraints that
    later migrations added to the archive's tables.)"""
    import psycopg

    pg_restore, psql = pg_tool("pg_restore"), pg_tool("psql")
    try:
        connection = target.connect()
    except psycopg.Error as exc:
        raise OpsError(f"cannot connect to {target.label}: {exc}") from None
    try:
        tables = manifest.postgres_tables(connection)
        functions = manifest.postgres_functions(connection)
    finally:
        connection.close()
    prelude = scratch / "drop.sql"
    prelude.write_text("".join(f'DROP TABLE IF EXISTS "{table}" CASCADE;\n' for table in tables)
                       + "".join(f"DROP FUNCTION IF EXISTS {function} CASCADE;\n" for function in functions))
    env = target.tool_environment()
    script = subprocess.Popen([pg_restore, "--no-owner", "--no-privileges", "--file=-", str(dump)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    applied = subprocess.run([psql, "--no-psqlrc", "--quiet", "--single-transaction", "--set=ON_ERROR_STOP=1",
                              f"--file={prelude}", "--file=-", f"--dbname={target.libpq_url}"],
                             env=env, stdin=script.stdout, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    script.stdout.close()
    script_errors = script.stderr.read().decode(errors="replace").strip()
    script.stderr.close()
    script.wait()
    if applied.returncode != 0:  # first: psql stopping also breaks pg_restore's pipe
        raise OpsError(f"restoring into {target.label} failed (psql exit {applied.returncode}); the database was "
                       f"left as it was: {applied.stderr.strip()}")
    if script.returncode != 0:
        raise OpsError(f"pg_restore could not read the dump (exit {script.returncode}); the database was left as "
                       f"it was: {script_errors}")
