"""The platform console's users: search, edit, disable, delete, export.
Every change is a superadmin's (or the CLI's) and is audit-logged; the
JSON API (/api/v1/admin/users) calls the same functions."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Callable

from peewee import JOIN, IntegrityError, fn

from costguardian import clock, permissions
from costguardian.extensions import db
from costguardian.models import (ApiKey, AuditLog, Department, Membership, Organization, PlatformToken, User,
                                 UserSession)
from costguardian.models.org import MAX_ID
from costguardian.models.platform import PLATFORM_ROLES
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation, ValidationError
from costguardian.services.platform import sessions
from costguardian.services.platform.guards import require_superadmin
from costguardian.services.team import accounts, audit

PER_PAGE = 50
ROLE_FILTERS = ("none",) + PLATFORM_ROLES  # "none": no platform role
ACTIVE_DAYS = (7, 30, 90)
TRAIL_LIMIT = 50
EXPORT_CHUNK = 500
EXPORT_COLUMNS = ["id", "email", "name", "platform_role", "disabled", "email_verified", "created_at_utc",
                  "last_login_at_utc", "last_seen_at_utc", "organizations"]


# --- reading ------------------------------------------------------------------

def parse_filters(args) -> tuple[dict, int, dict[str, str]]:
    """The search filters from a query string (the console's form, the JSON
    API): (filters, page, errors). An unknown value is an error, and its
    filter matches nobody rather than everybody."""
    errors: dict[str, str] = {}
    filters: dict = {"q": (args.get("q") or "").strip()[:200], "role": "", "disabled": None,
                     "unconfirmed": False, "active_days": None, "org": None}
    role = (args.get("role") or "").strip()
    if role in ROLE_FILTERS:
        filters["role"] = role
    elif role:
        errors["role"] = "Choose none, support or superadmin."
    disabled = (args.get("disabled") or "").strip().lower()
    if disabled in ("1", "true", "yes", "on"):
        filters["disabled"] = True
    elif disabled in ("0", "false", "no"):
        filters["disabled"] = False
    elif disabled:
        errors["disabled"] = "Use yes or no."
    filters["unconfirmed"] = (args.get("unconfirmed") or "").strip().lower() in ("1", "true", "yes", "on")
    active = (args.get("active") or args.get("active_days") or "").strip().lower()
    if active == "never":
        filters["active_days"] = "never"
    elif active.isdigit() and int(active) in ACTIVE_DAYS:
        filters["active_days"] = int(active)
    elif active:
        errors["active"] = "Choose 7, 30 or 90 days, or never."
    org_ref = (args.get("org") or "").strip()
    if org_ref:
        org = find_org(org_ref)
        if org is None:
            errors["org"] = f"No organization has the id or slug {org_ref!r}."
            filters["org"] = 0  # matches nobody
        else:
            filters["org"] = org.id
        filters["org_ref"] = org_ref
    try:
        page = min(max(int(args.get("page") or 1), 1), 100_000)
    except (TypeError, ValueError):
        page = 1
    return filters, page, errors


def find_org(ref) -> Organization | None:
    """An organization by id or slug."""
    ref = str(ref).strip()
    if ref.isdigit():
        return Organization.get_or_none(Organization.id == int(ref)) if 0 < int(ref) <= MAX_ID else None
    return Organization.get_or_none(Organization.slug == ref.lower())


def _filtered(filters: dict):
    query = User.select()
    q = (filters.get("q") or "").strip()
    if q:
        # Emails are stored lower-case; LIKE/ILIKE fold the name's case (ASCII on SQLite).
        query = query.where(User.email.contains(q.lower()) | User.name.contains(q))
    role = filters.get("role") or ""
    if role == "none":
        query = query.where(User.platform_role == "")
    elif role in PLATFORM_ROLES:
        query = query.where(User.platform_role == role)
    if filters.get("disabled") is not None:
        query = query.where(User.is_disabled == bool(filters["disabled"]))
    if filters.get("unconfirmed"):
        query = query.where(User.email_verified_at.is_null())
    active = filters.get("active_days")
    if active == "never":
        query = query.where(User.last_seen_at.is_null())
    elif active:
        query = query.where(User.last_seen_at >= clock.now() - timedelta(days=int(active)))
    if filters.get("org") is not None:
        members = Membership.select(Membership.user).where(Membership.organization == filters["org"])
        query = query.where(User.id.in_(members))
    ids = filters.get("ids")
    if ids is not None:
        query = query.where(User.id.in_([i for i in ids if 0 < i <= MAX_ID] or [0]))
    return query


def search(filters: dict, page: int = 1, per_page: int = PER_PAGE) -> tuple[list[User], int]:
    """One page of the users matching `filters` (keys: q, role, disabled,
    unconfirmed, active_days, org; optional ids), newest first, and how many
    match in all."""
    query = _filtered(filters)
    total = query.count()
    rows = list(query.order_by(User.id.desc()).offset((max(page, 1) - 1) * per_page).limit(per_page))
    return rows, total


def get(user_id) -> User | None:
    try:
        user_id = int(user_id)
    except (TypeError, ValueError):
        return None
    return User.get_or_none(User.id == user_id) if 0 < user_id <= MAX_ID else None


def memberships_of(users) -> dict[int, list[Membership]]:
    """Each user's memberships (with organization), for a page of users."""
    ids = [u.id for u in users]
    found: dict[int, list[Membership]] = {i: [] for i in ids}
    if ids:
        for m in (Membership.select(Membership, Organization).join(Organization)
                  .where(Membership.user.in_(ids)).order_by(Membership.created_at, Membership.id)):
            found[m.user_id].append(m)
    return found


