"""Notification emails: composed from the event type's templates (or the
organization's override, services.notifications.templates) into an OutboxMessage,
sent by the delivery task through the configured mail backend
(services.notifications.mail). Also here: the signed one-click unsubscribe links, the test
send from the template editor and the daily digest.
"""
from __future__ import annotations

import contextlib
import json
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urljoin

from flask import current_app, has_request_context, render_template
from itsdangerous import BadSignature, URLSafeTimedSerializer
from markupsafe import Markup, escape

from costguardian import clock, signing
from costguardian.db import write_transaction
from costguardian.models import (Delivery, Membership, Notification, NotificationSettings, Organization,
                                 OutboxMessage, User)
from costguardian.rendering import external_url
from costguardian.services.notifications import mail
from costguardian.services.team import audit
from costguardian.services.notifications import types
from costguardian.services.notifications.deliveries import AttemptResult
from costguardian.timefmt import format_time

UNSUBSCRIBE_SALT = "unsubscribe"
UNSUBSCRIBE_MAX_AGE = 60 * 24 * 3600  # seconds: links in old emails keep working for 60 days
ALL_TYPES = "*"  # an unsubscribe token for every event type (the digest's link)
DIGEST_EVENT = "digest.daily"
DIGEST_INTERVAL = timedelta(hours=23)  # hourly runs, so "once a day" drifts by at most an hour
DIGEST_MAX_ITEMS = 50  # listed in one digest; the rest are summed up with a link to the center


# --- URLs ---------------------------------------------------------------------------

@contextlib.contextmanager
def _url_context():
    """Absolute URLs need a request; a worker (or a test) has none, so lend
    one on CG_BASE_URL (external_url prefers it anyway)."""
    if has_request_context():
        yield
        return
    base = current_app.config.get("CG_BASE_URL") or "http://localhost:5000"
    with current_app.test_request_context("/", base_url=base):
        yield


def _absolute(link: str) -> str:
    """The app path a notification links to, as an absolute URL for email."""
    return urljoin(external_url("dashboard.index"), link) if link else ""


def _serializer() -> URLSafeTimedSerializer:
    return signing.serializer(UNSUBSCRIBE_SALT)


def unsubscribe_token(org_id: int, user_id: int, event_type: str) -> str:
    return _serializer().dumps({"o": org_id, "u": user_id, "e": event_type})


@dataclass
class Unsubscription:
    org: Organization
    user: User
    event_type: str  # a registry key, or ALL_TYPES

    @property
    def label(self) -> str:
        if self.event_type == ALL_TYPES:
            return "any notification"
        return as_phrase(types.get(self.event_type).label)


def as_phrase(label: str) -> str:
    """A label inside a sentence: "Budget exceeded" -> "budget exceeded", "API key rotated" stays."""
    if len(label) > 1 and label[1].isupper():
        return label
    return label[:1].lower() + label[1:]


class InvalidLink(Exception):
    """An unsubscribe link that is forged, damaged, expired or no longer applies."""


def read_unsubscribe_token(token: str) -> Unsubscription:
    try:
        data = _serializer().loads(token, max_age=UNSUBSCRIBE_MAX_AGE)
        org_id, user_id, event_type = int(data["o"]), int(data["u"]), str(data["e"])
    except BadSignature as exc:  # also SignatureExpired
        expired = "expired" if "age" in str(exc).lower() else "not valid"
        raise InvalidLink(f"This unsubscribe link is {expired}.") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidLink("This unsubscribe link is not valid.") from exc
    org = Organization.get_or_none(Organization.id == org_id)
    user = User.get_or_none(User.id == user_id)
    if org is None or user is None or Membership.of(user, org) is None:
        raise InvalidLink("This unsubscribe link no longer applies: the membership it was sent for has ended.")
    if event_type != ALL_TYPES and event_type not in types.REGISTRY:
        raise InvalidLink("This unsubscribe link is not valid.")
    return Unsubscription(org, user, event_type)


def apply_unsubscribe(unsubscription: Unsubscription, actor) -> None:
    """Turn email off for the link's event type (every type for ALL_TYPES); audited."""
    from costguardian.services.notifications import notify as notifications

    keys = list(types.REGISTRY) if unsubscription.event_type == ALL_TYPES else [unsubscription.event_type]
    with write_transaction():
        for key in keys:
            notifications.unsubscribe(unsubscription.org, unsubscription.user, key)
        audit.record(actor, "notifications.unsubscribed", org=unsubscription.org, target=unsubscription.user,
                     event_type=unsubscription.event_type)


