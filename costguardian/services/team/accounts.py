"""Accounts: sign-up, email verification, password sign-in, OIDC sign-in,
password reset and change."""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from typing import Callable

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from email_validator import EmailNotValidError, validate_email
from peewee import IntegrityError

from costguardian import clock, signing
from costguardian.extensions import db
from costguardian.models import ExternalIdentity, PasswordResetToken, User
from costguardian.services.notifications import mail
from costguardian.services.platform import settings as platform_settings
from costguardian.services.team import audit, orgs
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation, ValidationError

_SESSION_ID = re.compile(r"([0-9]{1,10}):([0-9]{1,10})")
_MAX_ID = 2**31 - 1  # an INTEGER primary key on PostgreSQL

MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256

# argon2id at OWASP's recommended floor (19 MiB, 2 passes, 1 lane): about 25 ms
# a check on a 2-core server, where argon2-cffi's default (64 MiB, 3 passes,
# 4 lanes) costs about 225 ms and would make sign-in itself a load problem.
# Hashes made with other parameters are upgraded at the next sign-in.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Verified against when the account does not exist, so that a missing account
# takes as long to refuse as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def normalize_email(raw: str) -> str:
    """The address as stored (lower-case), or ValidationError on the `email` field."""
    try:
        result = validate_email((raw or "").strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValidationError({"email": str(exc)}) from exc
    return result.normalized.lower()


def password_problem(password: str, email: str = "") -> str | None:
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Use at least {MIN_PASSWORD_LENGTH} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"Use at most {MAX_PASSWORD_LENGTH} characters."
    if email and password.strip().lower() == email.lower():
        return "Your password cannot be your email address."
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _check_password(user: User | None, password: str) -> bool:
    stored = user.password_hash if user is not None else None
    try:
        _hasher.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False
    if stored is None:
        return False
    if _hasher.check_needs_rehash(stored):
        user.password_hash = hash_password(password)
        user.save(only=[User.password_hash])
    return True


def sign_up(email: str, name: str, password: str, actor: Actor, channel: str | None = None) -> User:
    """A new account with a password. `channel` says how a person asked for it
    ("signup": the sign-up page; "invitation": accepting one), and the
    platform's sign-up policy then applies; None is an operator creating it
    (the CLI, the demo seed), which the policy does not restrict."""
    email = normalize_email(email)
    if channel is not None:
        refusal = platform_settings.signup_refusal(email, channel)
        if refusal:
            raise ValidationError({"email": refusal})
    problem = password_problem(password, email)
    if problem:
        raise ValidationError({"password": problem})
    if User.by_email(email):
        raise ValidationError({"email": "An account with this email already exists. Sign in instead."})
    try:
        with db.atomic():
            user = User.create(email=email, name=name.strip()[:120], password_hash=hash_password(password))
    except IntegrityError as exc:  # a concurrent sign-up with the same address
        raise ValidationError({"email": "An account with this email already exists. Sign in instead."}) from exc
    audit.record(actor_for(user, actor), "user.signed_up", target=user, method="password")
    # No domain join here: nobody has checked yet that this mailbox is theirs
    # (send_verification_email; verify_email joins).
    return user


def authenticate(email: str, password: str, actor: Actor) -> User | None:
    """The user if the password is right and the account usable; audits both outcomes."""
    try:
        email = normalize_email(email)
    except ValidationError:
        return None
    user = User.by_email(email)
    if not _check_password(user, password) or user.is_disabled:
        audit.record(actor, "auth.sign_in_failed", target=user, email=email)
        return None
    mark_signed_in(user, actor, "password")
    if user.email_verified_at is not None:
        orgs.join_by_email_domain(user, actor_for(user, actor))
    return user


def mark_signed_in(user: User, actor: Actor, method: str) -> None:
    user.last_login_at = clock.now()
    user.save(only=[User.last_login_at])
    audit.record(actor_for(user, actor), "auth.signed_in", target=user, method=method)


def user_by_email(email: str) -> User | None:
    """The account with this email address (any case), if there is one."""
    return User.by_email(email)


def actor_for(user: User, actor: Actor) -> Actor:
    """The same request's actor, now known to be `user` (after sign-in/sign-up)."""
    return Actor(user=user, ip=actor.ip, user_agent=actor.user_agent)


def load_session_user(session_id: str) -> User | None:
    """Flask-Login's loader: `<user id>:<session version>`; an old version is refused."""
    match = _SESSION_ID.fullmatch(session_id or "")
    if match is None or int(match[1]) > _MAX_ID:
        return None
    user_id, version = int(match[1]), int(match[2])
    user = User.get_or_none(User.id == user_id)
    if user is None or user.session_version != version or user.is_disabled:
        return None
    return user


# --- email verification -------------------------------------------------------

VERIFY_SALT = "verify-email"
VERIFY_MAX_AGE = 3 * 24 * 3600  # seconds: the emailed link works for 3 days


def _verify_serializer() -> URLSafeTimedSerializer:
    return signing.serializer(VERIFY_SALT)


def verification_token(user: User) -> str:
    """Signed, not stored: it names the user and the address it was sent to,
    so it stops working if the account's address changes."""
    return _verify_serializer().dumps({"u": user.id, "e": user.email})


def send_verification_email(user: User, link_for: Callable[[str], str], actor: Actor) -> None:
    """Email `user` a link that proves they read their mailbox (account mail:
    no organization, so it goes straight through the outbox, not `notify`)."""
    if user.email_verified_at is not None:
        raise RuleViolation("Your email address is already confirmed.")
    if user.is_disabled:
        raise RuleViolation("This account is disabled.")
    audit.record(actor, "user.verification_sent", target=user)
    mail.send_template(user.email, "verify_email", user=user, link=link_for(verification_token(user)),
                       ttl_days=VERIFY_MAX_AGE // (24 * 3600))


def mark_email_verified(user: User, actor: Actor, method: str) -> bool:
    """Record that `user` proved their address (once; later calls change
    nothing). True when this call was the one that marked it."""
    if user.email_verified_at is not None:
        return False
    now = clock.now()
    marked = (User.update(email_verified_at=now)
              .where(User.id == user.id, User.email_verified_at.is_null()).execute())
    user.email_verified_at = now if marked else User.get_by_id(user.id).email_verified_at
    if marked:
        audit.record(actor, "user.email_verified", target=user, method=method)
    return bool(marked)


def verify_email(token: str, actor: Actor):
    """Follow an emailed confirmation link: mark the address verified (if it
    is still the account's) and join the organizations whose verified domain
    it is. Returns (user, new memberships); RuleViolation for a bad link.
    Idempotent: a second visit finds nothing new to do."""
    try:
        data = _verify_serializer().loads(token or "", max_age=VERIFY_MAX_AGE)
        user_id, email = int(data["u"]), str(data["e"])
    except SignatureExpired as exc:
        raise RuleViolation("This confirmation link has expired. Sign in and send a new one "
                            "from your account page.") from exc
    except (BadSignature, KeyError, TypeError, ValueError) as exc:
        raise RuleViolation("This confirmation link is not valid. Check that you copied all of it, "
                            "or send a new one from your account page.") from exc
    user = User.get_or_none(User.id == user_id) if 0 < user_id <= _MAX_ID else None
    if user is None or user.email != email:
        raise RuleViolation("This confirmation link is for an address this account no longer uses.")
    if user.is_disabled:
        raise RuleViolation("This account is disabled. Contact your administrator.")
    mark_email_verified(user, actor_for(user, actor), method="link")
    return user, orgs.join_by_email_domain(user, actor_for(user, actor))


# --- password reset -----------------------------------------------------------

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_password_reset(email: str, link_for: Callable[[str], str], ttl_minutes: int, actor: Actor) -> None:
    """Email a single-use reset link if the account exists; silent otherwise,
    so the form does not reveal which addresses have accounts."""
    try:
        email = normalize_email(email)
    except ValidationError:
        return
    user = User.by_email(email)
    if user is None or user.is_disabled:
        return
    token = secrets.token_urlsafe(32)
    PasswordResetToken.create(
        user=user, token_hash=_token_hash(token),
        expires_at=clock.now() + timedelta(minutes=ttl_minutes),
    )
    audit.record(actor, "auth.password_reset_requested", target=user)
    mail.send_template(
        user.email, "password_reset",
        user=user, link=link_for(token), ttl_minutes=ttl_minutes,
    )


def usable_reset_token(token: str) -> PasswordResetToken | None:
    row = (PasswordResetToken.select(PasswordResetToken, User).join(User)
           .where(PasswordResetToken.token_hash == _token_hash(token or "")).first())
    if row is None or row.used_at is not None or row.expires_at <= clock.now() or row.user.is_disabled:
        return None
    return row


def reset_password(token: str, new_password: str, actor: Actor) -> User:
    row = usable_reset_token(token)
    if row is None:
        raise RuleViolation("This reset link is invalid, expired or already used. Ask for a new one.")
    user = row.user
    problem = password_problem(new_password, user.email)
    if problem:
        raise ValidationError({"password": problem})
    with db.atomic():
        # Claim the token first: of two concurrent uses, only one updates a row.
        claimed = (PasswordResetToken.update(used_at=clock.now())
                   .where(PasswordResetToken.id == row.id, PasswordResetToken.used_at.is_null())
                   .execute())
        if not claimed:
            raise RuleViolation("This reset link is invalid, expired or already used. Ask for a new one.")
        _set_password(user, new_password)
        # Every other outstanding link for this account dies with this one.
        (PasswordResetToken.update(used_at=clock.now())
         .where(PasswordResetToken.user == user, PasswordResetToken.used_at.is_null())
         .execute())
    audit.record(actor_for(user, actor), "auth.password_reset", target=user)
    # The reset link went to the address: following it proves the mailbox too.
    mark_email_verified(user, actor_for(user, actor), "password_reset")
    return user


def change_password(user: User, current: str, new_password: str, actor: Actor) -> User:
    if user.password_hash and not _check_password(user, current):
        raise ValidationError({"current_password": "That is not your current password."})
    problem = password_problem(new_password, user.email)
    if problem:
        raise ValidationError({"new_password": problem})
    _set_password(user, new_password)
    audit.record(actor, "auth.password_changed", target=user)
    return user


def _set_password(user: User, password: str) -> None:
    from costguardian.models import UserSession  # models/platform imports this package's models

    user.password_hash = hash_password(password)
    user.session_version += 1  # signs out every other session
    user.save(only=[User.password_hash, User.session_version])
    # ... and their rows say so (the caller starts or keeps this browser's own).
    UserSession.update(ended_at=clock.now(), ended_reason="password_changed").where(
        UserSession.user == user, UserSession.ended_at.is_null()).execute()


def update_profile(user: User, name: str, actor: Actor) -> User:
    name = (name or "").strip()
    if len(name) > 120:
        raise ValidationError({"name": "Use at most 120 characters."})
    user.name = name
    user.save(only=[User.name])
    audit.record(actor, "user.updated", target=user, fields=["name"])
    return user


# --- sign-in through an OIDC provider ----------------------------------------

def sign_in_with_oidc(issuer: str, claims: dict, actor: Actor, invitation_email: str | None = None) -> User:
    """The user for these ID-token claims: the linked one, an existing account
    with the same verified email (then linked; if that account never proved
    its address, its password and sessions end first), or a new account if
    the sign-up policy allows it (`invitation_email`: the address of a usable
    invitation the sign-in started from, which counts as invited)."""
    subject = str(claims.get("sub") or "")
    if not subject:
        raise RuleViolation("The identity provider did not say who you are (no subject).")
    identity = (ExternalIdentity.select(ExternalIdentity, User).join(User)
                .where(ExternalIdentity.issuer == issuer, ExternalIdentity.subject == subject).first())
    if identity is not None:
        user = identity.user
    else:
        user = _user_for_new_identity(issuer, subject, claims, actor, invitation_email)
    if user.is_disabled:
        raise RuleViolation("This account is disabled. Contact your administrator.")
    mark_signed_in(user, actor, "oidc")
    if _email_verified(claims) and str(claims.get("email") or "").strip().lower() == user.email:
        mark_email_verified(user, actor_for(user, actor), method="oidc")
        orgs.join_by_email_domain(user, actor_for(user, actor))
    return user


def _email_verified(claims: dict) -> bool:
    return claims.get("email_verified") is True or claims.get("email_verified") == "true"


def _user_for_new_identity(issuer: str, subject: str, claims: dict, actor: Actor,
                           invitation_email: str | None = None) -> User:
    try:
        email = normalize_email(str(claims.get("email") or ""))
    except ValidationError as exc:
        raise RuleViolation("The identity provider did not share a usable email address.") from exc
    verified = _email_verified(claims)
    try:
        with db.atomic():
            user = User.by_email(email)
            if user is not None and not verified:
                raise RuleViolation(
                    "An account with this email exists, and the identity provider did not confirm "
                    "that the address is yours. Sign in with your password instead."
                )
            if user is not None and user.is_disabled:
                raise RuleViolation("This account is disabled. Contact your administrator.")
            created = user is None
            if created:
                refusal = platform_settings.signup_refusal(
                    email, "invitation" if invitation_email == email else "signup")
                if refusal:
                    raise RuleViolation(f"There is no account for {email} here. {refusal}")
                user = User.create(email=email, name=str(claims.get("name") or "")[:120])
            ExternalIdentity.create(user=user, issuer=issuer, subject=subject, email=email)
            unproven = not created and user.email_verified_at is None
            had_password = unproven and _take_over_unproven_account(user)
    except IntegrityError as exc:
        # A concurrent first sign-in of the same person won the race; use its result.
        identity = ExternalIdentity.get_or_none(ExternalIdentity.issuer == issuer,
                                                ExternalIdentity.subject == subject)
        if identity is None:
            raise RuleViolation("Sign-in collided with another one for the same address; please try again.") from exc
        return identity.user
    if created:
        audit.record(actor_for(user, actor), "user.signed_up", target=user, method="oidc")
    audit.record(actor_for(user, actor), "auth.identity_linked", target=user, issuer=issuer)
    if unproven:
        audit.record(actor_for(user, actor), "auth.unproven_account_claimed", target=user, issuer=issuer,
                     password_removed=had_password)
    return user


def _take_over_unproven_account(user: User) -> bool:
    """The provider vouches for this address, but the account's owner never
    proved it: anyone could have signed up with it and set the password. So
    the password goes and every session ends; the person the provider
    vouched for owns the account now (a password comes back through a reset,
    which mails that same address). True when there was a password."""
    had_password = user.password_hash is not None
    user.password_hash = None
    user.session_version += 1  # signs out every session, remember-me cookies too
    user.save(only=[User.password_hash, User.session_version])
    return had_password
