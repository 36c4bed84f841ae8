"""Personal platform tokens: made on the account page by platform admins only
(write scope for superadmins only), shown once, stored as a hash with a
visible prefix, revocable, audit-logged, and refused once revoked, expired,
or when the owner no longer holds the power the scope needs."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

import pytest
import time_machine

from costguardian.models import AuditLog, PlatformToken
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.errors import NotPermitted, ValidationError
from costguardian.services.platform import tokens
from tests.support import Client, add_member

T0 = datetime(2026, 12, 2, 10, 0)
TOKEN = re.compile(r"cgp_[a-z0-9]{12}_[A-Za-z0-9_-]{32,64}")


@pytest.fixture
def clock():
    with time_machine.travel(T0, tick=False) as moving:
        yield moving


@pytest.fixture
def people(app, make_user, make_org, clock):
    root = make_user("root@example.com", name="Root", platform_role="superadmin")
    helper = make_user("help@example.com", name="Helper", platform_role="support")
    owner = make_user("owner@acme.com", name="Olga")
    member = make_user("mia@acme.com", name="Mia")
    org = make_org("Acme", owner=owner)
    add_member(org, member, "member")
    return {"root": root, "support": helper, "owner": owner, "member": member, "org": org}


def _signed_in(app, user) -> Client:
    client = Client(app)
    client.sign_in(user.email)
    return client


def _refused(authorization, scope=tokens.READ) -> tuple[int, str]:
    with pytest.raises(keys.ApiKeyError) as caught:
        tokens.authenticate(authorization, scope)
    return caught.value.status, caught.value.problem


# --- the service ------------------------------------------------------------------

def test_a_token_is_shown_once_and_stored_as_a_hash(people):
    root = people["root"]
    new = tokens.create(root, Actor(user=root), "  nightly export ", ["platform:read", "platform:write"], "30")

    assert TOKEN.fullmatch(new.plaintext)
    row = PlatformToken.get_by_id(new.token.id)
    prefix, secret = new.plaintext[len("cgp_"):].split("_", 1)
    assert row.prefix == prefix and row.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(row.__data__)
    assert (row.name, row.scopes) == ("nightly export", "platform:read platform:write")
    assert row.expires_at == T0 + timedelta(days=30)
    audit = AuditLog.get(AuditLog.action == "platform_token.created")
    assert audit.actor_id == root.id and audit.organization_id is None
    assert audit.detail["prefix"] == prefix and audit.detail["scopes"] == "platform:read platform:write"
    assert tokens.authenticate(f"Bearer {new.plaintext}", tokens.WRITE).id == row.id


def test_write_always_comes_with_read_and_only_superadmins_get_it(people):
    root, helper = people["root"], people["support"]
    assert tokens.create(root, Actor(user=root), "w", "platform:write").token.scopes == "platform:read platform:write"
    assert tokens.create(helper, Actor(user=helper), "r", "platform:read").token.scopes == "platform:read"
    with pytest.raises(ValidationError) as caught:
        tokens.create(helper, Actor(user=helper), "w", "platform:read platform:write")
    assert "superadmin" in caught.value.errors["scopes"]
    with pytest.raises(NotPermitted):
        tokens.create(people["owner"], Actor(user=people["owner"]), "x", "platform:read")


@pytest.mark.parametrize("name, scopes, days, field", [
    ("", "platform:read", None, "name"),
    ("x" * 101, "platform:read", None, "name"),
    ("ok", "", None, "scopes"),
    ("ok", "platform:admin", None, "scopes"),
    ("ok", "platform:read", "0", "expires_in_days"),
    ("ok", "platform:read", "366", "expires_in_days"),
    ("ok", "platform:read", "1.5", "expires_in_days"),
    ("ok", "platform:read", " ٣", "expires_in_days"),
])
def test_bad_input_names_the_field(people, name, scopes, days, field):
    with pytest.raises(ValidationError) as caught:
        tokens.create(people["root"], Actor(user=people["root"]), name, scopes, days)
    assert field in caught.value.errors
    assert PlatformToken.select().count() == 0


def test_missing_malformed_unknown_revoked_and_expired_tokens_are_401(people, clock):
    root = people["root"]
    new = tokens.create(root, Actor(user=root), "t", "platform:read", 1)
    assert _refused(None) == (401, "missing-platform-token")
    assert _refused("Basic abc") == (401, "invalid-platform-token")
    assert _refused("Bearer cg_live_abcdefghijkl_" + "x" * 43) == (401, "invalid-platform-token")  # an org key
    assert _refused(f"Bearer {new.plaintext[:-1]}x") == (401, "invalid-platform-token")
    assert _refused("Bearer cgp_zzzzzzzzzzzz_" + "x" * 43) == (401, "invalid-platform-token")

    clock.move_to(T0 + timedelta(days=1))
    assert _refused(f"Bearer {new.plaintext}") == (401, "expired-platform-token")
    clock.move_to(T0)
    tokens.revoke(new.token, Actor(user=root))
    assert _refused(f"Bearer {new.plaintext}") == (401, "revoked-platform-token")
    assert AuditLog.select().where(AuditLog.action == "platform_token.revoked").count() == 1
    tokens.revoke(new.token, Actor(user=root))  # a second revocation changes nothing
    assert AuditLog.select().where(AuditLog.action == "platform_token.revoked").count() == 1


def test_a_token_never_holds_more_than_its_owner_now(people):
    root, helper = people["root"], people["support"]
    root_token = tokens.create(root, Actor(user=root), "w", "platform:write").plaintext
    support_token = tokens.create(helper, Actor(user=helper), "r", "platform:read").plaintext
    read_only = tokens.create(root, Actor(user=root), "r", "platform:read").plaintext

    assert _refused(f"Bearer {read_only}", tokens.WRITE) == (403, "insufficient-scope")
    assert _refused(f"Bearer {support_token}", tokens.WRITE) == (403, "insufficient-scope")
    # a superadmin's write token whose owner became support can still read, never write
    root.platform_role = "support"
    root.save()
    assert tokens.authenticate(f"Bearer {root_token}", tokens.READ)
    assert _refused(f"Bearer {root_token}", tokens.WRITE) == (403, "not-permitted")
    # no platform role, or a disabled owner: nothing
    root.platform_role = ""
    root.save()
    assert _refused(f"Bearer {root_token}") == (403, "not-permitted")
    helper.is_disabled = True
    helper.save()
    assert _refused(f"Bearer {support_token}") == (403, "not-permitted")


def test_last_used_is_written_at_most_once_a_minute(people, clock):
    root = people["root"]
    new = tokens.create(root, Actor(user=root), "t", "platform:read")
    assert PlatformToken.get_by_id(new.token.id).last_used_at is None
    tokens.authenticate(f"Bearer {new.plaintext}", tokens.READ)
    assert PlatformToken.get_by_id(new.token.id).last_used_at == T0
    clock.move_to(T0 + timedelta(seconds=30))
    tokens.authenticate(f"Bearer {new.plaintext}", tokens.READ)
    assert PlatformToken.get_by_id(new.token.id).last_used_at == T0
    clock.move_to(T0 + timedelta(seconds=61))
    tokens.authenticate(f"Bearer {new.plaintext}", tokens.READ)
    assert PlatformToken.get_by_id(new.token.id).last_used_at == T0 + timedelta(seconds=61)


# --- the account page -------------------------------------------------------------

def test_the_account_page_creates_a_token_shown_once_then_only_its_prefix(app, people):
    client = _signed_in(app, people["root"])
    page = client.get("/account/").get_data(as_text=True)
    assert 'data-testid="platform-tokens"' in page and "platform:read platform:write" in page

    created = client.post("/account/platform-tokens", {"name": "CI export", "scopes": "platform:read platform:write",
                                                       "expires_in_days": "90"})
    assert created.status_code == 200
    html = created.get_data(as_text=True)
    plaintext = TOKEN.search(html).group(0)
    token = PlatformToken.get(PlatformToken.name == "CI export")
    assert plaintext.startswith(f"cgp_{token.prefix}_") and token.scopes == "platform:read platform:write"
    assert "Copy it now" in html

    again = client.get("/account/").get_data(as_text=True)
    assert plaintext not in again and f"cgp_{token.prefix}_…" in again and "CI export" in again
    assert tokens.authenticate(f"Bearer {plaintext}", tokens.WRITE).id == token.id


def test_htmx_create_answers_the_section_and_bad_input_is_422(app, people):
    client = _signed_in(app, people["support"])
    page = client.get("/account/").get_data(as_text=True)
    assert 'value="platform:read platform:write"' not in page  # support cannot choose write

    bad = client.post("/account/platform-tokens", {"name": "", "scopes": "platform:read platform:write",
                                                   "expires_in_days": "999"}, htmx=True)
    assert bad.status_code == 422
    html = bad.get_data(as_text=True)
    assert html.lstrip().startswith("<article") and html.count('class="field-error"') == 3
    assert PlatformToken.select().count() == 0

    made = client.post("/account/platform-tokens", {"name": "reader", "scopes": "platform:read"}, htmx=True)
    assert made.status_code == 200 and TOKEN.search(made.get_data(as_text=True))
    assert "showToast" in made.headers["HX-Trigger"]


def test_the_account_page_revokes_a_token(app, people):
    root = people["root"]
    client = _signed_in(app, root)
    new = tokens.create(root, Actor(user=root), "old", "platform:read")
    response = client.post(f"/account/platform-tokens/{new.token.id}/revoke")
    assert response.status_code == 302
    assert PlatformToken.get_by_id(new.token.id).revoked_at is not None
    assert "revoked" in client.get("/account/").get_data(as_text=True)
    audit = AuditLog.get(AuditLog.action == "platform_token.revoked")
    assert audit.actor_id == root.id and audit.detail["prefix"] == new.token.prefix


def test_nobody_revokes_another_persons_token(app, people):
    helper = people["support"]
    new = tokens.create(helper, Actor(user=helper), "mine", "platform:read")
    client = _signed_in(app, people["root"])
    assert client.post(f"/account/platform-tokens/{new.token.id}/revoke").status_code == 404
    assert PlatformToken.get_by_id(new.token.id).revoked_at is None


def test_people_without_a_platform_role_see_no_section_and_get_403(app, people):
    client = _signed_in(app, people["owner"])
    assert 'data-testid="platform-tokens"' not in client.get("/account/").get_data(as_text=True)
    assert client.post("/account/platform-tokens", {"name": "x", "scopes": "platform:read"}).status_code == 403
    helper = people["support"]
    new = tokens.create(helper, Actor(user=helper), "mine", "platform:read")
    assert client.post(f"/account/platform-tokens/{new.token.id}/revoke").status_code == 403
    assert PlatformToken.select().count() == 1


def test_an_impersonating_admin_cannot_create_or_revoke_tokens(app, people):
    root = people["root"]
    new = tokens.create(root, Actor(user=root), "mine", "platform:read")
    client = _signed_in(app, root)
    started = client.post(f"/admin/impersonation/start/{people['member'].id}", {"reason": "ticket #1"})
    assert started.status_code == 302
    assert client.post("/account/platform-tokens", {"name": "x", "scopes": "platform:read"}).status_code == 403
    assert client.post(f"/account/platform-tokens/{new.token.id}/revoke").status_code == 403
    assert PlatformToken.select().count() == 1 and PlatformToken.get_by_id(new.token.id).revoked_at is None
    assert 'data-testid="platform-tokens"' not in client.get("/account/").get_data(as_text=True)
