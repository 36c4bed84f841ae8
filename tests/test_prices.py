"""An organization's own prices and aliases, and repricing stored usage:
events and their hourly and per-tag rollups always agree."""
from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

import pytest

from costguardian.models import (NO_DEPARTMENT, NO_KEY, AuditLog, Department, ModelAlias, PriceOverride, UsageEvent,
                                 UsageRollup, UsageTagRollup)
from costguardian.services.usage import ingest, prices, repricing
from costguardian.services.errors import ValidationError
from tests.support import SYSTEM

NOW = datetime(2026, 11, 25, 12, 0)
MEASURES = UsageRollup.MEASURES


def send(org, events, now=NOW):
    """Ingest events (dicts without event_id get one) and check every one was accepted."""
    for i, event in enumerate(events):
        event.setdefault("event_id", f"ev-{event['model']}-{event.get('occurred_at', '')}-{i}-{id(event)}")
    result = ingest.ingest(org, None, events, now=now)
    assert result.count("accepted") == len(events), result.as_json()
    return result


def llama_events(count=3, occurred_at="2026-11-20T10:15:00Z", **extra):
    # 1,000 input and 500 output tokens each
    return [{"provider": "mycorp", "model": "llama-x", "input_tokens": 1000, "output_tokens": 500,
             "occurred_at": occurred_at, "tags": ["team:search", "env:prod"], **extra} for _ in range(count)]


def _key(event, model=None):
    return (event.occurred_at.replace(minute=0, second=0, microsecond=0), event.provider, model or event.model,
            event.api_key_id or NO_KEY, event.user_ref, event.department_id or NO_DEPARTMENT)


def assert_rollups_equal_events(org):
    """Every rollup row (and per-tag row) is exactly the sum of its events."""
    expected, expected_tags = defaultdict(lambda: [0] * 7), defaultdict(lambda: [0] * 7)
    for e in UsageEvent.in_org(org):
        measures = (1, e.input_tokens, e.cache_read_tokens, e.cache_write_tokens, e.output_tokens,
                    e.cost_nanos or 0, 1 if e.cost_nanos is None else 0)
        for i, value in enumerate(measures):
            expected[_key(e)][i] += value
            for tag in e.tags:
                expected_tags[(tag,) + _key(e)][i] += value

    def stored(table):
        rows = {}
        for r in table.select().where(table.organization == org):
            key = tuple(getattr(r, name) for name in table.KEY)
            rows[key] = [getattr(r, m) for m in MEASURES]
        return rows

    assert stored(UsageRollup) == dict(expected)
    assert stored(UsageTagRollup) == dict(expected_tags)


def total_cost(org) -> int:
    return sum(e.cost_nanos or 0 for e in UsageEvent.in_org(org))


def rollup_cost(org) -> int:
    return sum(r.cost_nanos for r in UsageRollup.select().where(UsageRollup.organization == org))


def unpriced_count(org) -> int:
    return sum(u.requests for u in prices.unpriced(org))


def add_override(org, provider="mycorp", model="llama-x", effective_from=date(2026, 11, 1), input_price="1",
                 output_price="2", **extra):
    return prices.create_override(org, SYSTEM, provider=provider, model=model, effective_from=effective_from,
                                  input_price=input_price, output_price=output_price, **extra)


@pytest.fixture
def org(make_org):
    return make_org("Acme")


# --- unpriced models and repricing ----------------------------------------------------

