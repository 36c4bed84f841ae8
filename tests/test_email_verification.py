"""Email verification: password sign-up sends a confirmation link, and only a
confirmed address joins organizations by their verified email domain."""
from __future__ import annotations

import re
import time
from urllib.parse import urlparse

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from costguardian.models import AuditLog, Membership, Notification, Organization, OutboxMessage, User
from costguardian.services.team import accounts, invitations, orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation
from tests.support import PASSWORD, SYSTEM, Client

LINK = re.compile(r"https?://[^\s]+(/account/verify-email/[A-Za-z0-9_.-]+)")


@pytest.fixture
def acme(make_user, make_org):
    """Acme, whose verified domain acme.com lets people join as viewers."""
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    orgs.update_join_domain(org, Actor(user=owner), "acme.com", "viewer")
    orgs.verify_join_domain(Organization.get_by_id(org.id), "acme.com", SYSTEM)
    return Organization.get_by_id(org.id), owner


def _signup(client, email="sam@acme.com"):
    return client.post("/signup", {"name": "Sam", "email": email, "password": PASSWORD, "confirm": PASSWORD})


def _link_for(email: str) -> str:
    message = (OutboxMessage.select().where(OutboxMessage.to_address == email)
               .order_by(OutboxMessage.id.desc()).first())
    assert message is not None, f"no email to {email}"
    assert message.subject == "Confirm your email address for Cost Guardian"
    return LINK.search(message.text_body).group(1)


def _old_token(app, user, seconds_ago: int) -> str:
    class Past(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - seconds_ago

    serializer = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt=accounts.VERIFY_SALT, signer=Past)
    return serializer.dumps({"u": user.id, "e": user.email})


def test_password_sign_up_does_not_join_and_sends_a_confirmation_link(client, acme):
    org, _ = acme
    response = _signup(client)
    assert response.status_code == 302 and response.headers["Location"] == "/orgs/new"
    sam = User.by_email("sam@acme.com")
    assert sam.email_verified_at is None and Membership.for_user(sam).count() == 0
    message = OutboxMessage.get(OutboxMessage.to_address == "sam@acme.com")
    assert "Please confirm that sam@acme.com is your address" in message.text_body
    assert "expires in 3 days" in message.text_body
    assert re.search(r'href="https?://[^"]+/account/verify-email/', message.html_body)
    banner = client.get("/orgs/new").get_data(as_text=True)
    assert "your account is ready" in banner and "open it to confirm the address" in banner
    page = client.get("/account/").get_data(as_text=True)
    assert "Not confirmed" in page and "Send the confirmation email again" in page


def test_following_the_emailed_link_confirms_and_joins(client, acme):
    org, owner = acme
    _signup(client)
    link = _link_for("sam@acme.com")
    response = client.get(link)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Your address is confirmed" in html
    assert "<strong>Acme</strong> as viewer" in html and "Continue to Cost Guardian" in html
    sam = User.by_email("sam@acme.com")
    assert sam.email_verified_at is not None
    assert Membership.of(sam, org).role == "viewer"
    assert AuditLog.get(AuditLog.action == "user.email_verified").detail == {"method": "link"}
    joined = AuditLog.get(AuditLog.action == "member.joined")
    assert joined.detail["via"] == "domain" and joined.actor_id == sam.id
    [told] = Notification.select().where(Notification.event_type == "member.joined")
    assert told.user_id == owner.id and "through the organization's email domain" in told.body
    assert "<h1>Acme</h1>" in client.get("/").get_data(as_text=True)  # the session is in the new organization
    assert "Confirmed" in client.get("/account/").get_data(as_text=True)
    # idempotent: a second visit (signed out, say) confirms nothing new and joins nothing new
    again = Client(client.app).get(link)
    assert again.status_code == 200 and "Your address is confirmed" in again.get_data(as_text=True)
    assert "Sign in" in again.get_data(as_text=True) and "as viewer" not in again.get_data(as_text=True)
    assert Membership.for_user(sam).count() == 1 and Notification.select().count() == 1
    assert AuditLog.select().where(AuditLog.action == "user.email_verified").count() == 1


