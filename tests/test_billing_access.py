"""What a subscription's status means for access is written once, in
accounts.ACCESS, and docs/BILLING.md shows the same table; each status
behaves as the table says."""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from costguardian.models import BillingAccount
from costguardian.services.billing import accounts, plans
from tests.billing_support import billing_on, traveller  # noqa: F401

DOC = Path(__file__).resolve().parent.parent / "docs" / "BILLING.md"
NOW = datetime(2026, 3, 10, 12, 0)


def _doc_table() -> dict[str, str]:
    text = DOC.read_text()
    section = text.split("## What a subscription's status means for access", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("Stripe status", "---"):
            rows["" if cells[0] == "(none)" else cells[0].strip("`")] = cells[1]
    return rows


def test_the_documented_table_is_the_code_table():
    documented = _doc_table()
    assert set(documented) == set(accounts.ACCESS)
    for status, (limits, _) in accounts.ACCESS.items():
        assert documented[status] == ("the " + limits if limits.startswith("plan") else limits), status


def test_the_documented_messages_are_the_banners():
    text = DOC.read_text()
    for status, (_, message) in accounts.ACCESS.items():
        if message:
            assert message.split("{")[0].strip().rstrip(".") in text, status


@pytest.mark.parametrize("status", sorted(accounts.ACCESS))
def test_each_status_gives_the_documented_access(status, make_org, billing_on, app):
    org = make_org("Acme")
    team = plans.by_code("team")
    BillingAccount.create(organization=org, plan=team, status=status, seats=7,
                          past_due_since=NOW - timedelta(days=1) if status == "past_due" else None)
    access = accounts.access(org, now=NOW)
    limits = accounts.ACCESS[status][0]
    expected = "team" if limits.startswith("plan") else "free"
    assert access.plan.code == expected
    assert access.fallen_back == (status not in ("", "canceled", "incomplete_expired") and expected == "free")
    assert bool(access.message) == bool(accounts.ACCESS[status][1])
    assert accounts.seats_allowed(org) == (7 if expected == "team" else 3)


def test_past_due_falls_back_to_free_when_the_grace_period_ends(make_org, billing_on, app):
    org = make_org("Acme")
    BillingAccount.create(organization=org, plan=plans.by_code("team"), status="past_due", seats=7,
                          past_due_since=NOW)
    grace = app.config["BILLING_GRACE_DAYS"]
    before = accounts.access(org, now=NOW + timedelta(days=grace) - timedelta(seconds=1))
    after = accounts.access(org, now=NOW + timedelta(days=grace))
    assert before.plan.code == "team" and "before 2026-03-24" in before.message
    assert after.plan.is_free and after.fallen_back and "nothing was deleted" in after.message


def test_billing_off_lifts_the_seat_limit(make_org, app):
    org = make_org("Acme")
    assert not app.config["BILLING_ENABLED"]
    assert accounts.seats_allowed(org) is None
