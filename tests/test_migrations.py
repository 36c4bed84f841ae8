"""The migrations build exactly the schema the models describe, from an empty
database, on the backend under test."""
from __future__ import annotations

import uuid

import pytest
from peewee import PostgresqlDatabase, SqliteDatabase
from playhouse.schema_diff import diff_models

from costguardian.db import migration_runner
from costguardian.extensions import db
from costguardian.models import ALL_MODELS


@pytest.fixture
def scratch_databases(backend, tmp_path):
    """Two empty databases of the backend under test: one for the migrations,
    one for create_tables from the models."""
    if backend == "sqlite":
        yield SqliteDatabase(str(tmp_path / "migrated.db")), SqliteDatabase(str(tmp_path / "models.db"))
        return
    import os

    from playhouse.db_url import parse

    admin = PostgresqlDatabase(**parse(os.environ["TEST_DATABASE_URL"]))
    names = [f"cg_migrate_{uuid.uuid4().hex[:8]}", f"cg_models_{uuid.uuid4().hex[:8]}"]
    admin.connect()
    admin.connection().autocommit = True
    for name in names:
        admin.execute_sql(f'CREATE DATABASE "{name}"')
    params = parse(os.environ["TEST_DATABASE_URL"])
    params.pop("database")
    databases = [PostgresqlDatabase(name, **params) for name in names]
    try:
        yield tuple(databases)
    finally:
        for database in databases:
            database.close()
        for name in names:
            admin.execute_sql(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


BOOKKEEPING = ("schema_migration", "schema_backfill")  # the migrations' own tables, no models


def _columns(database) -> dict:
    return {table: sorted((c.name, c.data_type.lower(), c.null) for c in database.get_columns(table))
            for table in database.get_tables() if table not in BOOKKEEPING}


def _foreign_keys(database) -> dict:
    return {table: sorted((fk.column, fk.dest_table, fk.dest_column) for fk in database.get_foreign_keys(table))
            for table in database.get_tables() if table not in BOOKKEEPING}


def _partitioning(database) -> set[str]:
    """What PostgreSQL has beyond the models since 0030 (services/ops/partitions.py): usage_event's
    month partitions and its key table usage_event_key, which holds the uniqueness of
    (organization, event_id) instead of usage_event. SQLite keeps the model's table exactly."""
    if not isinstance(database, PostgresqlDatabase):
        return set()
    rows = database.execute_sql("SELECT inhrelid::regclass::text FROM pg_inherits "
                                "WHERE inhparent = 'usage_event'::regclass").fetchall()
    return {name.strip('"') for name, in rows} | {"usage_event_key"}


def _model_diff(database):
    """diff_models, but on PostgreSQL usage_event's indexes are compared here: peewee's introspection
    sees no index of a partitioned table, and (organization, event_id) is unique in usage_event_key."""
    diff = diff_models(database, ALL_MODELS)
    if not isinstance(database, PostgresqlDatabase):
        return diff
    rows = database.execute_sql(
        "SELECT ix.indisunique, ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(n, o) "
        "JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.n ORDER BY k.o) "
        "FROM pg_index ix WHERE ix.indrelid = 'usage_event'::regclass AND NOT ix.indisprimary").fetchall()
    found = {(tuple(columns), unique) for unique, columns in rows}
    wanted = {(i.columns, i.unique) for i in diff.add_indexes if i.table == "usage_event"}
    assert found == wanted - {(("organization_id", "event_id"), True)}, (found, wanted)
    key = database.execute_sql("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'p' "
                               "AND conrelid = 'usage_event_key'::regclass").fetchone()
    assert key == ("PRIMARY KEY (organization_id, event_id)",)
    return diff._replace(add_indexes=[i for i in diff.add_indexes if i.table != "usage_event"])


def test_migrations_from_empty_equal_the_models(scratch_databases):
    migrated, from_models = scratch_databases
    previous = db.obj
    try:
        db.initialize(migrated)
        applied = migration_runner(migrated).up()
        assert applied and applied[0] == "0001_initial"
        assert not _model_diff(migrated), str(_model_diff(migrated))
        extra = _partitioning(migrated)
        db.initialize(from_models)
        from_models.create_tables(ALL_MODELS)
        assert {t: c for t, c in _columns(migrated).items() if t not in extra} == _columns(from_models)
        assert {t: k for t, k in _foreign_keys(migrated).items() if t not in extra} == _foreign_keys(from_models)
        assert migration_runner(migrated).up() == []  # idempotent
    finally:
        db.initialize(previous)


def test_every_model_is_listed_for_migration():
    from costguardian.models import BaseModel

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    concrete = {m for m in subclasses(BaseModel) if m.__module__.startswith("costguardian.models")
                and m.__name__ not in ("TenantModel", "RollupBase")}
    assert concrete == set(ALL_MODELS)


def test_sqlite_runs_in_wal_mode_with_foreign_keys(app, backend):
    if backend != "sqlite":
        pytest.skip("SQLite pragmas")
    with app.app_context():
        assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_department_keys_are_filled_and_case_variants_renumbered(scratch_databases):
    """Before 0010 SQLite let "Émile" and "ÉMILE" (and their codes) coexist;
    the later row is renumbered so that the caseless unique keys can be built."""
    migrated, _ = scratch_databases
    previous = db.obj
    try:
        db.initialize(migrated)
        runner = migration_runner(migrated)
        runner.up("0009_audit_action_index")
        p, now = migrated.param, "2026-01-01 00:00:00"
        for org_id, slug in ((1, "acme"), (2, "globex")):
            migrated.execute_sql('INSERT INTO "organization" ("id", "name", "slug", "time_zone", "currency", '
                                 f'"created_at", "updated_at") VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})',
                                 (org_id, slug, slug, "UTC", "USD", now, now))
        rows = [(1, "Émile", "ÉM-1"), (1, "ÉMILE", "ém-1"), (1, "ÉMILE (2)", None), (1, "Sales", "S"),
                (2, "émile", "ém-1")]
        for org_id, name, code in rows:
            migrated.execute_sql('INSERT INTO "department" ("organization_id", "name", "code", "created_at", '
                                 f'"updated_at") VALUES ({p}, {p}, {p}, {p}, {p})', (org_id, name, code, now, now))
        assert runner.up()[0] == "0010_department_caseless_keys"
        stored = migrated.execute_sql('SELECT "organization_id", "name", "name_key", "code", "code_key" '
                                      'FROM "department" ORDER BY "id"').fetchall()
        assert [tuple(row) for row in stored] == [
            (1, "Émile", "émile", "ÉM-1", "ém-1"),
            (1, "ÉMILE (3)", "émile (3)", "ém-1-2", "ém-1-2"),  # "(2)" is another department's name
            (1, "ÉMILE (2)", "émile (2)", None, None),
            (1, "Sales", "sales", "S", "s"),
            (2, "émile", "émile", "ém-1", "ém-1"),  # another organization's rows are not compared
        ]
    finally:
        db.initialize(previous)
