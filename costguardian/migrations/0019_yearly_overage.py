"""A yearly overage price per metered plan: a subscription's prices must share
one billing interval, so a yearly subscription needs a yearly metered price."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('plan', 'stripe_metered_yearly_price', CharField(max_length=64, null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('plan', 'stripe_metered_yearly_price'))
