"""Organization API keys: create, authenticate, rotate with a grace period, revoke.

A key reads `cg_<env>_<prefix>_<secret>`. Only the prefix (the lookup index)
and the SHA-256 of the secret are stored; the whole key is shown once.
Validation is one indexed lookup by prefix and a constant-time comparison.
"""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from peewee import JOIN

from costguardian import clock
from costguardian.prepared import Prepared
from costguardian.models import ApiKey, Department, Membership, Organization, User
from costguardian.services.team import audit
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.timefmt import format_time

SCOPES = {
    "ingest": "Send usage events (POST /api/v1/usage).",
    "gateway": "Call AI providers through the Cost Guardian gateway.",
    "read": "Read usage and budget status through the API.",
    "admin": "Manage members, invitations, departments and budgets through the API.",
}
ENVS = ("live", "test")
MAX_GRACE_HOURS = 24 * 30
_KEY = re.compile(r"cg_(live|test)_([a-z0-9]{12})_([A-Za-z0-9_-]{32,64})")
_PREFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
LAST_USED_RESOLUTION = 60  # seconds: last_used_at is written at most this often per key and process


class ApiKeyError(Exception):
    """A request's key is missing, malformed, unknown, revoked, expired or lacks a scope."""

    def __init__(self, status: int, problem: str, detail: str):
        super().__init__(detail)
        self.status, self.problem, self.detail = status, problem, detail


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    plaintext: str  # shown once, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _new_secret() -> str:
    return secrets.token_urlsafe(32)[:43]


def _new_prefix() -> str:
    return "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(12))


def _plaintext(key: ApiKey, secret: str) -> str:
    return f"cg_{key.env}_{key.prefix}_{secret}"


def _validated_scopes(scopes) -> str:
    chosen = [s.strip() for s in (scopes or []) if s and s.strip()]
    unknown = [s for s in chosen if s not in SCOPES]
    if unknown:
        raise ValidationError({"scopes": f"Unknown scope: {', '.join(unknown)}."})
    if not chosen:
        raise ValidationError({"scopes": "Choose at least one scope."})
    return ",".join(s for s in SCOPES if s in chosen)


def create_key(org: Organization, actor: Actor, name: str, scopes, *, env: str = "live",
               expires_at: datetime | None = None, user: User | None = None,
               department: Department | None = None, personal: bool = False) -> NewKey:
    """A new key. `personal`: a member's own key, bound to them (their usage
    attributed to them, events may not name someone else) and without the
    admin scope, which acts beyond a member's role."""
    errors = {}
    if personal:
        user = actor.user
        if "admin" in (scopes.split(",") if isinstance(scopes, str) else list(scopes or [])):
            errors["scopes"] = ("Your own keys can send usage, call the gateway and read usage; the admin scope "
                                "is for owners and admins.")
    name = (name or "").strip()
    if not name:
        errors["name"] = "Name the key after what uses it, e.g. \"search-service prod\"."
    elif len(name) > 80:
        errors["name"] = "Use at most 80 characters."
    if env not in ENVS:
        errors["env"] = "Choose live or test."
    if expires_at is not None and expires_at <= clock.now():
        errors["expires_at"] = "The expiry must be in the future."
    if user is not None and Membership.of(user, org) is None:
        errors["user"] = "That person is not a member of this organization."
    if department is not None and department.organization_id != org.id:
        errors["department"] = "Choose a department of this organization."
    try:
        scope_text = _validated_scopes(scopes)
    except ValidationError as exc:
        errors.setdefault("scopes", exc.errors["scopes"])
    if errors:
        raise ValidationError(errors)
    secret = _new_secret()
    key = ApiKey.create(organization=org, name=name, env=env, prefix=_new_prefix(), secret_hash=_hash(secret),
                        scopes=scope_text, user=user, department=department, created_by=actor.user,
                        expires_at=expires_at, attribution_override=not personal)
    audit.record(actor, "key.created", org=org, target=key, name=name, scopes=scope_text, prefix=key.prefix)
    return NewKey(key, _plaintext(key, secret))


