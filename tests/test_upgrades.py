"""Upgrades across versions (issue 17 §2): for each earlier release (the
release history in costguardian/migrations/RELEASES.toml), build that
release's schema from its migrations, fill it with data written in plain SQL
against that schema, migrate to the head and check the data: every row is
still there, every column that still exists kept its values, columns added
since hold their defaults, the data migrations transformed what they should
(0020: is_superadmin became platform_role; 0023: gateway events got their
credential), and the app works on the result (an old API key authenticates,
the old owner's pages render, encrypted secrets still decrypt)."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from playhouse.migrations import Migration

from costguardian import crypto
from costguardian.db import MIGRATIONS_DIR, migrate, migration_runner
from costguardian.extensions import db
from costguardian.services.team import accounts
from tests.support import PASSWORD, Client, other_app
from tests.upgrade_support import Databases, Filler, model_default, releases, snapshot

ROOT = Path(MIGRATIONS_DIR).parents[1]
MIGRATIONS = [m.name for m in Migration.load_directory(MIGRATIONS_DIR)]
EARLIER = [r for r in releases() if r.last_migration != MIGRATIONS[-1]]
WHEN = datetime(2026, 11, 20, 10, 0)
KEY_PREFIX, KEY_SECRET = "upgradekey01", "Kq3" + "x" * 37
API_KEY = f"cg_live_{KEY_PREFIX}_{KEY_SECRET}"
GATEWAY_EVENT = "gw_upgrade0001"


# --- the release history ---------------------------------------------------------

def test_each_release_names_an_existing_migration_in_order():
    history = releases()
    assert history, "RELEASES.toml lists no release"
    positions = [MIGRATIONS.index(r.last_migration) for r in history]  # ValueError: a migration that is not there
    assert positions == sorted(set(positions)), "each release ships more migrations than the one before"
    versions = [tuple(int(n) for n in re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", r.tag).groups()) for r in history]
    assert versions == sorted(set(versions))
    assert all(re.fullmatch(r"[0-9a-f]{40}", r.commit) for r in history)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def test_each_release_tag_holds_exactly_its_migrations_unchanged():
    tagged = [r for r in releases() if _git("rev-parse", "-q", "--verify", f"refs/tags/{r.tag}")]
    if not tagged:
        pytest.skip("no release tags in this checkout (git tag -a vX.Y.Z <commit>, see RELEASES.toml)")
    for release in tagged:
        assert _git("rev-parse", f"{release.tag}^{{commit}}").strip() == release.commit, release.tag
        listed = _git("ls-tree", "--name-only", release.tag, "costguardian/migrations/") or ""
        shipped = sorted(Path(p).stem for p in listed.split() if re.fullmatch(r"\d{4}_\w+\.py", Path(p).name))
        assert shipped == MIGRATIONS[:MIGRATIONS.index(release.last_migration) + 1], release.tag
        for name in shipped:  # a migration a release shipped is never edited afterwards
            then = _git("show", f"{release.tag}:costguardian/migrations/{name}.py")
            assert then == (Path(MIGRATIONS_DIR) / f"{name}.py").read_text(), f"{name} changed since {release.tag}"


# --- upgrading with data ----------------------------------------------------------------

@pytest.fixture(scope="module")
def release_schemas(backend, tmp_path_factory, app):
    """Each earlier release's empty schema, built once by one walk through the
    migrations and kept as a template copied by each test."""
    databases = Databases(backend, tmp_path_factory.mktemp("upgrades"))
    previous = db.obj
    templates = {}
    try:
        builder = databases.new()
        for release in EARLIER:
            database = databases.open(builder)
            db.initialize(database)
            with database.connection_context():
                migration_runner(database).up(release.last_migration)
            database.close()
            templates[release.tag] = databases.new(template=builder)
        db.initialize(previous)  # the tests (and their clean-up) start on the suite's own database
        yield databases, templates
    finally:
        db.initialize(previous)
        databases.close()


PASSWORD_HASH = accounts.hash_password(PASSWORD)


def _fill_realistic(filler: Filler) -> dict:
    """Acme as an owner would have left it: hand-written rows with real values."""
    insert, t = filler.insert, WHEN
    owner = insert("users", dict(email="olga@acme-upgrades.com", name="Olga Owner", password_hash=PASSWORD_HASH,
                                 is_superadmin=False, platform_role="", is_disabled=False, session_version=0,
                                 created_at=t, email_verified_at=t))
    staff = insert("users", dict(email="sam@platform.example.com", name="Sam Staff", password_hash=PASSWORD_HASH,
                                 is_superadmin=True, platform_role="superadmin", is_disabled=False,
                                 session_version=0, created_at=t, email_verified_at=t))
    org = insert("organization", dict(name="Acme Upgrades", slug="acme-upgrades", time_zone="Europe/Paris",
                                      currency="USD", created_at=t, updated_at=t))
    o = org["id"]
    insert("membership", dict(organization_id=o, user_id=owner["id"], role="owner", created_at=t))
    department = insert("department", dict(organization_id=o, name="Research", name_key="research", code="R-1",
                                           code_key="r-1", created_at=t, updated_at=t))
    key = insert("api_key", dict(organization_id=o, name="Production", env="live", prefix=KEY_PREFIX,
                                 secret_hash=hashlib.sha256(KEY_SECRET.encode()).hexdigest(), scopes="ingest,gateway",
                                 user_id=owner["id"], created_by_id=owner["id"], created_at=t))
    event = dict(organization_id=o, occurred_at=t, received_at=t, provider="openai", model="gpt-4o",
                 model_raw="gpt-4o", api_key_id=key["id"], user_ref=owner["email"], department_id=department["id"],
                 input_tokens=1000, cache_read_tokens=200, cache_write_tokens=0, output_tokens=500, batch=False,
                 service_tier="", cost_nanos=7_250_000, priced_by="catalog")
    insert("usage_event", dict(event, event_id="sdk-0001", tags=json.dumps(["team:research"])))
    insert("usage_event", dict(event, event_id=GATEWAY_EVENT, tags=json.dumps(["source:gateway"])))
    insert("usage_rollup", dict(organization_id=o, hour=t, provider="openai", model="gpt-4o", api_key_id=key["id"],
                                user_ref=owner["email"], department_id=department["id"], requests=2,
                                input_tokens=2000, cache_read_tokens=400, cache_write_tokens=0, output_tokens=1000,
                                cost_nanos=14_500_000, unpriced_requests=0))
    budget = insert("budget", dict(organization_id=o, name="Monthly AI", amount_nanos=100 * 10**9, period="monthly",
                                   thresholds="50,80,100", enforcement="soft", notify_resolved=False,
                                   notify_roles="owner,admin", owner_id=owner["id"], created_by_id=owner["id"],
                                   created_at=t, updated_at=t))
    insert("budget_spend", dict(budget_id=budget["id"], period_start=datetime(2026, 10, 31, 23, 0),
                                spend_nanos=14_500_000, requests=2, updated_at=t))
    insert("notification", dict(organization_id=o, user_id=owner["id"], event_id="evupgrade0001",
                                event_type="usage.unpriced_model", severity="info",
                                title="Calls to acme/in-house cannot be priced", body="", link="/usage/",
                                data=json.dumps({"provider": "acme", "model": "in-house", "requests": 1}),
                                in_app=True, email=False, digest_pending=False, created_at=t))
    secrets = {"webhook_endpoint": crypto.encrypt("whsec_upgrade_0001")}
    insert("webhook_endpoint", dict(organization_id=o, name="Ops", url="https://hooks.example.com/cg", kind="json",
                                    event_types="*", is_active=True, secret_encrypted=secrets["webhook_endpoint"],
                                    consecutive_failures=0, disabled_reason="", created_by_id=owner["id"],
                                    created_at=t, updated_at=t))
    credential = None
    if "provider_credential" in filler.tables:  # v0.2.0 on
        secrets["provider_credential"] = crypto.encrypt("sk-upgrade-0001")
        credential = insert("provider_credential", dict(
            organization_id=o, provider="openai", label="Production", secret_encrypted=secrets["provider_credential"],
            secret_last4="0001", base_url="", api_version="", deployments="{}", allowed_models="",
            available_models="", default_for="openai", is_enabled=True, created_by_id=owner["id"],
            updated_by_id=owner["id"], created_at=t, updated_at=t))
        insert("gateway_request", dict(organization_id=o, request_id=GATEWAY_EVENT, api_key_id=key["id"],
                                       endpoint="chat.completions", provider="openai", model="gpt-4o",
                                       credential_id=credential["id"], started_at=t, status_code=200, outcome="ok",
                                       error="", streamed=False, forwarded=True, usage_estimated=False,
                                       latency_ms=420))
    return {"org": org, "owner": owner, "staff": staff, "secrets": secrets,
            "credential_id": credential["id"] if credential else None}


# Columns a batched backfill fills (costguardian/migrations_batched.py) after the migration that added them.
BACKFILLED = {("usage_event", "credential_id")}  # 0023


def _expected_new_value(table: str, column: str, row: dict, old: dict):
    """What a column the release lacked holds after the upgrade: (known, value)."""
    if (table, column) == ("users", "platform_role"):  # 0020
        return True, "superadmin" if row.get("is_superadmin") else ""
    if (table, column) == ("usage_event", "credential_id"):  # 0023's backfill
        request = next((r for r in old.get("gateway_request", {}).values()
                        if r["request_id"] == row["event_id"] and r["organization_id"] == row["organization_id"]),
                       None)
        return True, request["credential_id"] if request else None
    return model_default(table, column)


def _same(stored, expected) -> bool:
    if isinstance(expected, (dict, list)) and isinstance(stored, str):
        stored = json.loads(stored)
    return stored == expected


@pytest.mark.parametrize("release", EARLIER, ids=[r.tag for r in EARLIER])
def test_an_earlier_release_upgrades_to_the_head_with_its_data(release, release_schemas, app):
    databases, templates = release_schemas
    name = databases.new(template=templates[release.tag])
    database = databases.open(name)
    previous = db.obj
    try:
        db.initialize(database)
        with database.connection_context(), app.app_context():
            filler = Filler(database)
            filler.fill_generic(2)
            acme = _fill_realistic(filler)
            old_columns = {table: set(columns) for table, columns in filler.columns.items()}
            before = snapshot(database)
            applied = migrate(database)
            after = snapshot(database)
    finally:
        db.initialize(previous)
        database.close()
    assert applied == MIGRATIONS[MIGRATIONS.index(release.last_migration) + 1:]

    problems = []
    for table, rows in before.items():
        if table not in after:
            problems.append(f"{table}: dropped")
            continue
        if set(after[table]) != set(rows):
            problems.append(f"{table}: {len(rows)} rows before, {len(after[table])} after")
            continue
        for key, old_row in rows.items():
            new_row = after[table][key]
            for column, value in new_row.items():
                if column in old_columns[table]:
                    # A release that has the column but whose batched backfill of it was still pending
                    # (a row written with NULL): `flask migrate` finishes that backfill.
                    backfilled = (table, column) in BACKFILLED and old_row[column] is None \
                        and _expected_new_value(table, column, old_row, before) == (True, value)
                    if value != old_row[column] and not backfilled:
                        problems.append(f"{table} {key} {column}: {old_row[column]!r} became {value!r}")
                    continue
                known, expected = _expected_new_value(table, column, old_row, before)
                if known and not _same(value, expected):
                    problems.append(f"{table} {key} {column} (new): {value!r}, expected {expected!r}")
    assert not problems, "\n".join(problems[:30])
    assert all(len(rows) >= 2 for rows in before.values()), "the filler left a table empty"
    staff_key = (acme["staff"]["id"],)
    assert after["users"][staff_key]["platform_role"] == "superadmin"
    gateway_event = next(r for r in after["usage_event"].values() if r["event_id"] == GATEWAY_EVENT)
    assert gateway_event["credential_id"] == acme["credential_id"]

    with other_app(DATABASE_URL=databases.url(name)) as upgraded:
        _the_app_works_on(upgraded, acme)


def _the_app_works_on(upgraded, acme: dict) -> None:
    client = Client(upgraded)
    answer = client.http.post("/api/v1/usage", headers={"Authorization": f"Bearer {API_KEY}"}, json={
        "event_id": "after-upgrade-1", "provider": "openai", "model": "gpt-4o", "input_tokens": 10,
        "output_tokens": 5})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["results"][0]["status"] == "accepted"

    client.sign_in(acme["owner"]["email"])
    for path in ("/", "/budgets/", "/notifications/"):
        page = client.http.get(path, follow_redirects=True)
        assert page.status_code == 200, (path, page.get_data(as_text=True)[:500])
    assert "Acme Upgrades" in client.http.get("/", follow_redirects=True).get_data(as_text=True)

    staff = Client(upgraded)
    staff.sign_in(acme["staff"]["email"])
    assert staff.http.get("/admin/", follow_redirects=True).status_code == 200

    with upgraded.app_context():
        from costguardian.models import ProviderCredential, WebhookEndpoint

        webhook = WebhookEndpoint.get(WebhookEndpoint.name == "Ops")
        assert crypto.decrypt(webhook.secret_encrypted) == "whsec_upgrade_0001"
        if acme["credential_id"] is not None:
            assert crypto.decrypt(ProviderCredential.get_by_id(acme["credential_id"]).secret_encrypted) \
                == "sk-upgrade-0001"
