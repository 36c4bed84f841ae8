"""The backup archive: one tar file holding `manifest.json` and the dump.

The manifest says what the dump is and lets a restore prove it got all of
it back: the backend, the schema version (the migrations applied in the
copy), the row count of every table as of the copy, and the dump's size and
SHA-256. The counts come from the very snapshot the dump was taken from (the
SQLite copy itself; PostgreSQL's exported snapshot shared with pg_dump), so
they hold however busy the database was during the backup.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tarfile
from dataclasses import dataclass
from pathlib import Path

from costguardian import clock

FORMAT = "costguardian-backup"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
DUMP_NAMES = {"sqlite": "database.sqlite3", "postgresql": "database.pgdump"}
MIGRATION_TABLE = "schema_migration"
SUFFIX = ".cgbackup.tar"


class ArchiveError(Exception):
    """The file is not a readable Cost Guardian backup archive."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- what a database holds (through a plain DB-API connection) ---------------------------

def sqlite_tables(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                              "AND name NOT LIKE 'sqlite_%' ORDER BY name").fetchall()
    return [row[0] for row in rows]


def postgres_tables(connection) -> list[str]:
    rows = connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                              "ORDER BY tablename").fetchall()
    return [row[0] for row in rows]


def postgres_functions(connection) -> list[str]:
    """The schema's own functions (the triggers' and the admission's, migrations
    0031 and 0032), as `name(argument types)`; not those of extensions."""
    rows = connection.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = current_schema() AND p.prokind = 'f' AND NOT EXISTS "
        "(SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e') ORDER BY 1").fetchall()
    return [row[0] for row in rows]


def row_counts(connection, tables: list[str]) -> dict[str, int]:
    return {table: int(connection.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]) for table in tables}


def applied_migrations(connection, tables: list[str]) -> list[str]:
    if MIGRATION_TABLE not in tables:
        return []
    rows = connection.execute(f'SELECT name FROM "{MIGRATION_TABLE}"').fetchall()
    return sorted(row[0] for row in rows)


def describe(backend: str, counts: dict[str, int], migrations: list[str], dump: Path, app_version: str) -> dict:
    """The manifest of a dump, with the row counts and migrations of the
    snapshot the dump was taken from."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": clock.now().isoformat(timespec="seconds") + "Z",
        "app_version": app_version,
        "backend": backend,
        "schema_version": migrations[-1] if migrations else None,
        "migrations": migrations,
        "tables": dict(sorted(counts.items())),
        "dump": {"name": DUMP_NAMES[backend], "bytes": dump.stat().st_size, "sha256": sha256_of(dump)},
    }


# --- the tar file -------------------------------------------------------------------------

def write(path: Path, manifest: dict, dump: Path) -> int:
    """Write the archive atomically (a partial file renamed in place), readable
    by its owner only (it holds password hashes and encrypted secrets); returns its size."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as archive:
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size, info.mtime, info.mode = len(body), int(clock.now().timestamp()), 0o600
            archive.addfile(info, io.BytesIO(body))
            archive.add(dump, arcname=manifest["dump"]["name"], recursive=False)
            archive.close()
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path.stat().st_size


@dataclass
class Archive:
    path: Path
    manifest: dict

    @property
    def backend(self) -> str:
        return self.manifest["backend"]

    @property
    def migrations(self) -> list[str]:
        return list(self.manifest.get("migrations") or [])

    def extract_dump(self, directory: Path) -> Path:
        """The dump, copied out to `directory` and checked against the manifest."""
        expected = self.manifest["dump"]
        target = Path(directory) / DUMP_NAMES[self.backend]
        with tarfile.open(self.path, mode="r:*") as archive:
            try:
                member = archive.getmember(expected["name"])
            except KeyError:
                raise ArchiveError(f"{self.path}: the archive has no {expected['name']} (its dump)") from None
            source = archive.extractfile(member)
            if source is None:
                raise ArchiveError(f"{self.path}: {expected['name']} is not a file")
            with source, open(target, "wb") as out:
                for block in iter(lambda: source.read(1 << 20), b""):
                    out.write(block)
        size, digest = target.stat().st_size, sha256_of(target)
        if size != expected["bytes"] or digest != expected["sha256"]:
            raise ArchiveError(f"{self.path}: the dump is damaged: {size} bytes with SHA-256 {digest}, the manifest "
                               f"says {expected['bytes']} bytes with SHA-256 {expected['sha256']}")
        return target


def read(path: Path) -> Archive:
    """Open an archive and check its manifest (not yet the dump: see extract_dump)."""
    path = Path(path)
    try:
        with tarfile.open(path, mode="r:*") as archive:
            member = archive.getmember(MANIFEST_NAME)
            handle = archive.extractfile(member)
            manifest = json.loads(handle.read()) if handle is not None else None
    except FileNotFoundError:
        raise ArchiveError(f"{path}: no such file") from None
    except (tarfile.TarError, KeyError, OSError, ValueError) as exc:
        raise ArchiveError(f"{path} is not a Cost Guardian backup archive ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArchiveError(f"{path} is not a Cost Guardian backup archive (its manifest.json is not ours)")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ArchiveError(f"{path} was written by a newer Cost Guardian (archive format "
                           f"{manifest.get('format_version')}; this release reads up to {FORMAT_VERSION})")
    if manifest.get("backend") not in DUMP_NAMES or not isinstance(manifest.get("tables"), dict):
        raise ArchiveError(f"{path}: its manifest is incomplete (backend or table counts missing)")
    return Archive(path, manifest)
