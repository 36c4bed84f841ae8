"""Provider usage sync: admin keys checked and encrypted, incremental pulls
with cursors and pagination, retries, idempotent re-pulls and a resumable
backfill, against the local fake of OpenAI's and Anthropic's admin APIs."""
from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from costguardian.models import AuditLog, ProviderCostBucket, ProviderSyncConnection, ProviderUsageBucket
from costguardian.services.errors import ValidationError
from costguardian.services.provider_sync import connections, sync
from tests.provider_sync_support import NOW, admin_api, pinned  # noqa: F401
from tests.support import SYSTEM

BASE = NOW.replace(tzinfo=None)


def _openai_history(fake, days=30):
    """One call an hour for `days` days: gpt-4o on key_a, and embeddings."""
    for h in range(days * 24):
        at = BASE - timedelta(hours=h)
        fake.add_openai_usage(at, "gpt-4o-2024-08-06", "key_a", "proj_1", input_tokens=100, output_tokens=10,
                              input_cached_tokens=40, num_model_requests=1)
    fake.add_openai_usage(BASE - timedelta(days=2), "text-embedding-3-small", "key_a", "proj_1", kind="embeddings",
                          input_tokens=5000, num_model_requests=2)
    for d in range(days):
        day = datetime(BASE.year, BASE.month, BASE.day) - timedelta(days=d)
        fake.add_openai_cost(day, "0.34", "gpt-4o-2024-08-06, input", "proj_1")


def _connect(org, provider="openai", fake=None):
    key = fake.openai_key if provider == "openai" else fake.anthropic_key
    return connections.connect(org, SYSTEM, provider, key)


def _usage_params(fake, kind="completions"):
    return [q for path, q, _ in fake.requests if path == f"/v1/organization/usage/{kind}"]


def test_a_refused_admin_key_saves_nothing(app_ctx, make_org, admin_api, pinned):
    org = make_org()
    with pytest.raises(ValidationError) as caught:
        connections.connect(org, SYSTEM, "openai", "sk-admin-wrong-0000")
    assert "refused the admin key" in caught.value.errors["secret"]
    assert "sk-admin-wrong-0000" not in caught.value.errors["secret"]
    assert ProviderSyncConnection.select().count() == 0
    assert not AuditLog.select().where(AuditLog.action.startswith("provider_sync")).exists()


def test_the_admin_key_is_checked_with_one_usage_call_and_stored_encrypted(app_ctx, make_org, admin_api, pinned):
    org = make_org()
    conn = _connect(org, "openai", admin_api)
    assert len(admin_api.requests) == 1
    path, query, headers = admin_api.requests[0]
    assert path == "/v1/organization/usage/completions" and query["limit"] == ["1"]
    assert headers["Authorization"] == f"Bearer {admin_api.openai_key}"
    assert conn.secret_last4 == admin_api.openai_key[-4:]
    assert admin_api.openai_key not in conn.secret_encrypted
    assert connections.secret_of(conn) == admin_api.openai_key
    audit = AuditLog.get(AuditLog.action == "provider_sync.connected")
    assert admin_api.openai_key not in json.dumps(audit.detail, default=str)
    assert conn.backfill_from == BASE.replace(minute=0) - timedelta(days=30)
    anthropic = _connect(org, "anthropic", admin_api)
    _, query, headers = admin_api.requests[-1]
    assert headers["X-Api-Key"] == admin_api.anthropic_key and headers["Anthropic-Version"] == "2023-06-01"
    assert anthropic.provider == "anthropic"


def test_backfill_pages_through_30_days_then_syncs_incrementally(app_ctx, make_org, admin_api, pinned):
    org = make_org()
    _openai_history(admin_api)
    conn = _connect(org, "openai", admin_api)
    admin_api.requests.clear()
    assert sync.sync_connection(conn) is True
    first = _usage_params(admin_api)
    assert len(first) == 5  # 721 hours in pages of 168
    assert first[0]["start_time"] == [str(_unix(BASE.replace(minute=0) - timedelta(days=30)))]
    assert "page" not in first[0] and all("page" in q for q in first[1:])  # next_page followed
    assert set(first[0]["group_by"]) == {"model", "api_key_id", "project_id", "batch"}
    stored = ProviderUsageBucket.select().where(ProviderUsageBucket.source == "completions")
    assert stored.count() == 30 * 24
    assert {b.model for b in stored} == {"gpt-4o"}  # normalised like our events
    b = ProviderUsageBucket.select().where(ProviderUsageBucket.source == "completions").first()
    assert (b.input_tokens, b.cache_read_tokens, b.output_tokens, b.key_id, b.project_id) == (100, 40, 10, "key_a",
                                                                                             "proj_1")
    assert ProviderCostBucket.select().count() == 30
    conn = ProviderSyncConnection.get_by_id(conn.id)
    cursor = sync.cursor_of(conn, "usage:completions")
    assert cursor == BASE.replace(minute=0) - timedelta(hours=sync.SETTLE_HOURS)
    assert sync.progress(conn)["complete"]

    # Two hours later: only the settle window onwards is asked for, in one page.
    admin_api.requests.clear()
    admin_api.now += 7200
    admin_api.add_openai_usage(BASE + timedelta(hours=1), "gpt-4o", "key_a", "proj_1", input_tokens=7,
                               output_tokens=1, num_model_requests=1)
    with pinned_at(BASE + timedelta(hours=2)):
        assert sync.sync_connection(conn) is True
    again = _usage_params(admin_api)
    assert len(again) == 1 and again[0]["start_time"] == [str(_unix(cursor))]
    assert stored.count() == 30 * 24 + 1  # nothing twice


