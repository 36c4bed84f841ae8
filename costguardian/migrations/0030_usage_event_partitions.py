"""PostgreSQL: usage_event partitioned by month (services/ops/partitions.py);
the uniqueness of (organization, event_id) moves to usage_event_key. SQLite:
nothing changes.

No row is copied: the existing table is renamed and attached as the partition
of everything before the first month boundary after its newest row (and
after now), `usage_event_before_yYYYYmMM`. Its range is first added as a
CHECK constraint and validated, so ATTACH finds it proven and skips its own
scan; its indexes are renamed and attached to the new parent's (no rebuild);
only the primary key is rebuilt, as (id, occurred_at) (a partitioned table's
unique keys include the partition key). The id sequence moves to the new
parent, so ids keep counting. The key table is filled from the existing rows.
On a new database (no rows) that table is the (empty) partition of everything
before this month: a past event written without ingest's fallback (services/
ops/partitions.py) still finds a partition.
All of it runs in the migration's one transaction (writers wait; measured in
docs/PERFORMANCE.md)."""
from peewee import PostgresqlDatabase

INDEXES = (  # the model's plain indexes (models/usage.py), as the migrations named them
    ("usageevent_organization_id", "organization_id"),
    ("usageevent_api_key_id", "api_key_id"),
    ("usageevent_department_id", "department_id"),
    ("usageevent_organization_id_occurred_at", "organization_id, occurred_at"),
    ("usageevent_organization_id_provider_model_occurred_at", "organization_id, provider, model, occurred_at"),
)
FOREIGN_KEYS = (
    ("usage_event_organization_id_fkey", "organization_id", "organization", " ON DELETE CASCADE"),
    ("usage_event_api_key_id_fkey", "api_key_id", "api_key", ""),
    ("usage_event_department_id_fkey", "department_id", "department", ""),
)


def _pg(db):
    real = getattr(db, "obj", None) or db
    return real if isinstance(real, PostgresqlDatabase) else None


def _parent(sql, old):
    """The partitioned usage_event, shaped like `old`, with its key, foreign keys and id sequence."""
    sql(f'CREATE TABLE "usage_event" (LIKE "{old}" INCLUDING DEFAULTS) PARTITION BY RANGE ("occurred_at")')
    sql('ALTER SEQUENCE "usage_event_id_seq" OWNED BY "usage_event"."id"')
    sql('ALTER TABLE "usage_event" ADD CONSTRAINT "usage_event_pkey" PRIMARY KEY ("id", "occurred_at")')
    for name, column, target, action in FOREIGN_KEYS:
        sql(f'ALTER TABLE "usage_event" ADD CONSTRAINT "{name}" FOREIGN KEY ("{column}") '
            f'REFERENCES "{target}" ("id"){action}')


def up(migrator, db):
    db = _pg(db)
    if db is None:
        return
    from costguardian import clock
    from costguardian.services.ops import partitions

    sql = db.execute_sql
    sql('LOCK TABLE "usage_event" IN ACCESS EXCLUSIVE MODE')
    sql("SET LOCAL maintenance_work_mem = '256MB'")  # the key table's two index builds sort in memory
    newest = sql('SELECT MAX("occurred_at") FROM "usage_event"').fetchone()[0]
    if newest is None:  # a new database: the months start with this one
        boundary = partitions.month_start(clock.now())
    else:
        boundary = partitions.add_months(partitions.month_start(max(newest, clock.now())), 1)
    old = f"usage_event_before_y{boundary:%Y}m{boundary:%m}"
    stamp = boundary.isoformat(sep=" ")

    sql(f'ALTER TABLE "usage_event" RENAME TO "{old}"')
    sql(f'ALTER TABLE "{old}" DROP CONSTRAINT "usage_event_pkey"')
    sql('DROP INDEX "usageevent_organization_id_event_id"')
    for name, _columns in INDEXES:
        sql(f'ALTER INDEX "{name}" RENAME TO "{(old + "_" + name[len("usageevent_"):])[:63]}"')
    sql(f'ALTER TABLE "{old}" ADD CONSTRAINT "{old}_pkey" PRIMARY KEY ("id", "occurred_at")')
    sql(f'ALTER TABLE "{old}" ADD CONSTRAINT "{old}_range" CHECK ("occurred_at" < \'{stamp}\') NOT VALID')
    sql(f'ALTER TABLE "{old}" VALIDATE CONSTRAINT "{old}_range"')
    _parent(sql, old)
    sql(f'ALTER TABLE "usage_event" ATTACH PARTITION "{old}" FOR VALUES FROM (MINVALUE) TO (\'{stamp}\')')
    sql(f'ALTER TABLE "{old}" DROP CONSTRAINT "{old}_range"')
    for name, columns in INDEXES:  # each finds its twin on the attached table and adopts it
        sql(f'CREATE INDEX "{name}" ON "usage_event" ({columns})')

    sql('CREATE TABLE "usage_event_key" ("organization_id" integer NOT NULL, "event_id" varchar(128) NOT NULL, '
        '"occurred_at" timestamp NOT NULL)')
    sql('INSERT INTO "usage_event_key" SELECT "organization_id", "event_id", "occurred_at" FROM "usage_event"')
    sql('ALTER TABLE "usage_event_key" ADD CONSTRAINT "usage_event_key_pkey" PRIMARY KEY ("organization_id", "event_id")')
    sql('CREATE INDEX "usage_event_key_organization_id_occurred_at" ON "usage_event_key" ("organization_id", "occurred_at")')
    sql('ALTER TABLE "usage_event_key" ADD CONSTRAINT "usage_event_key_organization_id_fkey" '
        'FOREIGN KEY ("organization_id") REFERENCES "organization" ("id") ON DELETE CASCADE')
    partitions.ensure_ahead(database=db)


def down(migrator, db):
    """Back to one plain table (the rows are copied), keys in its unique index."""
    db = _pg(db)
    if db is None:
        return
    sql = db.execute_sql
    sql('CREATE TABLE "usage_event_plain" (LIKE "usage_event" INCLUDING DEFAULTS)')
    sql('INSERT INTO "usage_event_plain" SELECT * FROM "usage_event"')
    sql('ALTER SEQUENCE "usage_event_id_seq" OWNED BY "usage_event_plain"."id"')
    sql('DROP TABLE "usage_event" CASCADE')
    sql('DROP TABLE "usage_event_key"')
    sql('ALTER TABLE "usage_event_plain" RENAME TO "usage_event"')
    sql('ALTER TABLE "usage_event" ADD CONSTRAINT "usage_event_pkey" PRIMARY KEY ("id")')
    for name, column, target, action in FOREIGN_KEYS:
        sql(f'ALTER TABLE "usage_event" ADD CONSTRAINT "{name}" FOREIGN KEY ("{column}") '
            f'REFERENCES "{target}" ("id"){action}')
    for name, columns in INDEXES:
        sql(f'CREATE INDEX "{name}" ON "usage_event" ({columns})')
    sql('CREATE UNIQUE INDEX "usageevent_organization_id_event_id" ON "usage_event" ("organization_id", "event_id")')
