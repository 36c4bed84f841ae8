"""The restore drill, on the backend under test: a realistic organization
(usage through the ingest service with its rollups, budgets with their
counters, alerts, notifications and deliveries, API keys, a webhook,
invitations, an encrypted provider credential), backed up with `flask backup`
WHILE another organization's ingest keeps writing, restored with `flask
restore` into an empty database, and compared table by table, row by row.

Rows the concurrent ingest writes (Globex's events and rollups) cannot be
compared with the source, which moved on after the backup: the restored
events must each equal their source row, their number must lie between the
counts before and after the backup, and the restored rollups must equal the
sums of the restored events (a torn copy would break that). Every other row
of every table must be equal. Then every encrypted secret still decrypts,
the API keys still authenticate, and the restored app takes new events."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import timedelta

import pytest

from costguardian import clock, crypto
from costguardian.extensions import db
from costguardian.models import UsageEvent, UsageRollup, UsageTagRollup
from costguardian.services import keys
from costguardian.services.budgets import budgets
from costguardian.services.encryption import ENCRYPTED_FIELDS
from costguardian.services.gateway import vault
from costguardian.services.notifications import webhooks
from costguardian.services.ops import manifest
from costguardian.services.team import departments, invitations
from costguardian.services.usage import ingest
from tests.fakes.llm_upstream import OPENAI_KEY
from tests.ops_support import ScratchDatabases
from tests.support import SYSTEM, add_member, make_org, make_user, other_app

# what the Globex ingest writes meanwhile
CONCURRENT = ("usage_event", "usage_rollup", "usage_tag_rollup", "usage_day_rollup", "usage_day_tag_rollup")


@pytest.fixture
def scratch(backend, tmp_path):
    databases = ScratchDatabases(backend, tmp_path)
    yield databases
    databases.close()


def _seed(app, llm_upstream, webhook_receiver) -> dict:
    app.config["CG_PROVIDER_BASE_URLS"] = llm_upstream.provider_base_urls()
    owner = make_user("olga@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    add_member(org, make_user("ann@acme.com", name="Ann"), "member")
    add_member(org, make_user("adam@acme.com", name="Adam"), "admin")
    research = departments.create(org, SYSTEM, "Research", code="R&D")
    ingest_key = keys.create_key(org, SYSTEM, "Ingest", ["ingest"], department=research)
    read_key = keys.create_key(org, SYSTEM, "Dashboards", ["read"])
    vault.add(org, SYSTEM, "openai", "Production", OPENAI_KEY)
    hook = webhooks.create_endpoint(org, SYSTEM, "Ops alerts", webhook_receiver.url("/hook"))
    webhook_receiver.secret = hook.secret
    invitations.invite(org, "newcomer@acme.com, contractor@example.org", "member", SYSTEM)
    budgets.create(org, SYSTEM, {"name": "Monthly", "amount_usd": "30", "period": "monthly",
                                 "thresholds": "50,80,100"})
    budgets.create(org, SYSTEM, {"name": "Research", "amount_usd": "5", "period": "daily", "thresholds": "90",
                                 "department_id": str(research.id), "enforcement": "hard"})
    now = clock.now()
    events = [{"event_id": f"a{i}", "provider": "openai", "model": "gpt-4o" if i % 3 else "gpt-4o-mini",
               "input_tokens": 60_000 + i, "cache_read_tokens": i % 7 * 100, "output_tokens": 2_000 + i,
               "occurred_at": (now - timedelta(minutes=i % 50)).isoformat() + "Z",
               "user": ("ann@acme.com", "cust-1", "")[i % 3], "tags": ["env:prod", f"feature:f{i % 4}"]}
              for i in range(300)]
    for start in range(0, len(events), 100):
        assert ingest.ingest(org, ingest_key.key, events[start:start + 100]).count("rejected") == 0
    budgets.check_all()
    globex = make_org("Globex")
    return {"org": org, "globex": globex, "ingest_key": ingest_key.plaintext, "read_key": read_key.plaintext,
            "hook_secret": hook.secret}


class Ingesting:
    """Globex's ingest in a thread, batch after batch, until stopped."""

    def __init__(self, app, org):
        self.app, self.org, self.batches, self.errors = app, org, 0, []
        self.stop = threading.Event()
        self.hour = clock.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
        self.thread = threading.Thread(target=self.run, name="drill-ingest", daemon=True)

    def run(self):
        try:
            with self.app.app_context(), db.connection_context():
                while not self.stop.is_set():
                    n = self.batches
                    batch = [{"event_id": f"g{n}-{j}", "provider": "anthropic", "model": "claude-sonnet-4-5",
                              "input_tokens": 1_000 + j, "output_tokens": 100 + n,
                              "occurred_at": (self.hour + timedelta(seconds=j)).isoformat() + "Z",
                              "tags": ["env:load"]} for j in range(25)]
                    assert ingest.ingest(self.org, None, batch).count("accepted") == 25
                    self.batches += 1
        except Exception as exc:  # surfaced by the test
            self.errors.append(exc)

    def wait_for(self, batches: int, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while self.batches < batches and not self.errors:
            assert time.monotonic() < deadline, "the ingest thread stalled"
            time.sleep(0.01)


def _rows(database, table: str) -> list[dict]:
    cursor = database.execute_sql(f'SELECT * FROM "{table}"')
    columns = [c[0] for c in cursor.description]
    return sorted((dict(zip(columns, row)) for row in cursor.fetchall()), key=repr)


def _rollups_from_events(model, org_id: int) -> dict:
    """The rollups of an organization recomputed from its raw events (bound database)."""
    expected = defaultdict(lambda: [0] * 7)
    for e in UsageEvent.select().where(UsageEvent.organization == org_id):
        key = (e.occurred_at.replace(minute=0, second=0, microsecond=0), e.provider, e.model, e.api_key_id or 0,
               e.user_ref, e.department_id or 0)
        measures = (1, e.input_tokens, e.cache_read_tokens, e.cache_write_tokens, e.output_tokens,
                    e.cost_nanos or 0, int(e.cost_nanos is None))
        for k in ([(tag,) + key for tag in e.tags] if model is UsageTagRollup else [key]):
            for i, value in enumerate(measures):
                expected[k][i] += value
    return dict(expected)


def _stored_rollups(model, org_id: int) -> dict:
    return {tuple(getattr(r, d) for d in model.KEY): [getattr(r, m) for m in model.MEASURES]
            for r in model.select().where(model.organization == org_id)}


def _budget_states(org) -> dict:
    return {s.budget.name: (s.spend, s.requests, s.thresholds_crossed) for s in budgets.org_statuses(org)}


def test_backup_while_ingesting_then_restore_into_an_empty_database(app, app_ctx, llm_upstream, webhook_receiver,
                                                                     scratch, tmp_path):
    seeded = _seed(app, llm_upstream, webhook_receiver)
    org, globex = seeded["org"], seeded["globex"]
    source = db.obj

    ingesting = Ingesting(app, globex)
    ingesting.thread.start()
    try:
        ingesting.wait_for(3)
        before = UsageEvent.select().where(UsageEvent.organization == globex).count()
        path = tmp_path / "drill.cgbackup.tar"
        started = ingesting.batches
        result = app.test_cli_runner().invoke(args=["backup", str(path)])
        after_batches = ingesting.batches
        ingesting.wait_for(after_batches + 3)
    finally:
        ingesting.stop.set()
        ingesting.thread.join(timeout=60)
    assert result.exit_code == 0, result.output
    assert ingesting.errors == []
    assert after_batches > started, "no ingest batch committed while the backup ran"
    after = UsageEvent.select().where(UsageEvent.organization == globex).count()
    described = manifest.read(path).manifest
    for table in ("usage_event", "usage_rollup", "usage_tag_rollup", "usage_day_rollup", "usage_day_tag_rollup",
                  "usage_dimension", "budget", "budget_spend",
                  "budget_alert", "notification", "delivery", "delivery_attempt", "api_key", "webhook_endpoint",
                  "invitation", "provider_credential", "department", "membership", "audit_log", "outbox_message"):
        assert described["tables"].get(table, 0) > 0, f"the seed left {table} empty"

    budget_states = _budget_states(org)
    assert budget_states["Monthly"][0] > 0 and budget_states["Monthly"][2] == [50, 80, 100]
    target_url = scratch.url()
    with other_app(DATABASE_URL=target_url) as restored_app:
        with restored_app.app_context():  # the CLI runs in the app context it finds
            restored = restored_app.test_cli_runner().invoke(args=["restore", str(path)])
        assert restored.exit_code == 0, restored.output
        assert "every count matches the manifest" in restored.output
        target = scratch.open(target_url)
        with target.connection_context(), source.connection_context():
            tables = sorted(source.get_tables())
            assert sorted(target.get_tables()) == tables == sorted(described["tables"])
            for table in tables:
                copy, original = _rows(target, table), _rows(source, table)
                assert len(copy) == described["tables"][table], table
                # usage_event's month partitions and key table (PostgreSQL, 0030) are written by the ingest too
                if table not in CONCURRENT and not table.startswith("usage_event_"):
                    assert copy == original, f"{table} differs from the source"
                    continue
                ours = [r for r in copy if r["organization_id"] != globex.id]
                assert ours == [r for r in original if r["organization_id"] != globex.id], table
            by_id = {r["id"]: r for r in _rows(source, "usage_event")}
            globex_copy = [r for r in _rows(target, "usage_event") if r["organization_id"] == globex.id]
            assert all(by_id[r["id"]] == r for r in globex_copy)
            assert before <= len(globex_copy) <= after and before < after  # ingest ran across the backup

        with restored_app.app_context(), db.connection_context():
            for model in (UsageRollup, UsageTagRollup):  # a snapshot: the rollups equal the restored events
                assert _stored_rollups(model, globex.id) == _rollups_from_events(model, globex.id)
                assert _stored_rollups(model, org.id) == _rollups_from_events(model, org.id)
            decrypted = 0
            for model, field_name, what in ENCRYPTED_FIELDS:
                for row in model.select():
                    assert crypto.decrypt(getattr(row, field_name)), f"{what} #{row.id} does not decrypt"
                    decrypted += 1
            assert decrypted >= 2
            assert vault.credential_for(org, "openai").secret == OPENAI_KEY
            assert crypto.decrypt(webhooks.WebhookEndpoint.get().secret_encrypted) == seeded["hook_secret"]
            assert keys.authenticate(f"Bearer {seeded['ingest_key']}", "ingest").organization_id == org.id
            assert keys.authenticate(f"Bearer {seeded['read_key']}", "read").name == "Dashboards"
            assert _budget_states(org) == budget_states  # the counters answer as before

        response = restored_app.test_client().post(
            "/api/v1/usage", headers={"Authorization": f"Bearer {seeded['ingest_key']}"},
            json={"event_id": "after-restore", "provider": "openai", "model": "gpt-4o", "input_tokens": 10})
        assert response.status_code in (200, 201, 202), response.get_data(as_text=True)
        with target.connection_context():
            assert target.execute_sql("SELECT COUNT(*) FROM usage_event WHERE event_id = 'after-restore'"
                                      ).fetchone()[0] == 1