def rotate_key(key: ApiKey, actor: Actor, grace_hours: int = 24) -> NewKey:
    """A new secret for the same key id; the old one keeps working for `grace_hours`."""
    if key.status() != "active":
        raise RuleViolation("Only an active key can be rotated.")
    if not 0 <= grace_hours <= MAX_GRACE_HOURS:
        raise ValidationError({"grace_hours": f"Choose between 0 and {MAX_GRACE_HOURS} hours."})
    secret = _new_secret()
    now = clock.now()
    key.previous_secret_hash = key.secret_hash if grace_hours else None
    key.previous_valid_until = now + timedelta(hours=grace_hours) if grace_hours else None
    key.secret_hash = _hash(secret)
    key.rotated_at = now
    # Write only these columns, and only while the key is not revoked: a full save
    # of a stale copy would undo a concurrent revocation (and a newer last_used_at).
    changed = (ApiKey.previous_secret_hash, ApiKey.previous_valid_until, ApiKey.secret_hash, ApiKey.rotated_at)
    if not (ApiKey.update({f: getattr(key, f.name) for f in changed})
            .where(ApiKey.id == key.id, ApiKey.revoked_at.is_null()).execute()):
        raise RuleViolation("Only an active key can be rotated.")
    audit.record(actor, "key.rotated", org=key.organization, target=key, prefix=key.prefix, grace_hours=grace_hours)
    from costguardian.services.notifications import notify as notifications

    notifications.notify(key.organization, "key.rotated", {
        "key": key.name, "key_id": key.id, "prefix": key.prefix,
        "actor": actor.user.display_name if actor.user is not None else "An operator",
        "grace_until": (format_time(key.previous_valid_until, key.organization) if key.previous_valid_until
                        else "now (no grace period)")})
    return NewKey(key, _plaintext(key, secret))


EXPIRY_WARNING = timedelta(days=7)


def warn_expiring(now=None) -> int:
    """Tell each organization's admins, once per key, that a key expires
    within a week (the daily task). Returns how many keys were announced."""
    from costguardian.services.notifications import notify as notifications

    now = now or clock.now()
    due = list(ApiKey.select().where(ApiKey.revoked_at.is_null(), ApiKey.expires_at.is_null(False),
                                     ApiKey.expires_at > now, ApiKey.expires_at <= now + EXPIRY_WARNING,
                                     ApiKey.expiry_warned_at.is_null()))
    told = 0
    for key in due:
        # Claim the key first, so two runs never both announce it.
        if not ApiKey.update(expiry_warned_at=now).where(ApiKey.id == key.id,
                                                          ApiKey.expiry_warned_at.is_null()).execute():
            continue
        notifications.notify(key.organization, "key.expiring", {
            "key": key.name, "key_id": key.id, "prefix": key.prefix,
            "expires": format_time(key.expires_at, key.organization)})
        told += 1
    return told


# Gateway rate limits (services/gateway/ratelimits.py enforces them).
MAX_RPM = 1_000_000
MAX_TPM = 1_000_000_000


def _limit(errors: dict, field: str, value, maximum: int, unit: str) -> int | None:
    """A per-minute limit: None (no limit) or a whole number in 1..maximum."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        errors[field] = f"Enter a whole number of {unit} per minute, or leave it empty for no limit."
        return None
    if number < 1:
        errors[field] = f"Enter at least 1 {unit[:-1]} per minute, or leave it empty for no limit."
    elif number > maximum:
        errors[field] = f"Enter at most {maximum:,} {unit} per minute, or leave it empty for no limit."
    return number


def set_gateway_limits(key: ApiKey, actor: Actor, rpm_limit=None, tpm_limit=None,
                       attribution_override: bool = True) -> ApiKey:
    """The key's own rate limits (None: no limit) and whether its calls may
    name another user, department or tags than its defaults."""
    errors: dict[str, str] = {}
    rpm = _limit(errors, "rpm_limit", rpm_limit, MAX_RPM, "requests")
    tpm = _limit(errors, "tpm_limit", tpm_limit, MAX_TPM, "tokens")
    if errors:
        raise ValidationError(errors)
    override = bool(attribution_override)
    before = {"rpm_limit": key.rpm_limit, "tpm_limit": key.tpm_limit, "attribution_override": key.attribution_override}
    after = {"rpm_limit": rpm, "tpm_limit": tpm, "attribution_override": override}
    changes = {name: [before[name], after[name]] for name in after if before[name] != after[name]}
    if not changes:
        return key
    ApiKey.update(after).where(ApiKey.id == key.id).execute()
    key.rpm_limit, key.tpm_limit, key.attribution_override = rpm, tpm, override
    audit.record(actor, "key.limits_changed", org=key.organization, target=key, prefix=key.prefix, changes=changes)
    return key


def set_org_gateway_limits(org: Organization, actor: Actor, rpm_limit=None, tpm_limit=None) -> Organization:
    """The organization's gateway rate limits, all keys together (None: no limit)."""
    errors: dict[str, str] = {}
    rpm = _limit(errors, "rpm_limit", rpm_limit, MAX_RPM, "requests")
    tpm = _limit(errors, "tpm_limit", tpm_limit, MAX_TPM, "tokens")
    if errors:
        raise ValidationError(errors)
    changes = {name: [old, new] for name, old, new in (("rpm_limit", org.gateway_rpm_limit, rpm),
                                                        ("tpm_limit", org.gateway_tpm_limit, tpm)) if old != new}
    if not changes:
        return org
    Organization.update(gateway_rpm_limit=rpm, gateway_tpm_limit=tpm).where(Organization.id == org.id).execute()
    org.gateway_rpm_limit, org.gateway_tpm_limit = rpm, tpm
    audit.record(actor, "org.gateway_limits_changed", org=org, target=org, changes=changes)
    return org


