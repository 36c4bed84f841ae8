"""Reconciliation by provider key (issue 16): the providers' key lists pulled
with pagination, vault credentials matched to them by hint (unique,
ambiguous, none), recorded vs reported per key computed exactly for gateway
calls through two credentials, shadow usage that leaves matched keys out,
and the page, JSON and CSV."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from costguardian import crypto
from costguardian.models import ProviderCredential, ProviderKey, ProviderKeyMatch
from costguardian.services.provider_sync import admin_api as client_api
from costguardian.services.provider_sync import connections, key_match, reconcile, reconcile_keys, sync
from costguardian.services.usage import ingest
from tests.provider_sync_support import NOW, admin_api, pinned  # noqa: F401
from tests.support import SYSTEM

SECRET_A = "sk-proj-Aa1" + "x" * 40 + "aaaa"
SECRET_B = "sk-proj-Bb2" + "y" * 40 + "bbbb"
SECRET_C = "sk-proj-Cc3" + "z" * 40 + "cccc"  # in the vault, listed by no provider key


def _credential(org, label: str, secret: str, provider: str = "openai") -> ProviderCredential:
    return ProviderCredential.create(organization=org, provider=provider, label=label,
                                     secret_encrypted=crypto.encrypt(secret), secret_last4=secret[-4:])


@pytest.mark.parametrize("hint, secret, fits", [
    ("sk-proj-Aa1...aaaa", SECRET_A, True),
    ("sk-proj-Aa1\u2026aaaa", SECRET_A, True),  # a real ellipsis
    ("sk-proj-Aa1...aaab", SECRET_A, False),  # other last characters
    ("sk-proj-Ab1...aaaa", SECRET_A, False),  # another prefix
    ("sk-proj-Aa1", SECRET_A, False),  # no gap: not a hint
    ("...aaaa", SECRET_A, False),  # no prefix to check
    ("sk-ab...ba", "sk-aba", False),  # prefix and end would overlap
])
def test_a_hint_fits_a_secret_by_its_start_and_its_last_characters(hint, secret, fits):
    assert key_match.fits(hint, secret) is fits


def test_key_lists_are_pulled_page_by_page_from_both_providers(app_ctx, admin_api, pinned):
    for i in range(101):  # more than one page of 100
        admin_api.add_openai_key("proj_main", f"key_{i:03d}", f"sk-proj-k{i:03d}...{i:04d}")
    admin_api.add_openai_key("proj_old", "key_old", "sk-old...0000", archived_project=True)
    for i in range(101):
        admin_api.add_anthropic_key(f"apikey_{i:03d}", f"sk-ant-api03-{i:03d}...{i:04d}", workspace_id="wrkspc_1",
                                    status="active" if i else "archived")
    openai = client_api.list_keys("openai", admin_api.openai_key)
    assert len(openai) == 102 and openai[0] == client_api.KeyRow("key_000", "key_000", "sk-proj-k000...0000",
                                                                 "proj_main", "active")
    assert openai[-1].status == "archived"  # its project is archived: listed all the same
    pages = [q for p, q, _ in admin_api.requests if p == "/v1/organization/projects/proj_main/api_keys"]
    assert [q.get("after") for q in pages] == [None, ["key_099"]] and pages[0]["limit"] == ["100"]
    assert [q["include_archived"] for p, q, _ in admin_api.requests if p == "/v1/organization/projects"] == [["true"]]
    anthropic = client_api.list_keys("anthropic", admin_api.anthropic_key)
    assert len(anthropic) == 101 and anthropic[0].status == "archived" and anthropic[1].project_id == "wrkspc_1"
    assert [q.get("after_id") for p, q, _ in admin_api.requests
            if p == "/v1/organizations/api_keys"] == [None, ["apikey_099"]]
    admin_api.fail_next = [429, 502]  # retried like the usage pulls
    assert len(client_api.list_keys("anthropic", admin_api.anthropic_key)) == 101


def test_credentials_match_only_a_unique_key_and_keep_it_once_deleted(app_ctx, make_org, admin_api, pinned):
    org = make_org()
    admin_api.add_openai_key("proj_1", "key_a", "sk-proj-Aa1...aaaa", "gateway A")
    admin_api.add_openai_key("proj_1", "key_b", "sk-proj-Bb2...bbbb")
    admin_api.add_openai_key("proj_2", "key_b_too", "sk-proj-Bb...bbbb")  # B's secret fits two keys
    a, b, c = _credential(org, "A", SECRET_A), _credential(org, "B", SECRET_B), _credential(org, "C", SECRET_C)
    _credential(org, "Anthropic A", SECRET_A, provider="anthropic")  # another provider's key is not matched
    conn = connections.connect(org, SYSTEM, "openai", admin_api.openai_key)
    assert sync.sync_connection(conn)
    assert key_match.matches(org, "openai") == {a.id: "key_a"}  # B ambiguous, C fits none
    stored = ProviderKey.in_org(org).where(ProviderKey.key_id == "key_a").get()
    assert (stored.name, stored.hint, stored.project_id, stored.status) == ("gateway A", "sk-proj-Aa1...aaaa",
                                                                           "proj_1", "active")
    # The provider deletes key_b_too: B becomes unique (the dropped key is kept, and
    # loses to a listed one). A leaves the vault: its match stays.
    admin_api.openai_projects[1]["keys"].clear()
    a.delete_instance()
    pinned.shift(60)
    assert sync.sync_connection(conn)
    assert key_match.matches(org, "openai") == {a.id: "key_a", b.id: "key_b"}
    assert ProviderKeyMatch.in_org(org).where(ProviderKeyMatch.credential_id == c.id).count() == 0


def _crafted(org, fake):
    """Kolkata (UTC+05:30); the local day 3 Dec is the UTC hours 2 Dec 19:00
    to 3 Dec 19:00, so a call at 18:45 UTC (00:15 on 4 Dec, local) counts on
    3 Dec and one at 19:10 UTC on 4 Dec. Gateway calls through two matched
    credentials, one through a credential no key fits, one ingest API event;
    and a laptop key nobody knows."""
    for key_id, hint in (("key_a", "sk-proj-Aa1...aaaa"), ("key_b", "sk-proj-Bb2...bbbb"),
                         ("key_laptop", "sk-proj-Lap...llll")):
        fake.add_openai_key("proj_1", key_id, hint)
    fake.add_openai_usage(datetime(2026, 12, 3, 18, 5), "gpt-4o", "key_a", "proj_1", input_tokens=1000,
                          output_tokens=100, num_model_requests=1)
    fake.add_openai_usage(datetime(2026, 12, 3, 19, 5), "gpt-4o", "key_a", "proj_1", input_tokens=5000,
                          num_model_requests=1)
    fake.add_openai_usage(datetime(2026, 12, 3, 10), "gpt-4o", "key_b", "proj_1", input_tokens=2000,
                          num_model_requests=1)
    fake.add_openai_usage(datetime(2026, 12, 3, 12), "gpt-4o", "key_laptop", "proj_1", input_tokens=4000,
                          output_tokens=400, num_model_requests=1)
    a, b, c = _credential(org, "Gateway A", SECRET_A), _credential(org, "Gateway B", SECRET_B), \
        _credential(org, "Unlisted", SECRET_C)
    calls = ((a, "2026-12-03T18:45:00Z", 1000, 100), (a, "2026-12-03T19:10:00Z", 5000, 0),
             (b, "2026-12-03T10:20:00Z", 1900, 0), (c, "2026-12-03T11:30:00Z", 200, 0))
    for i, (credential, at, tokens_in, tokens_out) in enumerate(calls):
        result = ingest.ingest(org, None, [{"event_id": f"gw-{i}", "provider": "openai", "model": "gpt-4o",
                                            "input_tokens": tokens_in, "output_tokens": tokens_out,
                                            "occurred_at": at, "tags": ["source:gateway"]}],
                               now=NOW.replace(tzinfo=None), gateway_tags=True, credential_id=credential.id)
        assert result.count("accepted") == 1, result.as_json()
    result = ingest.ingest(org, None, [{"event_id": "app-1", "provider": "openai", "model": "gpt-4o",
                                        "input_tokens": 300, "output_tokens": 30,
                                        "occurred_at": "2026-12-03T11:00:00Z"}], now=NOW.replace(tzinfo=None))
    assert result.count("accepted") == 1
    return a, b, c


def test_drift_by_provider_key_for_gateway_calls_through_two_credentials(app_ctx, make_org, admin_api, pinned):
    org = make_org(time_zone="Asia/Kolkata")
    _crafted(org, admin_api)
    conn = connections.connect(org, SYSTEM, "openai", admin_api.openai_key)
    assert sync.sync_connection(conn)
    rows = reconcile_keys.by_key(org, conn, date(2026, 12, 3), date(2026, 12, 3))
    assert [(r.label, r.status) for r in rows] == [
        ("key_laptop", "shadow"), ("key_b", "matched"), ("key_a", "matched"),
        (reconcile_keys.NOT_MATCHED_LABEL, "not_matched")]
    laptop, key_b, key_a, rest = rows
    # gpt-4o: $2.50 in, $10 out per million tokens
    assert (laptop.recorded.tokens, laptop.reported.tokens, laptop.reported.cost_nanos) == (0, 4400, 14_000_000)
    assert laptop.flagged and laptop.hint == "sk-proj-Lap...llll"
    assert (key_a.recorded.tokens, key_a.reported.tokens) == (1100, 1100)  # 18:45 UTC counted on 3 Dec, 19:10 not
    assert (key_a.recorded.cost_nanos, key_a.reported.cost_nanos, key_a.flagged) == (3_500_000, 3_500_000, False)
    assert key_a.credentials == ["Gateway A"]
    assert (key_b.recorded.tokens, key_b.reported.tokens, key_b.token_drift) == (1900, 2000, -100)
    assert key_b.token_drift_pct == Decimal("-5.00") and key_b.cost_drift_nanos == -250_000 and key_b.flagged
    # The ingest API event and the unlisted credential's call: recorded, no provider key.
    assert (rest.recorded.tokens, rest.recorded.cost_nanos, rest.reported.tokens, rest.flagged) == (
        530, 1_550_000, 0, False)
    days = reconcile.by_day(org, conn, date(2026, 12, 3), date(2026, 12, 3))
    total = reconcile_keys.totals(rows)
    assert total.recorded.tokens == sum(d.recorded.tokens for d in days) == 3530
    assert total.reported.tokens == sum(d.reported.tokens for d in days) == 7500
    assert total.recorded.cost_nanos == sum(d.recorded.cost_nanos for d in days)

    # Shadow usage leaves the matched keys out: only the laptop is shadow.
    found = {k.unit: k for k in reconcile.keys(org, conn, date(2026, 12, 3), date(2026, 12, 3))}
    assert found["key_a"].known and found["key_a"].matched and found["key_b"].known
    assert [k.unit for k in reconcile.shadow_spend(org, conn, date(2026, 12, 3))[1]] == ["key_laptop"]


def test_page_json_and_csv_by_key(app, pinned, admin_api, owner_client):
    client, _, org = owner_client
    with app.app_context():
        org.time_zone = "Asia/Kolkata"
        org.save()
        _crafted(org, admin_api)
        conn = connections.connect(org, SYSTEM, "openai", admin_api.openai_key)
        sync.sync_connection(conn)
        from costguardian.services import keys as api_keys

        secret = api_keys.create_key(org, SYSTEM, "reader", ["read"]).plaintext
    html = client.get("/reconciliation/openai?from=2026-12-03&to=2026-12-03").get_data(as_text=True)
    assert "By provider key" in html and "Matched: Gateway B" in html and "Not matched to a provider key" in html
    assert SECRET_A not in html and "sk-proj-Lap...llll" in html
    body = client.http.get("/api/v1/reconciliation/openai?from=2026-12-03&to=2026-12-03",
                           headers={"Authorization": f"Bearer {secret}"}).get_json()
    by_key = {row["key"]: row for row in body["by_key"]}
    assert by_key["key_b"]["status"] == "matched" and by_key["key_b"]["credentials"] == ["Gateway B"]
    assert (by_key["key_b"]["token_drift"], by_key["key_b"]["cost_drift_usd"]) == (-100, "-0.000250000")
    assert by_key[None]["status"] == "not_matched" and by_key[None]["recorded"]["tokens"] == 530
    assert {k["key"]: k["known"] for k in body["keys"]} == {"key_a": True, "key_b": True, "key_laptop": False}
    csv_text = client.get("/reconciliation/openai.csv?by=key&from=2026-12-03&to=2026-12-03").get_data(as_text=True)
    lines = csv_text.splitlines()
    assert lines[0].startswith("key,status,name,hint,credentials,recorded_tokens")
    assert "key_b,matched,key_b,sk-proj-Bb2...bbbb,Gateway B,1900,2000,-100,-5.00,0.004750000,0.005000000," \
           "-0.000250000,-5.00,yes" in lines
    assert lines[-1].startswith(",not_matched,,,,530,0,")
