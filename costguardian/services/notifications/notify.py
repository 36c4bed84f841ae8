"""`notify`: the one way any feature tells anyone anything.

It stores a Notification per recipient, decides each recipient's channels from
their preferences (else their role's defaults), and creates a Delivery for
every email and webhook send, which a Huey task carries out after the rows are
committed. Nothing is sent inside the caller's request.

Also here: the queries behind the bell and the notification center, and the
preferences a member sets for themselves.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from peewee import IntegrityError

from costguardian import clock
from costguardian.db import write_transaction
from costguardian.extensions import db
from costguardian.models import (Delivery, Membership, Notification, NotificationOnce, NotificationPreference,
                                 NotificationSettings,
                                 Organization, User, WebhookEndpoint)
from costguardian.services.notifications import types
from costguardian.services.errors import ValidationError

# Payload templates and organizations' overrides run here: no attribute access
# to internals, no mutation, nothing but the variables they are given.
sandbox = ImmutableSandboxedEnvironment(autoescape=False, trim_blocks=True, lstrip_blocks=True)

DIGEST_CHOICES = {"immediate": "Immediately, one email per notification", "daily": "Once a day, in one digest"}


def render_text(source: str, context: dict) -> str:
    return sandbox.from_string(source).render(**context)


def _jsonable(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"notification payloads must be JSON: {type(value).__name__} is not")


@dataclass
class Sent:
    event_id: str
    notifications: list = field(default_factory=list)
    deliveries: list = field(default_factory=list)


def org_context(org: Organization) -> dict:
    return {"id": org.id, "name": org.name, "slug": org.slug}


def template_context(org: Organization, payload: dict) -> dict:
    return {**payload, "org": org_context(org)}


def notify(org: Organization, event_type: str, payload: dict, recipients=None, *, emails=(),
           link: str | None = None, webhooks: bool = True, severity: str | None = None,
           once: str | None = None) -> Sent | None:
    """Tell the organization's `recipients` (Users, Memberships or user ids;
    None: the event type's default roles) about `event_type`. `emails` adds
    addresses that get the email only (people who are not members yet).
    `once` names an event the organization hears about only once (e.g. "no
    price for this model"): a second call with the same key sends nothing and
    returns None, even from concurrent workers (a unique key guards it).
    Returns what was stored; deliveries go out through the queue."""
    from costguardian.services.notifications import deliveries, email as notification_email, webhooks as webhook_service

    etype = types.get(event_type)
    payload = json.loads(json.dumps(payload or {}, default=_jsonable))
    context = template_context(org, payload)
    title = _safe_render(etype.title, context, etype.label)[:255]
    body = _safe_render(etype.body, context, "")
    link = link if link is not None else _safe_render(etype.link, context, "")
    data = json.dumps(payload, sort_keys=True)
    sent = Sent(event_id=uuid.uuid4().hex)
    members = _recipients(org, etype, recipients)
    prefs = _preferences(org, [m.user_id for m in members], event_type)
    digests = _digest_choices(org, [m.user_id for m in members])
    now = clock.now()
    with write_transaction():
        # The once-key and what it announces commit together: a failure
        # below leaves the key free for the next attempt.
        if once is not None and not _claim_once(org, once[:255]):
            return None
        for membership in members:
            channels = prefs.get(membership.user_id) or types.default_channels(etype, membership.role)
            daily = digests.get(membership.user_id) == "daily"
            notification = Notification.create(
                organization=org, user=membership.user_id, event_id=sent.event_id, event_type=event_type,
                severity=severity or etype.severity, title=title, body=body, link=link[:500], data=data,
                in_app=channels[types.IN_APP], email=channels[types.EMAIL],
                digest_pending=channels[types.EMAIL] and daily, created_at=now)
            sent.notifications.append(notification)
            if channels[types.EMAIL] and not daily:
                message = notification_email.compose(org, etype, context, membership.user, link=link)
                sent.deliveries.append(_delivery(org, sent.event_id, event_type, "email", membership.user.email,
                                                 notification=notification, message=message))
        for address in dict.fromkeys(a.strip().lower() for a in emails if a and a.strip()):
            message = notification_email.compose(org, etype, context, None, address=address, link=link)
            sent.deliveries.append(_delivery(org, sent.event_id, event_type, "email", address, message=message))
        if webhooks and event_type not in types.NOT_FOR_WEBHOOKS:
            endpoints = [e for e in WebhookEndpoint.in_org(org).where(WebhookEndpoint.is_active == True)  # noqa: E712
                         if e.wants(event_type)]
            for endpoint in endpoints:
                body_json = webhook_service.body_for(endpoint, sent.event_id, etype, org, payload, now,
                                                     title=title, text=body, link=link)
                sent.deliveries.append(_delivery(org, sent.event_id, event_type, "webhook", endpoint.url,
                                                 endpoint=endpoint, payload=body_json))
    for delivery in sent.deliveries:
        deliveries.enqueue(delivery)
    return sent


def _claim_once(org, key: str) -> bool:
    if NotificationOnce.in_org(org).where(NotificationOnce.key == key).exists():
        return False
    try:
        with db.atomic():
            NotificationOnce.create(organization=org, key=key)
    except IntegrityError:
        return False
    return True


def _safe_render(source: str, context: dict, fallback: str) -> str:
    try:
        return render_text(source, context).strip()
    except TemplateError:
        return fallback


def _delivery(org, event_id, event_type, channel, recipient, **fields) -> Delivery:
    return Delivery.create(organization=org, event_id=event_id, event_type=event_type, channel=channel,
                           recipient=recipient[:2000], status="queued", next_attempt_at=clock.now(), **fields)


def _recipients(org: Organization, etype: types.EventType, recipients) -> list[Membership]:
    """Members of this organization only, each once, with their users."""
    query = Membership.in_org(org).select(Membership, User).join(User).where(User.is_disabled == False)  # noqa: E712
    if recipients is None:
        return list(query.where(Membership.role.in_(etype.roles)).order_by(Membership.id))
    ids = set()
    for r in recipients:
        if isinstance(r, Membership):
            ids.add(r.user_id)
        elif isinstance(r, User):
            ids.add(r.id)
        else:
            ids.add(int(r))
    if not ids:
        return []
    return list(query.where(Membership.user.in_(sorted(ids))).order_by(Membership.id))


def _preferences(org, user_ids, event_type) -> dict[int, dict[str, bool]]:
    if not user_ids:
        return {}
    rows = NotificationPreference.in_org(org).where(NotificationPreference.user.in_(user_ids),
                                                    NotificationPreference.event_type == event_type)
    return {p.user_id: {types.IN_APP: p.in_app, types.EMAIL: p.email} for p in rows}


def _digest_choices(org, user_ids) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = NotificationSettings.in_org(org).where(NotificationSettings.user.in_(user_ids))
    return {s.user_id: s.email_digest for s in rows}


# --- the bell and the notification center ---------------------------------------

PER_PAGE = 25


def visible(org, user):
    return Notification.in_org(org).where(Notification.user == user, Notification.in_app == True)  # noqa: E712


def unread_count(org, user) -> int:
    return visible(org, user).where(Notification.read_at.is_null()).count()


def latest(org, user, limit: int = 8) -> list[Notification]:
    return list(visible(org, user).order_by(Notification.created_at.desc(), Notification.id.desc()).limit(limit))


@dataclass
class Filters:
    status: str = ""  # "", unread, read
    event_type: str = ""
    severity: str = ""
    page: int = 1


def parse_filters(args) -> Filters:
    status = args.get("status", "")
    event_type = args.get("type", "")
    severity = args.get("severity", "")
    try:
        page = min(max(int(args.get("page", 1)), 1), 100_000)
    except (TypeError, ValueError):
        page = 1
    return Filters(status if status in ("unread", "read") else "",
                   event_type if event_type in types.REGISTRY else "",
                   severity if severity in types.SEVERITIES else "", page)


def search(org, user, filters: Filters) -> tuple[list[Notification], bool]:
    query = visible(org, user)
    if filters.status == "unread":
        query = query.where(Notification.read_at.is_null())
    elif filters.status == "read":
        query = query.where(Notification.read_at.is_null(False))
    if filters.event_type:
        query = query.where(Notification.event_type == filters.event_type)
    if filters.severity:
        query = query.where(Notification.severity == filters.severity)
    rows = list(query.order_by(Notification.created_at.desc(), Notification.id.desc())
                .offset((filters.page - 1) * PER_PAGE).limit(PER_PAGE + 1))
    return rows[:PER_PAGE], len(rows) > PER_PAGE


def get_own(org, user, notification_id) -> Notification | None:
    notification = Notification.get_in_org(org, notification_id)
    if notification is None or notification.user_id != user.id:
        return None
    return notification


def _ids(values) -> list[int]:
    ids = []
    for v in values:
        try:
            i = int(v)
        except (TypeError, ValueError):
            continue
        if 0 < i < 2**31:
            ids.append(i)
    return ids[:500]


def set_read(org, user, ids, read: bool = True) -> int:
    """Mark the user's own notifications read (or unread); returns how many changed."""
    ids = _ids(ids)
    if not ids:
        return 0
    query = Notification.update(read_at=clock.now() if read else None).where(
        Notification.organization == org, Notification.user == user, Notification.id.in_(ids),
        Notification.read_at.is_null() if read else Notification.read_at.is_null(False))
    return query.execute()


def mark_all_read(org, user) -> int:
    return (Notification.update(read_at=clock.now())
            .where(Notification.organization == org, Notification.user == user,
                   Notification.read_at.is_null()).execute())


# --- preferences ------------------------------------------------------------------

def preference_table(org, membership) -> list[dict]:
    """Every event type with the member's channels (their choice or the role default)."""
    chosen = {p.event_type: p for p in NotificationPreference.in_org(org)
              .where(NotificationPreference.user == membership.user_id)}
    rows = []
    for etype in types.REGISTRY.values():
        default = types.default_channels(etype, membership.role)
        pref = chosen.get(etype.key)
        current = {types.IN_APP: pref.in_app, types.EMAIL: pref.email} if pref else default
        rows.append({"type": etype, "channels": current, "default": default, "custom": pref is not None})
    return rows


def digest_choice(org, user) -> str:
    row = NotificationSettings.in_org(org).where(NotificationSettings.user == user).first()
    return row.email_digest if row else "immediate"


def save_preferences(org, membership, form, digest: str) -> None:
    """`form` maps "<type>:<channel>" to a truthy value for every channel turned on."""
    if digest not in DIGEST_CHOICES:
        raise ValidationError({"digest": "Choose immediately or a daily digest."})
    user_id = membership.user_id
    with write_transaction():
        for etype in types.REGISTRY.values():
            wanted = {c: bool(form.get(f"{etype.key}:{c}")) for c in types.CHANNELS}
            existing = NotificationPreference.in_org(org).where(
                NotificationPreference.user == user_id, NotificationPreference.event_type == etype.key).first()
            if wanted == types.default_channels(etype, membership.role):
                if existing:
                    existing.delete_instance()
                continue
            if existing:
                existing.in_app, existing.email, existing.updated_at = wanted[types.IN_APP], wanted[types.EMAIL], clock.now()
                existing.save()
            else:
                NotificationPreference.create(organization=org, user=user_id, event_type=etype.key,
                                              in_app=wanted[types.IN_APP], email=wanted[types.EMAIL])
        settings = NotificationSettings.in_org(org).where(NotificationSettings.user == user_id).first()
        if settings is None:
            NotificationSettings.create(organization=org, user=user_id, email_digest=digest)
        elif settings.email_digest != digest:
            settings.email_digest = digest
            settings.save()


def unsubscribe(org, user, event_type: str) -> None:
    """Turn email off for one event type (the link in every email)."""
    membership = Membership.of(user, org)
    if membership is None or event_type not in types.REGISTRY:
        return
    etype = types.get(event_type)
    with db.atomic():
        existing = NotificationPreference.in_org(org).where(
            NotificationPreference.user == user, NotificationPreference.event_type == event_type).first()
        in_app = existing.in_app if existing else types.default_channels(etype, membership.role)[types.IN_APP]
        if existing:
            existing.email, existing.updated_at = False, clock.now()
            existing.save()
        else:
            NotificationPreference.create(organization=org, user=user, event_type=event_type,
                                          in_app=in_app, email=False)
