"""usage_event.credential_id: the vault credential (ProviderCredential) that
served a gateway call; NULL for events sent to the ingest API. Added
nullable without a default (no table rewrite), then backfilled in batches
from gateway_request, whose request_id is the gateway event's event_id
(costguardian/migrations_batched.py; `flask migrate --backfills` for big
tables)."""
# Written by hand, 2026-12-05.
from peewee import IntegerField, PostgresqlDatabase

from costguardian import migrations_batched as batched

NAME = "0023_usage_event_credential"

BACKFILL = batched.Backfill(
    table="usage_event",
    # The credential is looked up per event through gateway_request's unique
    # request_id index (a join let PostgreSQL hash the whole request log for
    # every batch); only the events that get one are written.
    sql=('UPDATE "usage_event" SET "credential_id" = m."credential_id" FROM ('
         'SELECT e."id", (SELECT g."credential_id" FROM "gateway_request" AS g WHERE g."request_id" = e."event_id" '
         'AND g."organization_id" = e."organization_id") AS "credential_id" '
         'FROM "usage_event" AS e WHERE e."id" > {p} AND e."id" <= {p} AND e."credential_id" IS NULL) AS m '
         'WHERE "usage_event"."id" = m."id" AND m."credential_id" IS NOT NULL'),
)


def up(migrator, db):
    if isinstance(db, PostgresqlDatabase):
        # The ALTER needs a moment's exclusive lock: fail (and be run again)
        # rather than queue every reader behind a long transaction.
        db.execute_sql("SET LOCAL lock_timeout = '5s'")
    migrator.migrate(migrator.add_column('usage_event', 'credential_id', IntegerField(null=True)))
    batched.register(db, NAME)


def down(migrator, db):
    batched.forget(db, NAME)
    migrator.migrate(migrator.drop_column('usage_event', 'credential_id'))
