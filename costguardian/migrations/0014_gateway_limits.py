"""Gateway rate limits: requests and tokens per minute per API key and per
organization, and whether a key lets a call override its attribution."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    migrator.migrate(migrator.add_column('api_key', 'rpm_limit', IntegerField(null=True)))
    migrator.migrate(migrator.add_column('api_key', 'tpm_limit', IntegerField(null=True)))
    migrator.migrate(migrator.add_column('api_key', 'attribution_override', BooleanField(default=True)))
    migrator.migrate(migrator.add_column('organization', 'gateway_rpm_limit', IntegerField(null=True)))
    migrator.migrate(migrator.add_column('organization', 'gateway_tpm_limit', IntegerField(null=True)))


def down(migrator, db):
    migrator.migrate(migrator.drop_column('organization', 'gateway_tpm_limit'))
    migrator.migrate(migrator.drop_column('organization', 'gateway_rpm_limit'))
    migrator.migrate(migrator.drop_column('api_key', 'attribution_override'))
    migrator.migrate(migrator.drop_column('api_key', 'tpm_limit'))
    migrator.migrate(migrator.drop_column('api_key', 'rpm_limit'))
