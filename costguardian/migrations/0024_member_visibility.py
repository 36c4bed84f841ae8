"""Whether members see every person's spend and may export events with every
user's email (services/team/visibility.py); off by default: members see the
organization's and departments' totals and their own usage in detail."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('organization', 'members_see_everyone', BooleanField(default=False)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('organization', 'members_see_everyone'))
