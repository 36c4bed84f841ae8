"""Issue 18 §7, the smaller things: demo keys' "Last used", the audit log's
filters and CSV export, one name for the system actor."""
from __future__ import annotations

import pytest
from peewee import fn

from costguardian import clock
from costguardian.models import ApiKey, UsageEvent
from costguardian.services.demo import usage as demo_usage

pytestmark = pytest.mark.dated


def test_demo_keys_were_last_used_when_their_last_event_was_sent(make_org, make_user):
    org = make_org("Demo", owner=make_user("demo@example.com"))
    demo_usage.generate(org, 120, seed=3)
    latest = dict(UsageEvent.select(UsageEvent.api_key, fn.MAX(UsageEvent.occurred_at))
                  .where(UsageEvent.organization == org).group_by(UsageEvent.api_key).tuples())
    demo_keys = list(ApiKey.in_org(org))
    assert demo_keys and all(k.last_used_at is not None for k in demo_keys if k.id in latest)
    for key in demo_keys:
        if key.id in latest:
            assert key.last_used_at == latest[key.id] <= clock.now()


def test_the_audit_log_filters_like_the_activity_feed_and_exports_csv(owner_client):
    client, owner, org = owner_client
    from costguardian.services import keys
    from costguardian.services.actor import Actor
    from costguardian.services.team import audit

    keys.create_key(org, Actor(user=owner), "collector", ["ingest"])
    audit.record(Actor.system(), "org.updated", org=org, changes={"name": ["=A", "Acme"]})
    page = client.get("/audit/").get_data(as_text=True)
    assert 'id="audit-filters-member"' in page and 'data-testid="audit-export"' in page
    assert "Cost Guardian" in page and ">System<" not in page  # one name for the system actor
    keys_only = client.get("/audit/?action=key", htmx=True).get_data(as_text=True)
    assert "key.created" in keys_only and "org.updated" not in keys_only
    mine = client.get(f"/audit/?member={owner.id}", htmx=True).get_data(as_text=True)
    assert "key.created" in mine and "org.updated" not in mine

    export = client.get("/audit/export.csv?action=org.updated", buffered=True)
    assert export.status_code == 200 and export.mimetype == "text/csv"
    lines = export.get_data(as_text=True).splitlines()
    assert lines[0].startswith('"time (UTC, ISO 8601)",actor,')
    assert len(lines) == 2 and ",Cost Guardian,," in lines[1] and "org.updated" in lines[1]
    assert lines[1].split(",")[0].endswith("Z")
    assert "'=A" in lines[1] or '\\"=A' not in lines[1]  # a formula is never live


def test_viewers_cannot_read_the_audit_log(app, owner_client, make_user):
    from tests.support import Client, add_member

    _, _, org = owner_client
    viewer = make_user("vic@acme.com")
    add_member(org, viewer, "viewer")
    client = Client(app)
    client.sign_in(viewer.email)
    assert client.get("/audit/export.csv").status_code == 403


def test_the_sign_up_banner_says_what_happens_next(client, app_ctx):
    from markupsafe import escape

    from tests.support import PASSWORD

    response = client.post("/signup", {"email": "new@example.com", "name": "New Person", "password": PASSWORD,
                                       "confirm": PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:400]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert str(escape("your account is ready and you are signed in. Next, name your organization below")) in page
    assert "new@example.com" in page
