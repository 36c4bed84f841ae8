"""Helpers of the backup and restore tests: scratch databases of the backend
under test, and archives edited on purpose."""
from __future__ import annotations

import io
import json
import os
import tarfile
import uuid
from pathlib import Path

from peewee import Database

from costguardian.db import connect_database


class ScratchDatabases:
    """Empty databases on the backend under test, dropped at the end (made
    like tests/test_migrations.py's scratch databases)."""

    def __init__(self, backend: str, directory: Path):
        self.backend, self.directory = backend, directory
        self.names: list[str] = []
        self.opened: list[Database] = []

    def url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.directory / f'scratch-{uuid.uuid4().hex[:8]}.db'}"
        import psycopg

        name = f"cg_restore_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(os.environ["TEST_DATABASE_URL"], autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        self.names.append(name)
        return os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[0] + "/" + name

    def open(self, url: str) -> Database:
        """A peewee Database on `url` (closed at the end)."""
        database = connect_database(url)
        self.opened.append(database)
        return database

    def close(self) -> None:
        for database in self.opened:
            database.close_all() if hasattr(database, "close_all") else database.close()
        if self.names:
            import psycopg

            with psycopg.connect(os.environ["TEST_DATABASE_URL"], autocommit=True) as admin:
                for name in self.names:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rewrite_archive(path: Path, target: Path, manifest_change=None, dump_change=None) -> Path:
    """A copy of the archive at `path` with its manifest and/or dump bytes changed."""
    with tarfile.open(path) as source:
        manifest = json.loads(source.extractfile("manifest.json").read())
        dump_name = manifest["dump"]["name"]
        dump = source.extractfile(dump_name).read()
    if manifest_change:
        manifest_change(manifest)
    if dump_change:
        dump = dump_change(dump)
    with tarfile.open(target, "w") as out:
        for name, body in (("manifest.json", json.dumps(manifest).encode()), (dump_name, dump)):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            out.addfile(info, io.BytesIO(body))
    return target
