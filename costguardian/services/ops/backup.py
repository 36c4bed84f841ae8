"""`flask backup` and the scheduled backup: a consistent copy of the whole
database, taken while the app runs, in one archive (manifest.py).

SQLite: the online backup API copies every page in one read transaction
(WAL mode: writers go on meanwhile); the counts are read from the copy.
PostgreSQL: one REPEATABLE READ transaction exports its snapshot, counts the
rows in it and hands it to `pg_dump -Fc --snapshot`, so dump and counts see
the same instant. The password travels in PGPASSWORD, never on the command line.

The scheduled backup (CG_BACKUP_SCHEDULE, a crontab; off when unset) writes
dated archives to CG_BACKUP_DIR, keeps the newest CG_BACKUP_KEEP and records
its last success in the platform_setting row "ops.last_backup" (read by the
System health page).
"""
from __future__ import annotations

import functools
import sqlite3
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import current_app
from peewee import EXCLUDED

from costguardian import clock
from costguardian.services.ops import manifest
from costguardian.services.ops.connection import OpsError, Target, pg_tool

LAST_BACKUP_KEY = "ops.last_backup"
ARCHIVE_PREFIX = "costguardian-"
DEFAULT_KEEP = 14


@dataclass
class BackupResult:
    path: Path
    bytes: int
    manifest: dict

    @property
    def rows(self) -> int:
        return sum(self.manifest["tables"].values())


def _app_version() -> str:
    from costguardian.services.platform import health

    return health.version()


def create(path: Path, url: str | None = None) -> BackupResult:
    """Write an archive of the database at `url` (default: the app's) to `path`."""
    path = Path(path)
    if path.exists():
        raise OpsError(f"{path} already exists; choose a new file name (a backup never overwrites one)")
    if not path.parent.is_dir():
        raise OpsError(f"{path.parent} is not a directory")
    target = Target(url or current_app.config["DATABASE_URL"])
    with tempfile.TemporaryDirectory(prefix=".cg-backup-", dir=path.parent) as scratch:
        dump = Path(scratch) / manifest.DUMP_NAMES[target.backend]
        if target.backend == "sqlite":
            described = _sqlite(target, dump)
        else:
            described = _postgres(target, dump)
        size = manifest.write(path, described, dump)
    return BackupResult(path, size, described)


def _sqlite(target: Target, dump: Path) -> dict:
    source_path = target.sqlite_path
    if not source_path.exists():
        raise OpsError(f"the SQLite database {source_path} does not exist")
    source = sqlite3.connect(str(source_path), timeout=30)
    copy = sqlite3.connect(str(dump))
    try:
        source.backup(copy)  # all pages in one step: one read transaction, one instant
        copy.execute("PRAGMA journal_mode = DELETE")  # a standalone file, no -wal beside it
        check = copy.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise OpsError(f"the copy of {source_path} fails SQLite's quick_check: {check}")
        tables = manifest.sqlite_tables(copy)
        counts, migrations = manifest.row_counts(copy, tables), manifest.applied_migrations(copy, tables)
    finally:
        copy.close()
        source.close()
    return manifest.describe("sqlite", counts, migrations, dump, _app_version())


def _postgres(target: Target, dump: Path) -> dict:
    import psycopg

    pg_dump = pg_tool("pg_dump")
    try:
        connection = target.connect()
    except psycopg.Error as exc:
        raise OpsError(f"cannot connect to {target.label}: {exc}") from None
    try:
        connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        connection.read_only = True
        snapshot = connection.execute("SELECT pg_export_snapshot()").fetchone()[0]
        tables = manifest.postgres_tables(connection)
        counts = manifest.row_counts(connection, tables)
        migrations = manifest.applied_migrations(connection, tables)
        command = [pg_dump, "--format=custom", f"--snapshot={snapshot}", f"--file={dump}",
                   f"--dbname={target.libpq_url}"]
        finished = subprocess.run(command, env=target.tool_environment(), capture_output=True, text=True)
        if finished.returncode != 0:
            raise OpsError(f"pg_dump failed (exit {finished.returncode}): {finished.stderr.strip()}")
    finally:
        connection.rollback()
        connection.close()
    return manifest.describe("postgresql", counts, migrations, dump, _app_version())


