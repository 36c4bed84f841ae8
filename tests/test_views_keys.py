"""The API keys page (htmx and plain forms): create, show once, rotate, revoke,
who may, and what a key can do afterwards against the ingest API."""
from __future__ import annotations

import json
import re
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import openai
import pytest

from costguardian import clock
from costguardian.models import ApiKey, AuditLog, Department, Organization
from costguardian.money import format_usd
from costguardian.web import format_org_time
from costguardian.services import keys
from costguardian.services.actor import Actor
from tests.gateway_support import gateway, gateway_server  # noqa: F401  (fixtures)
from tests.support import SYSTEM, Client, add_member

pytestmark = pytest.mark.dated  # runs again at CI's chosen instants (.ci/run)

KEY = re.compile(r"cg_(?:live|test)_[a-z0-9]{12}_[A-Za-z0-9_-]{43}")
EVENT = {"event_id": "evt-1", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100}


@pytest.fixture(autouse=True)
def _fresh_last_used_memory():
    keys._last_written.clear()
    yield
    keys._last_written.clear()


def create_form(**overrides) -> dict:
    data = {"name": "search-service prod", "scopes": ["ingest"], "env": "live", "expires": "never",
            "expires_on": "", "user": "", "department": ""}
    data.update(overrides)
    return data


def shown_keys(html: str) -> list[str]:
    return KEY.findall(html)


def ingest(client: Client, plaintext: str, event_id: str = "evt-1"):
    return client.http.post("/api/v1/usage", json={**EVENT, "event_id": event_id},
                            headers={"Authorization": f"Bearer {plaintext}"})


def signed_in(app, org, email: str, role: str, make_user) -> Client:
    user = make_user(email)
    add_member(org, user, role)
    client = Client(app)
    client.sign_in(email)
    return client


# --- the page ------------------------------------------------------------------

def test_empty_page_offers_the_form_with_sensible_defaults(owner_client, make_user):
    client, _, org = owner_client
    alice = make_user("alice@acme.com", name="Alice")
    add_member(org, alice, "member")
    parent = Department.create(organization=org, name="Engineering")
    Department.create(organization=org, name="Platform", parent=parent)

    response = client.get("/keys/")

    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in html
    assert 'href="/keys/" aria-current="page">API keys</a>' in html
    assert 'data-testid="keys-empty"' in html and "No API keys yet." in html
    assert re.search(r'<details id="key-create" class="key-create"\s+open>', html)  # nothing yet: form open
    assert re.search(r'<input checked id="scopes-0" name="scopes" type="checkbox" value="ingest"', html)
    assert 'value="gateway"' in html and "Call AI providers through the Cost Guardian gateway." in html
    assert 'name="user_email"' in html and "alice@acme.com" not in html  # a picker, not a list of every member
    assert "Engineering › Platform" in html
    assert "http://localhost/api/v1/usage" in html
    assert response.headers["Cache-Control"] == "no-store"


def test_the_table_lists_the_org_s_keys_with_their_details(owner_client, make_user, make_org):
    client, owner, org = owner_client
    org.time_zone = "America/New_York"  # times in the organization's zone, and the note says which
    org.save(only=[Organization.time_zone])
    alice = make_user("alice@acme.com", name="Alice")
    add_member(org, alice, "member")
    research = Department.create(organization=org, name="Research")

    bound = keys.create_key(org, Actor(user=owner), "batch jobs", ["ingest", "gateway"], env="test",
                            user=alice, department=research, expires_at=datetime(2099, 1, 2, 3, 4)).key
    keys.create_key(org, SYSTEM, "old collector", ["read"])
    revoked = keys.create_key(org, SYSTEM, "retired", ["ingest"]).key
    keys.revoke_key(revoked, SYSTEM)
    keys.create_key(make_org("Globex"), SYSTEM, "theirs", ["ingest"])

    html = client.get("/keys/").get_data(as_text=True)

    assert "theirs" not in html and 'data-testid="keys-empty"' not in html
    assert not re.search(r'<details id="key-create" class="key-create"\s+open>', html)
    row = re.search(rf'<tr id="key-{bound.id}".*?</tr>', html, re.S).group(0)
    assert f"cg_test_{bound.prefix}_…" in row
    assert '<span class="scope" title="Send usage events (POST /api/v1/usage).">ingest</span>' in row
    assert ">gateway</span>" in row and "Alice" in row and "Research" in row
    expires = format_org_time(datetime(2099, 1, 2, 3, 4), zone=org.time_zone)  # in the organization's zone
    assert "by Olga Owner" in row and expires in row and "Active" in row
    assert ">Revoke</button>" in row and ">Rotate now</button>" in row
    revoked_row = re.search(rf'<tr id="key-{revoked.id}".*?</tr>', html, re.S).group(0)
    assert "Revoked" in revoked_row and "Rotate" not in revoked_row and "Revoke</button>" not in revoked_row
    assert html.index("batch jobs") < html.index("retired")  # revoked keys last
    assert not shown_keys(html)
    # The note under the table names the zone the times are shown in (it said UTC).
    assert "Times are in America/New York time." in html and "UTC" not in html


