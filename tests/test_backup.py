"""`flask backup` / `flask restore` and the scheduled backup: what the archive
holds, every refusal of a restore (with its message and a non-zero exit),
migrating an older archive forward, the schedule, pruning and the last
success on System health. The full drill is tests/test_restore_drill.py."""
from __future__ import annotations

import stat
from datetime import datetime

import pytest
import time_machine

import tasks
from costguardian.db import migration_runner
from costguardian.extensions import db
from costguardian.models import PlatformSetting, TaskRun
from costguardian.services.ops import backup, manifest, restore
from costguardian.services.ops.connection import OpsError, pg_tool
from costguardian.services.usage import ingest
from tests.ops_support import ScratchDatabases, rewrite_archive
from tests.support import Client, make_org, make_user

NOW = datetime(2026, 5, 6, 10, 0)
BACKEND_NAME = {"sqlite": "sqlite", "postgres": "postgresql"}


@pytest.fixture
def cli(app_ctx):
    runner = app_ctx.test_cli_runner()
    return lambda *args: runner.invoke(args=[str(a) for a in args])


@pytest.fixture
def scratch(backend, tmp_path):
    databases = ScratchDatabases(backend, tmp_path)
    yield databases
    databases.close()


@pytest.fixture
def filled(app_ctx):
    """An organization with three events."""
    org = make_org("Acme")
    events = [{"event_id": f"e{i}", "provider": "openai", "model": "gpt-4o", "input_tokens": 100 * i,
               "output_tokens": 10, "tags": ["env:prod"]} for i in range(1, 4)]
    assert ingest.ingest(org, None, events).count("accepted") == 3
    return org


@pytest.fixture
def archive(cli, filled, tmp_path):
    path = tmp_path / "acme.cgbackup.tar"
    result = cli("backup", path)
    assert result.exit_code == 0, result.output
    return path


def _applied() -> list[str]:
    return sorted(m.name for m in migration_runner(db.obj).status() if m.applied)


# --- the archive -----------------------------------------------------------------------

def test_backup_writes_schema_version_row_counts_and_a_checksum(cli, filled, backend, tmp_path):
    path = tmp_path / "acme.cgbackup.tar"
    result = cli("backup", path)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"wrote {path} (") and "SHA-256" in result.output
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # password hashes and encrypted secrets inside
    described = manifest.read(path).manifest
    assert described["backend"] == BACKEND_NAME[backend]
    assert described["migrations"] == _applied() and described["schema_version"] == _applied()[-1]
    assert set(described["tables"]) == set(db.get_tables())
    assert described["tables"]["usage_event"] == 3 and described["tables"]["organization"] == 1
    assert described["tables"]["schema_migration"] == len(_applied())
    dump = manifest.read(path).extract_dump(tmp_path)  # checks size and SHA-256
    assert described["dump"]["sha256"] == manifest.sha256_of(dump)
    assert not list(tmp_path.glob(".*partial"))


def test_backup_into_a_directory_names_the_file_and_never_overwrites(cli, filled, tmp_path):
    with time_machine.travel(NOW, tick=False):
        first = cli("backup", tmp_path)
    assert first.exit_code == 0, first.output
    assert (tmp_path / "costguardian-20260506T100000Z.cgbackup.tar").is_file()
    with time_machine.travel(NOW, tick=False):
        again = cli("backup", tmp_path)
    assert again.exit_code == 1
    assert "already exists; choose a new file name" in again.output
    missing = cli("backup", tmp_path / "nowhere" / "x.tar")
    assert missing.exit_code == 1 and "is not a directory" in missing.output


