"""Helpers of the upgrade tests: the release history, scratch databases that
are copies of a release's empty schema, and a filler that writes rows with
plain SQL against whatever schema the database has, driven by its own
introspected columns (not by today's models, which describe the head)."""
from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

from peewee import (BooleanField, DateField, DateTimeField, DecimalField, FloatField, ForeignKeyField, JSONField,
                    PostgresqlDatabase, SqliteDatabase)

from costguardian.db import MIGRATIONS_DIR
from costguardian.models import ALL_MODELS

BOOKKEEPING = ("schema_migration", "schema_backfill")
RELEASES_FILE = Path(MIGRATIONS_DIR) / "RELEASES.toml"


@dataclass(frozen=True)
class Release:
    tag: str
    commit: str
    last_migration: str
    brought: str


def releases() -> list[Release]:
    with RELEASES_FILE.open("rb") as file:
        return [Release(**entry) for entry in tomllib.load(file)["release"]]


# --- scratch databases ------------------------------------------------------------

class Databases:
    """Databases of the backend under test, made empty or as copies of
    another (SQLite: the file; PostgreSQL: CREATE DATABASE … TEMPLATE),
    all dropped at the end."""

    def __init__(self, backend: str, directory: Path):
        self.backend, self.directory = backend, directory
        self.names: list[str] = []
        self.opened: list = []

    def _admin(self):
        import psycopg

        return psycopg.connect(os.environ["TEST_DATABASE_URL"], autocommit=True)

    def new(self, template: str | None = None) -> str:
        """A database name: a new empty one, or a copy of `template` (closed)."""
        name = f"cg_upgrade_{uuid.uuid4().hex[:10]}"
        if self.backend == "sqlite":
            if template:
                shutil.copyfile(self.directory / f"{template}.db", self.directory / f"{name}.db")
            return name
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
        self.names.append(name)
        return name

    def url(self, name: str) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.directory / f'{name}.db'}"
        return os.environ["TEST_DATABASE_URL"].rsplit("/", 1)[0] + "/" + name

    def open(self, name: str):
        """A plain (unpooled) connection handle on `name`."""
        if self.backend == "sqlite":
            database = SqliteDatabase(str(self.directory / f"{name}.db"), pragmas={"foreign_keys": 1})
        else:
            from playhouse.db_url import parse

            params = parse(os.environ["TEST_DATABASE_URL"])
            params.pop("database")
            database = PostgresqlDatabase(name, **params)
        self.opened.append(database)
        return database

    def close(self) -> None:
        for database in self.opened:
            database.close()
        if self.names:
            with self._admin() as admin:
                for name in self.names:
                    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- the filler -----------------------------------------------------------------------

_MODEL_FIELDS = {(m._meta.table_name, f.column_name): f for m in ALL_MODELS for f in m._meta.sorted_fields}
GENERIC_DAY = datetime(2026, 1, 1, 12, 0)


def data_tables(database) -> list[str]:
    """The tables rows are written to and read from: not the migrations' own,
    nor PostgreSQL's partitions of usage_event (0030), whose rows are the
    parent table's (writing them into a partition as well wrote them twice)."""
    partitions = set()
    if isinstance(database, PostgresqlDatabase):
        partitions = {name for (name,) in database.execute_sql(
            "SELECT relname FROM pg_class WHERE relispartition AND relnamespace = current_schema()::regnamespace")}
    return [t for t in database.get_tables() if t not in BOOKKEEPING and t not in partitions]


