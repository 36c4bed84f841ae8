"""An owner's export of the whole organization, built in the background
(services/ops/org_export.py, the table catalogue in services/team/data_export.py):
the archive's rows equal the database's, every organization-scoped table is
in it or deliberately left out, no secret is in it, only the organization's
owners reach it, it expires after 7 days, and one runs at a time."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import timedelta, timezone
from pathlib import Path

import pytest
import time_machine

from costguardian import clock, crypto
from costguardian.extensions import db
from costguardian.models import (ALL_MODELS, AuditLog, BaseModel, ChatMessage, Conversation, Delivery,
                                 DomainVerification, Invitation, Notification, Organization, OrgExport,
                                 ProviderCostBucket, ProviderCredential, ProviderKey, ProviderKeyMatch,
                                 ProviderSyncConnection, ProviderUsageBucket, UsageEvent, WebhookEndpoint)
from costguardian.services import keys
from costguardian.services.ops import org_export
from costguardian.services.team import data_export, invitations
from costguardian.services.usage import ingest
from tests.support import SYSTEM, Client, add_member, make_org, make_user

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 2100  # more than two of the builder's 1,000-row chunks

WEBHOOK_SECRET = "whsec_export_must_never_hold_this"
SLACK_PATH = "/services/T0001/B0002/slack-url-is-a-secret"
PROVIDER_SECRET = "sk-proj-vault-" + "v" * 40 + "wxyz"
ADMIN_SECRET = "sk-admin-sync-" + "a" * 40 + "k9k9"
INVITE_TOKEN = "invitation-token-that-must-stay-private"
DNS_TOKEN = "cg-dns-challenge-token-0123456789"


@pytest.fixture
def export_dir(app, tmp_path):
    """CG_EXPORT_DIR of this test (the consumer gets the same one)."""
    directory = tmp_path / "exports"
    previous = app.config.get("CG_EXPORT_DIR")
    app.config["CG_EXPORT_DIR"] = str(directory)
    yield directory
    app.config["CG_EXPORT_DIR"] = previous


def _events(prefix: str, count: int) -> list[dict]:
    return [{"event_id": f"{prefix}{i}", "provider": "openai", "model": "gpt-4o-mini", "input_tokens": 10 + i % 7,
             "output_tokens": 1 + i % 3, "user": f"u{i % 5}@acme.com", "tags": {"team": f"t{i % 2}"}}
            for i in range(count)]


def _seed(org, owner, events: int = 5) -> dict:
    """An organization with a row in most of its tables, and every kind of secret."""
    created = keys.create_key(org, SYSTEM, "search prod", ["ingest"], user=owner)
    for start in range(0, events, 1000):
        result = ingest.ingest(org, created.key, _events("e", events)[start:start + 1000])
        assert result.count("accepted") == len(result.results)
    WebhookEndpoint.create(organization=org, name="slack", url="https://hooks.slack.com" + SLACK_PATH, kind="slack",
                           is_active=False, secret_encrypted=crypto.encrypt(WEBHOOK_SECRET))
    credential = ProviderCredential.create(organization=org, provider="openai", label="vault",
                                           secret_encrypted=crypto.encrypt(PROVIDER_SECRET),
                                           secret_last4=PROVIDER_SECRET[-4:])
    now = clock.now().replace(minute=0, second=0, microsecond=0)
    ProviderSyncConnection.create(organization=org, provider="openai", secret_encrypted=crypto.encrypt(ADMIN_SECRET),
                                  secret_last4=ADMIN_SECRET[-4:], backfill_from=now - timedelta(days=30),
                                  cursors=json.dumps({"costs": "2026-11-01T00:00:00"}), last_sync_at=now)
    ProviderUsageBucket.create(organization=org, provider="openai", source="completions", hour=now, model="gpt-4o",
                               key_id="key_abc", requests=3, input_tokens=300, output_tokens=30)
    ProviderCostBucket.create(organization=org, provider="openai", day=now.date(), line_item="gpt-4o input",
                              amount_nanos=123_000_000)
    ProviderKey.create(organization=org, provider="openai", key_id="key_abc", name="prod", hint="sk-proj-abc...wxyz")
    ProviderKeyMatch.create(organization=org, provider="openai", credential_id=credential.id, key_id="key_abc")
    Invitation.create(organization=org, email="ann@acme.com", role="member", invited_by=owner,
                      token_hash=invitations.token_hash(INVITE_TOKEN), expires_at=now + timedelta(days=7))
    DomainVerification.create(organization=org, domain="acme.com", token=DNS_TOKEN)
    conversation = Conversation.create(organization=org, user=owner, title="Pricing questions")
    ChatMessage.create(organization=org, conversation=conversation, role="user", content="How much is gpt-4o?")
    return {"api_key": created.plaintext, "api_key_hash": created.key.secret_hash}


def _secrets(seeded: dict) -> list[str]:
    stored = [row.secret_encrypted for model in (WebhookEndpoint, ProviderCredential, ProviderSyncConnection)
              for row in model.select()]
    return [seeded["api_key"], seeded["api_key_hash"], WEBHOOK_SECRET, SLACK_PATH, PROVIDER_SECRET, ADMIN_SECRET,
            INVITE_TOKEN, invitations.token_hash(INVITE_TOKEN), DNS_TOKEN, *stored]


def _archive(directory: Path, job: OrgExport) -> zipfile.ZipFile:
    return zipfile.ZipFile(directory / job.file_name)


def _rows(archive: zipfile.ZipFile, table: str) -> list[dict]:
    return [json.loads(line) for line in archive.read(f"{table}.jsonl").decode().splitlines()]


def _database_rows(org) -> dict[str, list[dict]]:
    """What the catalogue reads now, as the archive writes it."""
    return {t.name: [json.loads(data_export.plain_row(row)) for row in t.rows(10_000)]
            for t in data_export.org_tables(org)}


@pytest.fixture
def people(app, make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    clients = {"owner": Client(app)}
    clients["owner"].sign_in(owner.email)
    for role in ("admin", "member", "viewer"):
        user = make_user(f"{role}@acme.com")
        add_member(org, user, role)
        clients[role] = Client(app)
        clients[role].sign_in(user.email)
    stranger = make_user("owner@globex.com")
    make_org("Globex", owner=stranger)
    clients["other_owner"] = Client(app)
    clients["other_owner"].sign_in(stranger.email)
    return owner, org, clients


# --- what the archive holds --------------------------------------------------------------

def _org_scoped_models() -> set[type]:
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    # Every model class of costguardian.models, less the abstract bases (TenantModel, RollupBase) that
    # only other models extend; ALL_MODELS too, in case a model lives elsewhere.
    models = {m for m in subclasses(BaseModel) if m.__module__.startswith("costguardian.models")
              and (m in ALL_MODELS or not m.__subclasses__())} | set(ALL_MODELS)
    return {m for m in models if any(getattr(f, "rel_model", None) is Organization and f.name == "organization"
                                     for f in m._meta.fields.values())}


def test_every_org_scoped_table_is_exported_or_excluded_on_purpose():
    scoped = _org_scoped_models()
    exported, excluded = data_export.exported_models(), set(data_export.NOT_EXPORTED)
    assert {ProviderSyncConnection, ProviderUsageBucket, ProviderCostBucket, ProviderKey, ProviderKeyMatch,
            UsageEvent} <= exported  # the introspection found the tables it must
    assert len(scoped) > 30
    assert sorted(m.__name__ for m in scoped - exported - excluded) == []
    assert exported & excluded == set()
    names = [t.name for t in data_export.org_tables(Organization(id=0))]
    assert len(names) == len(set(names))


def test_the_real_queue_builds_an_archive_whose_rows_equal_the_database(app, real_queue, export_dir, backend):
    """A consumer process (SQLite queue, or Redis on the PostgreSQL pass) builds it; the owner hears of it."""
    with app.app_context(), db.connection_context():
        owner = make_user("owner@acme.com", name="Olga Owner")
        org = make_org("Acme", owner=owner)
        other = make_org("Globex")
        _seed(org, owner, events=EVENTS)
        ingest.ingest(other, keys.create_key(other, SYSTEM, "k", ["ingest"]).key, _events("globex-", 3))
    client = Client(app)
    client.sign_in("owner@acme.com")

    answer = client.post("/settings/exports", htmx=True)

    assert answer.status_code == 200 and 'data-testid="export-queued"' in answer.get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in answer.get_data(as_text=True)  # polls while it runs
    assert real_queue.pending_count() == 1
    with app.app_context(), db.connection_context():
        job = OrgExport.get()
    assert job.status == "queued" and job.running_slot == org.id

    env = {**os.environ, "CG_EXPORT_DIR": str(export_dir), "MAIL_URL": "console://",
           "CG_BASE_URL": "https://cg.example.com", "SECRET_KEY": app.config["SECRET_KEY"],
           "CG_ENCRYPTION_KEYS": app.config["CG_ENCRYPTION_KEYS"]}
    command = [sys.executable, "-m", "huey.bin.huey_consumer", "tasks.huey", "--workers", "1", "--worker-type",
               "thread", "--max-delay", "0.2", "--no-periodic"]
    if os.environ.get("CG_TEST_TODAY"):  # a run moved in time: the consumer shares the test's clock
        start = ("import sys, time_machine; time_machine.travel(sys.argv.pop(1), tick=True).start(); "
                 "from huey.bin.huey_consumer import consumer_main; consumer_main()")
        command = [sys.executable, "-c", start, clock.now_aware().isoformat(), *command[3:]]
    consumer = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with app.app_context(), db.connection_context():
                job = OrgExport.get_by_id(job.id)
                told = Notification.select().where(Notification.event_type.startswith("org.export_")).exists()
            if job.status == "failed" or told:  # ready, then the owner is told
                break
            time.sleep(0.3)
    finally:
        consumer.terminate()
        output, _ = consumer.communicate(timeout=30)
    assert job.status == "ready", (job.status, job.error, output[-3000:])

    with app.app_context(), db.connection_context():
        expected = _database_rows(org)
        # Less what telling the owner wrote after the archive was closed.
        told_ids = {d["id"] for d in expected["deliveries"] if d["event_type"] == "org.export_ready"}
        expected["notifications"] = [n for n in expected["notifications"] if n["event_type"] != "org.export_ready"]
        expected["deliveries"] = [d for d in expected["deliveries"] if d["id"] not in told_ids]
        expected["delivery_attempts"] = [a for a in expected["delivery_attempts"] if a["delivery"] not in told_ids]
        told = Notification.get(Notification.event_type == "org.export_ready")
        emails = [d.recipient for d in Delivery.select().where(Delivery.event_type == "org.export_ready")]
    archive = _archive(export_dir, job)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["format"] == "costguardian.org-export" and manifest["organization"]["slug"] == "acme"
    assert manifest["schema_version"] >= "0028_org_exports" and manifest["created_at"].endswith("Z")
    assert set(manifest["tables"]) == set(expected)
    for name, rows in expected.items():
        assert manifest["tables"][name] == {"file": f"{name}.jsonl", "rows": len(rows)}, name
        assert _rows(archive, name) == rows, name
    assert len(expected["usage_events"]) == EVENTS and not any(
        e["event_id"].startswith("globex-") for e in expected["usage_events"])  # the other tenant's are not in it
    assert job.rows_done == sum(len(rows) for rows in expected.values()) and job.size_bytes > 0
    assert job.expires_at - job.finished_at == timedelta(days=7) and job.running_slot is None
    assert _rows(archive, "provider_sync_connections")[0]["cursors"] == '{"costs": "2026-11-01T00:00:00"}'
    assert {"provider_usage_buckets", "provider_cost_buckets", "provider_keys", "provider_key_matches"} <= set(expected)
    assert "conversations.jsonl" not in archive.namelist()  # private to each member
    assert told.user_id == owner.id and told.link == f"/settings/exports/{job.id}?org=acme"
    assert emails == ["owner@acme.com"]

    page = client.get(f"/settings/exports/{job.id}")
    assert page.status_code == 200 and 'data-testid="export-ready"' in page.get_data(as_text=True)
    assert 'hx-trigger="every 2s"' not in page.get_data(as_text=True)  # done: no more polling


def test_no_secret_is_in_the_archive(owner_client, export_dir):
    client, owner, org = owner_client
    seeded = _seed(org, owner)

    assert client.post("/settings/exports").status_code == 302  # immediate queue: built at once

    job = OrgExport.get()
    assert job.status == "ready"
    raw = (export_dir / job.file_name).read_bytes()
    archive = zipfile.ZipFile(io.BytesIO(raw))
    text = b"\n".join(archive.read(name) for name in archive.namelist())
    for secret in _secrets(seeded):
        assert secret.encode() not in raw and secret.encode() not in text, secret
    webhook = _rows(archive, "webhooks")[0]
    assert webhook["url"] == "https://hooks.slack.com/…" and "secret_encrypted" not in webhook
    assert "secret_hash" not in _rows(archive, "api_keys")[0]
    assert "token" not in _rows(archive, "domain_verifications")[0]
    assert _rows(archive, "provider_credentials")[0]["secret_last4"] == "wxyz"  # what the vault page shows


# --- who may ---------------------------------------------------------------------------

def test_only_the_organizations_owners_reach_an_export(people, export_dir):
    owner, org, clients = people
    for role in ("admin", "member", "viewer"):
        assert clients[role].post("/settings/exports").status_code == 403, role
    assert OrgExport.select().count() == 0
    clients["owner"].post("/settings/exports")
    job = OrgExport.get()
    page, download = f"/settings/exports/{job.id}", f"/settings/exports/{job.id}/download"

    for role in ("admin", "member", "viewer"):
        assert clients[role].get(page).status_code == 403, role
        assert clients[role].get(download).status_code == 403, role
    for url in (page, download, f"{download}?org=acme"):
        assert clients["other_owner"].get(url).status_code == 404, url
    assert clients["owner"].get(page).status_code == 200

    answer = clients["owner"].get(download)
    assert answer.status_code == 200 and answer.mimetype == "application/zip"
    assert answer.headers["Content-Disposition"].startswith("attachment; filename=acme-export-")
    assert zipfile.ZipFile(io.BytesIO(answer.data)).read("manifest.json")
    assert [r.action for r in AuditLog.select().where(AuditLog.action.startswith("org.export"))
            .order_by(AuditLog.id)] == ["org.export_requested", "org.export_downloaded"]
    assert AuditLog.get(AuditLog.action == "org.export_downloaded").actor_id == owner.id


def test_an_owner_of_two_organizations_follows_the_link_into_the_right_one(people, export_dir):
    owner, org, clients = people
    clients["owner"].post("/settings/exports")
    job = OrgExport.get()
    globex = Organization.get(Organization.slug == "globex")
    add_member(globex, owner, "owner")
    clients["owner"].post("/orgs/switch/globex")
    assert clients["owner"].get(f"/settings/exports/{job.id}").status_code == 404  # Globex is the open one

    followed = clients["owner"].get(f"/settings/exports/{job.id}?org=acme", follow_redirects=True)

    assert followed.status_code == 200 and 'data-testid="export-ready"' in followed.get_data(as_text=True)


# --- one at a time, its states -------------------------------------------------------------

def test_a_second_request_while_one_runs_shows_the_running_one(owner_client, real_queue, export_dir):
    client, _, org = owner_client

    first = client.post("/settings/exports", htmx=True)
    second = client.post("/settings/exports", htmx=True)

    assert OrgExport.select().count() == 1 and real_queue.pending_count() == 1
    assert json.loads(second.headers["HX-Trigger"])["showToast"]["message"].startswith("An export is already running")
    assert 'data-testid="export-queued"' in second.get_data(as_text=True)
    assert 'data-testid="request-export"' not in first.get_data(as_text=True)  # no second button while it runs
    assert AuditLog.select().where(AuditLog.action == "org.export_requested").count() == 1

    job = OrgExport.get()
    OrgExport.update(status="building", rows_done=12_345, current_table="usage_events").execute()
    polled = client.get(f"/settings/exports/{job.id}", htmx=True).get_data(as_text=True)
    assert "12,345" in polled and "usage_events" in polled and 'hx-trigger="every 2s"' in polled
    assert "<html" not in polled  # the fragment only

    real_queue.execute(real_queue.dequeue())  # the queued task finds it claimed already: it changes nothing
    assert OrgExport.get_by_id(job.id).status == "building"


def test_a_failed_build_says_why_and_frees_the_slot(owner_client, app, tmp_path):
    client, owner, org = owner_client
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    app.config["CG_EXPORT_DIR"] = str(blocker)
    try:
        client.post("/settings/exports")
    finally:
        app.config["CG_EXPORT_DIR"] = None
    job = OrgExport.get()
    assert job.status == "failed" and job.running_slot is None
    assert job.error.startswith("The archive could not be written")
    html = client.get("/settings/").get_data(as_text=True)
    assert 'data-testid="export-failed"' in html and 'data-testid="request-export"' in html
    assert Notification.get(Notification.event_type == "org.export_failed").user_id == owner.id


def test_settings_show_the_latest_export_to_owners_only(people, export_dir):
    _, _, clients = people
    assert 'data-testid="export-none"' in clients["owner"].get("/settings/").get_data(as_text=True)
    clients["owner"].post("/settings/exports")
    html = clients["owner"].get("/settings/").get_data(as_text=True)
    assert 'data-testid="export-ready"' in html and 'data-testid="export-download"' in html
    assert 'data-testid="org-export"' not in clients["admin"].get("/settings/").get_data(as_text=True)


# --- expiry and cleanup ----------------------------------------------------------------------

def test_an_archive_expires_after_seven_days_and_the_cleanup_deletes_it(owner_client, export_dir):
    client, _, org = owner_client
    client.post("/settings/exports")
    job = OrgExport.get()
    path = export_dir / job.file_name
    download = f"/settings/exports/{job.id}/download"
    orphan = export_dir / "cg-export-999999-gone-20261101T000000Z.zip"  # a deleted organization's
    orphan.write_bytes(b"old")
    foreign = export_dir / "notes.txt"  # not ours: never touched
    foreign.write_text("keep")
    expiry = job.expires_at.replace(tzinfo=timezone.utc)

    with time_machine.travel(expiry - timedelta(minutes=1), tick=False):
        assert client.get(download).status_code == 200
        assert org_export.cleanup() == {"expired": 0, "stalled": 0, "orphans": 1}
    assert path.exists() and not orphan.exists() and foreign.exists()

    with time_machine.travel(expiry + timedelta(minutes=1), tick=False):
        assert org_export.cleanup()["expired"] == 1
        gone = client.get(download)
    assert gone.status_code == 410 and 'data-testid="export-expired"' in gone.get_data(as_text=True)
    assert not path.exists() and foreign.exists() and OrgExport.get_by_id(job.id).status == "expired"
    client = Client(client.app)  # back in the present: the session from a week ahead has lapsed
    client.sign_in("owner@acme.com")
    assert 'data-testid="export-expired"' in client.get("/settings/").get_data(as_text=True)


def test_a_link_opened_after_the_expiry_finds_it_expired_before_the_cleanup_runs(owner_client, export_dir):
    client, _, _ = owner_client
    client.post("/settings/exports")
    job = OrgExport.get()
    with time_machine.travel(job.expires_at.replace(tzinfo=timezone.utc) + timedelta(seconds=1), tick=False):
        page = client.get(f"/settings/exports/{job.id}")
        assert client.get(f"/settings/exports/{job.id}/download").status_code == 410
    assert 'data-testid="export-expired"' in page.get_data(as_text=True)
    assert not (export_dir / job.file_name).exists()
    assert AuditLog.select().where(AuditLog.action == "org.export_downloaded").count() == 0


def test_a_newer_archive_replaces_the_older_one(owner_client, export_dir):
    client, _, _ = owner_client
    client.post("/settings/exports")
    client.post("/settings/exports")
    older, newer = OrgExport.select().order_by(OrgExport.id)
    assert older.status == "expired" and newer.status == "ready"
    assert sorted(p.name for p in export_dir.iterdir()) == [newer.file_name]


def test_a_stalled_build_is_failed_so_a_new_one_can_start(owner_client, real_queue, export_dir):
    client, _, org = owner_client
    client.post("/settings/exports")
    job = OrgExport.get()
    OrgExport.update(status="building", updated_at=clock.now() - timedelta(hours=1)).execute()

    client.post("/settings/exports")

    stalled, fresh = OrgExport.select().order_by(OrgExport.id)
    assert stalled.id == job.id and stalled.status == "failed" and "stopped" in stalled.error
    assert fresh.status == "queued" and fresh.running_slot == org.id


def test_a_queued_export_whose_task_was_lost_frees_the_slot(owner_client, real_queue, export_dir):
    """No worker ever took it (the task was lost with a Redis flush, say):
    after STALLED_AFTER the cleanup fails it, and a new request starts."""
    client, _, org = owner_client
    client.post("/settings/exports")
    job = OrgExport.get()
    assert job.status == "queued"
    assert org_export.cleanup()["stalled"] == 0  # a fresh queued job is left alone
    with time_machine.travel(clock.now().replace(tzinfo=timezone.utc) + org_export.STALLED_AFTER
                             + timedelta(minutes=1), tick=False):
        assert org_export.cleanup()["stalled"] == 1
    assert OrgExport.get_by_id(job.id).status == "failed"
    client.post("/settings/exports")
    assert OrgExport.select().where(OrgExport.status == "queued", OrgExport.running_slot == org.id).count() == 1
