"""Each organization's settings version (models/settings_version.py) and the
triggers that change it: on the tables whose rows the gateway keeps in memory
per organization (costguardian/settings_cache.py) — budgets, departments,
model aliases, price overrides (the organization's and the platform's, which
change every organization's), provider credentials — and on the
organization's time zone. A new organization gets its row from a trigger too.
Written by hand, 2026-12-06."""
from peewee import BigIntegerField, ForeignKeyField, Model, PostgresqlDatabase

TABLES = ("budget", "department", "model_alias", "price_override", "provider_credential")
START = 10**12  # versions start at a random number below this
# A change adds 1 + a random number below STEP: a transaction that changed settings and then rolled
# back must not leave its number to the next change (a process may have kept what it read under it).
STEP = 10**9
PG_NEXT = f"version + 1 + floor(random() * {STEP})::bigint"
SQLITE_NEXT = f"version + 1 + abs(random() % {STEP})"


def _pg(db) -> bool:
    return isinstance(getattr(db, "obj", None) or db, PostgresqlDatabase)


def up(migrator, db):
    class Organization(Model):
        class Meta:
            database = db
            table_name = 'organization'

    class OrgSettingsVersion(Model):
        organization = ForeignKeyField(Organization, field=Organization.id, primary_key=True, on_delete='CASCADE')
        version = BigIntegerField()
        class Meta:
            database = db
            table_name = 'org_settings_version'

    db.create_tables([OrgSettingsVersion])
    sql = db.execute_sql
    if _pg(db):
        sql(f'INSERT INTO "org_settings_version" ("organization_id", "version") '
            f'SELECT "id", floor(random() * {START})::bigint FROM "organization"')
        sql(f'''CREATE FUNCTION cg_settings_version_new() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              INSERT INTO org_settings_version (organization_id, version)
                VALUES (NEW.id, floor(random() * {START})::bigint) ON CONFLICT DO NOTHING;
              RETURN NULL;
            END $$''')
        sql(f'''CREATE FUNCTION cg_settings_version_bump_org() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              UPDATE org_settings_version SET version = {PG_NEXT} WHERE organization_id = NEW.id;
              RETURN NULL;
            END $$''')
        sql(f'''CREATE FUNCTION cg_settings_version_bump() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF TG_OP <> 'INSERT' THEN
                UPDATE org_settings_version SET version = {PG_NEXT} WHERE organization_id = OLD.organization_id;
              END IF;
              IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.organization_id IS DISTINCT FROM OLD.organization_id)
              THEN
                UPDATE org_settings_version SET version = {PG_NEXT} WHERE organization_id = NEW.organization_id;
              END IF;
              RETURN NULL;
            END $$''')
        sql(f'''CREATE FUNCTION cg_settings_version_bump_all() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              UPDATE org_settings_version SET version = {PG_NEXT};
              RETURN NULL;
            END $$''')
        sql('CREATE TRIGGER cg_settings_version_new AFTER INSERT ON "organization" '
            'FOR EACH ROW EXECUTE FUNCTION cg_settings_version_new()')
        sql('CREATE TRIGGER cg_settings_version_time_zone AFTER UPDATE OF "time_zone" ON "organization" '
            'FOR EACH ROW WHEN (OLD.time_zone IS DISTINCT FROM NEW.time_zone) '
            'EXECUTE FUNCTION cg_settings_version_bump_org()')
        for table in TABLES:
            sql(f'CREATE TRIGGER cg_settings_version AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
                f'FOR EACH ROW EXECUTE FUNCTION cg_settings_version_bump()')
        sql('CREATE TRIGGER cg_settings_version AFTER INSERT OR UPDATE OR DELETE ON "global_price_override" '
            'FOR EACH STATEMENT EXECUTE FUNCTION cg_settings_version_bump_all()')
        return
    sql(f'INSERT INTO "org_settings_version" ("organization_id", "version") '
        f'SELECT "id", abs(random() % {START}) FROM "organization"')
    sql(f'CREATE TRIGGER cg_settings_version_new AFTER INSERT ON "organization" BEGIN '
        f'INSERT OR IGNORE INTO org_settings_version (organization_id, version) '
        f'VALUES (NEW.id, abs(random() % {START})); END')
    sql('CREATE TRIGGER cg_settings_version_time_zone AFTER UPDATE OF "time_zone" ON "organization" '
        'WHEN OLD.time_zone IS NOT NEW.time_zone BEGIN '
        f'UPDATE org_settings_version SET version = {SQLITE_NEXT} WHERE organization_id = NEW.id; END')
    bump = f'UPDATE org_settings_version SET version = {SQLITE_NEXT} WHERE organization_id = {{}}.organization_id;'
    for table in TABLES:
        sql(f'CREATE TRIGGER cg_settings_version_{table}_insert AFTER INSERT ON "{table}" '
            f'BEGIN {bump.format("NEW")} END')
        sql(f'CREATE TRIGGER cg_settings_version_{table}_update AFTER UPDATE ON "{table}" BEGIN '
            f'UPDATE org_settings_version SET version = {SQLITE_NEXT} '
            f'WHERE organization_id IN (OLD.organization_id, NEW.organization_id); END')
        sql(f'CREATE TRIGGER cg_settings_version_{table}_delete AFTER DELETE ON "{table}" '
            f'BEGIN {bump.format("OLD")} END')
    for event in ("INSERT", "UPDATE", "DELETE"):
        sql(f'CREATE TRIGGER cg_settings_version_global_{event.lower()} AFTER {event} ON "global_price_override" '
            f'BEGIN UPDATE org_settings_version SET version = {SQLITE_NEXT}; END')


def down(migrator, db):
    sql = db.execute_sql
    if _pg(db):
        for table in (*TABLES, "global_price_override"):
            sql(f'DROP TRIGGER IF EXISTS cg_settings_version ON "{table}"')
        sql('DROP TRIGGER IF EXISTS cg_settings_version_new ON "organization"')
        sql('DROP TRIGGER IF EXISTS cg_settings_version_time_zone ON "organization"')
        for name in ("new", "bump_org", "bump", "bump_all"):
            sql(f'DROP FUNCTION IF EXISTS cg_settings_version_{name}()')
    else:
        names = ["new", "time_zone", *(f"global_{e}" for e in ("insert", "update", "delete")),
                 *(f"{t}_{e}" for t in TABLES for e in ("insert", "update", "delete"))]
        for name in names:
            sql(f'DROP TRIGGER IF EXISTS cg_settings_version_{name}')
    migrator.migrate(migrator.drop_table('org_settings_version'))
