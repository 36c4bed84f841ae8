"""The onboarding wizard's progress, one row per organization."""
# Written by hand in the style of a schema diff, 2026-12-05.
from peewee import *


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class OnboardingProgress(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, on_delete='CASCADE', unique=True)
        steps = JSONField(default=dict)
        claims = JSONField(default=dict)
        dismissed_at = DateTimeField(null=True)
        completed_at = DateTimeField(null=True)
        started_by = CharField(max_length=254, default='')
        created_at = DateTimeField()
        updated_at = DateTimeField()
        class Meta:
            database = db
            table_name = 'onboarding_progress'

    db.create_tables([OnboardingProgress])


def down(migrator, db):
    migrator.migrate(migrator.drop_table('onboarding_progress'))