def test_without_a_matching_domain_the_page_only_confirms(client, acme):
    _signup(client, email="pat@elsewhere.com")
    html = client.get(_link_for("pat@elsewhere.com")).get_data(as_text=True)
    assert "Your address is confirmed" in html and "let you join" not in html
    assert User.by_email("pat@elsewhere.com").email_verified_at is not None


@pytest.mark.parametrize("damage", ["tampered", "garbage", "expired", "other_address"])
def test_bad_links_are_refused_with_a_clear_page(app, client, acme, damage):
    org, _ = acme
    _signup(client)
    sam = User.by_email("sam@acme.com")
    link = _link_for("sam@acme.com")
    if damage == "tampered":
        link = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    elif damage == "garbage":
        link = "/account/verify-email/not-a-token"
    elif damage == "expired":
        link = "/account/verify-email/" + _old_token(app, sam, 3 * 24 * 3600 + 60)
    else:  # a token for an address the account no longer has
        other = Client(app)
        _signup(other, email="sue@acme.com")
        sue = User.by_email("sue@acme.com")
        link = "/account/verify-email/" + URLSafeTimedSerializer(
            app.config["SECRET_KEY"], salt=accounts.VERIFY_SALT).dumps({"u": sue.id, "e": "sam@acme.com"})
    response = Client(app).get(link)
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    expected = {"tampered": "not valid", "garbage": "not valid", "expired": "has expired",
                "other_address": "no longer uses"}[damage]
    assert "This confirmation link does not work" in html and expected in html
    assert User.select().where(User.email_verified_at.is_null(False)).count() == 0
    assert Membership.select().where(Membership.organization == org).count() == 1  # the owner only


def test_a_link_just_inside_three_days_still_works(app, client, acme):
    _signup(client)
    sam = User.by_email("sam@acme.com")
    assert Client(app).get("/account/verify-email/" + _old_token(app, sam, 3 * 24 * 3600 - 60)).status_code == 200


def test_sign_in_of_an_unconfirmed_user_does_not_join(client, acme, make_user):
    org, _ = acme
    make_user("una@acme.com")
    client.sign_in("una@acme.com")
    una = User.by_email("una@acme.com")
    assert Membership.of(una, org) is None
    accounts.mark_email_verified(una, SYSTEM, method="test")
    client.sign_out()
    client.sign_in("una@acme.com")  # confirmed since: the next sign-in joins
    assert Membership.of(una, org).role == "viewer"


def test_the_service_refuses_a_confirmed_or_disabled_user(app_ctx, acme, make_user):
    user = make_user("dee@acme.com")
    user.is_disabled = True
    user.save()
    with pytest.raises(RuleViolation, match="disabled"):
        accounts.send_verification_email(user, lambda t: t, SYSTEM)
    with pytest.raises(RuleViolation, match="disabled"):
        accounts.verify_email(accounts.verification_token(user), SYSTEM)
    ok = make_user("ok@acme.com")
    accounts.mark_email_verified(ok, SYSTEM, method="test")
    with pytest.raises(RuleViolation, match="already confirmed"):
        accounts.send_verification_email(ok, lambda t: t, SYSTEM)


def test_oidc_with_a_verified_email_marks_it_and_joins(client, acme, oidc_provider):
    org, owner = acme
    oidc_provider.set_user("g-acme-1", email="gail@acme.com", email_verified=True, name="Gail")
    start = client.get("/login/oidc")
    parts = urlparse(oidc_provider.authorize(start.headers["Location"], "g-acme-1"))
    assert client.get(f"{parts.path}?{parts.query}").status_code == 302
    gail = User.by_email("gail@acme.com")
    assert gail.email_verified_at is not None
    assert AuditLog.get(AuditLog.action == "user.email_verified").detail == {"method": "oidc"}
    assert Membership.of(gail, org).role == "viewer"
    assert Notification.get(Notification.event_type == "member.joined").user_id == owner.id


def test_oidc_without_email_verified_neither_marks_nor_joins(client, acme, oidc_provider):
    org, _ = acme
    oidc_provider.set_user("g-acme-2", email="shady@acme.com", email_verified=False)
    start = client.get("/login/oidc")
    parts = urlparse(oidc_provider.authorize(start.headers["Location"], "g-acme-2"))
    client.get(f"{parts.path}?{parts.query}")
    shady = User.by_email("shady@acme.com")
    assert shady.email_verified_at is None and Membership.of(shady, org) is None