# --- rendering ---------------------------------------------------------------------

_URL = re.compile(r"https?://[^\s<>\"']+[^\s<>\"'.,;:!?)]")


def _linked(paragraph: str) -> str:
    """Escape a paragraph, with its URLs as links (split first, so escaping
    cannot glue an entity onto a URL)."""
    out, last = [], 0
    for match in _URL.finditer(paragraph):
        url = escape(match.group(0))
        out += [str(escape(paragraph[last:match.start()])), f'<a href="{url}">{url}</a>']
        last = match.end()
    out.append(str(escape(paragraph[last:])))
    return "".join(out)


def text_to_html(text: str) -> Markup:
    """Plain text as HTML: escaped, paragraphs on blank lines, line breaks kept, URLs linked."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    return Markup("\n".join("<p>" + _linked(p).replace("\n", "<br>\n") + "</p>" for p in paragraphs))


def one_line(text: str) -> str:
    """A header-safe subject: no line breaks, single spaces."""
    return " ".join(text.split())


@dataclass
class Rendered:
    subject: str
    text: str
    html: str
    headers: dict


def render_parts(org_name: str, title: str, text: str, *, link: str = "", user_id: int | None = None,
                 org_id: int | None = None, event_type: str = "", etype_label: str = "") -> Rendered:
    """Subject, both bodies and the headers of one notification email."""
    with _url_context():
        link_url = _absolute(link)
        preferences_url = unsubscribe_url = ""
        if user_id is not None:
            preferences_url = external_url("notifications.preferences")
            unsubscribe_url = external_url("unsubscribe.confirm",
                                           token=unsubscribe_token(org_id, user_id, event_type))
        ctx = dict(org_name=org_name, title=title, text=text, text_html=text_to_html(text), link_url=link_url,
                   preferences_url=preferences_url, unsubscribe_url=unsubscribe_url, etype_label=as_phrase(etype_label))
        body_text = render_template("emails/notification.txt", **ctx)
        body_html = render_template("emails/notification.html", **ctx)
    return Rendered(one_line(f"[{org_name}] {title}")[:255], body_text, body_html,
                    _headers(unsubscribe_url))


def _headers(unsubscribe_url: str) -> dict:
    headers = {"Auto-Submitted": "auto-generated"}
    if unsubscribe_url:  # RFC 8058: mail clients may POST to it with List-Unsubscribe=One-Click
        headers["List-Unsubscribe"] = f"<{unsubscribe_url}>"
        headers["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    return headers


def render_for(org, etype, context: dict, user=None, link: str = "") -> Rendered:
    """The org's override when it has one and it renders; else the event type's defaults."""
    from costguardian.services.notifications import templates as email_templates

    title, text = email_templates.render_email(org, etype, context)
    return render_parts(context["org"]["name"], title, text, link=link,
                        user_id=user.id if user is not None else None, org_id=org.id, event_type=etype.key,
                        etype_label=etype.label)


def compose(org, etype, context: dict, user=None, *, address: str | None = None, link: str = "") -> OutboxMessage:
    """Render one email for one recipient (a member `user`, or a bare `address`,
    who gets no unsubscribe link: they are not a member with preferences)."""
    to = user.email if user is not None else address
    rendered = render_for(org, etype, context, user, link)
    return _store(to, rendered)


def _store(to: str, rendered: Rendered) -> OutboxMessage:
    return OutboxMessage.create(to_address=to, subject=rendered.subject, text_body=rendered.text,
                                html_body=rendered.html, headers=json.dumps(rendered.headers))


# --- the channel (services.notifications.deliveries calls these) ---------------------------------

def send(delivery) -> AttemptResult:
    message = OutboxMessage.get_or_none(OutboxMessage.id == delivery.message_id)
    if message is None:
        return AttemptResult(ok=False, error="The message was deleted.", retryable=False)
    try:
        mail.transmit(message)
    except mail.MailApiError as exc:
        return AttemptResult(ok=False, status_code=exc.status_code, error=str(exc), response_excerpt=exc.excerpt)
    except Exception as exc:
        return AttemptResult(ok=False, error=f"{type(exc).__name__}: {exc}")
    return AttemptResult(ok=True)


def after_attempt(delivery, result) -> None:
    return None


# --- a test send from the template editor -------------------------------------------

def send_test(org, etype, user) -> Delivery:
    """The event type's email with its example payload, to `user` only,
    whatever their preferences say (they asked for it)."""
    from costguardian.services.notifications import deliveries
    from costguardian.services.notifications.notify import template_context

    context = template_context(org, dict(etype.example))
    with write_transaction():
        message = compose(org, etype, context, user, link=_example_link(etype, context))
        message.subject = one_line(f"[Test] {message.subject}")[:255]
        message.save()
        delivery = Delivery.create(organization=org, event_id=uuid.uuid4().hex, event_type=etype.key,
                                   channel="email", message=message, recipient=user.email[:2000],
                                   status="queued", next_attempt_at=clock.now())
    deliveries.enqueue(delivery)
    return delivery


def _example_link(etype, context) -> str:
    from costguardian.services.notifications.notify import render_text

    try:
        return render_text(etype.link, context).strip()
    except Exception:
        return ""


# --- the daily digest -------------------------------------------------------------

def send_digests(now=None) -> list[Delivery]:
    """One email per (organization, member) with notifications waiting for a
    digest, when their last digest is at least 23 hours old (or there was none).
    The notifications it lists are cleared in the same transaction as the
    message is stored, so none is sent twice or lost. Returns the deliveries."""
    from costguardian.services.notifications import deliveries

    now = now or clock.now()
    pairs = (Notification.select(Notification.organization, Notification.user)
             .where(Notification.digest_pending == True)  # noqa: E712
             .group_by(Notification.organization, Notification.user).tuples())
    created = []
    for org_id, user_id in list(pairs):
        delivery = _digest_one(org_id, user_id, now)
        if delivery is not None:
            created.append(delivery)
    for delivery in created:
        deliveries.enqueue(delivery)
    return created


class _Raced(Exception):
    """Another run took some of these notifications first."""


def _digest_one(org_id: int, user_id: int, now) -> Delivery | None:
    settings = NotificationSettings.select().where(NotificationSettings.organization == org_id,
                                                   NotificationSettings.user == user_id).first()
    if settings is not None and settings.last_digest_at is not None and now - settings.last_digest_at < DIGEST_INTERVAL:
        return None
    org = Organization.get_or_none(Organization.id == org_id)
    user = User.get_or_none(User.id == user_id)
    pending = (Notification.select().where(Notification.organization == org_id, Notification.user == user_id,
                                           Notification.digest_pending == True)  # noqa: E712
               .order_by(Notification.created_at, Notification.id))
    ids = [n.id for n in pending]
    if org is None or user is None or user.is_disabled or Membership.of(user, org) is None:
        # Nobody to tell any more: let the rows go rather than retry them every hour.
        Notification.update(digest_pending=False).where(Notification.id.in_(ids)).execute()
        return None
    try:
        with write_transaction():
            cleared = (Notification.update(digest_pending=False)
                       .where(Notification.id.in_(ids), Notification.digest_pending == True)  # noqa: E712
                       .execute())
            if cleared != len(ids):
                raise _Raced()
            message = _store(user.email, render_digest(org, user, list(pending)))
            delivery = Delivery.create(organization=org, event_id=uuid.uuid4().hex, event_type=DIGEST_EVENT,
                                       channel="email", message=message, recipient=user.email[:2000],
                                       status="queued", next_attempt_at=now)
            if settings is None:
                NotificationSettings.create(organization=org, user=user, email_digest="daily", last_digest_at=now)
            else:
                (NotificationSettings.update(last_digest_at=now)
                 .where(NotificationSettings.id == settings.id).execute())
    except _Raced:
        return None
    return delivery


def render_digest(org, user, notifications: list) -> Rendered:
    count = len(notifications)
    shown = notifications[-DIGEST_MAX_ITEMS:]  # the newest, when there are very many
    with _url_context():
        items = [{"title": n.title, "body": n.body, "link_url": _absolute(n.link), "severity": n.severity,
                  "created_at": format_time(n.created_at, org)} for n in shown]
        unsubscribe_url = external_url("unsubscribe.confirm", token=unsubscribe_token(org.id, user.id, ALL_TYPES))
        ctx = dict(org_name=org.name, items=items, count=count, more=count - len(shown),
                   center_url=external_url("notifications.index"),
                   preferences_url=external_url("notifications.preferences"), unsubscribe_url=unsubscribe_url)
        text = render_template("emails/digest.txt", **ctx)
        html = render_template("emails/digest.html", **ctx)
    noun = "notification" if count == 1 else "notifications"
    return Rendered(one_line(f"[{org.name}] {count} {noun}")[:255], text, html, _headers(unsubscribe_url))