def test_missing_postgresql_client_tools_are_a_clear_error(cli, backend, filled, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(OpsError, match="pg_dump was not found on PATH: install the PostgreSQL client tools"):
        pg_tool("pg_dump")
    if backend == "postgres":
        result = cli("backup", tmp_path / "x.tar")
        assert result.exit_code == 1 and "pg_dump was not found" in result.output


def test_the_password_stays_off_the_command_line():
    from costguardian.services.ops.connection import Target

    target = Target("postgresql://cg:s3cr%40t@db.internal:5433/costguardian?sslmode=require")
    assert target.libpq_url == "postgresql://cg@db.internal:5433/costguardian?sslmode=require"
    assert target.tool_environment()["PGPASSWORD"] == "s3cr@t"
    assert "s3cr" not in target.label


# --- refusals -----------------------------------------------------------------------------

def test_restore_refuses_a_file_that_is_no_archive(cli, filled, tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("not a backup")
    result = cli("restore", junk, "--force")
    assert result.exit_code == 1 and "is not a Cost Guardian backup archive" in result.output
    assert cli("restore", tmp_path / "missing.tar").exit_code == 1


def test_restore_refuses_a_database_with_data_unless_forced(cli, archive):
    result = cli("restore", archive)
    assert result.exit_code == 1
    assert "is not empty" in result.output and "pass --force" in result.output and "usage_event: 3" in result.output


def test_restore_refuses_an_archive_from_a_newer_schema(cli, archive, scratch, tmp_path):
    newer = rewrite_archive(archive, tmp_path / "newer.tar",
                            manifest_change=lambda m: m["migrations"].append("0999_from_the_future"))
    result = cli("restore", newer, "--force")
    assert result.exit_code == 1
    assert "comes from a newer schema" in result.output and "0999_from_the_future" in result.output
    with pytest.raises(OpsError, match="newer schema"):
        restore.run(newer, scratch.url())  # an empty database too


def test_restore_refuses_a_damaged_dump_and_writes_nothing(archive, scratch, tmp_path):
    damaged = rewrite_archive(archive, tmp_path / "damaged.tar", dump_change=lambda b: b[:-1] + bytes([b[-1] ^ 1]))
    url = scratch.url()
    with pytest.raises(OpsError, match="the dump is damaged"):
        restore.run(damaged, url)
    assert restore.schema_version(url) == []


def test_restore_refuses_an_archive_of_the_other_backend(archive, scratch, backend, tmp_path):
    other = {"sqlite": "postgresql", "postgres": "sqlite"}[backend]
    swapped = rewrite_archive(archive, tmp_path / "other.tar", manifest_change=lambda m: m.update(backend=other))
    with pytest.raises(OpsError, match="backup and DATABASE_URL is a"):
        restore.run(swapped, scratch.url())


# --- restoring -------------------------------------------------------------------------------

def test_restore_into_an_empty_database_then_force_over_it(archive, scratch):
    url = scratch.url()
    result = restore.run(archive, url)
    assert result.rows == sum(manifest.read(archive).manifest["tables"].values()) and result.migrated == []
    assert restore.schema_version(url) == _applied()
    with pytest.raises(OpsError, match="is not empty"):
        restore.run(archive, url)
    assert restore.run(archive, url, force=True).tables == len(db.get_tables())


def test_a_failed_postgresql_restore_leaves_the_database_as_it_was(archive, scratch, backend):
    if backend != "postgres":
        pytest.skip("SQLite's backup API replaces the file under its own write lock")
    url = scratch.url()
    target = scratch.open(url)
    with target.connection_context():
        target.execute_sql('CREATE TABLE "keep_me" ("id" integer)')
        target.execute_sql('INSERT INTO "keep_me" VALUES (1)')
        target.execute_sql('CREATE TYPE "usage_event" AS ("x" integer)')  # the dump's CREATE TABLE will fail
    with pytest.raises(OpsError, match="failed \\(psql exit 3\\); the database was left as it was: .*usage_event"):
        restore.run(archive, url, force=True)
    with target.connection_context():
        assert target.execute_sql('SELECT COUNT(*) FROM "keep_me"').fetchone()[0] == 1
        assert "organization" not in target.get_tables()


def test_an_archive_of_an_older_schema_is_migrated_forward(app_ctx, scratch, tmp_path):
    source_url = scratch.url()
    source = scratch.open(source_url)
    with source.connection_context():
        runner = migration_runner(source)
        runner.up("0018_onboarding")
        values = {"name": "Old", "slug": "old", "time_zone": "UTC", "currency": "USD", "created_at": NOW,
                  "updated_at": NOW, "request_logging": False, "request_log_days": 30}
        columns = ", ".join('"' + column + '"' for column in values)
        marks = ", ".join([source.param] * len(values))
        source.execute_sql(f'INSERT INTO "organization" ({columns}) VALUES ({marks})', tuple(values.values()))
    old = backup.create(tmp_path / "old.tar", url=source_url)
    assert old.manifest["schema_version"] == "0018_onboarding" and old.manifest["tables"]["organization"] == 1
    target_url = scratch.url()
    result = restore.run(old.path, target_url)
    assert result.migrated == [name for name in restore.known_migrations() if name not in old.manifest["migrations"]]
    assert result.migrated[0] == "0019_yearly_overage"
    assert restore.schema_version(target_url) == restore.known_migrations()
    target = scratch.open(target_url)
    with target.connection_context():
        assert target.execute_sql('SELECT "name" FROM "organization"').fetchall() == [("Old",)]
        target.execute_sql('UPDATE "organization" SET "name" = \'Changed\'')
    # Forced over a database of the current schema: the tables of later migrations go, then come back empty.
    again = restore.run(old.path, target_url, force=True)
    assert again.migrated == result.migrated
    with target.connection_context():
        assert target.execute_sql('SELECT "name" FROM "organization"').fetchall() == [("Old",)]
    assert restore.schema_version(target_url) == restore.known_migrations()


# --- the schedule ------------------------------------------------------------------------------

def test_scheduled_backup_is_off_by_default(app_ctx, tmp_path):
    assert app_ctx.config["CG_BACKUP_SCHEDULE"] is None
    assert not tasks._backup_due(NOW.replace(hour=3, minute=0))
    assert backup.run_scheduled() is None
    status = backup.status()
    assert not status.enabled and status.last_at is None and status.keep == 14


def test_the_schedule_is_a_utc_crontab(app_ctx, monkeypatch):
    assert backup.schedule_due("30 2 * * *", datetime(2026, 5, 6, 2, 30))
    assert not backup.schedule_due("30 2 * * *", datetime(2026, 5, 6, 2, 31))
    assert backup.schedule_due("0 */6 * * 1", datetime(2026, 5, 4, 18, 0))  # a Monday
    with pytest.raises(OpsError, match="5 fields"):
        backup.schedule_due("daily", NOW)
    with pytest.raises(ValueError):
        backup.schedule_due("99 * * * *", NOW)
    monkeypatch.setitem(app_ctx.config, "CG_BACKUP_SCHEDULE", "every night")
    assert not tasks._backup_due(NOW)  # logged, never raised into the scheduler
    assert "5 fields" in backup.status().error


def test_scheduled_backups_are_pruned_and_the_last_success_is_on_system_health(app, app_ctx, filled, tmp_path,
                                                                               monkeypatch):
    directory = tmp_path / "backups"
    monkeypatch.setitem(app.config, "CG_BACKUP_SCHEDULE", "0 3 * * *")
    monkeypatch.setitem(app.config, "CG_BACKUP_DIR", str(directory))
    monkeypatch.setitem(app.config, "CG_BACKUP_KEEP", "2")
    directory.mkdir()
    (directory / "keep-me.txt").write_text("not ours")
    assert tasks._backup_due(datetime(2026, 5, 6, 3, 0)) and not tasks._backup_due(datetime(2026, 5, 6, 4, 0))
    for day in (4, 5, 6):
        with time_machine.travel(datetime(2026, 5, day, 3, 0, 5), tick=False):
            tasks.scheduled_backup()  # immediate mode: inline, through the real TaskRun wrapper
    names = sorted(p.name for p in directory.iterdir())
    assert names == ["costguardian-20260505T030005Z.cgbackup.tar", "costguardian-20260506T030005Z.cgbackup.tar",
                     "keep-me.txt"]
    run = TaskRun.get(TaskRun.name == "ops.backup")
    assert (run.runs, run.failures, run.last_status) == (3, 0, "ok")
    last = PlatformSetting.get(PlatformSetting.key == backup.LAST_BACKUP_KEY).value
    assert last["file"] == str(directory / names[1]) and last["bytes"] == (directory / names[1]).stat().st_size
    assert manifest.read(directory / names[1]).manifest["tables"]["usage_event"] == 3

    make_user("root@example.com", platform_role="superadmin")
    admin = Client(app)
    with time_machine.travel(datetime(2026, 5, 6, 5, 1), tick=False):
        admin.sign_in("root@example.com")
        response = admin.get("/admin/health/")
    assert response.status_code == 200, response.headers
    page = response.get_data(as_text=True)
    section = page.split('data-testid="backups"', 1)[1].split("</article>", 1)[0]
    assert "2 h ago" in section and "0 3 * * *" in section and "keeps 2" in section
    assert "last success 2026-05-06 03:00" in section and f'title="{directory / names[1]}">{names[1]}<' in section
    assert '<tr data-task="ops.backup">' in page


def test_restore_warns_when_the_encryption_keys_cannot_open_the_secrets(app_ctx, filled, scratch, tmp_path):
    from cryptography.fernet import Fernet

    from costguardian.services.notifications import webhooks
    from tests.support import SYSTEM, other_app

    webhooks.create_endpoint(filled, SYSTEM, "Ops", "http://127.0.0.1:9/hook")
    path = backup.create(tmp_path / "keys.tar").path
    url = scratch.url()
    with other_app(DATABASE_URL=url, CG_ENCRYPTION_KEYS=Fernet.generate_key().decode()) as stranger:
        with stranger.app_context():
            result = stranger.test_cli_runner().invoke(args=["restore", str(path)])
    assert result.exit_code == 0, result.output
    assert "every count matches the manifest" in result.output
    assert "warning: CG_ENCRYPTION_KEYS cannot open webhook signing secrets #" in result.output
    with other_app(DATABASE_URL=url) as same_keys, same_keys.app_context(), db.connection_context():
        assert restore.unreadable_secrets() == []