def test_an_expired_key_shows_expired_and_can_only_be_revoked(owner_client):
    client, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "last year", ["ingest"], expires_at=clock.now() + timedelta(days=1)).key
    ApiKey.update(expires_at=clock.now() - timedelta(days=1)).where(ApiKey.id == key.id).execute()

    row = re.search(rf'<tr id="key-{key.id}".*?</tr>', client.get("/keys/").get_data(as_text=True), re.S).group(0)

    assert 'class="key-status key-status-expired">Expired</span>' in row
    assert "Rotate" not in row and ">Revoke</button>" in row
    assert client.post(f"/keys/{key.id}/rotate", {"grace_hours": "0"}, htmx=True).status_code == 422


def test_htmx_get_returns_only_the_table(owner_client):
    client, _, org = owner_client
    keys.create_key(org, SYSTEM, "collector", ["ingest"])
    html = client.get("/keys/", htmx=True).get_data(as_text=True)
    assert html.lstrip().startswith('<div id="keys-table"') and "<html" not in html and "collector" in html


def test_pages_have_no_inline_scripts_or_styles(owner_client):
    client, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "collector", ["ingest"]).key
    for html in (client.get("/keys/").get_data(as_text=True),
                 client.get(f"/keys/{key.id}").get_data(as_text=True),
                 client.post(f"/keys/{key.id}/limits", {"rpm_limit": "-1"}, htmx=True).get_data(as_text=True),
                 client.post("/keys/", create_form()).get_data(as_text=True),
                 client.post("/keys/", create_form(name=""), htmx=True).get_data(as_text=True)):
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, tag
        assert "style=" not in html and "hx-on" not in html and "<style" not in html


# --- creating ------------------------------------------------------------------

def test_create_with_htmx_shows_the_key_once_and_adds_the_row(owner_client):
    client, owner, org = owner_client

    response = client.post("/keys/", create_form(scopes=["ingest", "gateway"]), htmx=True)

    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" not in html
    trigger = json.loads(response.headers["HX-Trigger"])
    assert trigger["showToast"]["message"] == "API key “search-service prod” created. Copy it now."
    assert shown_keys(html) and len(set(shown_keys(html))) == 1
    plaintext = shown_keys(html)[0]
    assert html.lstrip().startswith('<details id="key-create"')  # the fresh form, closed
    assert '<div id="key-secret" hx-swap-oob="true">' in html
    assert '<div id="keys-table" class="overflow-auto" hx-swap-oob="true">' in html
    assert "Copy it now; it will not be shown again." in html and 'data-copy-target="#key-plaintext"' in html
    key = ApiKey.get()
    assert f'<tr id="key-{key.id}"' in html and "by Olga Owner" in html
    assert (key.name, key.scopes, key.created_by_id) == ("search-service prod", "ingest,gateway", owner.id)
    assert response.headers["Cache-Control"] == "no-store"

    page = client.get("/keys/").get_data(as_text=True)
    assert "search-service prod" in page and plaintext not in page and not shown_keys(page)
    assert plaintext.split("_", 3)[3] not in page  # nor the secret alone

    assert ingest(client, plaintext).status_code == 200