def _iso(moment: datetime | None) -> str | None:
    return moment.replace(microsecond=0).isoformat() + "Z" if moment else None


def as_dict(user: User, memberships: list[Membership] | None = None) -> dict:
    if memberships is None:
        memberships = list(Membership.for_user(user))
    return {
        "id": user.id, "email": user.email, "name": user.name, "platform_role": user.platform_role,
        "disabled": user.is_disabled, "email_verified": user.email_verified_at is not None,
        "created_at": _iso(user.created_at), "last_login_at": _iso(user.last_login_at),
        "last_seen_at": _iso(user.last_seen_at),
        "organizations": [{"id": m.organization_id, "name": m.organization.name, "role": m.role}
                          for m in memberships],
    }


def detail(user: User) -> dict:
    """Everything the console's user page shows."""
    memberships = list(Membership.select(Membership, Organization, Department)
                       .join(Organization).switch(Membership)
                       .join(Department, JOIN.LEFT_OUTER, on=(Membership.department == Department.id))
                       .where(Membership.user == user).order_by(Membership.created_at, Membership.id))
    keys = list(ApiKey.select(ApiKey, Organization).join(Organization)
                .where(ApiKey.created_by == user).order_by(ApiKey.id.desc()))
    return {"memberships": memberships, "live_sessions": sessions.live(user), "history": sessions.recent(user),
            "trail": audit_trail(user), "keys": keys, "now": clock.now()}


def audit_trail(user: User, limit: int = TRAIL_LIMIT) -> list[AuditLog]:
    """What the user did and what was done to their account, newest first."""
    actor, admin = User.alias(), User.alias()
    about_user = (AuditLog.target_type == "user") & (AuditLog.target_id == str(user.id))
    return list(AuditLog.select(AuditLog, actor, admin, Organization)
                .join(actor, JOIN.LEFT_OUTER, on=(AuditLog.actor == actor.id), attr="actor_user")
                .switch(AuditLog)
                .join(admin, JOIN.LEFT_OUTER, on=(AuditLog.impersonator == admin.id), attr="impersonator_user")
                .switch(AuditLog)
                .join(Organization, JOIN.LEFT_OUTER, on=(AuditLog.organization == Organization.id), attr="org")
                .where((AuditLog.actor == user) | about_user)
                .order_by(AuditLog.id.desc()).limit(limit))


