"""Every platform write refuses a caller who is not a superadmin, through the
service itself (not only the console's view decorator): the admin API, the
CLI and any future caller get the same rule. The CLI (no user) may write."""
from __future__ import annotations

from datetime import date

import pytest

from costguardian.models import BillingAccount, GlobalPriceOverride, PlatformSetting
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted
from costguardian.services.platform import global_prices, orgs, settings
from tests.support import SYSTEM, make_org, make_user

PRICE = {"provider": "openai", "model": "gpt-4o", "effective_from": date(2026, 1, 1),
         "input_price": "2.5", "output_price": "10"}


@pytest.fixture
def org(app_ctx):
    return make_org("Acme")


@pytest.fixture(params=["support", "owner", "acting"])
def outsider(request, org):
    """A support agent, an organization owner, and a superadmin acting as a member."""
    if request.param == "support":
        return Actor(user=make_user("help@example.com", platform_role="support"))
    if request.param == "owner":
        return Actor(user=make_user("owner@example.com"))
    root = make_user("root@example.com", superadmin=True)
    return Actor(user=make_user("member@example.com"), impersonator=root)


def test_outsiders_cannot_write_platform_state_through_the_services(org, outsider):
    with pytest.raises(NotPermitted):
        settings.put("signups", "closed", outsider)
    with pytest.raises(NotPermitted):
        global_prices.create(outsider, **PRICE)
    with pytest.raises(NotPermitted):
        orgs.set_plan(org, "team", outsider)
    assert PlatformSetting.select().count() == 0
    assert GlobalPriceOverride.select().count() == 0
    assert not BillingAccount.select().where(BillingAccount.status == "comped").exists()


def test_a_superadmin_and_the_cli_can(org):
    root = Actor(user=make_user("root@example.com", superadmin=True))
    settings.put("signups", "closed", root)
    row = global_prices.create(SYSTEM, **PRICE)
    orgs.set_plan(org, "team", root)
    assert settings.get("signups") == "closed"
    assert BillingAccount.get(BillingAccount.organization == org).status == "comped"
    with pytest.raises(NotPermitted):
        global_prices.delete(row, Actor(user=make_user("help@example.com", platform_role="support")))
    global_prices.delete(row, root)
    assert GlobalPriceOverride.select().count() == 0
