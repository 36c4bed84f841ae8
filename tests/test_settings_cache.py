"""What a process keeps of an organization's settings (costguardian/
settings_cache.py) and the version that says whether it still holds: every
kind of change the gateway's kept reads depend on changes the version (the
database's triggers, migration 0031, on both databases), a change nobody
keeps does not, and a unit of work pinned after a change sees it."""
from __future__ import annotations

from datetime import datetime

import pytest

from costguardian import clock, crypto, settings_cache
from costguardian.extensions import db
from costguardian.models import (ApiKey, Budget, GlobalPriceOverride, ModelAlias, Organization, OrgSettingsVersion,
                                 PriceOverride, ProviderCredential)
from costguardian.services import keys
from costguardian.services.budgets import accounting, budgets
from costguardian.services.budgets.budgets import covering_budgets
from costguardian.services.gateway import vault
from costguardian.services.team import departments
from costguardian.services.usage.pricing import OrgPrices
from tests.support import SYSTEM

FAKE_KEY = "sk-fake-openai-3f9c2b7d1e5a8c4f7a21"


@pytest.fixture
def org(app_ctx, make_user, make_org):
    return make_org("Acme", owner=make_user("owner@acme.com"))


@pytest.fixture
def other(app_ctx, make_user, make_org):
    return make_org("Globex", owner=make_user("owner@globex.com"))


def _budget(org, **extra) -> Budget:
    return budgets.create(org, SYSTEM, {"name": extra.pop("name", "Monthly"), "amount_usd": "100", **extra})


def _price(org=None, model="gpt-4o") -> dict:
    row = dict(provider="openai", model=model, effective_from=datetime(2026, 1, 1), input_nanos_per_mtok=1_000,
               output_nanos_per_mtok=2_000)
    return {**row, "organization": org} if org is not None else row


CHANGES = {
    "budget created": lambda org: _budget(org),
    "budget edited": lambda org: budgets.update(Budget.get(Budget.organization == org), SYSTEM,
                                                {"name": "Renamed", "amount_usd": "200"}),
    "budget deleted": lambda org: budgets.delete(Budget.get(Budget.organization == org), SYSTEM),
    "department created": lambda org: departments.create(org, SYSTEM, "Research"),
    "alias added": lambda org: ModelAlias.create(organization=org, provider="openai", alias="prod", model="gpt-4o"),
    "alias removed": lambda org: ModelAlias.delete().where(ModelAlias.organization == org).execute(),
    "price override added": lambda org: PriceOverride.create(**_price(org)),
    "platform price override added": lambda org: GlobalPriceOverride.create(**_price(model="gpt-4o-mini")),
    "credential disabled": lambda org: vault.set_enabled(ProviderCredential.get(ProviderCredential.organization == org),
                                                         SYSTEM, False),
    "time zone changed": lambda org: Organization.update(time_zone="Asia/Tokyo").where(Organization.id == org.id)
    .execute(),
    "key with a budget deleted": lambda org: ApiKey.delete().where(ApiKey.name == "scoped").execute(),
}


@pytest.mark.parametrize("change", CHANGES)
def test_every_change_the_kept_reads_depend_on_changes_the_version(org, other, change):
    key = keys.create_key(org, SYSTEM, "scoped", ["gateway"]).key
    _budget(org, name="Key budget", api_key_id=str(key.id))
    ModelAlias.create(organization=org, provider="openai", alias="old", model="gpt-4o")
    ProviderCredential.create(organization=org, provider="openai", label="Main", secret_encrypted="x",
                              secret_last4="7a21")
    before, theirs = settings_cache.version(org.id), settings_cache.version(other.id)
    assert before is not None and theirs is not None

    CHANGES[change](org)

    assert settings_cache.version(org.id) != before
    if change == "key with a budget deleted":  # the budget went with its key (ON DELETE CASCADE)
        assert not Budget.select().where(Budget.name == "Key budget").exists()
    if change == "platform price override added":  # the platform's prices are every organization's
        assert settings_cache.version(other.id) != theirs
    else:
        assert settings_cache.version(other.id) == theirs


