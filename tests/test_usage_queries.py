"""The rollup query service: totals, groups, days in the organization's time
zone, presets, month-over-month, and the values the explorer offers.

`usage_data` (also used by the view and export tests) ingests a known set of
events into an organization in Los Angeles time; every expected number is
computed from those events and the cost ingest reported for each."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
import time_machine

from costguardian import clock
from costguardian.models import Department
from costguardian.services import keys
from costguardian.services.usage import ingest, queries as usage_queries
from costguardian.services.usage.queries import UsageFilter
from tests.support import SYSTEM, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

LA = "America/Los_Angeles"
APRIL = UsageFilter(date(2025, 4, 1), date(2025, 4, 30))


@dataclass
class UsageData:
    org: object
    other_org: object
    key: object
    departments: dict
    events: list = field(default_factory=list)  # (event dict, cost nanos or None, key id or None)

    def select(self, start: date = APRIL.start, end: date = APRIL.end, **where) -> list:
        """The sent events whose local day is in [start, end] and that match `where`."""
        tz = ZoneInfo(self.org.time_zone)
        chosen = []
        for event, cost, key_id in self.events:
            moment = datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00"))
            if not start <= moment.astimezone(tz).date() <= end:
                continue
            if all(_matches(event, key_id, name, value) for name, value in where.items()):
                chosen.append((event, cost, key_id))
        return chosen

    def cost(self, **where) -> int:
        return sum(cost or 0 for _, cost, _ in self.select(**where))

    def requests(self, **where) -> int:
        return len(self.select(**where))


def _matches(event, key_id, name, value) -> bool:
    if name == "key_id":
        return key_id == value
    if name == "tag":
        return value in event.get("tags", [])
    if name == "departments":
        return event.get("department", "") in value
    return event.get(name, "") == value


def _event(n, when, provider, model, inp, out, **extra) -> dict:
    return {"event_id": f"ev-{n}", "occurred_at": when, "provider": provider, "model": model,
            "input_tokens": inp, "output_tokens": out, **extra}


# Sent without a key (the first list) and with the key "search-prod" (the second).
WITHOUT_KEY = [
    _event(2, "2025-04-02T18:00:00Z", "anthropic", "claude-3-5-sonnet", 200_000, 20_000, cache_read_tokens=50_000,
           user="cust-42", department="Sales", tags=["team:search"]),
    _event(4, "2025-04-10T08:00:00Z", "google", "gemini-2.0-flash", 300_000, 30_000),  # 01:00 on the 10th in LA
    _event(5, "2025-04-15T20:00:00Z", "openai", "my-finetune-xyz", 1_000, 100, user="bob@acme.com"),  # no price
    _event(6, "2025-03-31T12:00:00Z", "openai", "gpt-4o", 100_000, 10_000, user="alice@acme.com"),  # March
    _event(7, "2025-05-01T06:59:00Z", "openai", "gpt-4o", 40_000, 4_000, tags=["env:prod"]),  # 30 Apr, 23:59 LA
    _event(8, "2025-05-01T07:00:00Z", "openai", "gpt-4o", 70_000, 7_000),  # 1 May, 00:00 in LA
]
WITH_KEY = [
    _event(1, "2025-04-01T17:00:00Z", "openai", "gpt-4o", 1_000_000, 100_000, user="alice@acme.com",
           department="Platform", tags=["team:search", "env:prod"]),
    _event(3, "2025-04-10T06:30:00Z", "openai", "gpt-4o-mini", 500_000, 50_000, cache_read_tokens=100_000,
           user="alice@acme.com", department="Engineering", tags=["env:dev"]),  # 23:30 on the 9th in LA
]


def build_usage_data(make_user, make_org) -> UsageData:
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner, time_zone=LA)
    alice = make_user("alice@acme.com", name="Alice Analyst")
    add_member(org, alice, "member")
    engineering = Department.create(organization=org, name="Engineering")
    departments = {"Engineering": engineering,
                   "Platform": Department.create(organization=org, name="Platform", parent=engineering),
                   "Sales": Department.create(organization=org, name="Sales")}
    key = keys.create_key(org, SYSTEM, "search-prod", ["ingest"]).key
    data = UsageData(org=org, other_org=None, key=key, departments=departments)
    for events, api_key in ((WITHOUT_KEY, None), (WITH_KEY, key)):
        result = ingest.ingest(org, api_key, events)
        assert result.count("accepted") == len(events), result.as_json()
        for event, outcome in zip(events, result.results):
            data.events.append((event, outcome.cost_nanos, api_key.id if api_key else None))

    # Another tenant with look-alike usage that must never show up in Acme's numbers.
    other = make_org("Globex", owner=make_user("owner@globex.com"))
    Department.create(organization=other, name="Sales")
    result = ingest.ingest(other, None, [
        _event(100 + i, f"2025-04-0{i + 1}T18:00:00Z", "openai", "gpt-4o", 9_000_000, 900_000,
               user="alice@acme.com", department="Sales", tags=["team:search"]) for i in range(3)])
    assert result.count("accepted") == 3
    data.other_org = other
    return data


@pytest.fixture
def usage_data(make_user, make_org) -> UsageData:
    return build_usage_data(make_user, make_org)


# --- totals and groups ---------------------------------------------------------

def test_prices_are_the_catalogs(usage_data):
    """One anchor computed by hand: gpt-4o is $2.50 in and $10 out per million tokens."""
    event, cost, _ = next(e for e in usage_data.events if e[0]["event_id"] == "ev-1")
    assert cost == 2_500_000_000 + 1_000_000_000


def test_total_of_a_month_follows_the_org_time_zone(usage_data):
    totals = usage_queries.total(usage_data.org, APRIL)
    # ev-7 (1 May 06:59 UTC) is still April in Los Angeles; ev-8 and ev-6 are not.
    ids = {e["event_id"] for e, _, _ in usage_data.select()}
    assert ids == {"ev-1", "ev-2", "ev-3", "ev-4", "ev-5", "ev-7"}
    assert totals.requests == 6
    assert totals.cost_nanos == usage_data.cost()
    assert totals.unpriced_requests == 1
    assert totals.input_tokens == 1_000_000 + 200_000 + 500_000 + 300_000 + 1_000 + 40_000
    assert totals.cache_read_tokens == 150_000


def test_group_by_day_uses_local_days(usage_data):
    rows = usage_queries.explore(usage_data.org, APRIL, "day")
    by_day = {r.period: r for r in rows}
    assert [r.period for r in rows] == sorted(by_day)
    # ev-3 at 06:30 UTC on the 10th is the 9th in LA; ev-4 at 08:00 UTC is the 10th.
    assert by_day[date(2025, 4, 9)].requests == 1
    assert by_day[date(2025, 4, 9)].cost_nanos == usage_data.cost(event_id="ev-3")
    assert by_day[date(2025, 4, 10)].cost_nanos == usage_data.cost(event_id="ev-4")
    assert by_day[date(2025, 4, 30)].cost_nanos == usage_data.cost(event_id="ev-7")
    assert rows[0].label == "2025-04-01"


def test_group_by_user_names_members_and_keeps_end_user_ids(usage_data):
    rows = {r.key: r for r in usage_queries.explore(usage_data.org, APRIL, "user")}
    assert rows["alice@acme.com"].label == "Alice Analyst (alice@acme.com)"
    assert rows["alice@acme.com"].cost_nanos == usage_data.cost(user="alice@acme.com")
    assert rows["cust-42"].label == "cust-42"
    assert rows[""].label == "(no user)"
    assert rows["bob@acme.com"].cost_nanos == 0 and rows["bob@acme.com"].unpriced_requests == 1


def test_department_filter_includes_sub_departments(usage_data):
    engineering = usage_data.departments["Engineering"]
    flt = UsageFilter(APRIL.start, APRIL.end, department_ids=[engineering.id])
    totals = usage_queries.total(usage_data.org, flt)
    assert totals.requests == 2  # Engineering itself and Platform below it
    assert totals.cost_nanos == usage_data.cost(departments={"Engineering", "Platform"})


def test_key_and_tag_filters(usage_data):
    flt = UsageFilter(APRIL.start, APRIL.end, api_key_ids=[usage_data.key.id])
    assert usage_queries.total(usage_data.org, flt).cost_nanos == usage_data.cost(key_id=usage_data.key.id)
    no_key = UsageFilter(APRIL.start, APRIL.end, api_key_ids=[usage_queries.NO_KEY])
    assert usage_queries.total(usage_data.org, no_key).cost_nanos == usage_data.cost(key_id=None)
    tagged = UsageFilter(APRIL.start, APRIL.end, tags=["team:search"])
    assert usage_queries.total(usage_data.org, tagged).cost_nanos == usage_data.cost(tag="team:search")


def test_nothing_of_another_tenant(usage_data):
    other = usage_queries.total(usage_data.other_org, APRIL)
    assert other.requests == 3
    acme = usage_queries.total(usage_data.org, APRIL)
    assert acme.requests == 6
    departments = {r.label: r for r in usage_queries.explore(usage_data.org, APRIL, "department")}
    assert departments["Sales"].requests == 1  # Globex's own "Sales" has three
    assert departments["Sales"].cost_nanos == usage_data.cost(department="Sales")
    tagged = UsageFilter(APRIL.start, APRIL.end, tags=["team:search"], users=["alice@acme.com"])
    assert usage_queries.total(usage_data.org, tagged).requests == 1


# --- dates ------------------------------------------------------------------------

@pytest.mark.parametrize("day, expected", [
    (date(2026, 3, 31), date(2026, 2, 28)), (date(2024, 3, 30), date(2024, 2, 29)),
    (date(2026, 1, 15), date(2025, 12, 15)), (date(2026, 5, 31), date(2026, 4, 30)),
])
def test_same_day_last_month(day, expected):
    assert usage_queries.same_day_last_month(day) == expected


@pytest.mark.parametrize("preset, expected", [
    ("today", (date(2026, 3, 5), date(2026, 3, 5))),
    ("last_7_days", (date(2026, 2, 27), date(2026, 3, 5))),
    ("this_month", (date(2026, 3, 1), date(2026, 3, 5))),
    ("last_month", (date(2026, 2, 1), date(2026, 2, 28))),
    ("last_30_days", (date(2026, 2, 4), date(2026, 3, 5))),
    ("last_90_days", (date(2025, 12, 6), date(2026, 3, 5))),
])
def test_presets(preset, expected):
    assert usage_queries.preset_range(preset, date(2026, 3, 5)) == expected


def test_unknown_preset_is_an_error():
    with pytest.raises(ValueError):
        usage_queries.preset_range("forever", date(2026, 3, 5))


def test_month_to_date_compares_the_same_days(usage_data):
    """Seen from 10 April: April 1–10 against March 1–10, and all of March."""
    org = usage_data.org
    month = usage_queries.month_to_date(org, date(2025, 4, 10))
    assert month.this_month.cost_nanos == usage_data.cost(end=date(2025, 4, 10))
    assert month.last_month_same_days.cost_nanos == 0  # ev-6 is on 31 March
    assert month.last_month.cost_nanos == usage_data.cost(start=date(2025, 3, 1), end=date(2025, 3, 31))
    assert month.change_percent is None
    may = usage_queries.month_to_date(org, date(2025, 5, 1))
    assert may.this_month.cost_nanos == usage_data.cost(start=date(2025, 5, 1), end=date(2025, 5, 1))
    assert may.last_month_same_day == date(2025, 4, 1)
    assert may.last_month_same_days.cost_nanos == usage_data.cost(end=date(2025, 4, 1))
    expected = (may.this_month.cost_nanos - may.last_month_same_days.cost_nanos) * 100 / \
        may.last_month_same_days.cost_nanos
    assert float(may.change_percent) == pytest.approx(expected, abs=0.05)
    assert may.today.requests == 1


def test_local_today(make_org):
    tokyo, honolulu = make_org("Tokyo Co", time_zone="Asia/Tokyo"), make_org("Aloha", time_zone="Pacific/Honolulu")
    with time_machine.travel(datetime(2026, 11, 30, 20, 0, tzinfo=timezone.utc), tick=False):
        assert usage_queries.today(tokyo) == date(2026, 12, 1)  # 05:00 the next morning in Tokyo
        assert usage_queries.today(honolulu) == date(2026, 11, 30)  # 10:00 in Honolulu
        assert clock.today() == date(2026, 11, 30)


# --- what the explorer offers -----------------------------------------------------

def test_filter_choices_are_the_orgs_own(usage_data):
    choices = usage_queries.filter_choices(usage_data.org)
    assert [v for v, _ in choices["provider"]] == ["anthropic", "google", "openai"]
    assert ("alice@acme.com", "Alice Analyst (alice@acme.com)") in choices["user"]
    assert ("owner@acme.com", "Olga Owner (owner@acme.com)") in choices["user"]  # a member without usage
    assert "owner@globex.com" not in {v for v, _ in choices["user"]}
    departments = dict(choices["department"])
    assert departments[usage_data.departments["Platform"].id] == "Engineering › Platform"
    assert len([d for d in departments.values() if d == "Sales"]) == 1
    assert dict(choices["key"])[usage_data.key.id].startswith("search-prod (cg_live_")
    assert {v for v, _ in choices["tag"]} == {"team:search", "env:prod", "env:dev"}


def test_value_exists_is_scoped(usage_data):
    assert usage_queries.value_exists(usage_data.org, "model", "gpt-4o")
    assert not usage_queries.value_exists(usage_data.org, "model", "gpt-5")
    assert usage_queries.has_usage(usage_data.org)


def test_summarize_many_equals_one_summary_per_group(usage_data):
    flt = UsageFilter(date(2025, 3, 1), date(2025, 5, 31))
    groups = ("model", "user", "department", "api_key", "provider")
    many = usage_queries.summarize_many(usage_data.org, flt, groups)
    for group in groups:
        assert many[group] == usage_queries.summarize(usage_data.org, flt, group_by=group), group
    with pytest.raises(ValueError):
        usage_queries.summarize_many(usage_data.org, flt, ("tag",))


@pytest.mark.parametrize("group", ["model", "user", "department", "api_key", "provider", "tag", "day"])
def test_explorer_report_equals_its_separate_queries(usage_data, group):
    flt = UsageFilter(date(2025, 3, 1), date(2025, 5, 31))
    report = usage_queries.explorer_report(usage_data.org, flt, group, top=2)
    assert report.rows == usage_queries.explore(usage_data.org, flt, group)
    expected = usage_queries.total(usage_data.org, flt)
    assert [getattr(report.total, f.name) for f in fields(usage_queries.Totals)] == \
        [getattr(expected, f.name) for f in fields(usage_queries.Totals)]
    stack_by = None if group == "day" else group
    assert (report.days, report.series) == usage_queries.daily_series(usage_data.org, flt, stack_by, top=2)


@pytest.mark.parametrize("tz, first, last", [
    ("America/New_York", date(2026, 3, 6), date(2026, 3, 10)),  # spring forward on 8 March
    ("America/New_York", date(2026, 10, 30), date(2026, 11, 3)),  # fall back on 1 November
    ("Europe/Berlin", date(2026, 3, 27), date(2026, 3, 31)),
    ("Australia/Lord_Howe", date(2026, 4, 3), date(2026, 4, 7)),  # a half-hour DST change
    ("Asia/Kolkata", date(2026, 5, 1), date(2026, 5, 3)),  # +05:30, no DST
    ("Asia/Kathmandu", date(2026, 5, 1), date(2026, 5, 3)),  # +05:45
    ("America/St_Johns", date(2026, 3, 6), date(2026, 3, 10)),  # -03:30, DST on 8 March
])
def test_local_days_across_offset_changes_match_a_brute_force(make_org, tz, first, last):
    """Events every 35 minutes against the local day of each one (of its
    bucket's start for Lord Howe, whose buckets follow its standard +10:30,
    so in the daylight-saving +11 months its days are 30 minutes off)."""
    from collections import Counter
    from datetime import timedelta

    from costguardian.services.usage import rollups

    org = make_org(f"Zone {tz}", time_zone=tz)
    start = datetime.combine(first, datetime.min.time()) - timedelta(hours=14)
    events = [{"event_id": f"h{i}", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000 + i,
               "occurred_at": (start + timedelta(minutes=35 * i)).isoformat() + "Z"} for i in range(24 * 7 * 60 // 35)]
    ingest.ingest(org, None, events, now=datetime(2026, 12, 1))
    rows = usage_queries.summarize(org, UsageFilter(first, last), interval="day")
    zone = ZoneInfo(tz)
    expected = Counter()
    for e in events:
        moment = datetime.fromisoformat(e["occurred_at"].rstrip("Z"))
        if tz == "Australia/Lord_Howe":
            moment = rollups.bucket_start(org.rollup_offset_minutes, moment)
        day = moment.replace(tzinfo=timezone.utc).astimezone(zone).date()
        if first <= day <= last:
            expected[day] += 1
    assert {r.period: r.requests for r in rows} == dict(expected)
    assert sum(expected.values()) > 0


# --- the source of usage: gateway or ingest API ------------------------------------

def add_gateway_calls(data: UsageData) -> object:
    """Three calls through the gateway's recording path (tagged source:gateway),
    added to `data.events` like the ingested ones; returns the gateway key."""
    from costguardian.models import UsageEvent
    from costguardian.services.gateway import recording

    gateway_key = keys.create_key(data.org, SYSTEM, "gateway", ["gateway"]).key
    calls = [("gw-1", datetime(2025, 4, 1, 17, 30), "gpt-4o", {"prompt_tokens": 300_000, "completion_tokens": 3_000},
              ["team:search"], 800),
             ("gw-2", datetime(2025, 4, 10, 8, 10), "gpt-4o-mini", {"prompt_tokens": 50_000, "completion_tokens": 500},
              [], 300),
             ("gw-3", datetime(2025, 4, 20, 12, 0), "gpt-4o", {"prompt_tokens": 10_000, "completion_tokens": 100},
              [], 1200)]
    for request_id, at, model, usage, tags, latency in calls:
        recording.record(recording.CallRecord(
            request_id=request_id, org=data.org, api_key=gateway_key, endpoint="chat.completions", started_at=at,
            requested_model=model, provider="openai", model=model, user="alice@acme.com", tags=tags,
            forwarded=True, usage=usage, latency_ms=latency))
        event = UsageEvent.get(UsageEvent.organization == data.org, UsageEvent.event_id == request_id)
        assert event.cost_nanos
        data.events.append(({"event_id": request_id, "occurred_at": at.isoformat() + "Z", "provider": "openai",
                             "model": model, "user": "alice@acme.com", "tags": event.tags}, event.cost_nanos,
                            gateway_key.id))
    return gateway_key


def _by_source(data: UsageData, source: str, **where) -> list:
    return [e for e in data.select(**where) if ("source:gateway" in e[0].get("tags", [])) == (source == "gateway")]


@pytest.mark.parametrize("source", ["gateway", "ingest"])
def test_source_splits_every_total_and_group(usage_data, source):
    add_gateway_calls(usage_data)
    org, chosen = usage_data.org, _by_source(usage_data, source)
    flt = UsageFilter(APRIL.start, APRIL.end, source=source)

    totals = usage_queries.total(org, flt)
    assert totals.requests == len(chosen)
    assert totals.cost_nanos == sum(cost or 0 for _, cost, _ in chosen)
    by_model = {r.key: (r.requests, r.cost_nanos) for r in usage_queries.summarize(org, flt, group_by="model")}
    expected: dict = {}
    for event, cost, _ in chosen:
        requests, spent = expected.get(event["model"], (0, 0))
        expected[event["model"]] = (requests + 1, spent + (cost or 0))
    assert by_model == expected  # a model with no usage from this source has no row (no zero rows left over)
    by_day = usage_queries.summarize(org, flt, interval="day")
    assert sum(r.requests for r in by_day) == len(chosen)
    _days, series = usage_queries.daily_series(org, flt)
    assert sum(series["Spend"]) == totals.cost_nanos
    many = usage_queries.summarize_many(org, flt, ("model", "api_key"))
    assert {r.key: (r.requests, r.cost_nanos) for r in many["model"]} == expected


def test_the_two_sources_add_up_to_all(usage_data):
    add_gateway_calls(usage_data)
    everything = usage_queries.total(usage_data.org, APRIL)
    gateway = usage_queries.total(usage_data.org, UsageFilter(APRIL.start, APRIL.end, source="gateway"))
    ingested = usage_queries.total(usage_data.org, UsageFilter(APRIL.start, APRIL.end, source="ingest"))
    assert gateway.requests == 3 and ingested.requests == 6
    for name in ("requests", "input_tokens", "output_tokens", "cost_nanos", "unpriced_requests"):
        assert getattr(gateway, name) + getattr(ingested, name) == getattr(everything, name), name


def test_source_with_other_filters(usage_data):
    key = add_gateway_calls(usage_data)
    org = usage_data.org
    flt = UsageFilter(APRIL.start, APRIL.end, source="ingest", users=["alice@acme.com"])
    assert usage_queries.total(org, flt).requests == len(_by_source(usage_data, "ingest", user="alice@acme.com"))
    flt = UsageFilter(APRIL.start, APRIL.end, source="gateway", api_key_ids=[key.id], models=["gpt-4o"])
    assert usage_queries.total(org, flt).requests == 2
    flt = UsageFilter(APRIL.start, APRIL.end, source="gateway", api_key_ids=[usage_data.key.id])
    assert usage_queries.total(org, flt).requests == 0  # the ingest key sent nothing through the gateway


def test_source_cannot_be_combined_with_tags(usage_data):
    with pytest.raises(usage_queries.SourceWithTag):
        usage_queries.total(usage_data.org, UsageFilter(APRIL.start, APRIL.end, source="gateway", tags=["env:prod"]))
    with pytest.raises(usage_queries.SourceWithTag):
        usage_queries.summarize(usage_data.org, UsageFilter(APRIL.start, APRIL.end, source="ingest"), group_by="tag")
    with pytest.raises(ValueError):
        usage_queries.total(usage_data.org, UsageFilter(APRIL.start, APRIL.end, source="webhooks"))
