"""A member's own data (the JSON download, deleting their account under the
console's ownership rules) and an owner's organization export and deletion
with its grace period (services/team/data_export.py, self_service.py)."""
from __future__ import annotations

import json
from datetime import timedelta, timezone

import pytest
import time_machine

from costguardian import crypto
from costguardian.models import (ApiKey, AuditLog, BillingAccount, ChatMessage, Conversation, Membership, Notification,
                                 Organization, User, WebhookEndpoint)
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.billing import plans
from costguardian.services.errors import NotPermitted
from costguardian.services.platform import orgs as platform_orgs
from costguardian.services.team import self_service
from costguardian.services.usage import ingest
from tests.support import SYSTEM, Client, add_member



@pytest.fixture
def acme(owner_client, make_user):
    """The owner's client and organization, with a key, a chat, a webhook, an
    event, and a second member (an admin) signed in."""
    client, owner, org = owner_client
    new = keys.create_key(org, SYSTEM, "search prod", ["ingest"], user=owner)
    conversation = Conversation.create(organization=org, user=owner, title="Pricing questions")
    ChatMessage.create(organization=org, conversation=conversation, role="user", content="How much is gpt-4o?")
    WebhookEndpoint.create(organization=org, name="ops", url="https://hooks.example.com/x", is_active=False,
                           secret_encrypted=crypto.encrypt("s3cr3t"))  # off: nothing is sent anywhere
    ingest.ingest(org, new.key, [{"event_id": "e1", "provider": "openai", "model": "gpt-4o-mini",
                                  "input_tokens": 10, "output_tokens": 1}])
    admin = make_user("admin@acme.com")
    add_member(org, admin, "admin")
    admin_client = Client(client.app)
    admin_client.sign_in(admin.email)
    return client, owner, org, admin_client, new


# --- a member's own data ------------------------------------------------------------------

def test_a_member_downloads_their_own_data_as_json(acme):
    client, owner, org, _, new = acme

    answer = client.get("/account/export", buffered=True)

    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert "attachment" in answer.headers["Content-Disposition"]
    data = json.loads(answer.get_data(as_text=True))
    assert data["format"] == "costguardian.account-export" and data["profile"]["email"] == owner.email
    assert [(m["organization"]["slug"], m["role"]) for m in data["memberships"]] == [(org.slug, "owner")]
    [key] = data["api_keys"]
    assert key["name"] == "search prod" and key["attributed_to_you"]
    assert new.plaintext not in answer.get_data(as_text=True) and "secret_hash" not in key
    assert [m["content"] for m in data["conversations"][0]["messages"]] == ["How much is gpt-4o?"]
    actions = [row["action"] for row in data["audit_trail"]]
    assert "user.data_exported" in actions and all(row["by_you"] or row["target_id"] for row in data["audit_trail"])


def test_the_last_owner_cannot_delete_their_account(acme):
    client, owner, _, _, _ = acme
    page = client.get("/account/").get_data(as_text=True)
    assert 'data-testid="account-deletion-refusal"' in page and "last owner of Acme" in page

    refused = client.post("/account/delete", {"confirm": owner.email})

    assert refused.status_code == 422 and User.get_or_none(User.id == owner.id) is not None


def test_a_member_deletes_their_account_with_a_typed_confirmation_and_is_signed_out(acme):
    _, _, org, admin_client, _ = acme
    admin = User.by_email("admin@acme.com")

    wrong = admin_client.post("/account/delete", {"confirm": "someone@else.com"})
    assert wrong.status_code == 422 and "Type your email address" in wrong.get_data(as_text=True)

    done = admin_client.post("/account/delete", {"confirm": "Admin@Acme.com"})

    assert done.status_code == 302 and done.headers["Location"].endswith("/login")
    assert User.get_or_none(User.id == admin.id) is None and Membership.in_org(org).count() == 1
    row = AuditLog.get(AuditLog.action == "user.deleted")
    assert row.detail["self_service"] and row.detail["email"] == "admin@acme.com" and row.actor_id is None
    assert admin_client.get("/account/").status_code == 302  # signed out


def test_nobody_deletes_or_exports_as_someone_else(acme):
    _, owner, org, _, _ = acme
    admin = User.by_email("admin@acme.com")
    acting = Actor(user=admin, ip="", user_agent="", impersonator=owner)
    with pytest.raises(NotPermitted):
        self_service.delete_own_account(admin, acting, admin.email)
    with pytest.raises(NotPermitted):
        self_service.schedule_org_deletion(org, Actor(user=owner, ip="", user_agent="", impersonator=admin),
                                           org.slug)


# The organization's export (a background task with a download page): tests/test_org_export.py.


# --- the organization's deletion ----------------------------------------------------------

def test_an_owner_schedules_the_deletion_cancels_it_and_the_purge_honours_the_grace(acme):
    client, owner, org, admin_client, _ = acme
    assert admin_client.post("/settings/delete", {"confirm": org.slug}).status_code == 403
    wrong = client.post("/settings/delete", {"confirm": "acme-typo"})
    assert wrong.status_code == 422 and "Type the organization&#39;s address" in wrong.get_data(as_text=True)

    assert client.post("/settings/delete", {"confirm": org.slug}).status_code == 302

    org = Organization.get_by_id(org.id)
    assert org.delete_after - org.suspended_at == timedelta(days=30)
    assert 'data-testid="deletion-banner"' in admin_client.get("/").get_data(as_text=True)
    told = Notification.get(Notification.event_type == "org.deletion_scheduled")
    assert told.user_id == owner.id and f"{org.delete_after:%Y-%m-%d}" in told.title
    assert client.post("/settings/delete/cancel").status_code == 302
    assert [r.action for r in AuditLog.select().where(AuditLog.action.startswith("org.deletion"))
            .order_by(AuditLog.id)] == ["org.deletion_scheduled", "org.deletion_cancelled"]
    org = Organization.get_by_id(org.id)
    assert org.delete_after is None and org.suspended_at is None

    client.post("/settings/delete", {"confirm": org.slug})
    due = Organization.get_by_id(org.id).delete_after.replace(tzinfo=timezone.utc)
    with time_machine.travel(due - timedelta(days=1), tick=False):
        assert platform_orgs.purge_due() == 0
    with time_machine.travel(due + timedelta(minutes=1), tick=False):
        assert platform_orgs.purge_due() == 1
    assert Organization.get_or_none(Organization.id == org.id) is None
    assert AuditLog.get(AuditLog.action == "org.deleted").detail["scheduled_by"] == owner.email


def test_a_live_subscription_or_a_platform_deletion_stays_out_of_the_owners_hands(acme):
    client, _, org, _, _ = acme
    BillingAccount.create(organization=org, plan=plans.by_code("team"), status="active", seats=5,
                          stripe_customer_id="cus_1", stripe_subscription_id="sub_1")
    refused = client.post("/settings/delete", {"confirm": org.slug})
    assert refused.status_code == 422 and "Stripe subscription" in refused.get_data(as_text=True)
    BillingAccount.delete().execute()

    platform_orgs.schedule_deletion(org, SYSTEM, org.slug)  # a platform admin's deletion
    page = client.get("/settings/").get_data(as_text=True)
    assert "ask them to cancel it" in page and 'data-testid="cancel-deletion"' not in page
    client.post("/settings/delete/cancel")
    assert Organization.get_by_id(org.id).delete_after is not None
    assert ApiKey.in_org(org).count() == 1