def test_create_without_javascript_renders_the_page_with_the_key(owner_client):
    client, _, _ = owner_client
    response = client.post("/keys/", create_form(env="test"))
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in html
    assert "Copy it now; it will not be shown again." in html and "hx-swap-oob" not in html
    plaintext = shown_keys(html)[0]
    assert plaintext.startswith("cg_test_")
    assert not shown_keys(client.get("/keys/").get_data(as_text=True))


def test_create_binds_a_member_a_department_and_an_expiry(owner_client, make_user):
    client, _, org = owner_client
    alice = make_user("alice@acme.com")
    add_member(org, alice, "member")
    research = Department.create(organization=org, name="Research")

    response = client.post("/keys/", create_form(user=str(alice.id), department=str(research.id), expires="90"),
                           htmx=True)

    assert response.status_code == 200
    key = ApiKey.get()
    assert (key.user_id, key.department_id) == (alice.id, research.id)
    assert timedelta(days=89, hours=23) < key.expires_at - clock.now() <= timedelta(days=90)


def test_a_custom_expiry_ends_with_that_day_in_the_org_s_time_zone(owner_client):
    client, _, org = owner_client
    org.time_zone = "Asia/Tokyo"
    org.save()
    day = clock.now().date() + timedelta(days=10)

    assert client.post("/keys/", create_form(expires="custom", expires_on=day.isoformat())).status_code == 200

    end = datetime.combine(day, time(23, 59, 59), tzinfo=ZoneInfo("Asia/Tokyo"))
    assert ApiKey.get().expires_at == end.astimezone(timezone.utc).replace(tzinfo=None)


def test_a_date_without_on_a_date_is_ignored(owner_client):
    client, _, _ = owner_client
    response = client.post("/keys/", create_form(expires="never", expires_on="garbage"), htmx=True)
    assert response.status_code == 200
    assert ApiKey.get().expires_at is None


@pytest.mark.parametrize("overrides, message", [
    ({"name": ""}, "Name the key after what uses it"),
    ({"name": "x" * 81}, "Use at most 80 characters."),
    ({"scopes": []}, "Choose at least one scope."),
    ({"scopes": ["ingest", "root"]}, "is not a valid choice"),
    ({"env": "prod"}, "Not a valid choice"),
    ({"expires": "custom", "expires_on": ""}, "Pick the day the key stops working."),
    ({"expires": "custom", "expires_on": "31/12/2030"}, "Enter a date as YYYY-MM-DD."),
    ({"expires": "custom", "expires_on": "2030-02-30"}, "Enter a date as YYYY-MM-DD."),
    ({"expires": "custom", "expires_on": "2001-01-01"}, "The expiry must be in the future."),
    ({"expires": "custom", "expires_on": "2999-01-01"}, "Choose a date within five years"),
    ({"expires": "1000"}, "Not a valid choice"),
    ({"user": "999999"}, "Choose a member of this organization."),
    ({"user_email": "nobody@acme.com"}, "No member of this organization has this email"),
    ({"department": "999999"}, "Not a valid choice"),
])
@pytest.mark.parametrize("htmx", [True, False])
def test_bad_input_is_422_with_field_messages(owner_client, overrides, message, htmx):
    client, _, _ = owner_client

    response = client.post("/keys/", create_form(**overrides), htmx=htmx)

    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in html
    assert ("<html" in html) is not htmx
    if htmx:
        assert html.lstrip().startswith('<details id="key-create"') and "hx-swap-oob" not in html
    assert re.search(r'<details id="key-create" class="key-create"\s+open>', html)
    assert 'aria-invalid="true"' in html
    assert ApiKey.select().count() == 0 and not shown_keys(html)


def test_members_of_another_org_cannot_be_bound(owner_client, make_org, make_user):
    client, _, _ = owner_client
    stranger = make_user("stranger@globex.com")
    make_org("Globex", owner=stranger)
    globex_dept = Department.create(organization=make_org("Initech"), name="Sales")
    response = client.post("/keys/", create_form(user=str(stranger.id), department=str(globex_dept.id)))
    assert response.status_code == 422 and ApiKey.select().count() == 0


def test_the_form_keeps_what_was_typed_after_an_error(owner_client):
    client, _, _ = owner_client
    html = client.post("/keys/", create_form(name="", scopes=["gateway"], env="test"), htmx=True).get_data(
        as_text=True)
    assert re.search(r'<input checked id="scopes-1" name="scopes" type="checkbox" value="gateway"', html)
    assert not re.search(r'<input checked id="scopes-0"', html)
    assert re.search(r'<input checked id="env-1" name="env" type="radio" value="test"', html)


