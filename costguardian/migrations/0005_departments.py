"""Departments: a cost-centre code (unique per organization when set), a manager and updated_at."""
# Generated from a schema diff on 2026-11-26 09:40; updated_at filled from created_at by hand.
from peewee import *


def up(migrator, db):
    class User(Model):
        class Meta:
            database = db
            table_name = 'users'

    migrator.migrate(migrator.add_column('department', 'code', CharField(null=True, max_length=32)))
    migrator.migrate(migrator.add_column('department', 'manager_id', ForeignKeyField(User, field=User.id, null=True, on_delete='SET NULL')))
    migrator.migrate(migrator.add_column('department', 'updated_at', DateTimeField(null=True)))
    db.execute_sql('UPDATE "department" SET "updated_at" = "created_at"')
    migrator.migrate(migrator.add_not_null('department', 'updated_at'))
    migrator.migrate(migrator.add_index('department', ('organization_id', 'code'), unique=True))


def down(migrator, db):
    migrator.migrate(migrator.drop_index('department', 'department_organization_id_code'))
    migrator.migrate(migrator.drop_index('department', 'department_manager_id'))
    migrator.migrate(migrator.drop_column('department', 'updated_at'))
    migrator.migrate(migrator.drop_column('department', 'manager_id'))
    migrator.migrate(migrator.drop_column('department', 'code'))