# --- the schedule ---------------------------------------------------------------------

@functools.lru_cache(maxsize=8)
def _crontab(spec: str):
    from huey import crontab

    fields = spec.split()
    if len(fields) != 5:
        raise OpsError(f"CG_BACKUP_SCHEDULE must be a crontab of 5 fields (minute hour day month weekday, UTC), "
                       f"got {spec!r}")
    return crontab(*fields, strict=True)


def schedule_due(spec: str | None, moment: datetime) -> bool:
    """Whether the scheduled backup runs at this minute (never when unset)."""
    if not spec:
        return False
    return bool(_crontab(str(spec))(moment))


@dataclass
class Settings:
    schedule: str | None
    directory: Path
    keep: int


def settings(config=None) -> Settings:
    config = config if config is not None else current_app.config
    from costguardian.config import PROJECT_ROOT

    # Relative to the project, like a relative sqlite:/// path: the same place from any working directory.
    directory = PROJECT_ROOT / (config.get("CG_BACKUP_DIR") or Path(current_app.instance_path) / "backups")
    try:
        keep = int(config.get("CG_BACKUP_KEEP") or DEFAULT_KEEP)
    except (TypeError, ValueError):
        raise OpsError(f"CG_BACKUP_KEEP must be a whole number, got {config.get('CG_BACKUP_KEEP')!r}") from None
    if keep < 1:
        raise OpsError("CG_BACKUP_KEEP must be at least 1")
    schedule = config.get("CG_BACKUP_SCHEDULE") or None
    if schedule:
        _crontab(str(schedule))  # a malformed schedule is reported, not ignored
    return Settings(schedule, Path(directory), keep)


def archive_name(moment: datetime) -> str:
    return f"{ARCHIVE_PREFIX}{moment:%Y%m%dT%H%M%SZ}{manifest.SUFFIX}"


def run_scheduled() -> BackupResult | None:
    """One scheduled backup: a dated archive, older ones pruned, success recorded."""
    chosen = settings()
    if not chosen.schedule:
        return None
    chosen.directory.mkdir(parents=True, exist_ok=True)
    result = create(chosen.directory / archive_name(clock.now()))
    prune(chosen.directory, chosen.keep)
    record_success(result)
    return result


def prune(directory: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` scheduled archives (by their dated names;
    other files in the directory are never touched)."""
    archives = sorted(p for p in Path(directory).glob(f"{ARCHIVE_PREFIX}*{manifest.SUFFIX}") if p.is_file())
    doomed = archives[:-keep] if keep > 0 else archives
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def record_success(result: BackupResult) -> None:
    from costguardian.models import PlatformSetting

    now = clock.now()
    value = {"at": now.isoformat(timespec="seconds"), "file": str(result.path), "bytes": result.bytes,
             "schema_version": result.manifest.get("schema_version"), "rows": result.rows}
    (PlatformSetting.insert(key=LAST_BACKUP_KEY, value=value, updated_at=now)
     .on_conflict(conflict_target=[PlatformSetting.key],
                  update={PlatformSetting.value: EXCLUDED.value, PlatformSetting.updated_at: now})
     .execute())


@dataclass
class Status:
    """What System health shows about backups."""
    enabled: bool
    schedule: str | None
    directory: str
    keep: int
    last_at: datetime | None = None
    last_file: str = ""
    last_bytes: int = 0
    error: str = ""

    @property
    def last_name(self) -> str:
        return Path(self.last_file).name


def status() -> Status:
    from costguardian.models import PlatformSetting

    try:
        chosen = settings()
    except OpsError as exc:
        config = current_app.config
        return Status(False, config.get("CG_BACKUP_SCHEDULE"), str(config.get("CG_BACKUP_DIR") or ""), 0,
                      error=str(exc))
    result = Status(bool(chosen.schedule), chosen.schedule, str(chosen.directory), chosen.keep)
    row = PlatformSetting.get_or_none(PlatformSetting.key == LAST_BACKUP_KEY)
    if row is not None and isinstance(row.value, dict):
        try:
            result.last_at = datetime.fromisoformat(row.value["at"])
        except (KeyError, TypeError, ValueError):
            result.last_at = None
        result.last_file, result.last_bytes = str(row.value.get("file", "")), int(row.value.get("bytes") or 0)
    return result