# --- rotating and revoking -----------------------------------------------------

def test_rotate_with_htmx_shows_the_new_secret_once_and_keeps_the_old_for_the_grace(owner_client):
    client, _, org = owner_client
    old = keys.create_key(org, SYSTEM, "collector", ["ingest"])

    response = client.post(f"/keys/{old.key.id}/rotate", {"grace_hours": "1"}, htmx=True)

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="key-{old.key.id}"')
    assert "rotated — old secret valid until" in html
    assert '<div id="key-secret" hx-swap-oob="true">' in html and "New secret for “collector”" in html
    assert "The old secret keeps working until" in html
    new_plaintext = shown_keys(html)[0]
    assert new_plaintext != old.plaintext
    assert "has a new secret" in json.loads(response.headers["HX-Trigger"])["showToast"]["message"]
    key = ApiKey.get_by_id(old.key.id)
    assert timedelta(minutes=59) < key.previous_valid_until - clock.now() <= timedelta(hours=1)
    assert ingest(client, old.plaintext, "e-old").status_code == 200
    assert ingest(client, new_plaintext, "e-new").status_code == 200
    assert "rotated — old secret valid until" in client.get("/keys/").get_data(as_text=True)
    assert not shown_keys(client.get("/keys/").get_data(as_text=True))
    assert AuditLog.get(AuditLog.action == "key.rotated").detail["grace_hours"] == 1


def test_rotate_without_grace_and_without_javascript(owner_client):
    client, _, org = owner_client
    old = keys.create_key(org, SYSTEM, "collector", ["ingest"])

    response = client.post(f"/keys/{old.key.id}/rotate", {"grace_hours": "0"})

    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in html
    assert "The old secret stopped working just now." in html
    assert ingest(client, old.plaintext).status_code == 401
    assert ingest(client, shown_keys(html)[0]).status_code == 200


@pytest.mark.parametrize("grace", ["5", "", "abc"])
def test_rotate_with_an_unknown_grace_is_422(owner_client, grace):
    client, _, org = owner_client
    old = keys.create_key(org, SYSTEM, "collector", ["ingest"])
    response = client.post(f"/keys/{old.key.id}/rotate", {"grace_hours": grace}, htmx=True)
    assert response.status_code == 422
    assert "Choose how long the old secret keeps working." in response.get_data(as_text=True)
    assert json.loads(response.headers["HX-Trigger"])["showToast"]["level"] == "error"
    assert ApiKey.get_by_id(old.key.id).rotated_at is None


def test_a_revoked_key_cannot_be_rotated(owner_client):
    client, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "collector", ["ingest"]).key
    keys.revoke_key(key, SYSTEM)
    response = client.post(f"/keys/{key.id}/rotate", {"grace_hours": "24"}, htmx=True)
    assert response.status_code == 422 and "Only an active key can be rotated." in response.get_data(as_text=True)
    response = client.post(f"/keys/{key.id}/rotate", {"grace_hours": "24"})
    assert response.status_code == 302
    assert "Only an active key can be rotated." in client.get("/keys/").get_data(as_text=True)


def test_revoke_with_htmx_shows_the_row_revoked_and_the_key_stops_working(owner_client):
    client, _, org = owner_client
    new = keys.create_key(org, SYSTEM, "collector", ["ingest"])
    assert ingest(client, new.plaintext).status_code == 200

    response = client.post(f"/keys/{new.key.id}/revoke", htmx=True)

    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.lstrip().startswith(f'<tr id="key-{new.key.id}" class="key-row key-revoked">')
    assert "Revoked" in html and "Rotate" not in html
    assert "was revoked" in json.loads(response.headers["HX-Trigger"])["showToast"]["message"]
    refused = ingest(client, new.plaintext, "evt-2")
    assert refused.status_code == 401
    assert refused.get_json()["type"].endswith("/revoked-api-key")
    assert AuditLog.select().where(AuditLog.action == "key.revoked").count() == 1


