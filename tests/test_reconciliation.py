"""Reconciliation: recorded vs reported by local day and model (a bucket that
straddles a local midnight included), shadow keys and their alert, the cost
check, and the page, JSON and CSV."""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from costguardian.models import Notification
from costguardian.services.provider_sync import connections, reconcile, sync
from costguardian.services.usage import ingest
from tests.provider_sync_support import NOW, admin_api, pinned  # noqa: F401
from tests.support import SYSTEM, Client

NANOS = 10**9


def _send(org, events):
    for i, e in enumerate(events):
        e.setdefault("event_id", f"ev-{i}-{e['occurred_at']}")
        e.setdefault("provider", "openai")
    result = ingest.ingest(org, None, events, now=NOW.replace(tzinfo=None))
    assert result.count("accepted") == len(events), result.as_json()


def _crafted(org, fake):
    """Kolkata is UTC+05:30: the UTC hour 18:00-19:00 on 3 Dec runs from
    23:30 on 3 Dec to 00:30 on 4 Dec, local."""
    fake.add_openai_usage(datetime(2026, 12, 3, 18, 5), "gpt-4o-2024-08-06", "key_a", "proj_1",
                          input_tokens=1000, output_tokens=500, num_model_requests=1)
    fake.add_openai_usage(datetime(2026, 12, 3, 19, 5), "gpt-4o", "key_a", "proj_1",
                          input_tokens=2000, output_tokens=1000, num_model_requests=1)
    fake.add_openai_usage(datetime(2026, 12, 3, 19, 30), "gpt-4o-mini", "key_b", "proj_2",
                          input_tokens=10000, output_tokens=0, num_model_requests=1)
    # Ours: the 18:45 UTC call is 00:15 on 4 Dec locally, but its hour starts on 3 Dec.
    _send(org, [{"model": "gpt-4o", "input_tokens": 1000, "output_tokens": 500,
                 "occurred_at": "2026-12-03T18:45:00Z"},
                {"model": "gpt-4o", "input_tokens": 1980, "output_tokens": 1000,
                 "occurred_at": "2026-12-03T19:10:00Z"}])


def test_drift_by_local_day_with_a_bucket_straddling_local_midnight(app_ctx, make_org, admin_api, pinned):
    org = make_org(time_zone="Asia/Kolkata")
    _crafted(org, admin_api)
    conn = connections.connect(org, SYSTEM, "openai", admin_api.openai_key)
    assert sync.sync_connection(conn)
    rows = {(r.label, r.model): r for r in reconcile.by_day(org, conn, date(2026, 12, 3), date(2026, 12, 4))}
    assert set(rows) == {("2026-12-03", "gpt-4o"), ("2026-12-04", "gpt-4o"), ("2026-12-04", "gpt-4o-mini")}
    midnight = rows[("2026-12-03", "gpt-4o")]
    assert (midnight.recorded.tokens, midnight.reported.tokens, midnight.token_drift) == (1500, 1500, 0)
    assert midnight.cost_drift_nanos == 0 and not midnight.flagged
    after = rows[("2026-12-04", "gpt-4o")]
    assert (after.recorded.tokens, after.reported.tokens, after.token_drift) == (2980, 3000, -20)
    assert after.token_drift_pct == Decimal("-0.67") and not after.flagged  # within 1%
    # gpt-4o: $2.50 in, $10 out per million tokens
    assert (after.recorded.cost_nanos, after.reported.cost_nanos) == (14_950_000, 15_000_000)
    assert after.cost_drift_nanos == -50_000 and after.cost_drift_pct == Decimal("-0.33")
    unseen = rows[("2026-12-04", "gpt-4o-mini")]
    assert unseen.recorded.tokens == 0 and unseen.token_drift_pct == Decimal("-100.00") and unseen.flagged
    hours = reconcile.by_hour(org, conn, date(2026, 12, 3))
    assert [(h.label, h.model, h.reported.tokens) for h in hours] == [("23:30", "gpt-4o", 1500)]


