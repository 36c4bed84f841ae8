"""Departments: names and codes unique ignoring case the same way on both
databases, through keys folded in Python (name_key, code_key) with unique
indexes. SQLite's LOWER() folds ASCII only, so "Émile" and "ÉMILE" may both
exist from before: the later of two such rows gets a numbered name ("ÉMILE (2)")
or code ("CC-9-2"), so that the indexes can be built."""
# Generated from a schema diff on 2026-12-04 21:01; the backfill added by hand.
import unicodedata

from peewee import *

MAX_NAME, MAX_CODE = 120, 32


def caseless(text):
    """Frozen copy of costguardian.models.org.caseless."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", text).casefold())


def _free(value, org_id, taken, limit, number):
    """`value`, numbered (`number` formats the suffix) until no other row of
    the organization has its key."""
    candidate, n = value, 2
    while (org_id, caseless(candidate)) in taken:
        suffix = number.format(n)
        candidate, n = value[:limit - len(suffix)] + suffix, n + 1
    taken.add((org_id, caseless(candidate)))
    return candidate


def _backfill(db):
    rows = db.execute_sql('SELECT "id", "organization_id", "name", "code" FROM "department" ORDER BY "id"').fetchall()
    # Every key some row keeps is taken before any row is renumbered, so that a
    # new name never meets an existing one.
    names, codes, first_name, first_code = set(), set(), set(), set()
    for row_id, org_id, name, code in rows:
        if (org_id, caseless(name)) not in names:
            names.add((org_id, caseless(name)))
            first_name.add(row_id)
        if code and (org_id, caseless(code)) not in codes:
            codes.add((org_id, caseless(code)))
            first_code.add(row_id)
    p = db.param
    for row_id, org_id, name, code in rows:
        if row_id not in first_name:
            name = _free(name, org_id, names, MAX_NAME, " ({})")
        if code and row_id not in first_code:
            code = _free(code, org_id, codes, MAX_CODE, "-{}")
        db.execute_sql(f'UPDATE "department" SET "name" = {p}, "name_key" = {p}, "code" = {p}, "code_key" = {p} '
                       f'WHERE "id" = {p}', (name, caseless(name), code, caseless(code) if code else None, row_id))


def up(migrator, db):
    migrator.migrate(migrator.add_column('department', 'name_key', CharField(null=True, max_length=360)))
    migrator.migrate(migrator.add_column('department', 'code_key', CharField(null=True, max_length=96)))
    _backfill(db)
    migrator.migrate(migrator.add_not_null('department', 'name_key'))
    migrator.migrate(migrator.add_index('department', ('organization_id', 'code_key'), unique=True))
    migrator.migrate(migrator.add_index('department', ('organization_id', 'name_key'), unique=True))


def down(migrator, db):
    migrator.migrate(migrator.drop_index('department', 'department_organization_id_name_key'))
    migrator.migrate(migrator.drop_index('department', 'department_organization_id_code_key'))
    migrator.migrate(migrator.drop_column('department', 'code_key'))
    migrator.migrate(migrator.drop_column('department', 'name_key'))
