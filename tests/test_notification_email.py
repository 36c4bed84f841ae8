"""Notification email end to end: notify -> Delivery -> Huey task (inline) ->
a real SMTP server (aiosmtpd) or the local fakes of the Resend and SendGrid
APIs; the signed unsubscribe link; overrides at send time; the test send; the
daily digest."""
from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer

from costguardian import clock
from costguardian.models import (AuditLog, Delivery, DeliveryAttempt, Notification, NotificationPreference,
                                 NotificationSettings, OutboxMessage, TemplateOverride)
from costguardian.services.notifications import email as notification_email, types as notification_types, notify as notifications
from tasks import huey
from tests.support import Client, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

BASE = "https://cg.example.com"


@pytest.fixture
def team(app_ctx, make_user, make_org, monkeypatch):
    monkeypatch.setitem(app_ctx.config, "CG_BASE_URL", BASE)
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme Rockets", owner=owner)
    member = make_user("member@acme.com", name="Mia Member")
    add_member(org, member, "member")
    return org, owner, member


@pytest.fixture
def no_leftover_retries():
    yield
    huey.storage.flush_schedule()


def _example(key="budget.threshold"):
    return dict(notification_types.get(key).example)


def _notify_owner(org, owner, key="budget.threshold"):
    return notifications.notify(org, key, _example(key), recipients=[owner], webhooks=False)


def parts_by_type(message) -> dict[str, str]:
    return {part.get_content_type(): part.get_content() for part in message.walk() if not part.is_multipart()}


def _unsubscribe_path(url: str) -> str:
    assert url.startswith(BASE + "/notifications/unsubscribe/"), url
    return url[len(BASE):]


# --- through a real SMTP server ---------------------------------------------------