def test_unpriced_models_are_listed_with_their_first_and_last_hour(make_org):
    org = make_org("Zoned", time_zone="Europe/Paris")
    send(org, llama_events(2, "2026-11-20T10:15:00Z") + llama_events(1, "2026-11-21T23:30:00Z"))
    send(org, [{"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 1}])
    [row] = prices.unpriced(org)
    assert (row.provider, row.model, row.requests) == ("mycorp", "llama-x", 3)
    # shown in the organization's zone (UTC+1 in November)
    assert row.first_seen.strftime("%Y-%m-%d %H:%M") == "2026-11-20 11:00"
    assert row.last_seen.strftime("%Y-%m-%d %H:%M") == "2026-11-22 00:00"
    assert row.first_date == date(2026, 11, 20)


def test_an_override_reprices_unpriced_events_and_their_rollups(org):
    dept = Department.create(organization=org, name="Research")
    send(org, llama_events(3, user="alice@acme.com", department="Research") + llama_events(2, "2026-11-21T08:00:00Z"))
    assert unpriced_count(org) == 5 and total_cost(org) == 0
    assert_rollups_equal_events(org)

    add_override(org)  # from 2026-11-01: $1 in, $2 out

    # each event: 1,000 × 1,000 + 500 × 2,000 = 2,000,000 nanos
    events = list(UsageEvent.in_org(org))
    assert {(e.cost_nanos, e.priced_by) for e in events} == {(2_000_000, "override")}
    assert total_cost(org) == rollup_cost(org) == 10_000_000
    assert unpriced_count(org) == 0 and prices.unpriced(org) == []
    assert_rollups_equal_events(org)
    research = UsageRollup.get(UsageRollup.organization == org, UsageRollup.department_id == dept.id)
    assert (research.requests, research.cost_nanos, research.user_ref) == (3, 6_000_000, "alice@acme.com")
    tag = UsageTagRollup.select().where(UsageTagRollup.organization == org, UsageTagRollup.tag == "team:search")
    assert sum(r.cost_nanos for r in tag) == 10_000_000 and sum(r.unpriced_requests for r in tag) == 0


def test_events_before_the_effective_date_keep_no_price(org):
    send(org, llama_events(2, "2026-10-31T23:59:59Z") + llama_events(3, "2026-11-01T00:00:00Z"))
    add_override(org, effective_from=date(2026, 11, 1))
    costs = sorted((e.occurred_at.day, e.cost_nanos) for e in UsageEvent.in_org(org))
    assert costs == [(1, 2_000_000)] * 3 + [(31, None)] * 2
    assert unpriced_count(org) == 2
    assert total_cost(org) == rollup_cost(org) == 6_000_000
    assert_rollups_equal_events(org)


def test_effective_date_is_midnight_in_the_organizations_zone(make_org):
    org = make_org("NYC", time_zone="America/New_York")
    # midnight 2026-11-20 in New York (UTC-5) is 05:00 UTC
    send(org, llama_events(1, "2026-11-20T04:59:00Z") + llama_events(1, "2026-11-20T05:00:00Z"))
    row = add_override(org, effective_from=date(2026, 11, 20))
    assert row.effective_from == datetime(2026, 11, 20, 5, 0)
    assert sorted((e.occurred_at.hour, e.cost_nanos) for e in UsageEvent.in_org(org)) == [(4, None), (5, 2_000_000)]
    assert prices.override_rows(org)[0].values["effective_from"] == date(2026, 11, 20)


def test_editing_an_override_reprices_again(org):
    send(org, llama_events(4))
    row = add_override(org)
    prices.update_override(row, SYSTEM, provider="mycorp", model="llama-x", effective_from=date(2026, 11, 1),
                           input_price="0.5", output_price="3", note="renegotiated")
    # 1,000 × 500 + 500 × 3,000 = 500,000 + 1,500,000 = 2,000,000 … the same total; use another output
    prices.update_override(PriceOverride.get_by_id(row.id), SYSTEM, provider="mycorp", model="llama-x",
                           effective_from=date(2026, 11, 1), input_price="0.5", output_price="4")
    # 1,000 × 500 + 500 × 4,000 = 500,000 + 2,000,000 = 2,500,000 each
    assert {e.cost_nanos for e in UsageEvent.in_org(org)} == {2_500_000}
    assert total_cost(org) == rollup_cost(org) == 10_000_000
    assert_rollups_equal_events(org)


def test_moving_an_override_to_another_model_reprices_both(org):
    send(org, llama_events(2) + [{"provider": "mycorp", "model": "llama-y", "input_tokens": 2000,
                                  "output_tokens": 0, "occurred_at": "2026-11-20T11:00:00Z"}])
    row = add_override(org)
    prices.update_override(row, SYSTEM, provider="mycorp", model="LLAMA-Y", effective_from=date(2026, 11, 1),
                           input_price="1", output_price="2")
    costs = {e.model: e.cost_nanos for e in UsageEvent.in_org(org)}
    assert costs == {"llama-x": None, "llama-y": 2_000_000}  # 2,000 × 1,000
    assert unpriced_count(org) == 2
    assert_rollups_equal_events(org)


def test_deleting_an_override_goes_back_to_unknown(org):
    send(org, llama_events(3))
    row = add_override(org)
    prices.delete_override(row, SYSTEM)
    assert {(e.cost_nanos, e.priced_by) for e in UsageEvent.in_org(org)} == {(None, "")}
    assert unpriced_count(org) == 3 and rollup_cost(org) == 0
    assert_rollups_equal_events(org)


def test_deleting_a_discount_goes_back_to_the_catalog(org):
    send(org, [{"provider": "openai", "model": "gpt-4o-2024-08-06", "input_tokens": 10_000,
                "cache_read_tokens": 4_000, "output_tokens": 1_000, "occurred_at": "2026-11-20T10:00:00Z",
                "tags": ["app:chat"]}])
    catalog_cost = 30_000_000  # 6,000 × 2,500 + 4,000 × 1,250 + 1,000 × 10,000
    assert total_cost(org) == catalog_cost
    row = add_override(org, provider="OpenAI", model="gpt-4o", input_price="2", output_price="8",
                       cache_read_price="0.5")
    # 6,000 × 2,000 + 4,000 × 500 + 1,000 × 8,000 = 12,000,000 + 2,000,000 + 8,000,000
    assert [(e.cost_nanos, e.priced_by) for e in UsageEvent.in_org(org)] == [(22_000_000, "override")]
    assert rollup_cost(org) == 22_000_000
    assert_rollups_equal_events(org)
    prices.delete_override(row, SYSTEM)
    assert [(e.cost_nanos, e.priced_by) for e in UsageEvent.in_org(org)] == [(catalog_cost, "catalog")]
    assert rollup_cost(org) == catalog_cost
    assert_rollups_equal_events(org)


def test_repricing_works_in_chunks_and_is_idempotent(org, monkeypatch):
    monkeypatch.setattr(repricing, "CHUNK", 3)
    send(org, llama_events(7) + llama_events(4, "2026-11-22T18:45:00Z"))
    add_override(org)
    assert total_cost(org) == rollup_cost(org) == 22_000_000
    assert_rollups_equal_events(org)
    assert repricing.reprice(org, "mycorp", "llama-x") == 0  # nothing left to change


def test_repricing_leaves_other_organizations_alone(org, make_org):
    other = make_org("Other")
    send(org, llama_events(2))
    send(other, llama_events(2))
    add_override(org)
    assert total_cost(org) == 4_000_000
    assert total_cost(other) == 0 and unpriced_count(other) == 2
    assert_rollups_equal_events(other)


def test_reprice_task_for_a_deleted_organization_does_nothing(org):
    assert repricing.reprice_by_id(987_654, "mycorp", "llama-x") == 0


def test_new_events_after_an_override_are_priced_by_it(org):
    add_override(org)
    send(org, llama_events(1))
    assert [(e.cost_nanos, e.priced_by) for e in UsageEvent.in_org(org)] == [(2_000_000, "override")]


# --- the override's fields -----------------------------------------------------------------

def test_names_are_normalised_as_events_are(org):
    row = add_override(org, provider="Gemini", model="models/gemini-2.5-pro", input_price="1", output_price="5")
    assert (row.provider, row.model) == ("google", "gemini-2.5-pro")
    row = add_override(org, provider="azure_openai", model="gpt-4o-2024-11-20")
    assert (row.provider, row.model) == ("azure", "gpt-4o")
    ModelAlias.create(organization=org, provider="azure", alias="prod-4o", model="gpt-4o")
    row = add_override(org, provider="azure", model="Prod-4o", effective_from=date(2026, 11, 2))
    assert (row.provider, row.model) == ("azure", "gpt-4o")


def test_prices_are_stored_exactly(org):
    row = add_override(org, input_price="$2.123456789", output_price="10", cache_read_price="0.000000001",
                       cache_write_price="", note="  contract 14  ")
    assert row.input_nanos_per_mtok == 2_123_456_789
    assert row.output_nanos_per_mtok == 10_000_000_000
    assert row.cache_read_nanos_per_mtok == 1
    assert row.cache_write_nanos_per_mtok is None
    assert row.note == "contract 14"
    view = prices.override_rows(org)[0]
    assert view.values == {"provider": "mycorp", "model": "llama-x", "effective_from": date(2026, 11, 1),
                           "input_price": "2.123456789", "cache_read_price": "0.000000001", "cache_write_price": "",
                           "output_price": "10", "note": "contract 14"}
    assert view.catalog_price is None


def test_catalog_price_is_shown_beside_an_override(org):
    add_override(org, provider="openai", model="gpt-4o")
    assert prices.override_rows(org)[0].catalog_price.startswith("$2.5/input MTok")


@pytest.mark.parametrize("changes, field, message", [
    ({"input_price": "-1"}, "input_price", "cannot be negative"),
    ({"output_price": "1.0000000001"}, "output_price", "At most 9 decimal places"),
    ({"input_price": "abc"}, "input_price", "Not a number"),
    ({"input_price": "NaN"}, "input_price", "Not a number"),
    ({"input_price": "Infinity"}, "input_price", "Not a number"),
    ({"input_price": "1e6"}, "input_price", "At most $10,000"),
    ({"input_price": ""}, "input_price", "Enter a price"),
    ({"output_price": None}, "output_price", "Enter a price"),
    ({"cache_read_price": "-0.1"}, "cache_read_price", "cannot be negative"),
    ({"cache_write_price": "x"}, "cache_write_price", "Not a number"),
    ({"provider": "  "}, "provider", "Enter the provider"),
    ({"model": ""}, "model", "Enter the model"),
    ({"model": "m" * 201}, "model", "At most 200"),
    ({"effective_from": None}, "effective_from", "Enter a date"),
    ({"effective_from": date(2014, 12, 31)}, "effective_from", "between 2015"),
    ({"note": "n" * 201}, "note", "At most 200"),
])
def test_invalid_overrides_are_refused_with_field_messages(org, changes, field, message):
    with pytest.raises(ValidationError) as caught:
        add_override(org, **changes)
    assert message in caught.value.errors[field]
    assert PriceOverride.in_org(org).count() == 0


def test_nine_decimal_places_and_trailing_zeros_are_fine(org):
    assert add_override(org, input_price="0.123456789000", output_price="1.50").input_nanos_per_mtok == 123_456_789


def test_the_same_model_and_date_twice_is_a_clear_error(org):
    add_override(org)
    with pytest.raises(ValidationError) as caught:
        add_override(org, provider="MyCorp", model="LLAMA-X", input_price="5")
    assert "already has a price from 2026-11-01" in caught.value.errors["effective_from"]
    assert PriceOverride.in_org(org).count() == 1
    add_override(org, effective_from=date(2026, 11, 2))  # another date is another price


def test_a_concurrent_duplicate_is_a_clear_error_too(org, monkeypatch):
    """The unique index decides when two requests pass the check together."""
    add_override(org)
    monkeypatch.setattr(prices, "_check_unique", lambda *args, **kwargs: None)
    with pytest.raises(ValidationError) as caught:
        add_override(org)
    assert "already has a price" in caught.value.errors["effective_from"]
    row = add_override(org, effective_from=date(2026, 11, 5))
    with pytest.raises(ValidationError):
        prices.update_override(row, SYSTEM, provider="mycorp", model="llama-x", effective_from=date(2026, 11, 1),
                               input_price="1", output_price="2")


def test_editing_onto_another_overrides_date_is_refused(org):
    add_override(org)
    row = add_override(org, effective_from=date(2026, 11, 10))
    with pytest.raises(ValidationError) as caught:
        prices.update_override(row, SYSTEM, provider="mycorp", model="llama-x", effective_from=date(2026, 11, 1),
                               input_price="1", output_price="2")
    assert "already has a price" in caught.value.errors["effective_from"]


def test_every_change_is_audited(org):
    row = add_override(org, note="v1")
    prices.update_override(row, SYSTEM, provider="mycorp", model="llama-x", effective_from=date(2026, 11, 1),
                           input_price="1.5", output_price="2", note="v2")
    prices.update_override(PriceOverride.get_by_id(row.id), SYSTEM, provider="mycorp", model="llama-x",
                           effective_from=date(2026, 11, 1), input_price="1.5", output_price="2", note="v2")
    prices.delete_override(PriceOverride.get_by_id(row.id), SYSTEM)
    alias = prices.create_alias(org, SYSTEM, provider="azure", alias="prod-4o", model="gpt-4o")
    prices.delete_alias(alias, SYSTEM)
    rows = list(AuditLog.select().where(AuditLog.organization == org, AuditLog.action.startswith("price_override")
                                        | AuditLog.action.startswith("model_alias")).order_by(AuditLog.id))
    assert [r.action for r in rows] == ["price_override.created", "price_override.updated",
                                        "price_override.deleted", "model_alias.created", "model_alias.deleted"]
    created, updated = rows[0].detail, rows[1].detail
    assert created["input_price"] == "1" and created["effective_from"] == "2026-11-01"
    assert updated["changes"] == {"input_price": ["1", "1.5"], "note": ["v1", "v2"]}
    assert rows[3].detail == {"provider": "azure", "alias": "prod-4o", "model": "gpt-4o", "events_moved": 0}


# --- aliases ----------------------------------------------------------------------------------

def azure_events(count=3, model="prod-4o", occurred_at="2026-11-20T10:15:00Z"):
    # 1,000 input and 500 output tokens each
    return [{"provider": "azure_openai", "model": model, "input_tokens": 1000, "output_tokens": 500,
             "occurred_at": occurred_at, "tags": ["app:support"]} for _ in range(count)]


def test_an_alias_moves_stored_usage_to_the_model_and_prices_it(org):
    send(org, azure_events(3) + azure_events(1, "Prod-4o", "2026-11-21T09:00:00Z") + azure_events(2, "gpt-4o"))
    assert unpriced_count(org) == 4
    prices.create_alias(org, SYSTEM, provider="Azure", alias="PROD-4o", model="gpt-4o-2024-08-06")
    events = list(UsageEvent.in_org(org))
    assert {e.model for e in events} == {"gpt-4o"}
    assert {e.model_raw for e in events} == {"prod-4o", "Prod-4o", "gpt-4o"}  # as sent, kept
    # Azure prices gpt-4o as OpenAI does: 1,000 × 2,500 + 500 × 10,000 = 7,500,000 each
    assert {(e.cost_nanos, e.priced_by) for e in events} == {(7_500_000, "catalog")}
    assert unpriced_count(org) == 0
    assert total_cost(org) == rollup_cost(org) == 45_000_000
    assert not UsageRollup.select().where(UsageRollup.model == "prod-4o").exists()  # emptied rows are gone
    assert not UsageTagRollup.select().where(UsageTagRollup.model == "prod-4o").exists()
    assert_rollups_equal_events(org)
    # and from now on ingest maps the name itself
    send(org, azure_events(1, "prod-4o", "2026-11-22T10:00:00Z"))
    assert UsageEvent.in_org(org).where(UsageEvent.model == "gpt-4o").count() == 7


def test_an_alias_to_a_model_with_an_override_prices_by_the_override(org):
    send(org, azure_events(2, "my-deploy"))
    add_override(org, provider="azure", model="gpt-4o", input_price="2", output_price="6")
    prices.create_alias(org, SYSTEM, provider="azure", alias="my-deploy", model="gpt-4o")
    # 1,000 × 2,000 + 500 × 6,000 = 5,000,000 each
    assert {(e.cost_nanos, e.priced_by) for e in UsageEvent.in_org(org)} == {(5_000_000, "override")}
    assert_rollups_equal_events(org)


def test_alias_moves_only_its_provider_and_organization(org, make_org):
    other = make_org("Other")
    send(org, azure_events(1) + [{"provider": "openai", "model": "prod-4o", "input_tokens": 5, "output_tokens": 1,
                                  "occurred_at": "2026-11-20T10:00:00Z"}])
    send(other, azure_events(1))
    prices.create_alias(org, SYSTEM, provider="azure", alias="prod-4o", model="gpt-4o")
    assert sorted((e.provider, e.model) for e in UsageEvent.in_org(org)) == [("azure", "gpt-4o"),
                                                                             ("openai", "prod-4o")]
    assert [e.model for e in UsageEvent.in_org(other)] == ["prod-4o"]
    assert_rollups_equal_events(org)
    assert_rollups_equal_events(other)


def test_alias_reattribution_in_chunks(org, monkeypatch):
    monkeypatch.setattr(repricing, "CHUNK", 2)
    send(org, azure_events(5) + azure_events(2, occurred_at="2026-11-23T01:00:00Z"))
    prices.create_alias(org, SYSTEM, provider="azure", alias="prod-4o", model="gpt-4o")
    assert UsageEvent.in_org(org).where(UsageEvent.model == "gpt-4o").count() == 7
    assert_rollups_equal_events(org)


def test_deleting_an_alias_leaves_moved_usage_where_it_is(org):
    send(org, azure_events(2))
    alias = prices.create_alias(org, SYSTEM, provider="azure", alias="prod-4o", model="gpt-4o")
    prices.delete_alias(alias, SYSTEM)
    assert {e.model for e in UsageEvent.in_org(org)} == {"gpt-4o"}
    send(org, azure_events(1, occurred_at="2026-11-24T10:00:00Z"))
    assert UsageEvent.in_org(org).where(UsageEvent.model == "prod-4o").count() == 1


@pytest.mark.parametrize("fields, field, message", [
    ({"provider": ""}, "provider", "Enter the provider"),
    ({"alias": " "}, "alias", "Enter the name"),
    ({"model": ""}, "model", "Enter the model"),
    ({"alias": "gpt-4o"}, "model", "different model"),
    ({"alias": "gpt-4o-2024-08-06"}, "model", "different model"),
    ({"alias": "a" * 201}, "alias", "At most 200"),
])
def test_invalid_aliases(org, fields, field, message):
    with pytest.raises(ValidationError) as caught:
        prices.create_alias(org, SYSTEM, **{"provider": "azure", "alias": "prod-4o", "model": "gpt-4o", **fields})
    assert message in caught.value.errors[field]


def test_alias_rules_against_other_aliases(org):
    prices.create_alias(org, SYSTEM, provider="azure", alias="prod-4o", model="gpt-4o")
    with pytest.raises(ValidationError) as caught:
        prices.create_alias(org, SYSTEM, provider="azure_openai", alias="Prod-4o", model="gpt-4o-mini")
    assert "already an alias of gpt-4o" in caught.value.errors["alias"]
    with pytest.raises(ValidationError) as caught:
        prices.create_alias(org, SYSTEM, provider="azure", alias="staging-4o", model="prod-4o")
    assert "itself an alias" in caught.value.errors["model"]
    with pytest.raises(ValidationError) as caught:
        prices.create_alias(org, SYSTEM, provider="azure", alias="gpt-4o", model="gpt-4o-mini")
    assert "cannot be an alias itself" in caught.value.errors["alias"]
    # the same name for another provider is another alias
    prices.create_alias(org, SYSTEM, provider="openai", alias="prod-4o", model="gpt-4o")
    assert [(a.provider, a.alias) for a in prices.aliases_of(org)] == [("azure", "prod-4o"), ("openai", "prod-4o")]


def test_parse_price():
    assert str(prices.parse_price(" $1,250.5 ")) == "1250.5"
    assert prices.parse_price("", required=False) is None
    assert prices.parse_price(None, required=False) is None
    with pytest.raises(ValueError):
        prices.parse_price(0.1)
    assert prices.usd_per_mtok(2_500_000_000) == "2.5"
    assert prices.usd_per_mtok(1) == "0.000000001"
    assert prices.usd_per_mtok(0) == "0"
