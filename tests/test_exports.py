"""CSV exports: raw events (streamed in keyset chunks), the grouped table and
FinOps FOCUS rows; their totals equal the explorer's for the same filter."""
from __future__ import annotations

import csv
import io
import json
import re
from datetime import date
from decimal import Decimal

import pytest

from costguardian.services.usage import exports, ingest
from costguardian.services.usage.exports import EVENT_COLUMNS, FOCUS_COLUMNS
from costguardian.services.usage.queries import UsageFilter
from tests.support import Client
from tests.test_usage_queries import build_usage_data

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

APRIL = "from=2025-04-01&to=2025-04-30"


@pytest.fixture
def usage_data(make_user, make_org):
    return build_usage_data(make_user, make_org)


@pytest.fixture
def acme(app, usage_data):
    client = Client(app)
    client.sign_in("owner@acme.com")
    return client


def _download(client, url) -> tuple[list[dict], object]:
    # buffered: the test client reads the streamed body inside the request's context
    response = client.get(url, buffered=True)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True)))), response


def _explorer_total(client, query: str) -> Decimal:
    html = client.get(f"/usage/?{query}").get_data(as_text=True)
    return Decimal(re.search(r'data-testid="usage-total-cost"><data value="([^"]*)"', html).group(1))


def _sum(rows, column) -> Decimal:
    return sum((Decimal(r[column]) for r in rows if r[column]), Decimal(0))


@pytest.mark.parametrize("query", [APRIL, f"{APRIL}&provider=openai", f"{APRIL}&tag=team%3Asearch",
                                   f"{APRIL}&department=0", "from=2025-03-01&to=2025-05-31&user=alice%40acme.com"])
def test_every_export_totals_the_explorer(acme, usage_data, query):
    expected = _explorer_total(acme, query)
    events, _ = _download(acme, f"/usage/export/events.csv?{query}")
    assert _sum(events, "cost_usd") == expected
    grouped, _ = _download(acme, f"/usage/export/grouped.csv?{query}")
    assert _sum(grouped, "cost_usd") == expected
    focus, _ = _download(acme, f"/usage/export/focus.csv?{query}")
    assert _sum(focus, "BilledCost") == expected
    assert sum(int(r["x_Requests"]) for r in focus) == len(events)


def test_event_rows(acme, usage_data):
    rows, response = _download(acme, f"/usage/export/events.csv?{APRIL}")
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="acme-usage-events-2025-04-01-to-2025-04-30.csv"'
    assert list(rows[0]) == EVENT_COLUMNS
    by_id = {r["event_id"]: r for r in rows}
    assert set(by_id) == {"ev-1", "ev-2", "ev-3", "ev-4", "ev-5", "ev-7"}  # April in Los Angeles
    one = by_id["ev-1"]
    assert one["occurred_at_utc"] == "2025-04-01T17:00:00Z"
    assert (one["provider"], one["model"], one["api_key"], one["user"]) == \
        ("openai", "gpt-4o", "search-prod", "alice@acme.com")
    assert one["department"] == "Engineering › Platform"
    assert json.loads(one["tags"]) == ["team:search", "env:prod"]
    assert (one["input_tokens"], one["output_tokens"], one["cost_usd"], one["priced_by"]) == \
        ("1000000", "100000", "3.5", "catalog")
    assert by_id["ev-5"]["cost_usd"] == "" and by_id["ev-5"]["priced_by"] == ""  # no known price
    assert by_id["ev-2"]["cache_read_tokens"] == "50000" and by_id["ev-2"]["api_key"] == ""
    assert "ev-100" not in by_id  # Globex's


def test_grouped_rows(acme, usage_data):
    rows, response = _download(acme, f"/usage/export/grouped.csv?{APRIL}&group_by=key")
    assert 'filename="acme-usage-by-key-2025-04-01-to-2025-04-30.csv"' in response.headers["Content-Disposition"]
    by_name = {r["name"]: r for r in rows}
    assert by_name["search-prod"]["key"] == str(usage_data.key.id)
    assert Decimal(by_name["search-prod"]["cost_usd"]) * 10**9 == usage_data.cost(key_id=usage_data.key.id)
    assert by_name["(no key)"]["key"] == "0"
    shares = sum(Decimal(r["cost_share_percent"]) for r in rows)
    assert abs(shares - 100) < Decimal("0.05")
    days, _ = _download(acme, f"/usage/export/grouped.csv?{APRIL}&group_by=day")
    assert [r["day"] for r in days] == sorted(r["day"] for r in days)
    assert "2025-04-09" in {r["day"] for r in days}


def test_focus_rows(acme, usage_data):
    rows, response = _download(acme, f"/usage/export/focus.csv?{APRIL}&provider=openai")
    assert list(rows[0]) == FOCUS_COLUMNS
    for column in ("BilledCost", "EffectiveCost", "ListCost", "BillingCurrency", "ChargePeriodStart",
                   "ChargePeriodEnd", "ChargeCategory", "ServiceName", "ServiceCategory", "ProviderName",
                   "PublisherName", "ResourceId", "ResourceName", "SkuId", "ConsumedQuantity", "ConsumedUnit",
                   "Tags", "x_InputTokens", "x_CacheReadTokens", "x_CacheWriteTokens", "x_OutputTokens"):
        assert column in rows[0]
    keyed = next(r for r in rows if r["ChargePeriodStart"] == "2025-04-01T17:00:00Z")
    assert keyed["ChargePeriodEnd"] == "2025-04-01T18:00:00Z"
    assert (keyed["BillingCurrency"], keyed["ChargeCategory"], keyed["ProviderName"], keyed["SkuId"]) == \
        ("USD", "Usage", "OpenAI", "openai/gpt-4o")
    assert keyed["ResourceId"] == f"apikey/{usage_data.key.id}" and keyed["ResourceName"] == "search-prod"
    assert keyed["ConsumedQuantity"] == "1100000" and keyed["ConsumedUnit"] == "Tokens"
    assert json.loads(keyed["Tags"]) == {"api_key": "search-prod", "department": "Engineering › Platform",
                                         "model": "gpt-4o", "provider": "openai", "user": "alice@acme.com"}
    assert keyed["BilledCost"] == keyed["EffectiveCost"] == "3.5"
    unpriced = next(r for r in rows if r["x_Model"] == "my-finetune-xyz")
    assert unpriced["BilledCost"] == "0" and unpriced["x_UnpricedRequests"] == "1"
    tagged, _ = _download(acme, f"/usage/export/focus.csv?{APRIL}&tag=env%3Aprod")
    assert {json.loads(r["Tags"])["tag"] for r in tagged} == {"env:prod"}