def test_revoke_without_javascript_redirects_with_a_message(owner_client):
    client, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "collector", ["ingest"]).key
    response = client.post(f"/keys/{key.id}/revoke")
    assert response.status_code == 302 and response.headers["Location"] == "/keys/"
    assert "“collector” was revoked" in client.get("/keys/").get_data(as_text=True)
    assert ApiKey.get_by_id(key.id).status() == "revoked"


def test_the_revoke_and_rotate_buttons_ask_for_confirmation(owner_client):
    client, _, org = owner_client
    keys.create_key(org, SYSTEM, "collector", ["ingest"])
    html = client.get("/keys/").get_data(as_text=True)
    assert 'hx-confirm="Revoke “collector”? Every request that uses it will be refused at once.' in html
    assert 'hx-confirm="Give “collector” a new secret?' in html


def test_cross_tenant_ids_are_404(owner_client, make_org):
    client, _, _ = owner_client
    theirs = keys.create_key(make_org("Globex"), SYSTEM, "theirs", ["ingest"])
    assert client.post(f"/keys/{theirs.key.id}/rotate", {"grace_hours": "0"}, htmx=True).status_code == 404
    assert client.post(f"/keys/{theirs.key.id}/revoke", htmx=True).status_code == 404
    assert client.post(f"/keys/{theirs.key.id}/revoke").status_code == 404
    assert client.post("/keys/99999999999/revoke").status_code == 404
    key = ApiKey.get_by_id(theirs.key.id)
    assert key.revoked_at is None and key.rotated_at is None
    assert ingest(client, theirs.plaintext).status_code == 200


# --- who may -------------------------------------------------------------------

@pytest.mark.parametrize("role", ["viewer"])
def test_roles_without_keys_manage_get_403(app, owner_client, make_user, role):
    _, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "collector", ["ingest"]).key
    client = signed_in(app, org, f"{role}@acme.com", role, make_user)

    page = client.get("/keys/")
    assert page.status_code == 403 and "You don&#39;t have access" in page.get_data(as_text=True)
    assert 'href="/keys/"' not in client.get("/").get_data(as_text=True)
    for response in (client.post("/keys/", create_form(), htmx=True), client.post("/keys/", create_form()),
                     client.post(f"/keys/{key.id}/rotate", {"grace_hours": "0"}, htmx=True),
                     client.post(f"/keys/{key.id}/revoke", htmx=True)):
        assert response.status_code == 403
    assert ApiKey.select().count() == 1
    assert ApiKey.get_by_id(key.id).status() == "active" and ApiKey.get_by_id(key.id).rotated_at is None


def test_an_admin_manages_keys(app, owner_client, make_user):
    _, _, org = owner_client
    client = signed_in(app, org, "adm@acme.com", "admin", make_user)
    assert 'href="/keys/"' in client.get("/").get_data(as_text=True)
    response = client.post("/keys/", create_form(), htmx=True)
    assert response.status_code == 200 and shown_keys(response.get_data(as_text=True))


def test_anonymous_requests_are_sent_to_sign_in(client):
    assert client.get("/keys/").headers["Location"] == "/login?next=/keys/"
    assert client.post("/keys/", create_form(), htmx=True, csrf=False).status_code == 401


def test_a_post_without_csrf_token_is_refused(owner_client):
    client, _, _ = owner_client
    assert client.post("/keys/", create_form(), csrf=False).status_code == 400
    assert client.post("/keys/", create_form(), htmx=True, csrf=False).status_code == 400
    assert ApiKey.select().count() == 0


def test_the_expiry_date_is_typed_as_iso_and_counts_in_the_organizations_zone(app, make_user, make_org):
    import time_machine

    owner = make_user("kim@tokyo.example.com")
    make_org("Tokyo Co", owner=owner, time_zone="Asia/Tokyo")
    with time_machine.travel(datetime(2026, 11, 30, 20, 0, tzinfo=timezone.utc), tick=False):
        client = Client(app)
        client.sign_in(owner.email)
        html = client.get("/keys/").get_data(as_text=True)
        field = re.search(r'<input[^>]*name="expires_on"[^>]*>', html).group(0)
        assert 'type="text"' in field and 'placeholder="YYYY-MM-DD"' in field and 'inputmode="numeric"' in field
        assert "Expiry date (YYYY-MM-DD)" in html
        # 30 November ended at 15:00 UTC in Tokyo: it is already 1 December there.
        late = client.post("/keys/", create_form(expires="custom", expires_on="2026-11-30"), htmx=True)
        assert late.status_code == 422 and "The expiry must be in the future." in late.get_data(as_text=True)
        assert client.post("/keys/", create_form(expires="custom", expires_on="2026-12-01"), htmx=True).status_code == 200
    [key] = ApiKey.select()
    assert key.expires_at == datetime(2026, 12, 1, 14, 59, 59)  # the end of 1 December in Tokyo, as UTC