class Filler:
    """Writes rows into the schema the database has now. `insert(table,
    values)` drops the values of columns this schema lacks and fills every
    NOT NULL column left without one; `fill_generic(n)` writes n rows into
    every table (parents first), each referencing the parents' generic rows."""

    def __init__(self, database):
        self.db = database
        self.tables = data_tables(database)
        self.columns = {t: {c.name: c for c in database.get_columns(t)} for t in self.tables}
        self.fks = {t: {fk.column: (fk.dest_table, fk.dest_column) for fk in database.get_foreign_keys(t)}
                    for t in self.tables}
        self.pks = {t: database.get_primary_keys(t) for t in self.tables}
        self.unique = {t: {c for index in database.get_indexes(t) if index.unique for c in index.columns}
                       for t in self.tables}
        self.lengths = self._lengths()
        self.generic: dict[str, list[dict]] = {t: [] for t in self.tables}

    def _lengths(self) -> dict:
        if isinstance(self.db, PostgresqlDatabase):
            rows = self.db.execute_sql("SELECT table_name, column_name, character_maximum_length FROM "
                                       "information_schema.columns WHERE table_schema = 'public' "
                                       "AND character_maximum_length IS NOT NULL").fetchall()
            return {(t, c): n for t, c, n in rows}
        found = {}
        for table, columns in self.columns.items():
            for column in columns.values():
                match = re.search(r"\((\d+)\)", column.data_type)
                if match and "char" in column.data_type.lower():
                    found[(table, column.name)] = int(match.group(1))
        return found

    def value(self, table: str, column, i: int, parents: bool = True):
        """A plausible value of `column` for generic row `i`."""
        if column.name in self.fks[table]:
            dest, dest_column = self.fks[table][column.name]
            rows = self.generic.get(dest) or []
            return rows[i % len(rows)][dest_column] if rows and parents else None
        field = _MODEL_FIELDS.get((table, column.name))
        unique = column.name in self.unique[table] or column.name in self.pks[table]
        if field is not None and not unique and field.default is not None:
            default = field.default() if callable(field.default) else field.default
            return json.dumps(default) if isinstance(field, JSONField) else field.db_value(default)
        kind = column.data_type.lower()
        if isinstance(field, BooleanField) or kind == "boolean":
            return i % 2 == 1
        if isinstance(field, DateTimeField) or "timestamp" in kind or kind == "datetime":
            return GENERIC_DAY.replace(day=1 + i % 28, minute=i % 60)
        if isinstance(field, DateField) or kind == "date":
            return date(2026, 1, 1 + i % 28)
        if isinstance(field, JSONField) or "json" in kind:
            return json.dumps({"n": i})
        if isinstance(field, (DecimalField, FloatField)) or kind in ("real", "numeric", "double precision"):
            return Decimal(i) + Decimal("0.5")
        if "int" in kind:
            return 1000 + i
        text = f"{i}{column.name}"
        limit = self.lengths.get((table, column.name))
        return text[:limit] if limit else text

    def insert(self, table: str, values: dict, i: int = 0, fill_nullable: bool = False) -> dict:
        """Insert one row; returns it as stored (with its id)."""
        columns = self.columns[table]
        row = {name: value for name, value in values.items() if name in columns}
        # (usage_event's key became (id, occurred_at) when 0030 partitioned it: its id still comes from its sequence)
        auto_id = "id" in self.pks[table] and "int" in columns["id"].data_type.lower()
        for name, column in columns.items():
            if name in row or (auto_id and name == "id") or (column.null and not fill_nullable):
                continue
            row[name] = self.value(table, column, i)
        names = list(row)
        p = self.db.param
        sql = (f'INSERT INTO "{table}" ({", ".join(chr(34) + n + chr(34) for n in names)}) '
               f'VALUES ({", ".join([p] * len(names))})' + (' RETURNING "id"' if auto_id else ""))
        cursor = self.db.execute_sql(sql, [row[n] for n in names])
        if auto_id:
            row["id"] = cursor.fetchone()[0]
        return row

    def fill_generic(self, count: int = 2) -> None:
        for table in self._parents_first():
            for i in range(count):
                self.generic[table].append(self.insert(table, {}, i, fill_nullable=True))

    def _parents_first(self) -> list[str]:
        done: list[str] = []
        waiting = list(self.tables)
        while waiting:
            ready = [t for t in waiting
                     if all(dest in done or dest == t for dest, _ in self.fks[t].values())]
            if not ready:  # a cycle: its nullable references stay NULL (value() finds no parent rows)
                ready = waiting[:1]
            for table in sorted(ready):
                done.append(table)
                waiting.remove(table)
        return done


def snapshot(database) -> dict[str, dict[tuple, dict]]:
    """Every row of every table, keyed by primary key."""
    found = {}
    for table in data_tables(database):
        keys = database.get_primary_keys(table)
        if "id" in keys:  # usage_event's key became (id, occurred_at) when 0030 partitioned it: rows keep their id
            keys = ["id"]
        cursor = database.execute_sql(f'SELECT * FROM "{table}"')
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, values)) for values in cursor.fetchall()]
        found[table] = {tuple(row[k] for k in keys): row for row in rows}
    return found


def model_default(table: str, column: str):
    """What a column added by a later migration holds for an older row:
    (True, value) for a constant default, (False, None) when unknown."""
    field = _MODEL_FIELDS.get((table, column))
    if field is None or isinstance(field, ForeignKeyField):
        return (field is not None and field.null, None)
    if field.default is None:
        return (field.null, None)
    if callable(field.default) and field.default not in (dict, list):
        return (False, None)  # clock.now and the like
    default = field.default() if callable(field.default) else field.default
    return (True, default)