def test_signing_up_on_an_invitation_page_does_not_confirm_the_address(app, acme, make_user, make_org):
    """An invitation link can leak (an organization's template override can
    print accept_url), so whoever holds it must not get the invitee's address
    confirmed, nor through it a seat in the organization of the address's domain."""
    acme_org, _ = acme
    vendor_owner = make_user("owner@vendor.com")
    vendor = make_org("Vendor", owner=vendor_owner)
    invitations.invite(vendor, "ivy@acme.com", "member", Actor(user=vendor_owner))
    message = OutboxMessage.get(OutboxMessage.to_address == "ivy@acme.com")
    token = re.search(r"/invitations/accept/([A-Za-z0-9_-]+)", message.text_body).group(1)
    client = Client(app)
    response = client.post(f"/invitations/accept/{token}", {"signup-name": "Ivy", "signup-password": PASSWORD,
                                                            "signup-confirm": PASSWORD})
    assert response.status_code == 302
    ivy = User.by_email("ivy@acme.com")
    assert ivy.email_verified_at is None and Membership.of(ivy, vendor).role == "member"  # the invited role
    assert Membership.of(ivy, acme_org) is None  # no domain join for an unconfirmed address
    assert AuditLog.select().where(AuditLog.action == "user.email_verified").count() == 0
    client.sign_out()
    client.sign_in("ivy@acme.com")
    assert Membership.of(ivy, acme_org) is None
    assert "Not confirmed" in client.get("/account/").get_data(as_text=True)


def test_resend_sends_a_new_link_and_is_rate_limited(client, acme):
    org, _ = acme
    _signup(client)
    first = _link_for("sam@acme.com")
    response = client.post("/account/verify-email", htmx=True)
    assert response.status_code == 200 and "Confirmation email sent to sam@acme.com" in response.headers["HX-Trigger"]
    assert 'id="email-status"' in response.get_data(as_text=True)
    assert "A new confirmation email is on its way" in response.get_data(as_text=True)
    assert OutboxMessage.select().where(OutboxMessage.to_address == "sam@acme.com").count() == 2
    assert AuditLog.select().where(AuditLog.action == "user.verification_sent").count() == 2
    assert client.post("/account/verify-email", htmx=True).status_code == 200
    assert client.post("/account/verify-email", htmx=True).status_code == 200
    limited = client.post("/account/verify-email", htmx=True)
    assert limited.status_code == 429 and "showToast" in limited.headers["HX-Trigger"]
    assert OutboxMessage.select().where(OutboxMessage.to_address == "sam@acme.com").count() == 4
    # every link sent works (they are signed, not stored)
    assert client.get(first).status_code == 200
    assert Membership.of(User.by_email("sam@acme.com"), org).role == "viewer"


def test_resend_for_a_confirmed_address_says_so(client, make_user):
    user = make_user("cy@example.com")
    accounts.mark_email_verified(user, SYSTEM, method="test")
    client.sign_in("cy@example.com")
    response = client.post("/account/verify-email", htmx=True)
    assert response.status_code == 200 and "already confirmed" in response.headers["HX-Trigger"]
    assert OutboxMessage.select().count() == 0


def test_resend_needs_a_signed_in_user_and_csrf(client, app_ctx):
    assert client.post("/account/verify-email", csrf=False).status_code in (302, 400)
    response = client.http.post("/account/verify-email")
    assert response.status_code == 302 and response.headers["Location"].startswith("/login")


def test_a_password_reset_proves_the_mailbox(app_ctx, make_user):
    import re

    from costguardian.models import OutboxMessage, User
    from costguardian.services.team import accounts
    from tests.support import SYSTEM

    user = make_user("reset@acme.com")
    assert user.email_verified_at is None
    accounts.start_password_reset(user.email, lambda t: f"https://cg.example.com/reset/{t}", 60, SYSTEM)
    body = OutboxMessage.select().order_by(OutboxMessage.id.desc()).first().text_body
    token = re.search(r"/reset/([A-Za-z0-9_\-]+)", body).group(1)
    accounts.reset_password(token, "a-much-better-passphrase-42", SYSTEM)
    assert User.get_by_id(user.id).email_verified_at is not None