# --- a key's page: details, gateway limits, traffic ---------------------------------------

def limits_form(rpm="", tpm="", override=True) -> dict:
    data = {"rpm_limit": rpm, "tpm_limit": tpm}
    if override:
        data["attribution_override"] = "y"
    return data


def test_the_list_links_each_key_to_its_page(owner_client):
    client, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "collector", ["gateway"]).key
    assert f'href="/keys/{key.id}"' in client.get("/keys/").get_data(as_text=True)


def test_a_keys_page_shows_the_key_and_its_limits_form(owner_client, make_user):
    client, owner, org = owner_client
    research = Department.create(organization=org, name="Research")
    key = keys.create_key(org, Actor(user=owner), "search-service prod", ["gateway", "ingest"], user=owner,
                          department=research).key
    response = client.get(f"/keys/{key.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "search-service prod" in html and key.display_key in html and "Olga Owner" in html and "Research" in html
    assert 'name="rpm_limit"' in html and 'name="tpm_limit"' in html and 'name="attribution_override"' in html
    assert 'data-testid="key-no-traffic"' in html


@pytest.mark.parametrize("htmx", [True, False])
def test_an_owner_sets_a_keys_limits_and_the_change_is_audited(owner_client, htmx):
    client, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "collector", ["gateway"]).key
    response = client.post(f"/keys/{key.id}/limits", limits_form("60", "150000", override=False), htmx=htmx)
    assert response.status_code == (200 if htmx else 302)
    stored = ApiKey.get_by_id(key.id)
    assert (stored.rpm_limit, stored.tpm_limit, stored.attribution_override) == (60, 150_000, False)
    [row] = AuditLog.select().where(AuditLog.action == "key.limits_changed")
    assert row.target_id == str(key.id) and row.detail["changes"]["rpm_limit"] == [None, 60]
    html = client.get(f"/keys/{key.id}").get_data(as_text=True)
    assert 'value="60"' in html and 'value="150000"' in html
    # Emptied: no limit again.
    assert client.post(f"/keys/{key.id}/limits", limits_form(), htmx=True).status_code == 200
    stored = ApiKey.get_by_id(key.id)
    assert (stored.rpm_limit, stored.tpm_limit, stored.attribution_override) == (None, None, True)


