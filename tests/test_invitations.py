"""Invitations: inviting many addresses (a result per line), resending,
revoking, accepting as a new or existing account, and joining by domain."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest

from costguardian import clock, timefmt
from costguardian.models import (AuditLog, Delivery, Department, DomainJoin, Invitation, Membership, Notification,
                                 Organization, OutboxMessage, User)
from costguardian.services.team import accounts, invitations, orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, RuleViolation, ValidationError
from tests.support import PASSWORD, SYSTEM, Client, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

LINK = re.compile(r"/invitations/accept/([A-Za-z0-9_-]+)")


def _token_for(email: str) -> str:
    message = (OutboxMessage.select().where(OutboxMessage.to_address == email)
               .order_by(OutboxMessage.id.desc()).first())
    return LINK.search(message.text_body).group(1)


@pytest.fixture
def team(make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    return org, owner, Actor(user=owner)


# --- inviting ------------------------------------------------------------------

def test_invite_reports_each_line(team, make_user):
    org, owner, actor = team
    add_member(org, make_user("member@acme.com"), "member")
    invitations.invite(org, "pending@acme.com", "member", actor)
    text = "new@acme.com, not-an-address\nNEW@acme.com; member@acme.com   pending@acme.com\n\nsecond@acme.com"
    results = invitations.invite(org, text, "viewer", actor)
    assert [(r.address, r.status) for r in results] == [
        ("new@acme.com", "invited"), ("not-an-address", "invalid"), ("NEW@acme.com", "duplicate"),
        ("member@acme.com", "member"), ("pending@acme.com", "pending"), ("second@acme.com", "invited")]
    assert "not a valid email" in results[1].message
    assert Invitation.in_org(org).count() == 3
    sent = OutboxMessage.select().where(OutboxMessage.to_address == "new@acme.com").get()
    assert "Olga Owner invited you to Acme" in sent.subject and "/invitations/accept/" in sent.text_body
    assert "as viewer" in sent.text_body and "owner@acme.com" in sent.text_body
    row = AuditLog.select().where(AuditLog.action == "invitation.sent").order_by(AuditLog.id.desc()).first()
    assert row.detail["email"] == "second@acme.com" and row.detail["role"] == "viewer"


def test_only_the_hash_of_the_token_is_stored(team):
    org, _, actor = team
    invitations.invite(org, "new@acme.com", "member", actor)
    token = _token_for("new@acme.com")
    invitation = Invitation.get(Invitation.email == "new@acme.com")
    assert invitation.token_hash == invitations.token_hash(token) and token not in invitation.token_hash
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)


def test_admin_cannot_invite_an_owner(team, make_user):
    org, _, _ = team
    admin = make_user("adm@acme.com")
    add_member(org, admin, "admin")
    with pytest.raises(NotPermitted, match="cannot grant the owner role"):
        invitations.invite(org, "boss@acme.com", "owner", Actor(user=admin))
    assert invitations.invite(org, "ok@acme.com", "admin", Actor(user=admin))[0].ok


def test_members_without_manage_cannot_invite(team, make_user):
    org, _, _ = team
    member = make_user("m@acme.com")
    add_member(org, member, "member")
    with pytest.raises(NotPermitted):
        invitations.invite(org, "x@acme.com", "viewer", Actor(user=member))


def test_invite_validates_role_department_and_list(team, make_org, make_user):
    org, _, actor = team
    with pytest.raises(ValidationError) as exc:
        invitations.invite(org, "a@acme.com", "emperor", actor)
    assert "role" in exc.value.errors
    with pytest.raises(ValidationError) as exc:
        invitations.invite(org, " ,; \n", "member", actor)
    assert "emails" in exc.value.errors
    other = make_org("Other", owner=make_user("boss@other.com"))
    foreign = Department.create(organization=other, name="Theirs")
    with pytest.raises(ValidationError) as exc:
        invitations.invite(org, "a@acme.com", "member", actor, department=foreign)
    assert "department" in exc.value.errors


def test_resend_issues_a_new_token_and_kills_the_old_link(team):
    org, _, actor = team
    invitations.invite(org, "new@acme.com", "member", actor)
    old = _token_for("new@acme.com")
    invitation = Invitation.get(Invitation.email == "new@acme.com")
    Invitation.update(expires_at=clock.now() - timedelta(hours=1)).where(Invitation.id == invitation.id).execute()
    assert Invitation.get_by_id(invitation.id).status() == "expired"
    invitations.resend(Invitation.get_by_id(invitation.id), actor)
    new = _token_for("new@acme.com")
    assert new != old and invitations.by_token(old) is None
    assert Invitation.get_by_id(invitation.id).status() == "pending"
    assert AuditLog.select().where(AuditLog.action == "invitation.resent").count() == 1


def test_revoked_expired_and_used_tokens_are_refused(team, make_user):
    org, _, actor = team
    invitations.invite(org, "a@acme.com\nb@acme.com\nc@acme.com", "member", actor)
    ta, tb, tc = (_token_for(e) for e in ("a@acme.com", "b@acme.com", "c@acme.com"))
    invitations.revoke(Invitation.get(Invitation.email == "a@acme.com"), actor)
    Invitation.update(expires_at=clock.now() - timedelta(seconds=1)).where(Invitation.email == "b@acme.com").execute()
    c = make_user("c@acme.com")
    with pytest.raises(RuleViolation, match="revoked"):
        invitations.accept(ta, make_user("a@acme.com"), SYSTEM)
    with pytest.raises(RuleViolation, match="expired"):
        invitations.accept(tb, make_user("b@acme.com"), SYSTEM)
    invitations.accept(tc, c, Actor(user=c))
    with pytest.raises(RuleViolation, match="already been used"):
        invitations.accept(tc, c, Actor(user=c))
    with pytest.raises(RuleViolation, match="not valid"):
        invitations.accept("nonsense", c, Actor(user=c))
    with pytest.raises(RuleViolation):
        invitations.revoke(Invitation.get(Invitation.email == "c@acme.com"), actor)  # accepted: nothing to revoke


def test_an_invitation_for_another_address_is_refused(team, make_user):
    org, _, actor = team
    invitations.invite(org, "ana@acme.com", "member", actor)
    eve = make_user("eve@evil.com")
    with pytest.raises(NotPermitted) as exc:
        invitations.accept(_token_for("ana@acme.com"), eve, Actor(user=eve))
    assert exc.value.message.startswith("This invitation is for a…@acme.com; you are signed in as eve@evil.com")
    assert Membership.of(eve, org) is None
    assert Invitation.get(Invitation.email == "ana@acme.com").status() == "pending"


def test_accepting_adds_the_member_with_role_and_department(team, make_user):
    org, _, actor = team
    research = Department.create(organization=org, name="Research")
    invitations.invite(org, "ana@acme.com", "viewer", actor, department=research)
    ana = make_user("ana@acme.com")
    membership = invitations.accept(_token_for("ana@acme.com"), ana, Actor(user=ana))
    assert (membership.role, membership.department_id) == ("viewer", research.id)
    invitation = Invitation.get(Invitation.email == "ana@acme.com")
    assert invitation.status() == "accepted" and invitation.accepted_by_id == ana.id
    joined = AuditLog.get(AuditLog.action == "member.joined")
    assert joined.actor_id == ana.id and joined.detail["via"] == "invitation"


def test_the_invitation_email_goes_through_notify_and_the_deliveries_log(team):
    org, _, actor = team
    research = Department.create(organization=org, name="Research")
    invitations.invite(org, "ana@acme.com", "viewer", actor, department=research)
    [delivery] = Delivery.in_org(org).where(Delivery.event_type == "member.invited")
    assert (delivery.channel, delivery.recipient, delivery.status) == ("email", "ana@acme.com", "sent")
    message = OutboxMessage.get_by_id(delivery.message_id)
    text = message.text_body
    assert message.subject == "[Acme] Olga Owner invited you to Acme"
    assert "Olga Owner invited you to join Acme on Cost Guardian as viewer, in the Research department." in text
    assert "The invitation comes from owner@acme.com." in text
    invitation = Invitation.get(Invitation.email == "ana@acme.com")
    assert f"expires on {timefmt.format_time(invitation.expires_at, org)}" in text  # the organization's zone
    assert "works only for that address" in text and "If you did not expect this, ignore this email." in text
    assert re.search(r'<a href="https?://[^"]+/invitations/accept/[A-Za-z0-9_-]+">', message.html_body)
    assert "unsubscribe" not in text.lower()  # not a member: no preferences to change
    assert Notification.select().count() == 0  # email only: nobody in the organization gets a notification
    invitations.resend(invitation, actor)
    assert Delivery.in_org(org).where(Delivery.event_type == "member.invited").count() == 2


def test_accepting_does_not_confirm_the_address_and_tells_the_managers(team, make_user):
    org, owner, actor = team
    admin = make_user("adm@acme.com", name="Adam Admin")
    add_member(org, admin, "admin")
    member = make_user("mem@acme.com")
    add_member(org, member, "member")
    invitations.invite(org, "ana@acme.com", "admin", actor)
    ana = make_user("ana@acme.com", name="Ana")
    assert ana.email_verified_at is None
    invitations.accept(_token_for("ana@acme.com"), ana, Actor(user=ana))
    # holding the token is no proof of the mailbox: it can leak (a template override can print accept_url)
    assert User.get_by_id(ana.id).email_verified_at is None
    assert AuditLog.select().where(AuditLog.action == "user.email_verified").count() == 0
    told = Notification.select().where(Notification.event_type == "member.joined")
    assert sorted(n.user_id for n in told) == sorted([owner.id, admin.id])  # managers, not Ana herself
    assert {n.title for n in told} == {"Ana joined Acme"}
    assert {n.body for n in told} == {"Ana (ana@acme.com) joined Acme as admin by accepting an invitation."}
    assert all(n.in_app and not n.email and n.link == "/members/" for n in told)


# --- views ------------------------------------------------------------------------

def test_invitations_page_invites_with_per_line_results(owner_client):
    client, _, org = owner_client
    response = client.post("/invitations/", {"emails": "ana@acme.com\nnope\nana@acme.com", "role": "member",
                                             "department": ""}, htmx=True)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-status="invited"' in html and 'data-status="invalid"' in html and 'data-status="duplicate"' in html
    assert "Invalid address" in html and 'hx-swap-oob="afterbegin:#invitations tbody"' in html
    assert "1 invitation sent; 2 not sent" in response.headers["HX-Trigger"]
    page = client.get("/invitations/").get_data(as_text=True)
    assert "ana@acme.com" in page and "Pending" in page


def test_admin_page_offers_no_owner_and_refuses_it(app, owner_client, make_user):
    _, _, org = owner_client
    admin = make_user("adm@acme.com")
    add_member(org, admin, "admin")
    client = Client(app)
    client.sign_in(admin.email)
    page = client.get("/invitations/").get_data(as_text=True)
    assert 'value="owner"' not in page and 'value="admin"' in page
    response = client.post("/invitations/", {"emails": "x@acme.com", "role": "owner"}, htmx=True)
    assert response.status_code == 422 and Invitation.select().count() == 0


def test_viewer_cannot_see_or_send_invitations(app, owner_client, make_user):
    _, _, org = owner_client
    viewer = make_user("vi@acme.com")
    add_member(org, viewer, "viewer")
    client = Client(app)
    client.sign_in(viewer.email)
    assert client.get("/invitations/").status_code == 403
    assert client.post("/invitations/", {"emails": "x@acme.com", "role": "viewer"}).status_code == 403


def test_resend_and_revoke_through_the_page_and_tenant_isolation(owner_client, make_org, make_user):
    client, owner, org = owner_client
    invitations.invite(org, "ana@acme.com", "member", Actor(user=owner))
    invitation = Invitation.get(Invitation.email == "ana@acme.com")
    response = client.post(f"/invitations/{invitation.id}/resend", htmx=True)
    assert response.status_code == 200 and f'id="invitation-{invitation.id}"' in response.get_data(as_text=True)
    response = client.post(f"/invitations/{invitation.id}/revoke", htmx=True)
    assert response.status_code == 200 and "Revoked" in response.get_data(as_text=True)
    assert client.post(f"/invitations/{invitation.id}/revoke", htmx=True).status_code == 422
    boss = make_user("boss@other.com")
    other = make_org("Other", owner=boss)
    invitations.invite(other, "x@other.com", "member", Actor(user=boss))
    theirs = Invitation.get(Invitation.email == "x@other.com")
    assert client.post(f"/invitations/{theirs.id}/revoke", htmx=True).status_code == 404
    assert client.post(f"/invitations/{theirs.id}/resend", htmx=True).status_code == 404
    assert Invitation.get_by_id(theirs.id).status() == "pending"


def test_a_new_user_signs_up_on_the_accept_page(app, team):
    org, _, actor = team
    invitations.invite(org, "ana@acme.com", "viewer", actor)
    token = _token_for("ana@acme.com")
    client = Client(app)
    page = client.get(f"/invitations/accept/{token}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Olga Owner" in html and "Acme" in html and "viewer" in html
    assert "Create account and join" in html
    bad = client.post(f"/invitations/accept/{token}", {"signup-password": "short", "signup-confirm": "short"})
    assert bad.status_code == 422
    response = client.post(f"/invitations/accept/{token}", {"signup-name": "Ana", "signup-password": PASSWORD,
                                                            "signup-confirm": PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/onboarding/welcome"
    membership = Membership.get(Membership.organization == org, Membership.role == "viewer")
    assert membership.user.email == "ana@acme.com" and membership.user.name == "Ana"
    assert membership.user.email_verified_at is None  # the link could have leaked: it proves nothing
    from costguardian.models import OutboxMessage

    assert OutboxMessage.select().where(OutboxMessage.to_address == "ana@acme.com",
                                        OutboxMessage.subject.contains("onfirm")).exists()
    welcome = client.get("/onboarding/welcome").get_data(as_text=True)
    assert "Welcome to Acme. You joined as viewer." in welcome and "Your role: <strong>viewer</strong>" in welcome
    # used: the link now says so
    again = Client(app).get(f"/invitations/accept/{token}")
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)


def test_an_existing_user_signs_in_on_the_accept_page(app, team, make_user, make_org):
    org, _, actor = team
    ben = make_user("ben@acme.com")
    make_org("Bens Own", owner=ben)
    invitations.invite(org, "ben@acme.com", "member", actor)
    token = _token_for("ben@acme.com")
    client = Client(app)
    html = client.get(f"/invitations/accept/{token}").get_data(as_text=True)
    assert "Sign in and join" in html
    wrong = client.post(f"/invitations/accept/{token}", {"signin-password": "wrong password!!"})
    assert wrong.status_code == 422 and "not right" in wrong.get_data(as_text=True)
    response = client.post(f"/invitations/accept/{token}", {"signin-password": PASSWORD})
    assert response.status_code == 302
    assert Membership.of(ben, org).role == "member"
    home = client.get("/").get_data(as_text=True)
    assert "<h1>Acme</h1>" in home or "Acme" in home  # the session switched to the new organization


def test_signed_in_with_another_email_gets_a_clear_refusal(app, team, make_user):
    org, _, actor = team
    invitations.invite(org, "ana@acme.com", "member", actor)
    token = _token_for("ana@acme.com")
    eve = make_user("eve@example.com")
    client = Client(app)
    client.sign_in(eve.email)
    response = client.get(f"/invitations/accept/{token}")
    assert response.status_code == 403
    assert "This invitation is for a…@acme.com; you are signed in as eve@example.com" in response.get_data(as_text=True)
    assert client.post(f"/invitations/accept/{token}").status_code == 403
    assert Membership.of(eve, org) is None


def test_signed_in_invited_user_joins_with_one_click(app, team, make_user):
    org, _, actor = team
    ana = make_user("ana@acme.com")
    invitations.invite(org, "ana@acme.com", "member", actor)
    token = _token_for("ana@acme.com")
    client = Client(app)
    client.sign_in(ana.email)
    assert "Join Acme" in client.get(f"/invitations/accept/{token}").get_data(as_text=True)
    assert client.post(f"/invitations/accept/{token}").status_code == 302
    assert Membership.of(ana, org).role == "member"


@pytest.mark.parametrize("state", ["revoked", "expired", "unknown"])
def test_unusable_links_get_a_clear_page(app, team, state):
    org, _, actor = team
    invitations.invite(org, "ana@acme.com", "member", actor)
    token = _token_for("ana@acme.com")
    if state == "revoked":
        invitations.revoke(Invitation.get(Invitation.email == "ana@acme.com"), actor)
    elif state == "expired":
        Invitation.update(expires_at=clock.now() - timedelta(minutes=1)).execute()
    else:
        token = "x" * 43
    response = Client(app).get(f"/invitations/accept/{token}")
    assert response.status_code == 410
    assert {"revoked": "was revoked", "expired": "has expired", "unknown": "not valid"}[state] in \
        response.get_data(as_text=True)


def test_oidc_sign_in_from_the_accept_page_joins(app, team, oidc_provider):
    org, _, actor = team
    invitations.invite(org, "ana@acme.com", "member", actor)
    token = _token_for("ana@acme.com")
    client = Client(app)
    assert client.get(f"/invitations/accept/{token}").status_code == 200
    with client.http.session_transaction() as session:
        assert session["invitation_token"] == token
    user = _oidc_sign_in(client, oidc_provider, "ana@acme.com", verified=True)
    assert Membership.of(user, org).role == "member"
    with client.http.session_transaction() as session:
        assert "invitation_token" not in session


def test_an_unusable_invitation_is_dropped_from_the_session_and_next_is_kept(app, team, oidc_provider):
    from urllib.parse import urlparse

    org, _, actor = team
    invitations.invite(org, "ana@acme.com", "member", actor)
    token = _token_for("ana@acme.com")
    client = Client(app)
    assert client.get(f"/invitations/accept/{token}").status_code == 200
    invitations.revoke(Invitation.get(Invitation.email == "ana@acme.com"), actor)  # while Ana is at the provider
    oidc_provider.set_user("sub-ana", email="ana@acme.com", email_verified=True)
    start = client.get("/login/oidc?next=/account/")
    parts = urlparse(oidc_provider.authorize(start.headers["Location"], "sub-ana"))
    response = client.get(f"{parts.path}?{parts.query}")
    assert response.status_code == 302 and response.headers["Location"] == "/account/"
    with client.http.session_transaction() as session:
        assert "invitation_token" not in session
    assert "was revoked" in client.get("/account/").get_data(as_text=True)
    assert Membership.for_user(User.by_email("ana@acme.com")).count() == 0
    # the next sign-in does not try the invitation again, and keeps its `next`
    client.sign_out()
    start = client.get("/login/oidc?next=/account/")
    parts = urlparse(oidc_provider.authorize(start.headers["Location"], "sub-ana"))
    assert client.get(f"{parts.path}?{parts.query}").headers["Location"] == "/account/"
    assert "was revoked" not in client.get("/account/").get_data(as_text=True)


def _oidc_sign_in(client, provider, email, verified=True):
    from urllib.parse import urlparse

    from costguardian.models import User

    provider.set_user(f"sub-{email}", email=email, email_verified=verified)
    start = client.get("/login/oidc")
    assert start.status_code == 302
    parts = urlparse(provider.authorize(start.headers["Location"], f"sub-{email}"))
    response = client.get(f"{parts.path}?{parts.query}")
    assert response.status_code == 302, response.get_data(as_text=True)
    return User.by_email(email)


# --- joining by email domain ---------------------------------------------------------

def test_domain_join_needs_a_verified_domain_and_a_confirmed_address(team, make_user):
    org, owner, actor = team
    orgs.update_join_domain(org, actor, "Acme.com", "viewer")
    org = Organization.get_by_id(org.id)
    assert (org.join_domain, org.join_domain_role, org.join_domain_verified_at) == ("acme.com", "viewer", None)
    early = make_user("early@acme.com")
    accounts.mark_email_verified(early, SYSTEM, method="test")
    accounts.authenticate("early@acme.com", PASSWORD, SYSTEM)
    assert Membership.of(early, org) is None  # domain not verified: nobody joins
    orgs.verify_join_domain(org, "acme.com", SYSTEM)
    late = make_user("late@acme.com")
    accounts.authenticate("late@acme.com", PASSWORD, SYSTEM)
    assert Membership.of(late, org) is None  # address not confirmed: no join
    accounts.authenticate("early@acme.com", PASSWORD, SYSTEM)  # confirmed: joins at the next sign-in
    assert Membership.of(early, org).role == "viewer"
    _, joined = accounts.verify_email(accounts.verification_token(late), SYSTEM)
    assert [m.organization_id for m in joined] == [org.id] and Membership.of(late, org).role == "viewer"
    stranger = make_user("x@elsewhere.com")
    accounts.mark_email_verified(stranger, SYSTEM, method="test")
    accounts.authenticate("x@elsewhere.com", PASSWORD, SYSTEM)
    assert Membership.for_user(stranger).count() == 0
    assert AuditLog.select().where(AuditLog.action == "member.joined").count() == 2
    told = Notification.select().where(Notification.event_type == "member.joined", Notification.user == owner)
    assert sorted(n.body for n in told) == [
        "early@acme.com joined Acme as viewer through the organization's email domain.",
        "late@acme.com joined Acme as viewer through the organization's email domain."]
    # changing the domain drops the verification
    orgs.update_join_domain(org, actor, "acme.io", "viewer")
    assert Organization.get_by_id(org.id).join_domain_verified_at is None


def test_domain_rule_validation(team, make_user):
    org, _, actor = team
    for domain, field in (("gmail.com", "join_domain"), ("not a domain", "join_domain")):
        with pytest.raises(ValidationError) as exc:
            orgs.update_join_domain(org, actor, domain, "member")
        assert field in exc.value.errors
    with pytest.raises(ValidationError) as exc:
        orgs.update_join_domain(org, actor, "acme.com", "owner")
    assert "join_domain_role" in exc.value.errors
    orgs.update_join_domain(org, actor, "", "member")
    assert Organization.get_by_id(org.id).join_domain is None


def test_oidc_domain_join_only_with_a_verified_email(app, team, oidc_provider):
    org, _, actor = team
    orgs.update_join_domain(org, actor, "acme.com", "member")
    orgs.verify_join_domain(Organization.get_by_id(org.id), "acme.com", SYSTEM)
    unverified = _oidc_sign_in(Client(app), oidc_provider, "shady@acme.com", verified=False)
    assert Membership.of(unverified, org) is None
    verified = _oidc_sign_in(Client(app), oidc_provider, "real@acme.com", verified=True)
    assert Membership.of(verified, org).role == "member"


def test_settings_page_saves_the_domain_rule(owner_client):
    client, _, org = owner_client
    html = client.get("/settings/").get_data(as_text=True)
    assert "Join by email domain" in html
    response = client.post("/settings/join-domain", {"join_domain": "acme.com", "join_domain_role": "viewer"},
                           htmx=True)
    assert response.status_code == 200 and "Not verified yet" in response.get_data(as_text=True)
    assert Organization.get_by_id(org.id).join_domain == "acme.com"
    bad = client.post("/settings/join-domain", {"join_domain": "gmail.com", "join_domain_role": "viewer"}, htmx=True)
    assert bad.status_code == 422 and "Anyone can have an address" in bad.get_data(as_text=True)


def test_verify_domain_cli(app, team):
    org, _, _ = team
    result = app.test_cli_runner().invoke(args=["verify-domain", org.slug, "acme.com"])
    assert result.exit_code == 0, result.output
    org = Organization.get_by_id(org.id)
    assert org.join_domain == "acme.com" and org.join_domain_verified_at is not None
    assert app.test_cli_runner().invoke(args=["verify-domain", "nope", "acme.com"]).exit_code != 0


def test_domain_join_happens_once_so_a_removal_sticks(team, make_user):
    org, owner, actor = team
    orgs.update_join_domain(org, actor, "acme.com", "viewer")
    orgs.verify_join_domain(Organization.get_by_id(org.id), "acme.com", SYSTEM)
    dora = make_user("dora@acme.com")
    accounts.mark_email_verified(dora, SYSTEM, method="test")
    [joined] = orgs.join_by_email_domain(dora, SYSTEM)
    assert [r.user_id for r in DomainJoin.in_org(org)] == [dora.id]
    orgs.remove_member(joined, actor)
    # neither a sign-in nor following the confirmation link again brings her back
    assert accounts.authenticate("dora@acme.com", PASSWORD, SYSTEM) is not None
    _, again = accounts.verify_email(accounts.verification_token(dora), SYSTEM)
    assert again == [] and orgs.join_by_email_domain(dora, SYSTEM) == []
    assert Membership.of(dora, org) is None
    assert AuditLog.select().where(AuditLog.action == "member.joined").count() == 1
    # someone who joined by invitation and left is not added by the domain either
    invitations.invite(org, "ivan@acme.com", "member", actor)
    ivan = make_user("ivan@acme.com")
    membership = invitations.accept(_token_for("ivan@acme.com"), ivan, Actor(user=ivan))
    orgs.remove_member(membership, Actor(user=ivan))
    accounts.mark_email_verified(ivan, SYSTEM, method="test")
    assert orgs.join_by_email_domain(ivan, SYSTEM) == [] and Membership.of(ivan, org) is None
    row = DomainJoin.in_org(org).where(DomainJoin.user == ivan).get()
    assert row.joined_at == membership.created_at
    # a new invitation still brings a removed person back, and removing again is fine
    invitations.invite(org, "dora@acme.com", "member", actor)
    back = invitations.accept(_token_for("dora@acme.com"), dora, Actor(user=dora))
    assert back.role == "member"
    orgs.remove_member(back, actor)
    assert DomainJoin.in_org(org).where(DomainJoin.user == dora).count() == 1


def test_domain_join_does_not_bring_back_a_member_removed_on_the_members_page(app, owner_client, make_user):
    client, _, org = owner_client
    orgs.update_join_domain(org, SYSTEM, "acme.com", "member")
    orgs.verify_join_domain(Organization.get_by_id(org.id), "acme.com", SYSTEM)
    eve = make_user("eve@acme.com")
    accounts.mark_email_verified(eve, SYSTEM, method="test")
    eve_client = Client(app)
    eve_client.sign_in("eve@acme.com")
    membership = Membership.of(eve, org)
    assert membership.role == "member"
    response = client.post("/members/bulk", {"action": "remove", "confirm": "1", "ids": [membership.id]}, htmx=True)
    assert "was removed" in response.get_data(as_text=True)
    eve_client.sign_out()
    eve_client.sign_in("eve@acme.com")
    assert Membership.of(eve, org) is None
