"""Queries whose SQL is built once (costguardian.prepared): they return what
the query built every time would, for other values and other numbers of
them; a builder that does not bind its arguments as they are is built every
time instead; and every prepared query of the hot paths keeps its SQL on
this backend after a gateway call with a hard budget."""
from __future__ import annotations

import logging

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import ApiKey, Department, Organization
from costguardian.prepared import Prepared
from costguardian.services import keys
from costguardian.services.budgets import budgets
from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)
from tests.support import SYSTEM


def test_the_kept_sql_binds_each_runs_own_values(make_user, make_org):
    org = make_org("Acme", make_user("owner@acme.example.com"))
    first = keys.create_key(org, SYSTEM, "first", ["ingest"]).key
    second = keys.create_key(org, SYSTEM, "second", ["ingest"]).key
    by_prefix = Prepared(lambda prefix: ApiKey.select().where(ApiKey.prefix == prefix))
    assert [k.name for k in by_prefix.all(first.prefix)] == ["first"]
    assert [k.name for k in by_prefix.all(second.prefix)] == ["second"]
    assert by_prefix.first("nope") is None
    assert list(by_prefix.kept().values()) == [True]


def test_rows_of_joined_models_come_out_whole_once_the_columns_are_remembered(make_user, make_org, monkeypatch):
    acme = make_org("Acme", make_user("owner@acme.example.com"))
    globex = make_org("Globex", make_user("owner@globex.example.com"))
    made = {org.name: keys.create_key(org, SYSTEM, f"{org.name} key", ["ingest"]).key for org in (acme, globex)}
    with_org = Prepared(lambda prefix: ApiKey.select(ApiKey, Organization).join(Organization)
                        .where(ApiKey.prefix == prefix))
    first = with_org.first(made["Acme"].prefix)  # works out the columns on its first row
    initialized = []
    for cls in {type(with_org.execute(made["Acme"].prefix))}:
        original = cls.initialize
        monkeypatch.setattr(cls, "initialize", lambda self: initialized.append(self) or original(self))
    second = with_org.first(made["Globex"].prefix)
    again = with_org.all(made["Acme"].prefix)
    assert initialized == []  # taken from the first run
    assert (first.name, first.organization.name) == ("Acme key", "Acme")
    assert (second.name, second.organization.name, second.organization.id) == ("Globex key", "Globex", globex.id)
    assert [(k.id, k.organization.time_zone) for k in again] == [(made["Acme"].id, acme.time_zone)]


def test_a_prepared_write_binds_each_runs_own_values(make_user, make_org):
    org = make_org("Acme", make_user("owner@acme.example.com"))
    # Every field with a default named: peewee binds the defaults of those left out (not the arguments).
    insert = Prepared(lambda *row: Department.insert_many(
        [row], fields=[Department.organization, Department.name, Department.name_key, Department.created_at,
                       Department.updated_at]))
    rename = Prepared(lambda name, org_id, key: Department.update(name=name).where(
        Department.organization == org_id, Department.name_key == key))
    now = clock.now()
    insert.write(org.id, "Search", "search", now, now)
    insert.write(org.id, "Ads", "ads", now, now)
    rename.write("Paid search", org.id, "search")
    rename.write("Display ads", org.id, "ads")
    assert sorted(Department.in_org(org).select(Department.name).tuples()) == [("Display ads",), ("Paid search",)]
    assert all(insert.kept().values()) and all(rename.kept().values())


def test_sql_is_kept_per_number_of_arguments(make_user, make_org):
    org = make_org("Acme", make_user("owner@acme.example.com"))
    made = [keys.create_key(org, SYSTEM, name, ["ingest"]).key for name in ("a", "b", "c")]
    by_ids = Prepared(lambda *ids: ApiKey.select(ApiKey.name).where(ApiKey.id.in_(list(ids)))
                      .order_by(ApiKey.name).tuples())
    assert by_ids.all(made[0].id) == [("a",)]
    assert by_ids.all(made[1].id, made[2].id) == [("b",), ("c",)]
    assert by_ids.all(made[2].id) == [("c",)]
    assert sorted(n for _, n in by_ids.kept()) == [1, 2] and all(by_ids.kept().values())


def test_a_builder_whose_sql_binds_other_values_is_built_every_time(make_user, make_org, caplog):
    acme = make_org("Acme", make_user("owner@acme.example.com"))
    globex = make_org("Globex", make_user("owner@globex.example.com"))
    Department.create(organization=acme, name="Search", name_key="search")
    Department.create(organization=globex, name="Ads", name_key="ads")
    # A model instance is bound as its id, so the SQL's values are not the arguments.
    names = Prepared(lambda org: Department.select(Department.name).where(Department.organization == org).tuples())
    with caplog.at_level(logging.WARNING, logger="costguardian.prepared"):
        assert names.all(acme) == [("Search",)]
    assert names.all(globex) == [("Ads",)]
    assert list(names.kept().values()) == [False]
    assert "not kept" in caplog.text


def test_every_prepared_query_of_a_gateway_call_keeps_its_sql(gateway):
    budgets.create(gateway.org, SYSTEM, {"name": "Cap", "amount_usd": "100", "enforcement": "hard"})
    gateway.openai().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    gateway.events(1)
    here = id(db.obj)
    ours = [p for p in Prepared.every if p.build.__module__.startswith("costguardian.")]
    run = {p: kept for p in ours for (database, _), kept in p.kept().items() if database == here}
    assert len(run) >= 8  # the key, the credential, aliases, prices, budgets, time zone, counters, reservations…
    assert all(run.values()), [p.build for p, kept in run.items() if not kept]


def test_named_tuples_are_made_right_and_their_wrapper_is_not_kept(make_user, make_org):
    org = make_org("Acme", make_user("owner@acme.example.com"))
    Department.create(organization=org, name="Search", name_key="search")
    Department.create(organization=org, name="Ads", name_key="ads")
    names = Prepared(lambda key: Department.select(Department.name).where(Department.name_key == key).namedtuples())
    assert [row.name for row in names.all("search")] == ["Search"]
    assert [row.name for row in names.all("ads")] == ["Ads"]
    assert names._columns == {}  # its constructor closes over the first wrapper (and its cursor): built again