def test_notification_email_over_smtp_has_both_parts_and_the_headers(team, smtp_server, monkeypatch, app_ctx):
    org, owner, _ = team
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", smtp_server.url(starttls="0"))

    sent = _notify_owner(org, owner)

    [delivery] = [Delivery.get_by_id(d.id) for d in sent.deliveries]
    assert (delivery.status, delivery.attempts, delivery.channel) == ("sent", 1, "email")
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["owner@acme.com"]
    email = received.message
    assert email["From"] == app_ctx.config["MAIL_FROM"]
    assert email["To"] == "owner@acme.com"
    assert email["Subject"] == "[Acme Rockets] Engineering monthly reached 80% of its limit"
    assert email["Message-ID"].endswith("@costguardian.example.com>")
    assert email["Date"]
    unsubscribe = email["List-Unsubscribe"]
    assert unsubscribe.startswith(f"<{BASE}/notifications/unsubscribe/") and unsubscribe.endswith(">")
    assert email["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert email.get_content_type() == "multipart/alternative"
    parts = parts_by_type(email)
    assert set(parts) == {"text/plain", "text/html"}
    text, html = parts["text/plain"], parts["text/html"]
    assert "Acme Rockets" in text and "Acme Rockets" in html
    assert "has spent $812.40 of $1000.00 (81%)" in text
    assert f"{BASE}/budgets/1" in text and f'href="{BASE}/budgets/1"' in html  # the link, absolute
    assert f"{BASE}/notifications/preferences" in text and f'href="{BASE}/notifications/preferences"' in html
    assert unsubscribe[1:-1] in text and unsubscribe[1:-1] in html


def test_bare_addresses_get_no_unsubscribe_link(team, smtp_server, monkeypatch, app_ctx):
    org, _, _ = team
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", smtp_server.url(starttls="0"))

    notifications.notify(org, "member.invited", _example("member.invited"), recipients=[],
                         emails=["newcomer@example.com"])

    [received] = smtp_server.messages
    assert received.message["List-Unsubscribe"] is None
    assert received.message["List-Unsubscribe-Post"] is None
    text = parts_by_type(received.message)["text/plain"]
    assert "unsubscribe" not in text.lower() and "/notifications/preferences" not in text
    assert "Olga Owner invited you to join Acme Rockets" in text


# --- through the Resend and SendGrid API fakes -----------------------------------

def test_notification_email_through_resend(team, resend_api, monkeypatch, app_ctx):
    org, owner, _ = team
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", resend_api.url())

    sent = _notify_owner(org, owner)

    assert Delivery.get_by_id(sent.deliveries[0].id).status == "sent"
    [body] = resend_api.messages
    assert body["from"] == app_ctx.config["MAIL_FROM"]
    assert body["to"] == ["owner@acme.com"]
    assert body["subject"] == "[Acme Rockets] Engineering monthly reached 80% of its limit"
    assert "Acme Rockets" in body["text"] and "Acme Rockets" in body["html"]
    assert body["html"].lstrip().startswith("<!doctype html>")
    assert body["headers"]["List-Unsubscribe"].startswith(f"<{BASE}/notifications/unsubscribe/")
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    message = OutboxMessage.get_by_id(sent.deliveries[0].message_id)
    assert (message.status, message.backend) == ("sent", "resend")


def test_notification_email_through_sendgrid(team, sendgrid_api, monkeypatch, app_ctx):
    org, owner, _ = team
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", sendgrid_api.url())

    sent = _notify_owner(org, owner)

    assert Delivery.get_by_id(sent.deliveries[0].id).status == "sent"
    [body] = sendgrid_api.messages
    assert body["personalizations"] == [{"to": [{"email": "owner@acme.com"}]}]
    assert body["from"] == {"email": "no-reply@costguardian.example.com", "name": "Cost Guardian"}
    assert body["subject"] == "[Acme Rockets] Engineering monthly reached 80% of its limit"
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "Acme Rockets" in body["content"][0]["value"] and "Acme Rockets" in body["content"][1]["value"]
    assert body["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert OutboxMessage.get_by_id(sent.deliveries[0].message_id).backend == "sendgrid"


@pytest.mark.parametrize("kind", ["resend", "sendgrid"])
def test_an_api_answering_500_makes_the_delivery_retry_with_the_error(kind, team, resend_api, sendgrid_api,
                                                                     monkeypatch, app_ctx, no_leftover_retries):
    org, owner, _ = team
    api = {"resend": resend_api, "sendgrid": sendgrid_api}[kind]
    api.fail_with = 500
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", api.url())

    sent = _notify_owner(org, owner)

    delivery = Delivery.get_by_id(sent.deliveries[0].id)
    assert delivery.status == "retrying"
    assert delivery.attempts == 1 and delivery.next_attempt_at > clock.now()
    assert f"{kind} answered HTTP 500" in delivery.last_error and "internal error" in delivery.last_error
    [attempt] = DeliveryAttempt.select().where(DeliveryAttempt.delivery == delivery)
    assert (attempt.ok, attempt.status_code) == (False, 500)
    assert "internal error" in attempt.response_excerpt
    assert api.messages == [] and api.rejected[0][0] == 500
    assert OutboxMessage.get_by_id(delivery.message_id).status == "failed"


def test_a_wrong_api_key_fails_with_the_status(team, resend_api, monkeypatch, app_ctx, no_leftover_retries):
    org, owner, _ = team
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", resend_api.url(key="wrong"))

    sent = _notify_owner(org, owner)

    delivery = Delivery.get_by_id(sent.deliveries[0].id)
    assert delivery.status == "retrying" and "HTTP 401" in delivery.last_error
    assert resend_api.messages == []


# --- unsubscribe ---------------------------------------------------------------------

def _unsubscribe_url(org, owner, key="budget.threshold") -> str:
    message = notification_email.compose(org, notification_types.get(key),
                                         notifications.template_context(org, _example(key)), owner)
    return json.loads(message.headers)["List-Unsubscribe"][1:-1]


def test_unsubscribe_link_confirms_then_turns_that_email_off(team, app):
    org, owner, _ = team
    path = _unsubscribe_path(_unsubscribe_url(org, owner))
    anonymous = Client(app)

    page = anonymous.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Stop emails about budget threshold reached from Acme Rockets?" in html
    assert "/notifications/preferences" in html
    assert NotificationPreference.select().count() == 0  # a GET changes nothing (link scanners)

    done = anonymous.post(path, csrf=False)
    assert done.status_code == 200
    assert "will no longer get emails about budget threshold reached" in done.get_data(as_text=True)
    pref = NotificationPreference.get(NotificationPreference.user == owner)
    assert (pref.event_type, pref.email, pref.in_app) == ("budget.threshold", False, True)
    audit = AuditLog.get(AuditLog.action == "notifications.unsubscribed")
    assert audit.organization_id == org.id and audit.actor_id == owner.id
    assert audit.detail["event_type"] == "budget.threshold"

    sent = notifications.notify(org, "budget.threshold", _example(), recipients=[owner], webhooks=False)
    assert sent.deliveries == [] and sent.notifications[0].in_app


def test_one_click_post_from_a_mail_client_needs_no_session_or_csrf(team, app):
    org, owner, _ = team
    path = _unsubscribe_path(_unsubscribe_url(org, owner, "key.rotated"))

    response = app.test_client().post(path, data={"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    assert NotificationPreference.get(NotificationPreference.user == owner).event_type == "key.rotated"


@pytest.mark.parametrize("mangle", [lambda t: t[:-3] + "abc", lambda t: "nonsense", lambda t: t[::-1]])
def test_a_damaged_unsubscribe_link_is_a_clear_400(team, app, mangle):
    org, owner, _ = team
    token = _unsubscribe_path(_unsubscribe_url(org, owner)).rsplit("/", 1)[1]
    client = Client(app)

    for response in (client.get(f"/notifications/unsubscribe/{mangle(token)}"),
                     client.post(f"/notifications/unsubscribe/{mangle(token)}", csrf=False)):
        assert response.status_code == 400
        assert "This unsubscribe link is not valid." in response.get_data(as_text=True)
    assert NotificationPreference.select().count() == 0


def test_an_expired_unsubscribe_link_is_refused(team, app, monkeypatch):
    org, owner, _ = team
    import itsdangerous.timed

    sixty_one_days_ago = clock.now().timestamp() - 61 * 24 * 3600
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: sixty_one_days_ago)
    token = notification_email.unsubscribe_token(org.id, owner.id, "budget.threshold")
    monkeypatch.undo()

    response = Client(app).post(f"/notifications/unsubscribe/{token}", csrf=False)

    assert response.status_code == 400
    assert "This unsubscribe link is expired." in response.get_data(as_text=True)


def test_a_token_signed_with_another_salt_or_key_is_refused(team, app):
    org, owner, _ = team
    payload = {"o": org.id, "u": owner.id, "e": "budget.threshold"}
    for token in (URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="other").dumps(payload),
                  URLSafeTimedSerializer("another-secret", salt="unsubscribe").dumps(payload)):
        assert Client(app).get(f"/notifications/unsubscribe/{token}").status_code == 400


def test_a_link_for_an_ended_membership_no_longer_applies(team, app):
    org, _, member = team
    token = notification_email.unsubscribe_token(org.id, member.id, "budget.threshold")
    from costguardian.models import Membership
    Membership.delete().where(Membership.user == member).execute()

    response = Client(app).get(f"/notifications/unsubscribe/{token}")

    assert response.status_code == 400
    assert "no longer applies" in response.get_data(as_text=True)


# --- overrides at send time --------------------------------------------------------

def test_compose_uses_the_organizations_override(team):
    org, owner, _ = team
    TemplateOverride.create(organization=org, event_type="budget.threshold",
                            subject="Heads up: {{ budget|upper }} at {{ percent }}%",
                            body="Hi {{ org.name }} team,\n\n{{ budget }} is at ${{ spent_usd }}.\nSee https://wiki.example.com/budgets")

    message = notification_email.compose(org, notification_types.get("budget.threshold"),
                                         notifications.template_context(org, _example()), owner, link="/budgets/1")

    assert message.subject == "[Acme Rockets] Heads up: ENGINEERING MONTHLY at 81%"
    assert "Hi Acme Rockets team,\n\nEngineering monthly is at $812.40." in message.text_body
    assert "<p>Hi Acme Rockets team,</p>" in message.html_body
    assert '<a href="https://wiki.example.com/budgets">https://wiki.example.com/budgets</a>' in message.html_body


def test_an_override_that_fails_at_send_time_falls_back_to_the_default(team, caplog):
    org, owner, _ = team
    TemplateOverride.create(organization=org, event_type="budget.threshold", subject="{{ 1/0 }}", body="x")

    with caplog.at_level(logging.WARNING, logger="costguardian.services.notifications.templates"):
        message = notification_email.compose(org, notification_types.get("budget.threshold"),
                                             notifications.template_context(org, _example()), owner)

    assert message.subject == "[Acme Rockets] Engineering monthly reached 80% of its limit"
    assert "division by zero" in caplog.text and "using the default" in caplog.text


def test_override_html_is_escaped(team):
    org, owner, _ = team
    TemplateOverride.create(organization=org, event_type="system.test", subject="Test",
                            body="<script>alert(1)</script> {{ message }}")
    context = notifications.template_context(org, {"sender": "x", "message": "<b>hi</b>"})

    message = notification_email.compose(org, notification_types.get("system.test"), context, owner)

    assert "<script>" not in message.html_body and "&lt;script&gt;" in message.html_body
    assert "&lt;b&gt;hi&lt;/b&gt;" in message.html_body


# --- the test send ------------------------------------------------------------------

def test_send_test_builds_the_example_email_for_me_only(team, smtp_server, monkeypatch, app_ctx):
    org, owner, member = team
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", smtp_server.url(starttls="0"))
    # Even with email off for this type, a test send reaches the person who asked.
    NotificationPreference.create(organization=org, user=owner, event_type="key.expiring", in_app=True, email=False)

    delivery = notification_email.send_test(org, notification_types.get("key.expiring"), owner)

    delivery = Delivery.get_by_id(delivery.id)
    assert (delivery.status, delivery.channel, delivery.event_type, delivery.recipient) == (
        "sent", "email", "key.expiring", "owner@acme.com")
    [received] = smtp_server.messages
    # strip(): the stdlib folds a subject of exactly this length right after "Subject:"
    assert received.message["Subject"].strip() == "[Test] [Acme Rockets] API key ci-pipeline expires on 2026-12-01 10:00 CET"
    assert Notification.select().count() == 0  # nothing in anyone's bell


# --- the daily digest ---------------------------------------------------------------

def _choose_daily(org, user):
    NotificationSettings.create(organization=org, user=user, email_digest="daily")


def test_daily_digest_sends_one_email_and_clears_exactly_those_notifications(team, smtp_server, monkeypatch,
                                                                            app_ctx):
    org, owner, member = team
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", smtp_server.url(starttls="0"))
    _choose_daily(org, owner)
    first = _notify_owner(org, owner, "budget.threshold")
    second = _notify_owner(org, owner, "key.rotated")
    assert first.deliveries == [] and second.deliveries == [] and smtp_server.messages == []
    in_app_only = notifications.notify(org, "member.joined", _example("member.joined"), recipients=[owner])
    assert not in_app_only.notifications[0].digest_pending  # email off by default for this type

    created = notification_email.send_digests()

    [delivery] = [Delivery.get_by_id(d.id) for d in created]
    assert (delivery.channel, delivery.event_type, delivery.status, delivery.recipient) == (
        "email", "digest.daily", "sent", "owner@acme.com")
    [received] = smtp_server.messages
    assert received.message["Subject"] == "[Acme Rockets] 2 notifications"
    assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    parts = parts_by_type(received.message)
    for part in parts.values():
        assert "Engineering monthly reached 80% of its limit" in part
        assert "API key ci-pipeline was rotated" in part
        assert f"{BASE}/budgets/1" in part and f"{BASE}/notifications/preferences" in part
    assert set(parts) == {"text/plain", "text/html"}
    assert Notification.select().where(Notification.digest_pending == True).count() == 0  # noqa: E712
    settings = NotificationSettings.get(NotificationSettings.user == owner)
    assert settings.last_digest_at is not None


def test_digest_waits_23_hours_between_emails(team):
    org, owner, _ = team
    _choose_daily(org, owner)
    _notify_owner(org, owner)
    start = clock.now()
    assert len(notification_email.send_digests(now=start)) == 1

    _notify_owner(org, owner, "key.expiring")
    assert notification_email.send_digests(now=start + timedelta(hours=22, minutes=59)) == []
    assert Notification.select().where(Notification.digest_pending == True).count() == 1  # noqa: E712

    [later] = notification_email.send_digests(now=start + timedelta(hours=23))
    message = OutboxMessage.get_by_id(later.message_id)
    assert message.subject == "[Acme Rockets] 1 notification"
    assert "API key ci-pipeline expires on 2026-12-01 10:00 CET" in message.text_body
    assert "reached 80%" not in message.text_body  # already in the first digest


def test_digests_are_per_organization_and_member(team, make_org):
    org, owner, member = team
    other = make_org("Beta Labs", owner=owner)
    for o in (org, other):
        _choose_daily(o, owner)
        _notify_owner(o, owner)
    NotificationSettings.create(organization=org, user=member, email_digest="daily")
    notifications.notify(org, "system.test", {"sender": "x", "message": ""}, recipients=[member], webhooks=False)

    created = notification_email.send_digests()

    subjects = sorted(OutboxMessage.get_by_id(d.message_id).subject for d in created)
    assert subjects == ["[Acme Rockets] 1 notification", "[Acme Rockets] 1 notification",
                        "[Beta Labs] 1 notification"]
    assert sorted(d.recipient for d in created) == ["member@acme.com", "owner@acme.com", "owner@acme.com"]


def test_pending_notifications_of_a_departed_member_are_dropped(team):
    org, _, member = team
    _choose_daily(org, member)
    notifications.notify(org, "system.test", {"sender": "x", "message": ""}, recipients=[member], webhooks=False)
    from costguardian.models import Membership
    Membership.delete().where(Membership.user == member).execute()

    assert notification_email.send_digests() == []
    assert Notification.select().where(Notification.digest_pending == True).count() == 0  # noqa: E712


def test_the_digest_unsubscribe_link_stops_every_email_from_the_org(team, app):
    org, owner, _ = team
    _choose_daily(org, owner)
    _notify_owner(org, owner)
    [delivery] = notification_email.send_digests()
    url = json.loads(OutboxMessage.get_by_id(delivery.message_id).headers)["List-Unsubscribe"][1:-1]
    client = Client(app)

    assert "Stop emails about any notification from Acme Rockets?" in client.get(_unsubscribe_path(url)).get_data(
        as_text=True)
    assert client.post(_unsubscribe_path(url), csrf=False).status_code == 200

    prefs = NotificationPreference.select().where(NotificationPreference.user == owner)
    assert {p.event_type for p in prefs} == set(notification_types.REGISTRY)
    assert not any(p.email for p in prefs)


def test_send_digests_runs_hourly_as_a_periodic_task():
    from datetime import datetime

    from tasks import send_digests

    task = send_digests.task_class
    assert task in huey._registry._periodic_tasks
    assert task().validate_datetime(datetime(2026, 11, 26, 14, 5))
    assert not task().validate_datetime(datetime(2026, 11, 26, 14, 6))