def test_pulling_the_same_buckets_again_stores_them_once(app_ctx, make_org, admin_api, pinned):
    org = make_org()
    _openai_history(admin_api, days=3)
    conn = _connect(org, "openai", admin_api)
    sync.sync_connection(conn)
    # Sorted whole: several buckets share an hour, and PostgreSQL returns ties in any order.
    before = sorted((b.hour, b.model, b.key_id, b.input_tokens) for b in ProviderUsageBucket.select())
    ProviderSyncConnection.update(cursors="{}").execute()  # forget the cursors: pull everything again
    sync.sync_connection(ProviderSyncConnection.get_by_id(conn.id))
    after = sorted((b.hour, b.model, b.key_id, b.input_tokens) for b in ProviderUsageBucket.select())
    assert after == before and ProviderCostBucket.select().count() == 3


def test_rate_limits_and_server_errors_are_retried(app_ctx, make_org, admin_api, pinned):
    org = make_org()
    _openai_history(admin_api, days=1)
    conn = _connect(org, "openai", admin_api)
    admin_api.fail_next = [429, 503, 500]
    assert sync.sync_connection(conn) is True
    assert ProviderSyncConnection.get_by_id(conn.id).last_error == ""
    assert ProviderUsageBucket.select().where(ProviderUsageBucket.source == "completions").count() == 24


def test_a_backfill_stopped_mid_way_resumes_from_its_cursor(app_ctx, make_org, admin_api, pinned):
    org = make_org()
    _openai_history(admin_api)
    conn = _connect(org, "openai", admin_api)
    admin_api.requests.clear()
    admin_api.fail_after = 3 + 1  # the check call was served before: three pages, then the provider is gone
    assert sync.sync_connection(conn) is False
    conn = ProviderSyncConnection.get_by_id(conn.id)
    assert "did not answer" in conn.last_error
    reached = sync.cursor_of(conn, "usage:completions")
    assert reached == conn.backfill_from + timedelta(hours=3 * 168)
    assert 0 < sync.progress(conn)["percent"] < 100
    partial = ProviderUsageBucket.select().count()
    assert partial == 3 * 168 - 1  # the first hour of the backfill window has no call

    admin_api.fail_after = None
    admin_api.requests.clear()
    assert sync.sync_connection(conn) is True
    resumed = _usage_params(admin_api)
    assert resumed[0]["start_time"] == [str(_unix(reached))] and "page" not in resumed[0]
    assert ProviderUsageBucket.select().where(ProviderUsageBucket.source == "completions").count() == 30 * 24
    assert ProviderSyncConnection.get_by_id(conn.id).last_error == ""


def test_anthropic_usage_in_genai_prices_terms(app_ctx, make_org, admin_api, pinned):
    org = make_org()
    admin_api.add_anthropic_usage(BASE - timedelta(hours=5), "claude-sonnet-4-20250514", "apikey_01", "wrkspc_1",
                                  uncached_input_tokens=100, cache_read_input_tokens=300,
                                  ephemeral_5m_input_tokens=50, ephemeral_1h_input_tokens=20, output_tokens=9)
    admin_api.add_anthropic_cost(datetime(2026, 12, 4), "123.45", "claude-sonnet-4-20250514", "wrkspc_1")
    conn = _connect(org, "anthropic", admin_api)
    assert sync.sync_connection(conn) is True
    b = ProviderUsageBucket.get()
    assert (b.source, b.key_id, b.project_id, b.tier) == ("messages", "apikey_01", "wrkspc_1", "")
    assert (b.input_tokens, b.cache_read_tokens, b.cache_write_tokens, b.output_tokens) == (470, 300, 70, 9)
    assert b.hour == BASE.replace(minute=0) - timedelta(hours=5)
    cost = ProviderCostBucket.get()
    assert cost.amount_nanos == 1_234_500_000  # "123.45" cents is $1.2345
    usage_query = [q for p, q, _ in admin_api.requests if p.endswith("/usage_report/messages")][-1]
    assert usage_query["bucket_width"] == ["1h"] and set(usage_query["group_by[]"]) == {
        "model", "api_key_id", "workspace_id", "service_tier"}


def test_the_periodic_task_syncs_every_connection(app_ctx, make_org, admin_api, pinned):
    import tasks

    _openai_history(admin_api, days=1)
    first, second = make_org("One"), make_org("Two")
    _connect(first, "openai", admin_api)
    _connect(second, "openai", admin_api)
    tasks.sync_provider_usage.call_local()
    for org in (first, second):
        assert ProviderUsageBucket.in_org(org).where(ProviderUsageBucket.source == "completions").count() == 24


def _unix(when: datetime) -> int:
    from datetime import timezone

    return int(when.replace(tzinfo=timezone.utc).timestamp())


def pinned_at(when: datetime):
    import time_machine
    from datetime import timezone

    return time_machine.travel(when.replace(tzinfo=timezone.utc), tick=False)
