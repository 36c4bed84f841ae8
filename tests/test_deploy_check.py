"""`flask check-deploy`: a production configuration passes; every problem of a
bad one is named with its fix, and the command exits 1."""
from __future__ import annotations

import re
import secrets

import pytest

from costguardian.cli_deploy import _weakness, check_rate_limits
from costguardian.services.platform import health
from tests.support import other_app

STRONG_KEY = secrets.token_urlsafe(48)


def _check_deploy(app):
    with app.app_context():  # as `flask` pushes it (the test's own app context is another app's)
        return app.test_cli_runner().invoke(args=["check-deploy"])


def _failures(output: str) -> dict[str, list[str]]:
    """{check name: [what is wrong, …]} from the FAIL lines."""
    found: dict[str, list[str]] = {}
    for name, what in re.findall(r"^  FAIL  ([^:]+): (.+)$", output, re.M):
        found.setdefault(name, []).append(what)
    return found


@pytest.mark.parametrize("secret, weak", [
    (STRONG_KEY, False),
    ("0123456789abcdef" * 4, False),  # a hex key: 16 different characters
    ("changeme", True),
    ("please-change-this-secret-key-in-production", True),
    ("s" * 40, True),
    (secrets.token_urlsafe(12), True),  # too short
], ids=lambda value: f"{len(value)}-chars" if isinstance(value, str) else str(value))  # the same on every worker
def test_secret_key_strength(secret, weak):
    assert bool(_weakness(secret)) is weak


def test_a_production_configuration_passes(app_ctx, make_user, backend, tmp_path):
    make_user("root@example.com", superadmin=True)
    health.task_started(health.HEARTBEAT)
    health.task_finished(health.HEARTBEAT)
    with other_app(CG_ENV="production", SECRET_KEY=STRONG_KEY, CG_BASE_URL="https://costguardian.example.com",
                   CG_TRUSTED_PROXIES=1, MAIL_URL="smtp://mail.example.com:587",
                   MAIL_FROM="Cost Guardian <costguardian@example.com>", CG_BACKUP_SCHEDULE="30 2 * * *",
                   CG_BACKUP_DIR=str(tmp_path / "backups")) as app:
        result = _check_deploy(app)

    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    for name in ("environment", "secret key", "encryption keys", "base URL", "cookies", "database", "mail",
                 "consumer", "superadmin", "queue", "backups"):
        assert re.search(rf"^  ok    {name}: ", result.output, re.M), name
    # SQLite works, but is not what production should run on
    assert ("warn  database: the database is SQLite" in result.output) is (backend == "sqlite")
    assert "ready for production" in result.output


def test_a_bad_configuration_lists_every_problem_with_its_fix(app_ctx):
    # no superadmin and no consumer heartbeat in the (clean) database
    with other_app(CG_ENV="development", SECRET_KEY="changeme", SECRET_KEY_FALLBACKS="dev",
                   CG_ENCRYPTION_KEYS="not-a-fernet-key",
                   CG_BASE_URL="http://costguardian.example.com", MAIL_URL="console://",
                   HUEY_URL="redis://127.0.0.1:1/0", CG_BACKUP_SCHEDULE="every night") as app:
        result = _check_deploy(app)

    assert result.exit_code == 1, result.output
    failures = _failures(result.output)
    assert set(failures) == {"environment", "secret key", "encryption keys", "base URL", "cookies", "mail",
                             "consumer", "superadmin", "queue", "backups"}, result.output
    assert "placeholder" in failures["secret key"][0]
    assert "SECRET_KEY_FALLBACKS" in failures["secret key"][1]
    assert "not a Fernet key" in failures["encryption keys"][0]
    assert "not an https:// address" in failures["base URL"][0]
    assert len(failures["cookies"]) == 2  # session and remember-me cookies are not Secure
    assert "no queue consumer has ever run" in failures["consumer"][0]
    assert "no platform superadmin" in failures["superadmin"][0]
    assert "crontab" in failures["backups"][0]
    # every problem comes with a fix on the next line
    lines = result.output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("  FAIL"):
            assert lines[i + 1].startswith("        fix: "), line
    assert "not ready for production" in result.output


@pytest.mark.parametrize("url, message", [
    ("sqlite:///{tmp}/empty.db", "migration(s) pending"),
    ("postgresql://postgres@127.0.0.1:1/none", "cannot be reached"),
])
def test_a_database_not_ready_is_named_and_its_checks_skipped(app_ctx, tmp_path, url, message):
    with other_app(DATABASE_URL=url.format(tmp=tmp_path)) as app:
        result = _check_deploy(app)

    assert result.exit_code == 1, result.output
    failures = _failures(result.output)
    assert message in failures["database"][0]
    assert failures["consumer"] == failures["superadmin"] == ["not checked: the database is not ready (above)"]


def test_rate_limit_storage_must_be_shared_by_several_workers_and_reachable(monkeypatch, tmp_path):
    monkeypatch.setenv("WEB_CONCURRENCY", "4")
    (what, fix), = check_rate_limits({"RATELIMIT_STORAGE_URI": "memory://"}).problems
    assert "each process lets the full limit through" in what and "redis://" in fix
    shared = check_rate_limits({"RATELIMIT_STORAGE_URI": f"cg-sqlite:///{tmp_path}/ratelimits.sqlite"})
    assert not shared.problems and "cg-sqlite" in shared.ok_text  # the default: a file every worker shares
    monkeypatch.setenv("WEB_CONCURRENCY", "1")
    assert not check_rate_limits({"RATELIMIT_STORAGE_URI": "memory://"}).problems
    (what, _), = check_rate_limits({"RATELIMIT_STORAGE_URI": "redis://127.0.0.1:1/1"}).problems
    assert "cannot be reached" in what
