"""The console's Organizations screens: the list (plan, members, this month's
spend and events, status; search and filters; a page in a constant number of
queries), one organization's whole picture (its read audit-logged), and a
superadmin's actions — create, suspend, comped plans, feature flags,
ownership transfer, deletion after a grace period and the daily purge — each
audit-logged, refused to support (read only), to organization owners and to
anonymous visitors."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
import time_machine

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import (ApiKey, AuditLog, BillingAccount, Budget, Department, Membership, Organization,
                                 UsageEvent, User)
from costguardian.services import keys
from costguardian.services.billing import accounts, limits, plans, sync
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.platform import orgs as platform_orgs, settings
from costguardian.services.usage import ingest
from tests.support import SYSTEM, Client, add_member

BASE = "/admin/organizations/"


def _signed_in(app, make_user, email: str, role: str) -> Client:
    make_user(email, name=email.split("@")[0].title(), platform_role=role)
    client = Client(app)
    client.sign_in(email)
    return client


@pytest.fixture
def superadmin(app, make_user):
    return _signed_in(app, make_user, "root@example.com", "superadmin")


@pytest.fixture
def support(app, make_user):
    return _signed_in(app, make_user, "helper@example.com", "support")


def _root() -> User:
    return User.by_email("root@example.com")


def _events(org, count: int, when: datetime | None = None, prefix: str = "e", key=None, **extra) -> None:
    when = when or clock.now()
    result = ingest.ingest(org, key, [{"event_id": f"{prefix}{i}", "provider": "openai", "model": "gpt-4o-mini",
                                       "input_tokens": 1000, "output_tokens": 100, **extra,
                                       "occurred_at": when.isoformat(timespec="seconds") + "Z"}
                                      for i in range(count)])
    assert [r.status for r in result.results] == ["accepted"] * count


def _write_routes(org_id: int) -> list[tuple[str, dict]]:
    return [(BASE, {"name": "X", "owner_email": "owner@acme.com"}),
            (f"{BASE}{org_id}/suspend", {"reason": "r"}), (f"{BASE}{org_id}/unsuspend", {}),
            (f"{BASE}{org_id}/plan", {"plan": "team"}), (f"{BASE}{org_id}/features", {"feature.sso": "on"}),
            (f"{BASE}{org_id}/owner", {"member": "1"}), (f"{BASE}{org_id}/delete", {"confirm": "acme"}),
            (f"{BASE}{org_id}/cancel-deletion", {})]


# --- who may -------------------------------------------------------------------------

def test_owners_get_403_and_anonymous_visitors_are_sent_to_sign_in(owner_client, app):
    client, _, org = owner_client
    for url in (BASE, f"{BASE}{org.id}"):
        assert client.get(url).status_code == 403, url
        answer = Client(app).get(url)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/login"), url
    for url, data in _write_routes(org.id):
        assert client.post(url, data).status_code == 403, url
        answer = Client(app).post(url, data)
        assert answer.status_code in (302, 401), url
        if answer.status_code == 302:
            assert answer.headers["Location"].startswith("/login")
    assert Organization.get_by_id(org.id).suspended_at is None
    assert Organization.select().count() == 1


def test_support_reads_but_cannot_write(support, owner_client):
    _, _, org = owner_client
    html = support.get(BASE).get_data(as_text=True)
    assert 'data-org="acme"' in html and "Create an organization" not in html
    page = support.get(f"{BASE}{org.id}")
    assert page.status_code == 200
    assert 'data-testid="org-actions"' not in page.get_data(as_text=True)
    for url, data in _write_routes(org.id):
        assert support.post(url, data).status_code == 403, url
    assert Organization.get_by_id(org.id).suspended_at is None
    viewed = AuditLog.get(AuditLog.action == "platform.viewed", AuditLog.organization == org)
    assert viewed.actor.email == "helper@example.com" and viewed.detail["page"] == "organization"


# --- the list ------------------------------------------------------------------------

def test_the_list_shows_plan_members_spend_events_and_status(superadmin, make_org, make_user):
    acme = make_org("Acme")
    add_member(acme, make_user("ann@acme.com"), "member")
    globex = make_org("Globex")
    initech = make_org("Initech")
    _events(acme, 3)
    _events(acme, 2, clock.now() - timedelta(days=40), prefix="old")  # last month: not counted
    accounts.set_manual_plan(globex, "team", SYSTEM)
    platform_orgs.suspend(initech, "Abuse", SYSTEM)

    rows, total = platform_orgs.search({})

    assert total == 3 and [r["slug"] for r in rows] == ["initech", "globex", "acme"]  # newest first
    by_slug = {r["slug"]: r for r in rows}
    assert set(by_slug["acme"]) >= {"id", "name", "slug", "plan", "members", "spend_nanos_month", "events_month",
                                    "status", "created_at"}
    assert by_slug["acme"]["members"] == 2 and by_slug["acme"]["events_month"] == 3
    this_month = sum(e.cost_nanos for e in UsageEvent.select().where(UsageEvent.event_id.startswith("e")))
    assert this_month > 0 and by_slug["acme"]["spend_nanos_month"] == this_month
    assert (by_slug["acme"]["plan"], by_slug["globex"]["plan"], by_slug["initech"]["plan"]) == ("Free", "Team", "Free")
    assert [by_slug[s]["status"] for s in ("acme", "globex", "initech")] == ["active", "active", "suspended"]

    html = superadmin.get(BASE).get_data(as_text=True)
    row = re.search(r'<tr data-org="acme">.*?</tr>', html, re.S).group(0)
    assert "Free" in row and "<td>2</td>" in row and "<td>3</td>" in row and 'data-status="active"' in row
    assert "(UTC month)" in html


def test_search_and_filters(superadmin, make_org):
    acme, globex, initech = make_org("Acme"), make_org("Globex"), make_org("Initech")
    accounts.set_manual_plan(globex, "business", SYSTEM)
    platform_orgs.suspend(initech, "Abuse", SYSTEM)
    platform_orgs.schedule_deletion(acme, SYSTEM, "acme")

    def slugs(**args):
        filters, page, errors = platform_orgs.parse_filters(args)
        return sorted(r["slug"] for r in platform_orgs.search(filters, page)[0]), errors

    assert slugs(q="GLOB") == (["globex"], {})
    assert slugs(q="initech") == (["initech"], {})
    assert slugs(status="suspended") == (["initech"], {})
    assert slugs(status="deletion") == (["acme"], {})
    assert slugs(status="active") == (["globex"], {})
    assert slugs(plan="business") == (["globex"], {})
    assert slugs(plan="free") == (["acme", "initech"], {})
    assert slugs(plan="team") == ([], {})
    rows, errors = slugs(status="gone")
    assert rows == [] and "status" in errors
    html = superadmin.get(BASE + "?q=glob", htmx=True).get_data(as_text=True)
    assert html.lstrip().startswith('<div id="org-results">') and 'data-org="globex"' in html
    assert 'data-org="acme"' not in html


def test_a_page_takes_the_same_few_queries_for_3_or_50_organizations(make_org, monkeypatch):
    database = db.obj
    executed = []
    original = database.execute_sql

    def counting(sql, params=None, *args, **kwargs):
        executed.append(sql)
        return original(sql, params, *args, **kwargs)

    def queries_for_a_page() -> int:
        plans.listed()  # the default plans exist already (first use writes them)
        executed.clear()
        monkeypatch.setattr(database, "execute_sql", counting)
        rows, _ = platform_orgs.search({})
        monkeypatch.setattr(database, "execute_sql", original)
        return len(executed), len(rows)

    for i in range(3):
        make_org(f"Org {i}")
    few, shown = queries_for_a_page()
    assert shown == 3
    for i in range(3, 55):
        make_org(f"Org {i}")
    many, shown = queries_for_a_page()
    assert shown == 50 and many == few and many <= 8, many


# --- one organization -----------------------------------------------------------------

def test_the_detail_page_shows_everything_and_logs_the_read(superadmin, owner_client, make_user):
    client, olga, org = owner_client
    add_member(org, make_user("ann@acme.com", name="Ann"), "member")
    key = keys.create_key(org, SYSTEM, "search-service", ["ingest"]).key
    Budget.create(organization=org, name="Monthly cap", amount_nanos=50 * 10**9, period="monthly")
    _events(org, 4)

    answer = superadmin.get(f"{BASE}{org.id}")

    html = answer.get_data(as_text=True)
    assert answer.status_code == 200
    for text in ("owner@acme.com", "ann@acme.com", key.display_key, "search-service", "Monthly cap", "$50.00",
                 "openai", 'data-testid="billing-state"', "Free", "org.created", 'data-testid="org-actions"',
                 "Single sign-on"):
        assert text in html, text
    viewed = AuditLog.select().where(AuditLog.action == "platform.viewed").get()
    assert viewed.organization_id == org.id and viewed.actor_id == _root().id
    assert superadmin.get(f"{BASE}999999").status_code == 404


# --- create ------------------------------------------------------------------------------

def test_a_superadmin_creates_an_organization_for_an_existing_account(superadmin, make_user):
    make_user("olga@initech.com")

    answer = superadmin.post(BASE, {"name": "Initech", "owner_email": "OLGA@initech.com", "time_zone": "Europe/Paris"})

    org = Organization.get(Organization.slug == "initech")
    assert answer.status_code == 302 and answer.headers["Location"] == f"{BASE}{org.id}"
    assert org.time_zone == "Europe/Paris"
    owner = Membership.get(Membership.organization == org)
    assert owner.user.email == "olga@initech.com" and owner.role == "owner"
    created = AuditLog.get(AuditLog.action == "org.created")
    assert created.organization_id == org.id and created.actor_id == _root().id


def test_creating_with_bad_input_answers_422_with_field_messages(superadmin, make_user):
    disabled = make_user("gone@example.com")
    disabled.is_disabled = True
    disabled.save()

    for data, field, message in (
            ({"name": "", "owner_email": "root@example.com"}, "name", "Give the organization a name."),
            ({"name": "X", "owner_email": "nobody@example.com"}, "owner_email", "No account uses nobody@example.com"),
            ({"name": "X", "owner_email": "gone@example.com"}, "owner_email", "is disabled"),
            ({"name": "X", "owner_email": "root@example.com", "time_zone": "Mars/Base"}, "time_zone",
             "Choose a time zone")):
        answer = superadmin.post(BASE, data)
        html = answer.get_data(as_text=True)
        assert answer.status_code == 422, data
        assert message in html and f'id="new-org-{ {"owner_email": "owner", "time_zone": "tz"}.get(field, field)}' \
            in html, data
    assert Organization.select().count() == 0
    with pytest.raises(ValidationError) as refused:
        platform_orgs.create("", "", SYSTEM)
    assert set(refused.value.errors) == {"name", "owner_email"}


def test_new_organizations_get_the_default_plan_as_a_grant(make_org):
    assert accounts.access(make_org("Before")).plan.code == "free"
    settings.put("default_plan", "team", SYSTEM)

    org = make_org("After")

    account = BillingAccount.in_org(org).get()
    assert account.status == "comped" and account.plan.code == "team" and account.stripe_subscription_id is None
    assert accounts.access(org).plan.code == "team"
    assert AuditLog.get(AuditLog.action == "billing.plan_granted").organization_id == org.id


# --- suspend -----------------------------------------------------------------------------

def test_suspend_and_reinstate_from_the_console(superadmin, owner_client):
    member_client, _, org = owner_client
    url = f"{BASE}{org.id}"

    refused = superadmin.post(f"{url}/suspend", {"reason": "  "})
    assert refused.status_code == 422 and "Give the reason" in refused.get_data(as_text=True)
    assert Organization.get_by_id(org.id).suspended_at is None

    assert superadmin.post(f"{url}/suspend", {"reason": "Chargebacks"}).status_code == 302
    org = Organization.get_by_id(org.id)
    assert org.suspended_at is not None and org.suspended_reason == "Chargebacks"
    assert "Chargebacks" in member_client.get("/").get_data(as_text=True)
    assert 'data-status="suspended"' in superadmin.get(url).get_data(as_text=True)

    assert superadmin.post(f"{url}/unsuspend").status_code == 302
    assert Organization.get_by_id(org.id).suspended_at is None
    rows = list(AuditLog.select().where(AuditLog.action.in_(("org.suspended", "org.unsuspended")))
                .order_by(AuditLog.id))
    assert [(r.action, r.actor_id, r.organization_id) for r in rows] == [
        ("org.suspended", _root().id, org.id), ("org.unsuspended", _root().id, org.id)]
    assert rows[0].detail["reason"] == "Chargebacks"
    again = superadmin.post(f"{url}/unsuspend")
    assert again.status_code == 422 and "is not suspended" in again.get_data(as_text=True)


# --- comped plans ------------------------------------------------------------------------

def test_a_superadmin_grants_a_plan_and_free_removes_the_grant(superadmin, owner_client, app, monkeypatch):
    _, _, org = owner_client
    monkeypatch.setitem(app.config, "BILLING_ENABLED", True)
    url = f"{BASE}{org.id}/plan"

    assert superadmin.post(url, {"plan": "business"}).status_code == 302

    account = BillingAccount.in_org(org).get()
    assert account.status == "comped" and account.plan.code == "business"
    access = accounts.access(org)
    assert access.plan.code == "business" and not access.fallen_back and access.message == ""
    assert accounts.seats_allowed(org) == plans.by_code("business").seats_included
    assert accounts.allowance(access, account) == plans.by_code("business").events_included
    assert "granted by a platform admin" in superadmin.get(f"{BASE}{org.id}").get_data(as_text=True)

    assert superadmin.post(url, {"plan": "free"}).status_code == 302
    account = BillingAccount.in_org(org).get()
    assert account.status == "" and account.plan is None and accounts.access(org).plan.code == "free"
    actions = [(r.action, r.detail["plan"]) for r in AuditLog.select().where(AuditLog.action.startswith("billing."))
               .order_by(AuditLog.id)]
    assert actions == [("billing.plan_granted", "business"), ("billing.grant_removed", "free")]

    refused = superadmin.post(url, {"plan": "platinum"})
    assert refused.status_code == 422 and "Choose one of the plans" in refused.get_data(as_text=True)


def test_a_grant_is_refused_while_a_stripe_subscription_pays(make_org):
    org = make_org("Acme")
    BillingAccount.create(organization=org, plan=plans.by_code("team"), status="active", seats=5,
                          stripe_customer_id="cus_1", stripe_subscription_id="sub_1")
    with pytest.raises(RuleViolation, match="cancel it"):
        accounts.set_manual_plan(org, "business", SYSTEM)
    assert BillingAccount.in_org(org).get().status == "active"


def test_the_sync_never_overwrites_a_grant_with_an_ended_subscription(make_org):
    org = make_org("Acme")
    account = accounts.set_manual_plan(org, "team", SYSTEM)

    stored = sync.store(account, SimpleNamespace(status="canceled", id="sub_old"))  # what Stripe still lists

    assert stored.status == "comped" and stored.plan.code == "team" and stored.stripe_subscription_id is None


# --- feature flags -------------------------------------------------------------------------

def test_features_can_be_forced_on_or_off_per_organization(superadmin, owner_client, app, monkeypatch):
    _, _, org = owner_client
    url = f"{BASE}{org.id}/features"
    monkeypatch.setitem(app.config, "BILLING_ENABLED", True)
    assert limits.feature_refusal(org, "webhooks") is not None  # Free leaves webhooks out

    answer = superadmin.post(url, {"feature.webhooks": "on", "feature.gateway": "off"})

    assert answer.status_code == 302
    org = Organization.get_by_id(org.id)
    assert org.feature_overrides == {"webhooks": True, "gateway": False}
    assert limits.feature_refusal(org, "webhooks") is None and limits.has_feature(org, "webhooks")
    assert "turned off LLM gateway for Acme" in limits.gateway_refusal(org)
    monkeypatch.setitem(app.config, "BILLING_ENABLED", False)
    assert limits.gateway_refusal(org) is not None and not limits.has_feature(org, "gateway")  # wins, billing off too
    changed = AuditLog.get(AuditLog.action == "org.features_changed")
    assert changed.detail["changes"] == {"gateway": ["inherit", "off"], "webhooks": ["inherit", "on"]}

    assert superadmin.post(url, {"feature.webhooks": "inherit", "feature.gateway": "inherit"}).status_code == 302
    org = Organization.get_by_id(org.id)
    assert org.feature_overrides == {} and limits.gateway_refusal(org) is None

    refused = superadmin.post(url, {"feature.sso": "maybe"})
    assert refused.status_code == 422 and "Choose inherit, on or off." in refused.get_data(as_text=True)


# --- ownership -----------------------------------------------------------------------------

def test_transferring_ownership_makes_the_previous_owners_admins(superadmin, owner_client, make_user):
    _, olga, org = owner_client
    ann = add_member(org, make_user("ann@acme.com"), "member")
    url = f"{BASE}{org.id}/owner"

    refused = superadmin.post(url, {"member": "999999"})
    assert refused.status_code == 422 and "Choose a member of this organization." in refused.get_data(as_text=True)

    assert superadmin.post(url, {"member": str(ann.id)}).status_code == 302

    roles = {m.user.email: m.role for m in Membership.in_org(org)}
    assert roles == {"ann@acme.com": "owner", "owner@acme.com": "admin"}
    row = AuditLog.get(AuditLog.action == "org.ownership_transferred")
    assert row.actor_id == _root().id and row.detail["previous_owners"] == ["owner@acme.com"]
    again = superadmin.post(url, {"member": str(ann.id)})
    assert again.status_code == 422 and "already is the only owner" in again.get_data(as_text=True)


# --- deletion ------------------------------------------------------------------------------

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=timezone.utc)


def test_deletion_needs_the_slug_and_can_be_cancelled(superadmin, owner_client):
    _, _, org = owner_client
    url = f"{BASE}{org.id}"

    refused = superadmin.post(f"{url}/delete", {"confirm": "Acme"})
    assert refused.status_code == 422 and "Type the organization&#39;s address, acme" in refused.get_data(as_text=True)
    assert Organization.get_by_id(org.id).delete_after is None

    assert superadmin.post(f"{url}/delete", {"confirm": "acme"}).status_code == 302
    org = Organization.get_by_id(org.id)
    assert org.delete_after - clock.now() > timedelta(days=29, hours=23)
    assert org.suspended_at is not None and "Scheduled for deletion" in org.suspended_reason
    assert 'data-testid="deletion-notice"' in superadmin.get(url).get_data(as_text=True)

    assert superadmin.post(f"{url}/cancel-deletion").status_code == 302
    org = Organization.get_by_id(org.id)
    assert org.delete_after is None and org.suspended_at is None  # the deletion's suspension is lifted with it
    actions = [r.action for r in AuditLog.in_org(org).where(AuditLog.action.startswith("org.deletion"))
               .order_by(AuditLog.id)]
    assert actions == ["org.deletion_scheduled", "org.deletion_cancelled"]


def test_the_daily_purge_deletes_organizations_after_the_grace_period(make_org, make_user):
    with time_machine.travel(T0, tick=False) as traveller:
        olga = make_user("olga@acme.com")
        acme = make_org("Acme", owner=olga)
        keep = make_org("Globex", owner=olga)
        key = keys.create_key(acme, SYSTEM, "ci", ["ingest"]).key
        Department.create(organization=acme, name="Research")
        _events(acme, 2, key=key, department="Research")  # events point at the key and the department
        platform_orgs.suspend(keep, "Abuse", SYSTEM)
        platform_orgs.schedule_deletion(acme, SYSTEM, "acme")

        traveller.move_to(T0 + platform_orgs.DELETION_GRACE - timedelta(minutes=1))
        assert platform_orgs.purge_due() == 0
        traveller.move_to(T0 + platform_orgs.DELETION_GRACE)
        assert platform_orgs.purge_due() == 1

    assert Organization.get_or_none(Organization.id == acme.id) is None
    assert Membership.select().where(Membership.organization == acme.id).count() == 0
    assert ApiKey.select().count() == 0 and UsageEvent.select().count() == 0 and Department.select().count() == 0
    assert User.by_email("olga@acme.com") is not None  # the people stay
    assert Organization.get_by_id(keep.id).suspended_at is not None  # suspended only: kept
    deleted = AuditLog.get(AuditLog.action == "org.deleted")
    assert deleted.organization_id is None
    assert deleted.detail["name"] == "Acme" and deleted.detail["organization_id"] == acme.id
    assert platform_orgs.purge_due() == 0


def test_a_paying_organization_cannot_be_scheduled_for_deletion(make_org):
    org = make_org("Acme")
    BillingAccount.create(organization=org, plan=plans.by_code("team"), status="active", seats=5,
                          stripe_customer_id="cus_1", stripe_subscription_id="sub_1")
    with pytest.raises(RuleViolation, match="Stripe subscription"):
        platform_orgs.schedule_deletion(org, SYSTEM, "acme")


def test_ownership_is_not_transferred_to_a_disabled_account(owner_client, make_user):
    from costguardian.models import Membership
    from costguardian.services.errors import RuleViolation
    from tests.support import add_member

    _, owner, org = owner_client
    gone = make_user("gone@acme.com")
    membership = add_member(org, gone, "admin")
    gone.is_disabled = True
    gone.save()
    with pytest.raises(RuleViolation):
        platform_orgs.transfer_ownership(org, membership.id, SYSTEM)
    assert Membership.get_by_id(membership.id).role == "admin"