def test_formulas_are_neutralised(acme, usage_data):
    ingest.ingest(usage_data.org, None, [{"event_id": "=HYPERLINK(1)", "provider": "openai", "model": "gpt-4o",
                                          "input_tokens": 10, "output_tokens": 1, "user": "@evil",
                                          "occurred_at": "2025-04-20T12:00:00Z"}])
    rows, _ = _download(acme, f"/usage/export/events.csv?{APRIL}")
    row = next(r for r in rows if "HYPERLINK" in r["event_id"])
    assert row["event_id"] == "'=HYPERLINK(1)" and row["user"] == "'@evil"


def test_streaming_thousands_of_events_in_chunks(acme, usage_data):
    org = usage_data.org
    for batch in range(5):
        events = [{"event_id": f"bulk-{batch}-{i}", "provider": "openai", "model": "gpt-4o-mini",
                   "input_tokens": 1000 + i, "output_tokens": 100 + batch,
                   "occurred_at": f"2024-06-{2 + i % 27:02d}T{12 + i % 10:02d}:{batch:02d}:00Z",
                   "tags": ["bulk", f"batch:{batch}"] if i % 2 else ["bulk"]} for i in range(1000)]
        assert ingest.ingest(org, None, events).count("accepted") == 1000
    query = "from=2024-06-01&to=2024-06-30"
    rows, response = _download(acme, f"/usage/export/events.csv?{query}")
    assert len(rows) == 5000 and len({r["event_id"] for r in rows}) == 5000
    assert _sum(rows, "cost_usd") == _explorer_total(acme, query)
    # A tag filter, applied row by row while streaming.
    tagged, _ = _download(acme, f"/usage/export/events.csv?{query}&tag=batch%3A3")
    assert len(tagged) == 500 and all("batch:3" in json.loads(r["tags"]) for r in tagged)
    assert _sum(tagged, "cost_usd") == _explorer_total(acme, f"{query}&tag=batch%3A3")


def test_the_generator_reads_in_chunks(usage_data):
    """Pieces come out as chunks are read, not all at the end."""
    flt = UsageFilter(date(2025, 3, 1), date(2025, 5, 31))
    pieces = list(exports.events_csv(usage_data.org, flt, chunk=2))
    assert pieces[0].startswith("occurred_at_utc,event_id,")
    data_pieces = [p for p in pieces[1:] if p]
    assert len(data_pieces) >= 4  # 8 events, 2 per chunk
    assert sum(p.count("\r\n") for p in data_pieces) == 8
    focus = [p for p in exports.focus_csv(usage_data.org, flt, chunk=3) if p]
    assert len(focus) >= 3


def test_keyset_pages_never_skip_or_repeat_rows_with_equal_times(usage_data):
    """Seven events at the same instant, three per page: the (time, id) keyset
    still yields each exactly once, oldest first."""
    same = [{"event_id": f"tie-{i}", "provider": "openai", "model": "gpt-4o", "input_tokens": 10 + i,
             "output_tokens": 1, "occurred_at": "2025-04-20T12:00:00Z"} for i in range(7)]
    ingest.ingest(usage_data.org, None, same)
    flt = UsageFilter(date(2025, 4, 1), date(2025, 4, 30))
    text = "".join(exports.events_csv(usage_data.org, flt, chunk=3))
    ids = [r["event_id"] for r in csv.DictReader(io.StringIO(text))]
    assert sorted(i for i in ids if i.startswith("tie-")) == [f"tie-{i}" for i in range(7)]
    assert len(ids) == len(set(ids)) == 6 + 7
    times = [r["occurred_at_utc"] for r in csv.DictReader(io.StringIO(text))]
    assert times == sorted(times)
    focus = "".join(exports.focus_csv(usage_data.org, flt, chunk=2))
    rows = list(csv.DictReader(io.StringIO(focus)))
    assert sum(int(r["x_Requests"]) for r in rows) == 13


def test_every_text_cell_is_neutralised_whatever_its_column(acme, usage_data):
    ingest.ingest(usage_data.org, None, [{
        "event_id": "=cmd", "provider": "+evil", "model": "@sum(1)", "input_tokens": 10, "service_tier": "=1+2",
        "occurred_at": "2025-04-10T12:00:00Z"}])
    rows, _ = _download(acme, f"/usage/export/events.csv?{APRIL}")
    row = next(r for r in rows if r["event_id"] == "'=cmd")
    assert (row["provider"], row["model_raw"], row["service_tier"]) == ("'+evil", "'@sum(1)", "'=1+2")
    text = "".join(exports.focus_csv(usage_data.org, UsageFilter(date(2025, 4, 1), date(2025, 4, 30))))
    assert ",+evil" not in text and ",=" not in text and ",@" not in text