def test_what_nobody_keeps_changes_nothing(org):
    key = keys.create_key(org, SYSTEM, "gateway", ["gateway"]).key
    before = settings_cache.version(org.id)
    keys.touch(key, clock.now())  # a key's last use
    Organization.update(name="Acme Corp", request_log_days=3).where(Organization.id == org.id).execute()
    Organization.update(time_zone="UTC").where(Organization.id == org.id).execute()  # (already UTC)
    assert settings_cache.version(org.id) == before


def test_new_organizations_start_at_unrelated_versions(org, other):
    versions = [row.version for row in OrgSettingsVersion.select()]
    assert len(versions) == 2 and len(set(versions)) == 2


def test_kept_reads_are_shared_within_a_version_and_loaded_again_after_a_change(org):
    first = _budget(org)
    with settings_cache.pinned(org.id):
        scopes = accounting.org_scopes(org.id)
        assert accounting.org_scopes(org.id) is scopes  # kept: not read again
        prices = OrgPrices.for_org(org)
        assert OrgPrices.for_org(org) is prices
        assert [b.id for b in covering_budgets(org, provider="openai", model="gpt-4o")] == [first.id]
    assert accounting.org_scopes(org.id) is not scopes  # outside a pin: read from the database

    second = _budget(org, name="Weekly", period="weekly")
    with settings_cache.pinned(org.id):
        assert accounting.org_scopes(org.id) is not scopes
        assert {b.id for b in covering_budgets(org, provider="openai", model="gpt-4o")} == {first.id, second.id}


def test_a_pin_read_before_a_change_never_keeps_older_rows_than_its_version(org):
    """A unit of work pinned before a change may load after it: what it keeps
    is then newer than its version, and the next unit (the new version)
    loads again rather than trust it."""
    _budget(org)
    with settings_cache.pinned(org.id):
        old = settings_cache.version(org.id)
        _budget(org, name="Second")  # committed while the pin is held
        seen = accounting.org_scopes(org.id)
        assert len(seen) == 2
    with settings_cache.pinned(org.id):
        assert settings_cache.version(org.id) != old
        assert len(accounting.org_scopes(org.id)) == 2


def test_a_credential_change_reaches_the_next_call(org):
    credential = ProviderCredential.create(organization=org, provider="openai", label="Main",
                                           secret_encrypted=crypto.encrypt(FAKE_KEY), secret_last4="7a21")
    with settings_cache.pinned(org.id):
        found = vault.credential_for(org, "openai", "gpt-4o")
        assert (found.label, found.secret) == ("Main", FAKE_KEY)
        assert vault.credential_for(org, "openai", "gpt-4o") is found
    vault.set_enabled(ProviderCredential.get_by_id(credential.id), SYSTEM, False)
    with settings_cache.pinned(org.id):
        assert vault.credential_for(org, "openai", "gpt-4o") is None


def test_the_time_zone_kept_follows_the_organization(org):
    with settings_cache.pinned(org.id):
        assert accounting.time_zone_of(org.id) == "UTC"
    Organization.update(time_zone="Europe/Berlin").where(Organization.id == org.id).execute()
    with settings_cache.pinned(org.id):
        assert accounting.time_zone_of(org.id) == "Europe/Berlin"


def test_a_change_rolled_back_does_not_leave_its_version_to_the_next_change(org):
    """A transaction changes a budget, reads under a pin (the process keeps
    what it read under the new number) and rolls back: the next change must
    not get that number, or its readers would get the rolled-back rows."""
    _budget(org)
    with pytest.raises(RuntimeError), db.atomic():
        _budget(org, name="Rolled back")
        with settings_cache.pinned(org.id):
            assert len(accounting.org_scopes(org.id)) == 2  # kept, under a number that is then rolled back
        raise RuntimeError("rolled back")
    _budget(org, name="Kept")
    with settings_cache.pinned(org.id):
        assert {s.budget.name for s in accounting.org_scopes(org.id)} == {"Monthly", "Kept"}