def revoke_key(key: ApiKey, actor: Actor) -> ApiKey:
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        key.previous_secret_hash = None
        key.save(only=[ApiKey.revoked_at, ApiKey.previous_secret_hash])
        audit.record(actor, "key.revoked", org=key.organization, target=key, prefix=key.prefix)
    return key


def keys_of(org: Organization):
    return (ApiKey.in_org(org).select(ApiKey, User, Department)
            .join(User, JOIN.LEFT_OUTER, on=(ApiKey.user == User.id))
            .switch(ApiKey).join(Department, JOIN.LEFT_OUTER, on=(ApiKey.department == Department.id))
            .order_by(ApiKey.revoked_at.is_null(False), ApiKey.created_at.desc()))


def get(org: Organization, key_id) -> ApiKey | None:
    """The organization's key with this id; None for an unknown id or another tenant's."""
    return ApiKey.get_in_org(org, key_id)


def key_choices(org: Organization) -> list[tuple[int, str]]:
    """(id, name) of every key of the organization, revoked ones marked, by name: for select boxes."""
    keys = ApiKey.in_org(org, ApiKey.id, ApiKey.name, ApiKey.revoked_at)
    return sorted(((k.id, f"{k.name}{' (revoked)' if k.revoked_at else ''}") for k in keys),
                  key=lambda c: c[1].lower())


# Every API call looks its key up: the SQL is built once (costguardian.prepared).
def _by_prefix(prefix, one):
    """The key with its organization, and the organization's settings version
    (`settings_version`, for settings_cache: read with the key, not after it)."""
    from costguardian.models import OrgSettingsVersion

    version = (OrgSettingsVersion.select(OrgSettingsVersion.version)
               .where(OrgSettingsVersion.organization == ApiKey.organization))
    return (ApiKey.select(ApiKey, Organization, version.alias("settings_version")).join(Organization)
            .where(ApiKey.prefix == prefix).limit(one))


_BY_PREFIX = Prepared(_by_prefix)


def authenticate(authorization: str | None, scope: str) -> ApiKey:
    """The key in an `Authorization: Bearer …` header, if valid and granted
    `scope`; otherwise ApiKeyError with the HTTP status and a readable detail."""
    if not authorization:
        raise ApiKeyError(401, "missing-api-key", "Send your Cost Guardian API key as 'Authorization: Bearer cg_…'.")
    scheme, _, token = authorization.strip().partition(" ")
    match = _KEY.fullmatch(token.strip()) if scheme.lower() == "bearer" else None
    if match is None:
        raise ApiKeyError(401, "invalid-api-key", "The Authorization header does not hold a Cost Guardian API key.")
    env, prefix, secret = match.groups()
    key = _BY_PREFIX.first(prefix, 1)
    now = clock.now()
    if key is None or key.env != env or not _secret_matches(key, secret, now):
        raise ApiKeyError(401, "invalid-api-key", "This API key is not valid.")
    if key.revoked_at is not None:
        raise ApiKeyError(401, "revoked-api-key", "This API key was revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise ApiKeyError(401, "expired-api-key", "This API key has expired.")
    if scope not in key.scope_list:
        raise ApiKeyError(403, "insufficient-scope",
                        f"This API key lacks the '{scope}' scope (it has: {', '.join(key.scope_list)}).")
    touch(key, now)
    return key


def _secret_matches(key: ApiKey, secret: str, now: datetime) -> bool:
    digest = _hash(secret)
    if hmac.compare_digest(digest, key.secret_hash):
        return True
    return (key.previous_secret_hash is not None and key.previous_valid_until is not None
            and key.previous_valid_until > now and hmac.compare_digest(digest, key.previous_secret_hash))


_last_written: dict[int, float] = {}
_touch_lock = threading.Lock()


def touch(key: ApiKey, now: datetime) -> None:
    """Record use without a write per request: at most one UPDATE per key per
    LAST_USED_RESOLUTION seconds in each process."""
    clock = time.monotonic()
    with _touch_lock:
        last = _last_written.get(key.id)
        if last is not None and clock - last < LAST_USED_RESOLUTION:
            return
        _last_written[key.id] = clock
    ApiKey.update(last_used_at=now).where(ApiKey.id == key.id).execute()
