"""notify, the bell, the notification center, preferences and the delivery machinery."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.models import Delivery, DeliveryAttempt, Notification, NotificationPreference, OutboxMessage
from costguardian.services.notifications import deliveries, notify as notifications
from costguardian.services.notifications.deliveries import AttemptResult
from tests.support import Client, add_member


@pytest.fixture
def team(app_ctx, make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    admin = make_user("admin@acme.com", name="Adam Admin")
    member = make_user("member@acme.com", name="Mia Member")
    add_member(org, admin, "admin")
    add_member(org, member, "member")
    return org, owner, admin, member


def _budget_payload(**extra):
    return {"budget": "Engineering", "budget_id": 7, "scope": "Department Engineering", "spent_usd": "80.00",
            "limit_usd": "100.00", "percent": 80, "threshold": 80, "period": "November 2026", **extra}


# --- notify --------------------------------------------------------------------

def test_notify_stores_one_notification_per_default_recipient_and_emails_by_role(team):
    org, owner, admin, member = team
    sent = notifications.notify(org, "budget.threshold", _budget_payload())
    # budget.threshold goes to owners, admins and billing by default; not to members.
    assert sorted(n.user_id for n in sent.notifications) == sorted([owner.id, admin.id])
    assert {n.title for n in sent.notifications} == {"Engineering reached 80% of its limit"}
    assert all(n.link == "/budgets/7" and n.severity == "warning" for n in sent.notifications)
    assert len({n.event_id for n in sent.notifications}) == 1
    emails = [d for d in sent.deliveries if d.channel == "email"]
    assert sorted(d.recipient for d in emails) == ["admin@acme.com", "owner@acme.com"]
    # Immediate mode ran the delivery task: sent through the console backend.
    assert {Delivery.get_by_id(d.id).status for d in emails} == {"sent"}
    message = OutboxMessage.get(OutboxMessage.to_address == "owner@acme.com")
    assert message.subject == "[Acme] Engineering reached 80% of its limit"
    assert "$80.00 of $100.00" in message.text_body and "Acme" in message.html_body


def test_notify_to_named_recipients_only_reaches_members_of_that_org(team, make_user, make_org):
    org, owner, admin, member = team
    outsider = make_user("out@other.com")
    make_org("Other", owner=outsider)
    sent = notifications.notify(org, "system.test", {"sender": "Olga"}, recipients=[member, outsider.id])
    assert [n.user_id for n in sent.notifications] == [member.id]


def test_preferences_change_which_channels_fire(team):
    org, owner, admin, member = team
    membership = next(m for m in owner.memberships if m.organization_id == org.id)
    form = {}  # everything off ...
    form["budget.threshold:email"] = "1"  # ... except email for thresholds
    notifications.save_preferences(org, membership, form, "immediate")
    sent = notifications.notify(org, "budget.threshold", _budget_payload(), recipients=[owner])
    [n] = sent.notifications
    assert (n.in_app, n.email) == (False, True)
    assert notifications.unread_count(org, owner) == 0  # not in the bell
    assert [d.recipient for d in sent.deliveries if d.channel == "email"] == ["owner@acme.com"]
    # Unchanged rows stay on the role's defaults and store nothing.
    assert NotificationPreference.select().where(NotificationPreference.user == owner).count() == len(
        notifications.types.REGISTRY)  # every row differs from the owner's defaults (all were turned off)


def test_daily_digest_defers_email(team):
    org, owner, admin, member = team
    membership = next(m for m in owner.memberships if m.organization_id == org.id)
    defaults = {f"{r['type'].key}:{c}": "1" for r in notifications.preference_table(org, membership)
                for c, on in r["channels"].items() if on}
    notifications.save_preferences(org, membership, defaults, "daily")
    assert NotificationPreference.select().count() == 0  # defaults are not stored
    sent = notifications.notify(org, "budget.exceeded", _budget_payload(), recipients=[owner])
    [n] = sent.notifications
    assert n.email and n.digest_pending
    assert not [d for d in sent.deliveries if d.channel == "email"]


def test_bare_email_addresses_get_email_only(team):
    org, *_ = team
    sent = notifications.notify(org, "member.invited", {"inviter": "Olga", "role": "member",
                                                        "accept_url": "https://x.example.com/a", "expires": "soon"},
                                recipients=[], emails=["New@Example.com", "new@example.com"])
    assert sent.notifications == []
    assert [d.recipient for d in sent.deliveries] == ["new@example.com"]


def test_unknown_event_type_and_unserialisable_payload_are_refused(team):
    org, *_ = team
    with pytest.raises(KeyError):
        notifications.notify(org, "budget.nope", {})
    with pytest.raises(TypeError):
        notifications.notify(org, "system.test", {"x": object()})


def test_template_errors_in_payload_rendering_fall_back(team):
    org, owner, *_ = team
    sent = notifications.notify(org, "system.test", {"sender": "{{ 1/0 }}"}, recipients=[owner])
    assert sent.notifications[0].body.startswith("{{ 1/0 }}")  # payload values are data, never templates


# --- delivery machinery ------------------------------------------------------------

def _queued_email(org, to="x@example.com") -> Delivery:
    message = OutboxMessage.create(to_address=to, subject="s", text_body="t")
    return Delivery.create(organization=org, channel="email", event_id="e1", event_type="system.test",
                           recipient=to, message=message, next_attempt_at=clock.now())


def test_failed_attempt_retries_with_backoff_then_gives_up(team, app):
    org, *_ = team
    delivery = _queued_email(org)
    app.config["MAIL_URL"] = "smtp://127.0.0.1:9?timeout=1"  # nothing listens there
    try:
        for number in range(1, deliveries.max_attempts("email") + 1):
            before = clock.now()
            assert deliveries.attempt(delivery.id) in ("retrying", "failed")
            delivery = Delivery.get_by_id(delivery.id)
            assert delivery.attempts == number
            if number < deliveries.max_attempts("email"):
                assert delivery.status == "retrying"
                wait = deliveries.backoff_seconds("email", number)
                assert abs((delivery.next_attempt_at - before).total_seconds() - wait) < 2
                assert deliveries.attempt(delivery.id) is None  # not due yet: nothing happens
                Delivery.update(next_attempt_at=clock.now() - timedelta(seconds=1)).where(
                    Delivery.id == delivery.id).execute()
        assert delivery.status == "failed" and delivery.last_error
        log = list(DeliveryAttempt.select().where(DeliveryAttempt.delivery == delivery).order_by(DeliveryAttempt.number))
        assert [a.number for a in log] == list(range(1, deliveries.max_attempts("email") + 1))
        assert not any(a.ok for a in log)
    finally:
        app.config["MAIL_URL"] = "console://"


def test_backoff_grows_exponentially():
    waits = deliveries.BACKOFF["webhook"]
    assert all(b > a for a, b in zip(waits, waits[1:]))
    assert sum(waits) > 12 * 3600  # retries spread over hours


def test_claim_is_exclusive(team):
    org, *_ = team
    delivery = _queued_email(org)
    assert deliveries._claim(delivery.id) is not None
    assert deliveries._claim(delivery.id) is None  # a second task for the same delivery does nothing


def test_sweep_requeues_lost_and_stuck_deliveries(team, app):
    org, *_ = team
    lost = _queued_email(org, "lost@example.com")
    Delivery.update(next_attempt_at=clock.now() - timedelta(minutes=10)).where(Delivery.id == lost.id).execute()
    stuck = _queued_email(org, "stuck@example.com")
    Delivery.update(status="sending", next_attempt_at=clock.now() - timedelta(seconds=1)).where(
        Delivery.id == stuck.id).execute()
    fresh = _queued_email(org, "fresh@example.com")  # its own task is still on its way
    assert deliveries.sweep() == 2
    assert Delivery.get_by_id(lost.id).status == "sent"
    assert Delivery.get_by_id(stuck.id).status == "sent"
    assert Delivery.get_by_id(fresh.id).status == "queued"


def test_redeliver_creates_a_new_delivery(team):
    org, *_ = team
    delivery = _queued_email(org)
    deliveries.attempt(delivery.id)
    copy = deliveries.redeliver(Delivery.get_by_id(delivery.id))
    assert copy.id != delivery.id
    assert Delivery.get_by_id(copy.id).status == "sent"
    assert Delivery.get_by_id(delivery.id).attempts == 1


def test_record_non_retryable_failure_fails_at_once(team):
    org, *_ = team
    delivery = _queued_email(org)
    delivery = deliveries._claim(delivery.id)
    assert deliveries.record(delivery, AttemptResult(ok=False, error="gone", retryable=False)) == "failed"


# --- the bell and the center (views) --------------------------------------------------

def test_badge_polling_answers_204_while_the_count_is_unchanged(app, team):
    org, owner, *_ = team
    client = Client(app)
    client.sign_in(owner.email)
    page = client.get("/notifications/")
    assert 'id="bell-badge"' in page.get_data(as_text=True)
    assert client.get("/notifications/badge?known=0", htmx=True).status_code == 204
    notifications.notify(org, "system.test", {"sender": "x"}, recipients=[owner])
    response = client.get("/notifications/badge?known=0", htmx=True)
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert ">1</span>" in body and 'id="bell-menu"' in body  # the count, and the menu reloads
    assert "notificationsArrived" in response.headers["HX-Trigger"]


def test_center_filters_marks_and_bulk(app, team):
    org, owner, admin, member = team
    notifications.notify(org, "system.test", {"sender": "x"}, recipients=[owner])
    notifications.notify(org, "budget.exceeded", _budget_payload(), recipients=[owner])
    notifications.notify(org, "budget.exceeded", _budget_payload(), recipients=[admin])
    client = Client(app)
    client.sign_in(owner.email)
    ids = [n.id for n in Notification.select().where(Notification.user == owner).order_by(Notification.id)]
    body = client.get("/notifications/?severity=critical").get_data(as_text=True)
    assert "Engineering is over its limit" in body and "Test notification from Acme" not in body
    response = client.post("/notifications/read", {"ids": [str(ids[0])], "read": "1"}, htmx=True)
    assert response.status_code == 200
    assert 'hx-swap-oob="true"' in response.get_data(as_text=True)
    assert "notificationsChanged" in response.headers["HX-Trigger"]
    assert notifications.unread_count(org, owner) == 1
    unread_page = client.get("/notifications/?status=unread").get_data(as_text=True)
    assert "Engineering is over its limit" in unread_page and "Test notification from" not in unread_page
    client.post("/notifications/read", {"ids": [str(i) for i in ids], "read": "0"}, htmx=True)
    assert notifications.unread_count(org, owner) == 2
    client.post("/notifications/read-all", htmx=True)
    assert notifications.unread_count(org, owner) == 0
    assert notifications.unread_count(org, admin) == 1  # someone else's stay as they were


def test_cannot_touch_someone_elses_notifications(app, team):
    org, owner, admin, member = team
    [theirs] = notifications.notify(org, "system.test", {"sender": "x"}, recipients=[admin]).notifications
    client = Client(app)
    client.sign_in(owner.email)
    client.post("/notifications/read", {"ids": [str(theirs.id)]}, htmx=True)
    assert Notification.get_by_id(theirs.id).read_at is None
    assert client.get(f"/notifications/{theirs.id}/open").status_code == 404


def test_open_marks_read_and_redirects_inside_the_app_only(app, team):
    org, owner, *_ = team
    [n] = notifications.notify(org, "budget.exceeded", _budget_payload(), recipients=[owner]).notifications
    [evil] = notifications.notify(org, "system.test", {"sender": "x"}, recipients=[owner],
                                  link="//evil.example.com/x").notifications
    client = Client(app)
    client.sign_in(owner.email)
    response = client.get(f"/notifications/{n.id}/open")
    assert response.status_code == 302 and response.headers["Location"].endswith("/budgets/7")
    assert Notification.get_by_id(n.id).read_at is not None
    response = client.get(f"/notifications/{evil.id}/open")
    assert response.headers["Location"].endswith("/notifications/")


def test_menu_lists_latest(app, team):
    org, owner, *_ = team
    notifications.notify(org, "budget.forecast", _budget_payload(forecast_date="18 Dec", forecast_usd="120"),
                         recipients=[owner])
    client = Client(app)
    client.sign_in(owner.email)
    body = client.get("/notifications/menu", htmx=True).get_data(as_text=True)
    assert "Engineering is projected to exceed its limit on 18 Dec" in body


def test_preferences_page_saves_and_refuses_bad_digest(app, team):
    org, owner, admin, member = team
    client = Client(app)
    client.sign_in(member.email)
    page = client.get("/notifications/preferences").get_data(as_text=True)
    assert "Budget threshold reached" in page
    response = client.post("/notifications/preferences", {"digest": "hourly"}, htmx=True)
    assert response.status_code == 422 and "daily digest" in response.get_data(as_text=True)
    response = client.post("/notifications/preferences", {"digest": "daily", "system.test:email": "1"}, htmx=True)
    assert response.status_code == 200
    assert notifications.digest_choice(org, member) == "daily"
    sent = notifications.notify(org, "system.test", {"sender": "x"}, recipients=[member])
    assert (sent.notifications[0].in_app, sent.notifications[0].email) == (False, True)


def test_send_test_reaches_only_me(app, team):
    org, owner, admin, member = team
    client = Client(app)
    client.sign_in(member.email)
    response = client.post("/notifications/test", htmx=True)
    assert response.status_code == 200
    assert notifications.unread_count(org, member) == 1
    assert notifications.unread_count(org, owner) == 0


def test_deliveries_page_is_for_admins_and_redelivers(app, team):
    org, owner, admin, member = team
    notifications.notify(org, "budget.exceeded", _budget_payload(), recipients=[owner])
    delivery = Delivery.get()
    client = Client(app)
    client.sign_in(member.email)
    assert client.get("/notifications/deliveries").status_code == 403
    client = Client(app)
    client.sign_in(admin.email)
    body = client.get("/notifications/deliveries?channel=email&status=sent").get_data(as_text=True)
    assert "owner@acme.com" in body
    assert "owner@acme.com" not in client.get("/notifications/deliveries?status=failed").get_data(as_text=True)
    assert client.get(f"/notifications/deliveries/{delivery.id}").status_code == 200
    response = client.post(f"/notifications/deliveries/{delivery.id}/redeliver", htmx=True)
    assert response.status_code == 200
    assert Delivery.select().count() == 2


def test_deliveries_of_another_org_are_not_found(app, team, make_user, make_org):
    org, owner, *_ = team
    other_owner = make_user("boss@other.com")
    other = make_org("Other", owner=other_owner)
    notifications.notify(other, "system.test", {"sender": "x"}, recipients=[other_owner])
    foreign = Delivery.get()
    client = Client(app)
    client.sign_in(owner.email)
    assert client.get(f"/notifications/deliveries/{foreign.id}").status_code == 404
    assert client.post(f"/notifications/deliveries/{foreign.id}/redeliver", htmx=True).status_code == 404
    assert "boss@other.com" not in client.get("/notifications/deliveries").get_data(as_text=True)


def test_webhook_envelope_reaches_subscribed_endpoints_only(team):
    from costguardian import crypto
    from costguardian.models import WebhookEndpoint

    org, *_ = team
    everything = WebhookEndpoint.create(organization=org, name="all", url="http://127.0.0.1:9/a",
                                        secret_encrypted=crypto.encrypt("whsec_x"), is_active=False)
    budgets = WebhookEndpoint.create(organization=org, name="b", url="http://127.0.0.1:9/b",
                                     event_types="budget.exceeded", secret_encrypted=crypto.encrypt("whsec_y"))
    sent = notifications.notify(org, "budget.exceeded", _budget_payload())
    hooks = [d for d in sent.deliveries if d.channel == "webhook"]
    assert [d.endpoint_id for d in hooks] == [budgets.id]  # the inactive one gets nothing
    body = json.loads(hooks[0].payload)
    assert set(body) == {"id", "type", "created_at", "organization", "data"}
    assert body["id"] == sent.event_id and body["type"] == "budget.exceeded"
    assert body["organization"]["slug"] == org.slug and body["data"]["budget"] == "Engineering"
    # A type the active endpoint does not subscribe to reaches no webhook at all.
    other = notifications.notify(org, "system.test", {"sender": "x"})
    assert [d for d in other.deliveries if d.channel == "webhook"] == []
    assert everything.is_active is False


def test_a_delivery_deleted_mid_attempt_is_not_an_error(team):
    org, *_ = team
    delivery = _queued_email(org)
    claimed = deliveries._claim(delivery.id)
    Delivery.delete().where(Delivery.id == delivery.id).execute()  # e.g. its webhook endpoint was deleted
    assert deliveries.record(claimed, AttemptResult(ok=True)) == "deleted"
    assert DeliveryAttempt.select().count() == 0


def test_an_attempt_that_lost_its_claim_does_not_overwrite_the_newer_one(team):
    org, *_ = team
    delivery = _queued_email(org)
    slow = deliveries._claim(delivery.id)
    # Its lease runs out; the sweeper hands the delivery to another task, which sends it.
    Delivery.update(next_attempt_at=clock.now() - timedelta(seconds=1)).where(Delivery.id == delivery.id).execute()
    assert deliveries.sweep() == 1
    assert Delivery.get_by_id(delivery.id).status == "sent"
    # The slow attempt finally fails: its outcome is dropped, the sent state stands.
    assert deliveries.record(slow, AttemptResult(ok=False, error="timed out")) == "superseded"
    fresh = Delivery.get_by_id(delivery.id)
    assert fresh.status == "sent" and fresh.attempts == 1 and fresh.last_error == ""


def test_redeliver_without_javascript_redirects_back_to_the_log(app, team):
    """A plain form post (no HX-Request) once rendered the rows fragment as
    the page ('filters' is undefined: a 500); it redirects back to the log
    it came from, filters kept, the result in a flash."""
    from costguardian.models import Delivery

    org, owner, admin, _ = team
    notifications.notify(org, "budget.exceeded", _budget_payload(), recipients=[owner])
    delivery = Delivery.get()
    client = Client(app)
    client.sign_in(admin.email)
    log = "/notifications/deliveries?channel=email&status=sent"
    response = client.post(f"/notifications/deliveries/{delivery.id}/redeliver",
                           headers={"Referer": f"http://localhost{log}"})
    assert response.status_code == 302 and response.headers["Location"] == log
    page = client.get(log).get_data(as_text=True)
    assert 'class="flash flash-success" role="status">Queued again as a new delivery.' in page
    assert Delivery.select().count() == 2

    Delivery.update(status="queued").where(Delivery.id == delivery.id).execute()
    response = client.post(f"/notifications/deliveries/{delivery.id}/redeliver")  # no Referer: the log's first page
    assert response.status_code == 302 and response.headers["Location"] == "/notifications/deliveries"
    page = client.get("/notifications/deliveries").get_data(as_text=True)
    assert 'class="flash flash-error" role="status">This delivery is still in progress;' in page
    assert Delivery.select().count() == 2
