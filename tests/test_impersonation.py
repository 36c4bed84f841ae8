"""Impersonation by GitLab's rules: who may act as whom, the banner, what an
acting admin may not do, the 60-minute end, both identities in the audit log,
and a session cookie that cannot be forged into acting as someone."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import time_machine

from costguardian.models import AuditLog, Impersonation
from costguardian.services.actor import Actor
from costguardian.services.platform import settings
from tests.support import Client, add_member

T0 = datetime(2026, 12, 2, 10, 0)


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=True) as moving:
        yield moving


@pytest.fixture
def people(app, make_user, make_org, clock):
    """A superadmin, a support admin, an organization owner with a member."""
    root = make_user("root@example.com", name="Root", platform_role="superadmin")
    helper = make_user("help@example.com", name="Helper", platform_role="support")
    owner = make_user("owner@acme.com", name="Olga")
    member = make_user("mia@acme.com", name="Mia")
    org = make_org("Acme", owner=owner)
    add_member(org, member, "member")
    return {"root": root, "support": helper, "owner": owner, "member": member, "org": org}


def _signed_in(app, user) -> Client:
    client = Client(app)
    client.sign_in(user.email)
    return client


def _start(client: Client, user, reason: str = "ticket #4711: cannot see the dashboard"):
    return client.post(f"/admin/impersonation/start/{user.id}", {"reason": reason})


def test_a_superadmin_acts_as_a_member_sees_the_banner_and_stops(app, people):
    root = _signed_in(app, people["root"])
    started = _start(root, people["member"])
    assert started.status_code == 302 and started.headers["Location"].endswith("/")

    account = root.get("/account/").get_data(as_text=True)
    assert 'data-testid="impersonation-banner"' in account
    assert "You are acting as <strong>Mia</strong> (mia@acme.com)" in account
    assert "Acme" in root.get("/", follow_redirects=True).get_data(as_text=True)

    stopped = root.post("/admin/impersonation/stop")
    assert stopped.status_code == 302
    page = root.get("/account/").get_data(as_text=True)
    assert 'data-testid="impersonation-banner"' not in page and "root@example.com" in page
    row = Impersonation.get()
    assert (row.admin_id, row.user_id, row.ended_reason) == (people["root"].id, people["member"].id, "stopped")


def test_every_request_while_acting_is_audit_logged_with_both_identities_and_the_reason(app, people):
    root = _signed_in(app, people["root"])
    _start(root, people["member"], reason="ticket #4711")
    root.get("/account/")
    root.post("/admin/impersonation/stop")

    started = AuditLog.get(AuditLog.action == "impersonation.started")
    assert (started.actor_id, started.target_id, started.detail["reason"]) == (
        people["root"].id, str(people["member"].id), "ticket #4711")
    requests = list(AuditLog.select().where(AuditLog.action == "impersonation.request").order_by(AuditLog.id))
    assert [r.detail["path"] for r in requests][-1] == "/account/"  # the stop itself is "impersonation.ended"
    assert any(r.detail["path"] == "/account/" and r.detail["status"] == 200 for r in requests)
    for r in requests:
        assert (r.actor_id, r.impersonator_id, r.detail["reason"]) == (
            people["member"].id, people["root"].id, "ticket #4711")
    assert AuditLog.select().where(AuditLog.action == "impersonation.ended").count() == 1


def test_changes_made_while_acting_carry_the_impersonator(app, people):
    root = _signed_in(app, people["root"])
    _start(root, people["member"])
    assert root.post("/account/profile", {"name": "Mia M."}).status_code == 200
    row = AuditLog.get(AuditLog.action == "user.updated")
    assert (row.actor_id, row.impersonator_id) == (people["member"].id, people["root"].id)


def test_the_impersonated_user_finds_it_in_their_security_log(app, people):
    root = _signed_in(app, people["root"])
    _start(root, people["member"], reason="checking the budget page for Mia")
    root.post("/admin/impersonation/stop")

    mia = _signed_in(app, people["member"])
    log = mia.get("/account/").get_data(as_text=True)
    assert 'data-testid="security-log"' in log
    assert "impersonation.started" in log and "checking the budget page for Mia" in log
    assert "root@example.com (platform admin)" in log


def test_support_may_act_as_a_member(app, people):
    helper = _signed_in(app, people["support"])
    assert _start(helper, people["owner"]).status_code == 302
    assert "You are acting as <strong>Olga</strong>" in helper.get("/account/").get_data(as_text=True)


@pytest.mark.parametrize("who,target", [
    ("root", "root"),  # yourself
    ("root", "support"),  # another platform admin
    ("support", "root"),
])
def test_refused_for_yourself_and_other_platform_admins(app, people, who, target):
    client = _signed_in(app, people[who])
    response = _start(client, people[target])
    assert response.status_code == 403
    assert Impersonation.select().count() == 0
    assert 'data-testid="impersonation-banner"' not in client.get("/account/").get_data(as_text=True)


def test_refused_for_a_disabled_user(app, people):
    people["member"].is_disabled = True
    people["member"].save()
    root = _signed_in(app, people["root"])
    assert _start(root, people["member"]).status_code == 403
    assert Impersonation.select().count() == 0


def test_refused_without_a_reason(app, people):
    root = _signed_in(app, people["root"])
    response = _start(root, people["member"], reason="   ")
    assert response.status_code == 302
    assert Impersonation.select().count() == 0
    assert 'data-testid="impersonation-banner"' not in root.get("/account/").get_data(as_text=True)


def test_refused_while_already_acting_and_the_console_is_closed_meanwhile(app, people):
    root = _signed_in(app, people["root"])
    _start(root, people["member"])
    assert _start(root, people["owner"]).status_code == 403  # no chain of impersonations
    assert root.get("/admin/billing/").status_code == 403  # the console is the admin's, not the user's
    assert Impersonation.select().count() == 1


def test_organization_owners_and_anonymous_visitors_cannot_start(app, people):
    owner = _signed_in(app, people["owner"])
    assert _start(owner, people["member"]).status_code == 403
    anonymous = Client(app)
    response = anonymous.post(f"/admin/impersonation/start/{people['member'].id}", {"reason": "x"}, csrf=False)
    assert response.status_code in (302, 400)  # sent to sign in (or refused for its missing CSRF token)
    assert Impersonation.select().count() == 0


def test_refused_when_switched_off_platform_wide(app, people):
    settings.put("impersonation_enabled", False, Actor(user=people["root"]))
    root = _signed_in(app, people["root"])
    response = _start(root, people["member"])
    assert response.status_code == 403 and "switched off" in response.get_data(as_text=True)


def test_while_acting_the_users_credentials_and_keys_stay_theirs(app, people):
    owner_admin = _signed_in(app, people["root"])
    _start(owner_admin, people["owner"])
    password = owner_admin.post("/account/password", {"current_password": "x", "new_password": "y" * 16,
                                                      "confirm_password": "y" * 16})
    assert password.status_code == 403
    assert owner_admin.post("/keys/", {"name": "sneaky", "scopes": "ingest"}).status_code == 403
    assert owner_admin.post("/account/verify-email").status_code == 403
    # still acting: the refusals did not end it
    assert 'data-testid="impersonation-banner"' in owner_admin.get("/account/").get_data(as_text=True)


def test_it_ends_by_itself_after_60_minutes(app, people, clock):
    root = _signed_in(app, people["root"])
    _start(root, people["member"])
    clock.move_to(T0 + timedelta(minutes=59))
    assert 'data-testid="impersonation-banner"' in root.get("/account/").get_data(as_text=True)
    clock.move_to(T0 + timedelta(minutes=61))
    page = root.get("/account/", follow_redirects=True).get_data(as_text=True)
    assert 'data-testid="impersonation-banner"' not in page and "root@example.com" in page
    assert Impersonation.get().ended_reason == "expired"


def test_disabling_the_user_meanwhile_ends_it(app, people):
    root = _signed_in(app, people["root"])
    _start(root, people["member"])
    people["member"].is_disabled = True
    people["member"].save()
    page = root.get("/account/").get_data(as_text=True)
    assert 'data-testid="impersonation-banner"' not in page and "root@example.com" in page
    assert Impersonation.get().ended_reason == "no_longer_allowed"


def test_signing_out_while_acting_ends_it_and_signs_the_admin_out(app, people):
    root = _signed_in(app, people["root"])
    _start(root, people["member"])
    root.sign_out()
    assert root.get("/account/").status_code == 302
    row = Impersonation.get()
    assert row.ended_reason == "admin_signed_out"
    mia_rows = AuditLog.select().where(AuditLog.action == "auth.signed_out")
    assert [r.actor_id for r in mia_rows] == [people["root"].id]  # the admin signed out, not Mia


def test_a_forged_or_borrowed_key_in_the_session_does_nothing(app, people):
    """The cookie is signed, and even a valid key only works in the session
    of the admin it was issued to: another admin, or the user, gains nothing."""
    root = _signed_in(app, people["root"])
    _start(root, people["member"])
    with root.http.session_transaction() as cookie:
        key = cookie["acting_as"]

    helper = _signed_in(app, people["support"])
    with helper.http.session_transaction() as cookie:
        cookie["acting_as"] = key  # a real key, borrowed
    page = helper.get("/account/").get_data(as_text=True)
    assert 'data-testid="impersonation-banner"' not in page and "help@example.com" in page

    owner = _signed_in(app, people["owner"])
    with owner.http.session_transaction() as cookie:
        cookie["acting_as"] = "made-up-key"
    assert "owner@acme.com" in owner.get("/account/").get_data(as_text=True)

    # A cookie signed with another secret is no session at all.
    from itsdangerous import URLSafeTimedSerializer

    forged = URLSafeTimedSerializer("not-the-secret", salt="cookie-session", signer_kwargs={
        "key_derivation": "hmac", "digest_method": __import__("hashlib").sha1}).dumps(
        {"_user_id": f"{people['root'].id}:0", "acting_as": key})
    stranger = Client(app)
    stranger.http.set_cookie("cg_session", forged)
    assert stranger.get("/account/").status_code == 302
    # the admin's own impersonation is untouched by all this
    assert 'data-testid="impersonation-banner"' in root.get("/account/").get_data(as_text=True)


def test_an_impersonation_ending_mid_request_does_not_run_the_users_change_as_the_admin(app, people, clock,
                                                                                       make_org):
    from costguardian.models import Organization

    own = make_org("RootCo", owner=people["root"])  # the admin's own organization must not be renamed instead
    root = _signed_in(app, people["root"])
    _start(root, people["owner"])
    clock.move_to(T0 + timedelta(minutes=61))
    response = root.post("/settings/", {"name": "Renamed", "time_zone": "UTC", "currency": "USD"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/")
    assert Organization.get_by_id(people["org"].id).name == "Acme"
    assert Organization.get_by_id(own.id).name == "RootCo"
    assert not AuditLog.select().where(AuditLog.action == "org.updated").exists()


def test_switching_impersonation_off_ends_the_running_ones(app, people):
    root = _signed_in(app, people["root"])
    _start(root, people["member"])
    settings.put("impersonation_enabled", False, Actor(user=people["root"]))
    page = root.get("/account/").get_data(as_text=True)
    assert 'data-testid="impersonation-banner"' not in page and "root@example.com" in page
    assert Impersonation.get().ended_reason == "switched_off"


def test_while_acting_provider_keys_billing_and_invitations_are_read_only(app, people):
    root = _signed_in(app, people["root"])
    _start(root, people["owner"])
    assert root.get("/providers/").status_code == 200  # may look
    assert root.post("/providers/", {"provider": "openai", "name": "x", "secret": "sk-x"}).status_code == 403
    assert root.post("/billing/cancel").status_code == 403
    assert root.post("/invitations/accept/some-token").status_code == 403