def test_shadow_keys_are_found_and_alerted_once(app_ctx, make_user, make_org, admin_api, pinned):
    owner = make_user("owner@acme.com")
    org = make_org(owner=owner, time_zone="UTC")
    admin_api.add_openai_usage(datetime(2026, 12, 5, 9), "gpt-4o", "key_ours", "proj_1", input_tokens=1000,
                               output_tokens=10, num_model_requests=1)
    admin_api.add_openai_usage(datetime(2026, 12, 5, 10), "gpt-4o", "key_laptop", "proj_1",
                               input_tokens=1_000_000, output_tokens=1_000_000, num_model_requests=3)
    admin_api.add_openai_usage(datetime(2026, 11, 20, 10), "gpt-4o", "key_old", "proj_1",
                               input_tokens=1_000_000, output_tokens=1_000_000, num_model_requests=3)
    conn = connections.connect(org, SYSTEM, "openai", admin_api.openai_key)
    connections.mark_known(org, SYSTEM, "openai", "key_ours", "gateway key")
    sync.sync_connection(conn)
    found = {k.unit: k for k in reconcile.keys(org, conn, date(2026, 11, 1), date(2026, 12, 5))}
    assert found["key_ours"].known and not found["key_laptop"].known and not found["key_old"].known
    assert found["key_laptop"].cost_nanos == 12_500_000_000  # $2.50 + $10
    alerts = Notification.select().where(Notification.event_type == "provider.shadow_usage")
    assert [n.user_id for n in alerts] == [owner.id]  # today only: the old day is a backfill, no alert
    assert "$12.50" in alerts[0].title and "key_laptop" in alerts[0].body
    sync.sync_connection(conn)
    assert alerts.count() == 1


def test_cost_check_flags_a_model_whose_price_looks_wrong(app_ctx, make_org, admin_api, pinned):
    org = make_org(time_zone="UTC")
    admin_api.add_openai_usage(datetime(2026, 12, 4, 10), "gpt-4o", "key_a", "p", input_tokens=1_000_000,
                               output_tokens=0, num_model_requests=1)
    admin_api.add_openai_cost(datetime(2026, 12, 4), "3.00", "gpt-4o-2024-08-06, input", "p")
    conn = connections.connect(org, SYSTEM, "openai", admin_api.openai_key)
    sync.sync_connection(conn)
    [check] = reconcile.cost_check(org, conn, date(2026, 12, 1), date(2026, 12, 5))
    assert (check.model, check.billed_nanos, check.priced_nanos) == ("gpt-4o", 3 * NANOS, 2_500_000_000)
    assert check.drift_pct == Decimal("20.00") and check.flagged and check.ratio == Decimal("1.2")


def test_page_json_and_csv(app, pinned, admin_api, owner_client):
    client, _, org = owner_client
    with app.app_context():
        _crafted(org, admin_api)
    page = client.get("/reconciliation/")
    assert page.status_code == 200
    response = client.post("/reconciliation/connections", data={"provider": "openai",
                                                                 "secret": admin_api.openai_key})
    assert response.status_code in (302, 303)
    html = client.get("/reconciliation/openai?from=2026-12-03&to=2026-12-04").get_data(as_text=True)
    assert "gpt-4o-mini" in html and "key_b" in html and admin_api.openai_key not in html
    csv_text = client.get("/reconciliation/openai.csv?from=2026-12-03&to=2026-12-04").get_data(as_text=True)
    assert csv_text.splitlines()[0].startswith("day,model,recorded_tokens")
    assert ",gpt-4o-mini,0,10000,-10000,-100.00,0.000000000,0.001500000,-0.001500000,-100.00,yes" in csv_text
    from costguardian.services import keys as api_keys

    with app.app_context():
        secret = api_keys.create_key(org, SYSTEM, "reader", ["read"]).plaintext
    answer = client.http.get("/api/v1/reconciliation/openai?from=2026-12-03&to=2026-12-04",
                             headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    body = answer.get_json()
    assert {d["model"] for d in body["days"]} == {"gpt-4o", "gpt-4o-mini"}
    assert {k["key"]: k["known"] for k in body["keys"]} == {"key_a": False, "key_b": False}
    refused = client.http.get("/api/v1/reconciliation/openai")
    assert refused.status_code == 401 and refused.mimetype == "application/problem+json"
    viewer_page = client.get("/reconciliation/openai")
    assert viewer_page.status_code == 200


def test_a_viewer_reads_but_cannot_connect_or_mark_keys(app, pinned, admin_api, owner_client, make_user):
    from tests.support import add_member

    client, _, org = owner_client
    with app.app_context():
        connections.connect(org, SYSTEM, "openai", admin_api.openai_key)
        viewer = make_user("viewer@acme.com")
        add_member(org, viewer, "viewer")
    reader = Client(app)
    reader.sign_in("viewer@acme.com")
    html = reader.get("/reconciliation/openai").get_data(as_text=True)
    assert "Sync now" not in html and "This key is ours" not in html
    assert reader.post("/reconciliation/connections", {"provider": "openai", "secret": "x"}).status_code == 403
    assert reader.post("/reconciliation/openai/keys", {"key_id": "key_a"}).status_code == 403
    assert reader.get("/reconciliation/anthropic").status_code == 404
