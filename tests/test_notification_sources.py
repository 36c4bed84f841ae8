"""Features that tell people things do it through `notify`: unpriced models
(once per model, even from concurrent batches), key rotation and expiry."""
from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from costguardian import clock
from costguardian.extensions import db
from costguardian.models import ApiKey, Notification, NotificationOnce
from costguardian.services import keys
from costguardian.services.notifications import notify as notifications
from costguardian.services.usage import ingest
from tests.support import SYSTEM, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)


def _unpriced(event_id: str, model: str = "rocket-1") -> dict:
    return {"event_id": event_id, "provider": "acme-ai", "model": model, "input_tokens": 10}


def test_unpriced_model_is_announced_once_per_model(app_ctx, make_user, make_org):
    owner = make_user("owner@acme.com")
    org = make_org("Acme", owner=owner)
    add_member(org, make_user("member@acme.com"), "member")
    ingest.ingest(org, None, [_unpriced("a"), _unpriced("b")])
    ingest.ingest(org, None, [_unpriced("c"), _unpriced("d", "rocket-2")])
    ingest.ingest(org, None, [{"event_id": "p", "provider": "openai", "model": "gpt-4o", "input_tokens": 5}])
    rows = list(Notification.select().where(Notification.event_type == "usage.unpriced_model")
                .order_by(Notification.id))
    assert [(n.user_id, n.title) for n in rows] == [
        (owner.id, "No price for acme-ai/rocket-1"), (owner.id, "No price for acme-ai/rocket-2")]
    assert "2 call(s)" in rows[0].body and rows[0].link == "/prices/"


def test_concurrent_batches_announce_an_unpriced_model_once(app, make_user, make_org, backend):
    with app.app_context(), db.connection_context():
        owner = make_user("owner@acme.com")
        org = make_org("Acme", owner=owner)
    errors = []

    def worker(n):
        try:
            with app.app_context(), db.connection_context():
                ingest.ingest(org, None, [_unpriced(f"{n}-{i}") for i in range(5)])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with app.app_context(), db.connection_context():
        assert NotificationOnce.select().count() == 1
        assert Notification.select().where(Notification.event_type == "usage.unpriced_model").count() == 1


def test_notify_once_is_per_organization(app_ctx, make_user, make_org):
    a = make_org("A", owner=make_user("a@acme.com"))
    b = make_org("B", owner=make_user("b@acme.com"))
    assert notifications.notify(a, "system.test", {}, once="k") is not None
    assert notifications.notify(a, "system.test", {}, once="k") is None
    assert notifications.notify(b, "system.test", {}, once="k") is not None


def test_key_rotation_tells_admins(app_ctx, make_user, make_org):
    owner = make_user("owner@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    add_member(org, make_user("viewer@acme.com"), "viewer")
    key = keys.create_key(org, SYSTEM, "ci", ["ingest"]).key
    keys.rotate_key(key, SYSTEM, grace_hours=2)
    [n] = Notification.select().where(Notification.event_type == "key.rotated")
    assert n.user_id == owner.id and n.title == "API key ci was rotated"
    assert "works until" in n.body and n.link == "/keys/"


def test_expiring_keys_are_announced_once(app_ctx, make_user, make_org):
    owner = make_user("owner@acme.com")
    org = make_org("Acme", owner=owner)
    soon = keys.create_key(org, SYSTEM, "soon", ["ingest"], expires_at=clock.now() + timedelta(days=3)).key
    keys.create_key(org, SYSTEM, "later", ["ingest"], expires_at=clock.now() + timedelta(days=30))
    gone = keys.create_key(org, SYSTEM, "revoked", ["ingest"], expires_at=clock.now() + timedelta(days=2)).key
    keys.revoke_key(gone, SYSTEM)
    now = clock.now()
    assert keys.warn_expiring(now) == 1
    assert keys.warn_expiring(now + timedelta(hours=1)) == 0  # never twice
    [n] = Notification.select().where(Notification.event_type == "key.expiring")
    assert n.title.startswith("API key soon expires on")
    assert ApiKey.get_by_id(soon.id).expiry_warned_at is not None