@pytest.mark.parametrize("rpm, tpm, field, message", [
    ("-5", "", "rpm_limit", "at least 1"),
    ("0", "", "rpm_limit", "at least 1"),
    ("ten", "", "rpm_limit", "whole number"),
    ("", "1000000000000", "tpm_limit", "at most 1,000,000,000"),
    ("", "2.5", "tpm_limit", "whole number"),
    ("5000000", "", "rpm_limit", "at most 1,000,000"),
])
def test_bad_limits_are_422_with_field_messages(owner_client, rpm, tpm, field, message):
    client, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "collector", ["gateway"]).key
    response = client.post(f"/keys/{key.id}/limits", limits_form(rpm, tpm), htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(rf'id="{field}-help" class="field-error">[^<]*{re.escape(message)}', html)
    stored = ApiKey.get_by_id(key.id)
    assert (stored.rpm_limit, stored.tpm_limit) == (None, None)
    assert not AuditLog.select().where(AuditLog.action == "key.limits_changed").exists()


@pytest.mark.parametrize("role", ["viewer", "member", "billing"])
def test_other_roles_read_a_keys_page_without_forms_and_may_not_change_limits(app, owner_client, make_user, role):
    _, _, org = owner_client
    key = keys.create_key(org, SYSTEM, "collector", ["gateway"]).key
    keys.set_gateway_limits(key, SYSTEM, 30, None, False)
    client = signed_in(app, org, f"{role}@acme.com", role, make_user)
    response = client.get(f"/keys/{key.id}")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<form" not in html.split('id="key-limits"')[1].split("</section>")[0]
    assert 'data-testid="key-limits-read-only"' in html and "30" in html
    assert client.post(f"/keys/{key.id}/limits", limits_form("1"), htmx=True).status_code == 403
    assert client.post("/keys/gateway-limits", limits_form("1"), htmx=True).status_code == 403
    assert ApiKey.get_by_id(key.id).rpm_limit == 30 and Organization.get_by_id(org.id).gateway_rpm_limit is None


def test_another_organizations_key_page_is_404(owner_client, make_org):
    client, _, _ = owner_client
    theirs = keys.create_key(make_org("Globex"), SYSTEM, "theirs", ["gateway"]).key
    assert client.get(f"/keys/{theirs.id}").status_code == 404
    assert client.get(f"/keys/{theirs.id}/latency", htmx=True).status_code == 404
    assert client.post(f"/keys/{theirs.id}/limits", limits_form("1"), htmx=True).status_code == 404
    assert ApiKey.get_by_id(theirs.id).rpm_limit is None
    assert client.get("/keys/99999999999").status_code == 404


def test_an_owner_sets_the_organizations_gateway_limits_on_the_list(owner_client):
    client, _, org = owner_client
    html = client.get("/keys/").get_data(as_text=True)
    assert 'data-testid="org-gateway-limits"' in html and 'action="/keys/gateway-limits"' in html
    bad = client.post("/keys/gateway-limits", limits_form("-1", "x"), htmx=True)
    assert bad.status_code == 422
    assert 'id="rpm_limit-help" class="field-error"' in bad.get_data(as_text=True)
    assert 'id="tpm_limit-help" class="field-error"' in bad.get_data(as_text=True)
    assert client.post("/keys/gateway-limits", limits_form("500", "2000000"), htmx=True).status_code == 200
    stored = Organization.get_by_id(org.id)
    assert (stored.gateway_rpm_limit, stored.gateway_tpm_limit) == (500, 2_000_000)
    assert AuditLog.select().where(AuditLog.action == "org.gateway_limits_changed").count() == 1
    assert "500 requests" in client.get("/keys/").get_data(as_text=True)


def test_a_keys_page_shows_its_gateway_traffic(app, gateway):
    from costguardian.models import GatewayRequest, UsageEvent

    client = gateway.openai()
    for _ in range(3):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    gateway.upstream.fail_next = [500]
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    other = gateway.new_key("someone else's")
    gateway.openai(key=other).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    calls = gateway.calls(5)
    mine = [c for c in calls if c.api_key_id == gateway.api_key.id]
    cost = sum(e.cost_nanos for e in UsageEvent.in_org(gateway.org).where(UsageEvent.api_key == gateway.api_key))
    assert len(mine) == 4 and cost > 0

    page = Client(app)
    page.sign_in(gateway.owner.email)
    html = page.get(f"/keys/{gateway.api_key.id}").get_data(as_text=True)
    day = html.split('data-testid="traffic-24h"')[1].split("</div>")[0]
    assert re.search(r'data-testid="calls">4<', day) and re.search(r'data-testid="errors">1<', day)
    assert format_usd(cost) in day and format_usd(cost) != "$0.00"  # the money rule keeps a small cost's digits
    recent = html.split('data-testid="key-recent"')[1].split("</table>")[0]
    assert recent.count("<tr data-request-id=") == 4
    for call in mine:
        assert f'href="/gateway/requests/{call.request_id}"' in recent
    assert not any(c.request_id in recent for c in calls if c.api_key_id != gateway.api_key.id)
    assert f'hx-get="/keys/{gateway.api_key.id}/latency"' in html
    latency = page.get(f"/keys/{gateway.api_key.id}/latency", htmx=True).get_data(as_text=True)
    assert 'data-testid="key-models"' in latency and "openai/gpt-4o" in latency and "<html" not in latency
    row = re.search(r"<tr><td><code>openai/gpt-4o</code></td><td class=\"num\">(\d+)<", latency)
    assert row and row.group(1) == "4"  # the forwarded calls of this key, the provider's 500 included
    assert GatewayRequest.in_org(gateway.org).count() == 5