def last_owner_of(user: User) -> list[Organization]:
    """The organizations this user is the only owner of."""
    owned = Membership.select(Membership.organization).where(Membership.user == user,
                                                             Membership.role == permissions.OWNER)
    counts = (Membership.select(Membership.organization, fn.COUNT(Membership.id).alias("owners"))
              .where(Membership.organization.in_(owned), Membership.role == permissions.OWNER)
              .group_by(Membership.organization))
    lonely = [row.organization_id for row in counts if row.owners <= 1]
    return list(Organization.select().where(Organization.id.in_(lonely)).order_by(Organization.name)) if lonely else []


# --- export -------------------------------------------------------------------

def _safe(text: str) -> str:
    """Text a spreadsheet will not run as a formula (OWASP CSV injection)."""
    return "'" + text if text and text[0] in "=+-@\t\r" else text


def export_csv(filters: dict, chunk: int = EXPORT_CHUNK):
    """The CSV text of every user matching `filters`, oldest first, one piece
    per chunk read (keyset by id: constant memory at any size). Times are
    UTC, ISO 8601 (the header says so)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def take() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(EXPORT_COLUMNS)
    yield take()
    last = 0
    while True:
        users = list(_filtered(filters).where(User.id > last).order_by(User.id).limit(chunk))
        if not users:
            return
        by_user = memberships_of(users)
        for user in users:
            orgs = "; ".join(f"{m.organization.slug}:{m.role}" for m in by_user[user.id])
            writer.writerow([user.id, _safe(user.email), _safe(user.name), user.platform_role,
                             "true" if user.is_disabled else "false",
                             "true" if user.email_verified_at else "false",
                             _iso(user.created_at) or "", _iso(user.last_login_at) or "",
                             _iso(user.last_seen_at) or "", _safe(orgs)])
        yield take()
        if len(users) < chunk:
            return
        last = users[-1].id


# --- changing -----------------------------------------------------------------

def _other_active_superadmins(user: User) -> int:
    return (User.select().where(User.platform_role == "superadmin", User.is_disabled == False,  # noqa: E712
                                User.id != user.id).count())


def _is_self(actor: Actor, user: User) -> bool:
    return actor.user is not None and actor.user.id == user.id


def _default_verification_link(token: str) -> str:
    from costguardian.rendering import external_url  # needs the app (and a request or CG_BASE_URL)

    return external_url("account.verify_email", token=token)


def update_user(user: User, actor: Actor, *, name=None, email=None, platform_role=None,
                link_for: Callable[[str], str] | None = None) -> User:
    """Change a user's name, email and platform role (None: leave as is).
    A new email must be confirmed again: it is marked unconfirmed, every
    session of the user ends, and the confirmation link goes to the new
    address. Raises ValidationError (per field) or NotPermitted."""
    require_superadmin(actor)
    errors: dict[str, str] = {}
    changes: dict[str, list] = {}
    if name is not None:
        name = name.strip()
        if len(name) > 120:
            errors["name"] = "Use at most 120 characters."
        elif name != user.name:
            changes["name"] = [user.name, name]
    new_email = None
    if email is not None:
        try:
            normalized = accounts.normalize_email(email)
        except ValidationError as exc:
            errors["email"] = exc.errors["email"]
        else:
            if normalized != user.email:
                other = User.by_email(normalized)
                if other is not None and other.id != user.id:
                    errors["email"] = "Another account uses this address."
                else:
                    new_email = normalized
    if platform_role is not None:
        platform_role = platform_role.strip()
        if platform_role not in ("",) + PLATFORM_ROLES:
            errors["platform_role"] = "Choose none, support or superadmin."
        elif platform_role != user.platform_role:
            if _is_self(actor, user):
                errors["platform_role"] = "You cannot change your own platform role; ask another superadmin."
            elif user.is_superadmin and _other_active_superadmins(user) == 0:
                errors["platform_role"] = "This is the last active superadmin: make someone else superadmin first."
            else:
                changes["platform_role"] = [user.platform_role, platform_role]
    if errors:
        raise ValidationError(errors)
    if not changes and new_email is None:
        return user

    before_email = user.email
    try:
        with db.atomic():
            if "name" in changes:
                user.name = changes["name"][1]
            if "platform_role" in changes:
                user.platform_role = changes["platform_role"][1]
            if new_email is not None:
                user.email, user.email_verified_at = new_email, None
            user.save(only=[User.name, User.platform_role, User.email, User.email_verified_at])
            if "name" in changes:
                audit.record(actor, "user.updated", target=user, name=changes["name"])
            if "platform_role" in changes:
                before, after = changes["platform_role"]
                audit.record(actor, "user.platform_role_changed", target=user, before=before, after=after,
                             email=user.email)
            if new_email is not None:
                audit.record(actor, "user.email_changed", target=user, before=before_email, after=new_email)
    except IntegrityError as exc:  # a concurrent change took the address
        raise ValidationError({"email": "Another account uses this address."}) from exc
    if new_email is not None:
        sessions.end_all(user, "email_changed", actor)
        if not user.is_disabled:
            accounts.send_verification_email(user, link_for or _default_verification_link, actor)
    return user


def set_disabled(user: User, disabled: bool, actor: Actor) -> User:
    """Disable (every session ends; sign-in is refused) or enable an account.
    Raises NotPermitted, or RuleViolation for yourself and the last active
    superadmin."""
    require_superadmin(actor)
    if disabled == user.is_disabled:
        return user
    if disabled:
        if _is_self(actor, user):
            raise RuleViolation("You cannot disable your own account.")
        if user.is_superadmin and _other_active_superadmins(user) == 0:
            raise RuleViolation("This is the last active superadmin: make someone else superadmin first.")
    with db.atomic():
        User.update(is_disabled=disabled).where(User.id == user.id).execute()
        user.is_disabled = disabled
        audit.record(actor, "user.disabled" if disabled else "user.enabled", target=user, email=user.email)
        if disabled:
            sessions.end_all(user, "disabled", actor)
    return user


def send_password_reset(user: User, actor: Actor, link_for: Callable[[str], str], ttl_minutes: int) -> None:
    """Email the user a single-use reset link (the forgot-password one)."""
    require_superadmin(actor)
    if user.is_disabled:
        raise RuleViolation("This account is disabled: enable it first.")
    # start_password_reset audits "auth.password_reset_requested" with the admin as actor.
    accounts.start_password_reset(user.email, link_for, ttl_minutes, actor)


def delete_refusal(user: User, actor: Actor) -> str | None:
    """Why this user may not be deleted now (before the typed confirmation), or None."""
    if _is_self(actor, user):
        return "You cannot delete your own account."
    lonely = last_owner_of(user)
    if lonely:
        names = ", ".join(org.name for org in lonely)
        return (f"{user.email} is the last owner of {names}: transfer ownership first (make another member "
                "owner), or delete the organization.")
    if user.is_superadmin and _other_active_superadmins(user) == 0:
        return "This is the last active superadmin: make someone else superadmin first."
    return None


def delete_user(user: User, actor: Actor, confirm: str) -> None:
    """Delete the account for good. Memberships, sessions, sign-in identities,
    reset tokens, platform tokens, notifications and impersonations go with it
    (foreign-key cascade); the API keys they created stay (created_by emptied,
    the keys keep working); audit rows stay with the actor emptied, and the
    "user.deleted" row records who it was. Refused for yourself, the last
    owner of an organization and the last active superadmin."""
    require_superadmin(actor)
    problem = delete_refusal(user, actor)
    if problem:
        raise RuleViolation(problem)
    if (confirm or "").strip().lower() != user.email:
        raise ValidationError({"confirm": f"Type the user's email address ({user.email}) to confirm."})
    memberships = [{"id": m.organization_id, "name": m.organization.name, "role": m.role}
                   for m in Membership.for_user(user)]
    keys_kept = ApiKey.select().where(ApiKey.created_by == user).count()
    with db.atomic():
        audit.record(actor, "user.deleted", target=user, email=user.email, name=user.name,
                     platform_role=user.platform_role, organizations=memberships, api_keys_kept=keys_kept)
        # The cascades would do this; explicit, so the statement reads what happens.
        UserSession.delete().where(UserSession.user == user).execute()
        PlatformToken.delete().where(PlatformToken.user == user).execute()
        User.delete().where(User.id == user.id).execute()
