"""Accounts service: sign-up, password sign-in, sessions, password reset and
change, sign-in through an OIDC provider. No HTTP: the services directly."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from argon2 import PasswordHasher

from costguardian import clock
from costguardian.models import AuditLog, ExternalIdentity, OutboxMessage, PasswordResetToken, User
from costguardian.services.team import accounts
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation, ValidationError
from tests.support import PASSWORD, SYSTEM

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

WEB = Actor(user=None, ip="203.0.113.7", user_agent="pytest-browser")
ISSUER = "https://accounts.example.com"
NEW_PASSWORD = "a brand new passphrase"


def audit_rows(action: str) -> list[AuditLog]:
    return list(AuditLog.select().where(AuditLog.action == action).order_by(AuditLog.id))


# User == User compares Flask-Login ids, which include the session version;
# tests compare `.id` where a password change bumped it.
def fresh(user: User) -> User:
    return User.get_by_id(user.id)


# --- sign-up --------------------------------------------------------------------

def test_sign_up_stores_a_lower_case_email_and_an_argon2_hash(app_ctx):
    user = accounts.sign_up("  Alice.Smith@Example.COM ", "  Alice Smith  ", PASSWORD, WEB)

    stored = fresh(user)
    assert stored.email == "alice.smith@example.com"
    assert stored.name == "Alice Smith"
    assert stored.password_hash != PASSWORD
    assert PASSWORD not in stored.password_hash
    assert stored.password_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(stored.password_hash, PASSWORD)
    assert stored.is_superadmin is False and stored.is_disabled is False
    assert stored.session_version == 0 and stored.last_login_at is None

    [row] = audit_rows("user.signed_up")
    assert row.actor_id == user.id  # the new user is the actor of their own sign-up
    assert (row.target_type, row.target_id) == ("user", str(user.id))
    assert row.detail == {"method": "password"}
    assert (row.ip, row.user_agent) == ("203.0.113.7", "pytest-browser")


def test_sign_up_with_an_existing_email_in_any_case_is_refused(app_ctx, make_user):
    make_user("alice@example.com")

    with pytest.raises(ValidationError) as caught:
        accounts.sign_up("ALICE@example.com", "", PASSWORD, SYSTEM)

    assert set(caught.value.errors) == {"email"}
    assert User.select().count() == 1


@pytest.mark.parametrize("email", ["", "not-an-email", "alice@", "@example.com", "a b@example.com"])
def test_sign_up_with_an_invalid_email_is_refused(app_ctx, email):
    with pytest.raises(ValidationError) as caught:
        accounts.sign_up(email, "", PASSWORD, SYSTEM)

    assert set(caught.value.errors) == {"email"}
    assert User.select().count() == 0


@pytest.mark.parametrize("password", ["", "short", "x" * (accounts.MIN_PASSWORD_LENGTH - 1),
                                      "x" * (accounts.MAX_PASSWORD_LENGTH + 1)])
def test_sign_up_with_a_password_of_the_wrong_length_is_refused(app_ctx, password):
    with pytest.raises(ValidationError) as caught:
        accounts.sign_up("alice@example.com", "", password, SYSTEM)

    assert set(caught.value.errors) == {"password"}
    assert User.select().count() == 0


@pytest.mark.parametrize("password", ["x" * accounts.MIN_PASSWORD_LENGTH, "x" * accounts.MAX_PASSWORD_LENGTH])
def test_sign_up_accepts_passwords_at_the_length_limits(app_ctx, password):
    user = accounts.sign_up("alice@example.com", "", password, SYSTEM)

    assert accounts.authenticate("alice@example.com", password, SYSTEM) == user


@pytest.mark.parametrize("password", ["alice@example.com", "ALICE@EXAMPLE.COM", " alice@example.com "])
def test_sign_up_with_the_email_as_password_is_refused(app_ctx, password):
    with pytest.raises(ValidationError) as caught:
        accounts.sign_up("Alice@Example.com", "", password, SYSTEM)

    assert set(caught.value.errors) == {"password"}
    assert "email" in caught.value.errors["password"]


# --- authenticate ---------------------------------------------------------------

def test_authenticate_with_the_right_password(app_ctx, make_user):
    user = make_user("alice@example.com")
    assert fresh(user).last_login_at is None
    before = clock.now()

    signed_in = accounts.authenticate("Alice@Example.com", PASSWORD, WEB)

    assert signed_in == user
    assert fresh(user).last_login_at >= before - timedelta(seconds=1)
    [row] = audit_rows("auth.signed_in")
    assert row.actor_id == user.id
    assert row.target_id == str(user.id)
    assert row.detail == {"method": "password"}
    assert row.ip == "203.0.113.7"
    assert audit_rows("auth.sign_in_failed") == []


def test_authenticate_with_a_wrong_password(app_ctx, make_user):
    user = make_user("alice@example.com")

    assert accounts.authenticate("alice@example.com", PASSWORD + "!", WEB) is None

    assert fresh(user).last_login_at is None
    [row] = audit_rows("auth.sign_in_failed")
    assert row.actor_id is None  # nobody is signed in
    assert (row.target_type, row.target_id) == ("user", str(user.id))
    assert row.detail == {"email": "alice@example.com"}
    assert row.ip == "203.0.113.7"
    assert audit_rows("auth.signed_in") == []


def test_authenticate_an_unknown_email(app_ctx, make_user):
    make_user("alice@example.com")

    assert accounts.authenticate("Nobody@Example.com", PASSWORD, WEB) is None

    [row] = audit_rows("auth.sign_in_failed")
    assert (row.target_type, row.target_id) == ("", "")
    assert row.detail == {"email": "nobody@example.com"}


def test_authenticate_a_disabled_user_with_the_right_password(app_ctx, make_user):
    user = make_user("alice@example.com")
    user.is_disabled = True
    user.save()

    assert accounts.authenticate("alice@example.com", PASSWORD, WEB) is None

    assert fresh(user).last_login_at is None
    assert len(audit_rows("auth.sign_in_failed")) == 1
    assert audit_rows("auth.signed_in") == []


@pytest.mark.parametrize("email", ["", "garbage", None])
def test_authenticate_with_an_unusable_email_returns_none(app_ctx, email):
    assert accounts.authenticate(email, PASSWORD, WEB) is None


def test_a_user_without_a_password_cannot_sign_in_with_one(app_ctx):
    user = accounts.sign_in_with_oidc(ISSUER, {"sub": "1", "email": "oidc@example.com",
                                               "email_verified": True}, WEB)
    assert fresh(user).password_hash is None

    assert accounts.authenticate("oidc@example.com", "", WEB) is None
    assert accounts.authenticate("oidc@example.com", PASSWORD, WEB) is None


# --- sessions -------------------------------------------------------------------

def test_load_session_user_with_the_current_version(app_ctx, make_user):
    user = make_user("alice@example.com")

    assert accounts.load_session_user(user.get_id()) == user
    assert accounts.load_session_user(f"{user.id}:0") == user


def test_load_session_user_with_an_old_version_is_refused(app_ctx, make_user):
    user = make_user("alice@example.com")
    old_session = user.get_id()
    accounts.change_password(user, PASSWORD, NEW_PASSWORD, SYSTEM)

    assert accounts.load_session_user(old_session) is None
    assert accounts.load_session_user(fresh(user).get_id()).id == user.id
    assert accounts.load_session_user(f"{user.id}:{fresh(user).session_version + 1}") is None


@pytest.mark.parametrize("session_id", [
    None, "", ":", "1", "1:", ":0", "abc:0", "1:abc", "-1:0", "1:-1", "1:0:0", "1.0:0",
    " 1:0", "1 :0", "0x1:0", "999999:0",
])
def test_load_session_user_with_garbage_returns_none(app_ctx, make_user, session_id):
    make_user("alice@example.com")

    assert accounts.load_session_user(session_id) is None


@pytest.mark.parametrize("session_id", [
    "\u00b2:0",  # SUPERSCRIPT TWO: str.isdigit() is True, int() refuses it
    "1:\u00b2",
    "99999999999999999999999:0",  # larger than any database integer
])
def test_load_session_user_with_odd_digits_or_huge_ids_returns_none(app_ctx, make_user, session_id):
    make_user("alice@example.com")

    assert accounts.load_session_user(session_id) is None


# --- password reset -------------------------------------------------------------

LINK = re.compile(r"https://cg\.example\.com/reset-password/(\S+)")


def link_for(token: str) -> str:
    return f"https://cg.example.com/reset-password/{token}"


def start_reset(email: str = "alice@example.com", ttl: int = 60) -> str:
    """Ask for a reset link; the token as the emailed link carries it."""
    before = OutboxMessage.select().count()
    accounts.start_password_reset(email, link_for, ttl, WEB)
    assert OutboxMessage.select().count() == before + 1
    message = OutboxMessage.select().order_by(OutboxMessage.id.desc()).first()
    return LINK.search(message.text_body).group(1)


@pytest.mark.parametrize("email", ["nobody@example.com", "", "not an email"])
def test_start_password_reset_for_an_unknown_email_sends_nothing(app_ctx, make_user, email):
    make_user("alice@example.com")

    accounts.start_password_reset(email, link_for, 60, WEB)

    assert OutboxMessage.select().count() == 0
    assert PasswordResetToken.select().count() == 0
    assert audit_rows("auth.password_reset_requested") == []


def test_start_password_reset_for_a_disabled_user_sends_nothing(app_ctx, make_user):
    user = make_user("alice@example.com")
    user.is_disabled = True
    user.save()

    accounts.start_password_reset("alice@example.com", link_for, 60, WEB)

    assert OutboxMessage.select().count() == 0
    assert PasswordResetToken.select().count() == 0


def test_start_password_reset_emails_a_link_and_stores_only_a_hash(app_ctx, make_user, capsys):
    user = make_user("alice@example.com")
    before = clock.now()

    accounts.start_password_reset("  ALICE@example.com ", link_for, 45, WEB)

    [token_row] = PasswordResetToken.select()
    [message] = OutboxMessage.select()
    assert message.to_address == "alice@example.com"
    assert message.status == "sent"
    emailed = LINK.search(message.text_body).group(1)
    assert link_for(emailed) in message.html_body
    assert "45 minutes" in message.text_body
    assert token_row.user_id == user.id
    assert token_row.token_hash != emailed
    assert emailed not in token_row.token_hash
    assert len(token_row.token_hash) == 64
    assert token_row.used_at is None
    assert before + timedelta(minutes=44) < token_row.expires_at <= clock.now() + timedelta(minutes=45)
    [row] = audit_rows("auth.password_reset_requested")
    assert row.target_id == str(user.id)


def test_reset_password_works_once(app_ctx, make_user):
    user = make_user("alice@example.com")
    version = user.session_version
    token = start_reset()

    assert accounts.reset_password(token, NEW_PASSWORD, WEB).id == user.id

    assert accounts.authenticate("alice@example.com", NEW_PASSWORD, SYSTEM).id == user.id
    assert accounts.authenticate("alice@example.com", PASSWORD, SYSTEM) is None
    assert fresh(user).session_version == version + 1
    assert PasswordResetToken.get().used_at is not None
    [row] = audit_rows("auth.password_reset")
    assert row.actor_id == user.id
    with pytest.raises(RuleViolation):
        accounts.reset_password(token, "yet another passphrase", WEB)
    assert accounts.authenticate("alice@example.com", NEW_PASSWORD, SYSTEM).id == user.id


def test_reset_password_with_an_expired_token_is_refused(app_ctx, make_user):
    make_user("alice@example.com")
    token = start_reset()
    PasswordResetToken.update(expires_at=clock.now() - timedelta(seconds=1)).execute()

    assert accounts.usable_reset_token(token) is None
    with pytest.raises(RuleViolation):
        accounts.reset_password(token, NEW_PASSWORD, WEB)
    assert accounts.authenticate("alice@example.com", PASSWORD, SYSTEM) is not None


@pytest.mark.parametrize("token", ["", "made-up-token", None])
def test_reset_password_with_an_unknown_token_is_refused(app_ctx, make_user, token):
    make_user("alice@example.com")
    start_reset()

    with pytest.raises(RuleViolation):
        accounts.reset_password(token, NEW_PASSWORD, WEB)


def test_reset_password_for_a_user_disabled_since_is_refused(app_ctx, make_user):
    user = make_user("alice@example.com")
    token = start_reset()
    user.is_disabled = True
    user.save()

    with pytest.raises(RuleViolation):
        accounts.reset_password(token, NEW_PASSWORD, WEB)


def test_reset_password_kills_every_other_outstanding_token(app_ctx, make_user):
    user = make_user("alice@example.com")
    other_user = make_user("bob@example.com")
    first, second, third = start_reset(), start_reset(), start_reset()
    bobs = start_reset("bob@example.com")

    accounts.reset_password(second, NEW_PASSWORD, WEB)

    for token in (first, third):
        assert accounts.usable_reset_token(token) is None
        with pytest.raises(RuleViolation):
            accounts.reset_password(token, "yet another passphrase", WEB)
    assert PasswordResetToken.select().where(PasswordResetToken.user == user,
                                             PasswordResetToken.used_at.is_null()).count() == 0
    # Another account's link is untouched.
    assert accounts.usable_reset_token(bobs).user == other_user


def test_reset_password_with_a_bad_new_password_keeps_the_token(app_ctx, make_user):
    make_user("alice@example.com")
    token = start_reset()

    with pytest.raises(ValidationError) as caught:
        accounts.reset_password(token, "short", WEB)
    assert set(caught.value.errors) == {"password"}
    with pytest.raises(ValidationError):
        accounts.reset_password(token, "alice@example.com", WEB)

    assert accounts.usable_reset_token(token) is not None
    accounts.reset_password(token, NEW_PASSWORD, WEB)
    assert accounts.authenticate("alice@example.com", NEW_PASSWORD, SYSTEM) is not None


# --- change password ------------------------------------------------------------

def test_change_password(app_ctx, make_user):
    user = make_user("alice@example.com")
    actor = Actor(user=user, ip="198.51.100.1")

    accounts.change_password(user, PASSWORD, NEW_PASSWORD, actor)

    assert accounts.authenticate("alice@example.com", NEW_PASSWORD, SYSTEM).id == user.id
    assert accounts.authenticate("alice@example.com", PASSWORD, SYSTEM) is None
    assert fresh(user).session_version == 1
    [row] = audit_rows("auth.password_changed")
    assert row.actor_id == user.id and row.ip == "198.51.100.1"


def test_change_password_with_the_wrong_current_password(app_ctx, make_user):
    user = make_user("alice@example.com")

    with pytest.raises(ValidationError) as caught:
        accounts.change_password(user, "not my password", NEW_PASSWORD, SYSTEM)

    assert set(caught.value.errors) == {"current_password"}
    assert accounts.authenticate("alice@example.com", PASSWORD, SYSTEM) == user
    assert fresh(user).session_version == 0
    assert audit_rows("auth.password_changed") == []


@pytest.mark.parametrize("new_password", ["short", "alice@example.com"])
def test_change_password_to_a_bad_password(app_ctx, make_user, new_password):
    user = make_user("alice@example.com")

    with pytest.raises(ValidationError) as caught:
        accounts.change_password(user, PASSWORD, new_password, SYSTEM)

    assert set(caught.value.errors) == {"new_password"}
    assert accounts.authenticate("alice@example.com", PASSWORD, SYSTEM) == user


def test_a_user_without_a_password_can_set_one(app_ctx):
    user = accounts.sign_in_with_oidc(ISSUER, {"sub": "s1", "email": "oidc@example.com",
                                               "email_verified": True}, WEB)

    accounts.change_password(user, "", NEW_PASSWORD, SYSTEM)

    assert accounts.authenticate("oidc@example.com", NEW_PASSWORD, SYSTEM).id == user.id


# --- OIDC sign-in ---------------------------------------------------------------

def claims(sub: str = "google-123", email: str = "carol@example.com", verified=True, **extra) -> dict:
    return {"sub": sub, "email": email, "email_verified": verified, **extra}


def test_oidc_first_sign_in_creates_a_user_and_an_identity(app_ctx):
    user = accounts.sign_in_with_oidc(ISSUER, claims(email="Carol@Example.com", name="Carol C"), WEB)

    stored = fresh(user)
    assert stored.email == "carol@example.com"
    assert stored.name == "Carol C"
    assert stored.password_hash is None
    assert stored.last_login_at is not None
    [identity] = ExternalIdentity.select()
    assert (identity.user_id, identity.issuer, identity.subject, identity.email) == (
        user.id, ISSUER, "google-123", "carol@example.com")
    assert audit_rows("user.signed_up")[0].detail == {"method": "oidc"}
    assert audit_rows("auth.identity_linked")[0].detail == {"issuer": ISSUER}
    [signed_in] = audit_rows("auth.signed_in")
    assert signed_in.detail == {"method": "oidc"} and signed_in.actor_id == user.id


def test_oidc_same_issuer_and_subject_returns_the_same_user(app_ctx):
    first = accounts.sign_in_with_oidc(ISSUER, claims(), WEB)

    # The provider may report a changed address; the link is by subject.
    again = accounts.sign_in_with_oidc(ISSUER, claims(email="carol.new@example.com"), WEB)

    assert again == first
    assert User.select().count() == 1
    assert ExternalIdentity.select().count() == 1
    assert len(audit_rows("auth.signed_in")) == 2
    assert len(audit_rows("user.signed_up")) == 1


def test_oidc_the_same_subject_at_another_issuer_is_another_identity(app_ctx):
    first = accounts.sign_in_with_oidc(ISSUER, claims(email="carol@example.com"), WEB)

    other = accounts.sign_in_with_oidc("https://login.example.org", claims(email="dave@example.com"), WEB)

    assert other != first
    assert ExternalIdentity.select().count() == 2


@pytest.mark.parametrize("verified", [True, "true"])
def test_oidc_links_an_existing_password_user_with_a_verified_email(app_ctx, make_user, verified):
    user = make_user("carol@example.com")
    accounts.mark_email_verified(user, SYSTEM, method="link")  # else linking ends the password (next test)

    signed_in = accounts.sign_in_with_oidc(ISSUER, claims(email="CAROL@example.com", verified=verified), WEB)

    assert signed_in == user
    assert User.select().count() == 1
    [identity] = ExternalIdentity.select()
    assert identity.user_id == user.id
    # The password still works too.
    assert accounts.authenticate("carol@example.com", PASSWORD, SYSTEM) == user
    assert audit_rows("user.signed_up")[-1].detail == {"method": "password"}
    assert len(audit_rows("auth.identity_linked")) == 1
    assert audit_rows("auth.unproven_account_claimed") == []


def test_oidc_linking_an_unconfirmed_account_ends_its_password_and_sessions(app_ctx, make_user):
    user = make_user("carol@example.com")
    assert user.email_verified_at is None and user.session_version == 0

    signed_in = accounts.sign_in_with_oidc(ISSUER, claims(email="carol@example.com"), WEB)

    assert signed_in.id == user.id and signed_in.session_version == 1 and signed_in.password_hash is None
    stored = User.get_by_id(user.id)
    assert stored.password_hash is None and stored.session_version == 1 and stored.email_verified_at is not None
    assert accounts.load_session_user(f"{user.id}:0") is None  # sessions from before are refused
    assert accounts.load_session_user(signed_in.get_id()).id == user.id
    assert accounts.authenticate("carol@example.com", PASSWORD, SYSTEM) is None
    [claimed] = audit_rows("auth.unproven_account_claimed")
    assert claimed.detail == {"issuer": ISSUER, "password_removed": True}
    # the next sign-in through the same identity changes nothing more
    accounts.sign_in_with_oidc(ISSUER, claims(email="carol@example.com"), WEB)
    assert User.get_by_id(user.id).session_version == 1 and len(audit_rows("auth.unproven_account_claimed")) == 1


@pytest.mark.parametrize("verified", [False, "false", None, "True", "yes", 1])
def test_oidc_refuses_an_existing_email_the_provider_did_not_verify(app_ctx, make_user, verified):
    make_user("carol@example.com")
    the_claims = claims(verified=verified)
    if verified is None:
        del the_claims["email_verified"]

    with pytest.raises(RuleViolation):
        accounts.sign_in_with_oidc(ISSUER, the_claims, WEB)

    assert ExternalIdentity.select().count() == 0
    assert audit_rows("auth.signed_in") == []


def test_oidc_an_unverified_email_still_creates_a_new_account(app_ctx):
    user = accounts.sign_in_with_oidc(ISSUER, claims(verified=False), WEB)

    assert user.email == "carol@example.com"
    assert ExternalIdentity.select().count() == 1


@pytest.mark.parametrize("bad", [{"sub": None}, {"sub": ""}, "no-sub"])
def test_oidc_without_a_subject_is_refused(app_ctx, bad):
    the_claims = claims()
    if bad == "no-sub":
        del the_claims["sub"]
    else:
        the_claims.update(bad)

    with pytest.raises(RuleViolation):
        accounts.sign_in_with_oidc(ISSUER, the_claims, WEB)

    assert User.select().count() == 0 and ExternalIdentity.select().count() == 0


@pytest.mark.parametrize("email", [None, "", "not-an-email"])
def test_oidc_without_a_usable_email_is_refused(app_ctx, email):
    the_claims = claims(email=email)
    if email is None:
        del the_claims["email"]

    with pytest.raises(RuleViolation):
        accounts.sign_in_with_oidc(ISSUER, the_claims, WEB)

    assert User.select().count() == 0 and ExternalIdentity.select().count() == 0


def test_oidc_a_disabled_user_is_refused(app_ctx):
    user = accounts.sign_in_with_oidc(ISSUER, claims(), WEB)
    user.is_disabled = True
    user.save()
    last_login = fresh(user).last_login_at

    with pytest.raises(RuleViolation):
        accounts.sign_in_with_oidc(ISSUER, claims(), WEB)

    assert fresh(user).last_login_at == last_login
    assert len(audit_rows("auth.signed_in")) == 1


def test_oidc_a_disabled_password_user_with_a_verified_email_is_refused(app_ctx, make_user):
    user = make_user("carol@example.com")
    user.is_disabled = True
    user.save()

    with pytest.raises(RuleViolation):
        accounts.sign_in_with_oidc(ISSUER, claims(), WEB)

    assert fresh(user).last_login_at is None
    assert audit_rows("auth.signed_in") == []
    assert ExternalIdentity.select().count() == 0  # a refused sign-in links nothing
    assert audit_rows("auth.identity_linked") == []


# --- profile --------------------------------------------------------------------

def test_update_profile(app_ctx, make_user):
    user = make_user("alice@example.com", name="Alice")

    accounts.update_profile(user, "  Alice Liddell ", Actor(user=user))

    assert fresh(user).name == "Alice Liddell"
    [row] = audit_rows("user.updated")
    assert row.detail == {"fields": ["name"]}
    with pytest.raises(ValidationError) as caught:
        accounts.update_profile(user, "x" * 121, Actor(user=user))
    assert set(caught.value.errors) == {"name"}
    assert fresh(user).name == "Alice Liddell"
