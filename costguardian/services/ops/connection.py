"""The database a backup reads or a restore writes, from its DATABASE_URL,
reached through plain driver connections and the PostgreSQL client tools."""
from __future__ import annotations

import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit


class OpsError(Exception):
    """A backup or restore cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class Target:
    url: str

    @property
    def backend(self) -> str:
        scheme = urlsplit(self.url).scheme
        if scheme == "sqlite":
            return "sqlite"
        if scheme in ("postgres", "postgresql"):
            return "postgresql"
        raise OpsError(f"DATABASE_URL must start with sqlite:/// or postgresql://, got scheme {scheme!r}")

    @property
    def sqlite_path(self) -> Path:
        path = self.url[len("sqlite:///"):]
        if not path or path == ":memory:":
            raise OpsError("an in-memory SQLite database cannot be backed up or restored")
        return Path(path)

    @property
    def label(self) -> str:
        """The database for messages: never the password."""
        return str(self.sqlite_path) if self.backend == "sqlite" else self.libpq_url

    @property
    def libpq_url(self) -> str:
        """The URL for pg_dump / pg_restore without its password (that goes in PGPASSWORD)."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = (f"{parts.username}@" if parts.username else "") + host + (f":{parts.port}" if parts.port else "")
        return urlunsplit(("postgresql", netloc, parts.path, parts.query, ""))

    def tool_environment(self) -> dict[str, str]:
        env = dict(os.environ)
        password = urlsplit(self.url).password
        if password:
            env["PGPASSWORD"] = unquote(password)
        return env

    def connect(self, autocommit: bool = False):
        if self.backend == "sqlite":
            path = self.sqlite_path
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(str(path), timeout=30, isolation_level=None if autocommit else "")
            connection.execute("PRAGMA busy_timeout = 30000")
            return connection
        import psycopg

        return psycopg.connect(self.url, autocommit=autocommit)


def pg_tool(name: str) -> str:
    """The path of a PostgreSQL client program, or a clear error."""
    found = shutil.which(name)
    if found is None:
        raise OpsError(f"{name} was not found on PATH: install the PostgreSQL client tools of the server's major "
                       f"version or newer (Debian: apt install postgresql-client-15) to back up or restore "
                       f"a PostgreSQL database")
    return found
