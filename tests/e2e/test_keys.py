"""Journeys on the API keys page: an owner creates a key, copies it from the
page (shown once), sends usage with it to the live server, then revokes it;
and a rotation without a grace period."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from playwright.sync_api import expect

from tests.e2e.conftest import SHOTS_DIR

EVENT = {"event_id": "e2e-1", "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100}


@pytest.fixture
def keys_shot(backend):
    """keys_shot(page, "step"): /tmp/e2e-shots/keys-<backend>-<step>.png."""
    SHOTS_DIR.mkdir(parents=True, exist_ok=True)

    def take(page, step: str) -> Path:
        path = SHOTS_DIR / f"keys-{backend}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture(autouse=True)
def _fresh_last_used_memory():
    from costguardian.services import keys

    keys._last_written.clear()
    yield
    keys._last_written.clear()


def send_usage(live_server: str, key: str, event: dict = EVENT):
    return requests.post(f"{live_server}/api/v1/usage", json=event, timeout=10,
                         headers={"Authorization": f"Bearer {key}"})


def _toast(page, text: str):
    return page.locator("#toasts .toast", has_text=text)


def test_owner_creates_copies_uses_and_revokes_a_key(page, live_server, make_user, make_org, sign_in, keys_shot):
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    make_org("Acme Analytics", owner=owner)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)

    sign_in(page, "olga@acme.example.com")
    page.locator("ul.mainnav").get_by_role("link", name="API keys").click()
    expect(page).to_have_url(re.compile(r"/keys/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("API keys")
    expect(page.get_by_test_id("keys-empty")).to_be_visible()
    expect(page.get_by_label("ingest")).to_be_checked()
    keys_shot(page, "1-empty")

    # A key needs a name: the form says so in place (422), nothing is created.
    page.evaluate("window.__noReload = true")
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/keys/")) as info:
        page.get_by_role("button", name="Create key").click()
    assert info.value.status == 422
    expect(page.locator("#name-help")).to_have_text(re.compile("Name the key after what uses it"))
    expect(page.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("keys-empty")).to_be_visible()
    keys_shot(page, "1b-name-missing")

    # Create: the key appears once, with the new row and a toast, without a reload.
    page.get_by_label("Name").fill("e2e collector")
    page.get_by_role("checkbox", name="gateway").check()
    expect(page.get_by_label("Expiry date")).to_be_hidden()
    page.get_by_label("Expires").select_option("custom")
    expect(page.get_by_label("Expiry date")).to_be_visible()
    page.get_by_label("Expires").select_option("90")
    expect(page.get_by_label("Expiry date")).to_be_hidden()
    page.get_by_role("button", name="Create key").click()
    reveal = page.get_by_test_id("key-reveal")
    expect(reveal).to_contain_text("Copy it now; it will not be shown again.")
    expect(_toast(page, "API key “e2e collector” created.")).to_be_visible()
    row = page.locator("#keys-table tbody tr", has_text="e2e collector")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("by Olga Owner")
    expect(page.get_by_test_id("keys-empty")).to_have_count(0)
    assert page.evaluate("window.__noReload") is True

    # Copy it with the button, as a person would, and read the clipboard.
    shown = page.get_by_test_id("new-api-key").input_value()
    assert re.fullmatch(r"cg_live_[a-z0-9]{12}_[A-Za-z0-9_-]{43}", shown)
    reveal.get_by_role("button", name="Copy", exact=True).click()
    expect(reveal.get_by_role("button", name="Copied", exact=True)).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == shown
    expect(row.get_by_test_id("display-key")).to_have_text(shown[:len("cg_live_") + 12] + "_…")
    keys_shot(page, "2-created")

    # The key works against the live server.
    response = send_usage(live_server, copied)
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["status"] == "accepted"

    # A reload never shows the secret again; the row says it was used.
    page.reload()
    expect(page.get_by_test_id("key-reveal")).to_have_count(0)
    assert copied not in page.content()
    last_used = row.locator("td").nth(5)
    expect(last_used).not_to_contain_text("Never")
    expect(last_used.locator("time")).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
    keys_shot(page, "3-reloaded")

    # Revoke, after confirming: the row says so and the key is refused.
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(row.locator(".key-status")).to_have_text("Revoked")
    expect(_toast(page, "“e2e collector” was revoked")).to_be_visible()
    expect(row.get_by_role("button", name="Revoke")).to_have_count(0)
    keys_shot(page, "4-revoked")

    refused = send_usage(live_server, copied)
    assert refused.status_code == 401
    assert refused.json()["type"].endswith("/revoked-api-key")


def test_rotating_without_grace_replaces_the_secret_at_once(page, live_server, make_user, make_org, sign_in,
                                                            keys_shot):
    from costguardian.services import keys
    from tests.support import SYSTEM

    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    old = keys.create_key(org, SYSTEM, "batch jobs", ["ingest"])
    keys.create_key(org, SYSTEM, "search-service prod", ["ingest", "gateway"], env="test")

    sign_in(page, "olga@acme.example.com")
    page.goto("/keys/")
    row = page.locator(f"#key-{old.key.id}")
    row.get_by_role("button", name="Rotate…").click()
    row.get_by_label("Old secret of batch jobs keeps working").select_option("0")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Rotate now").click()

    reveal = page.get_by_test_id("key-reveal")
    expect(reveal).to_contain_text("New secret for “batch jobs”")
    expect(reveal).to_be_in_viewport()
    expect(reveal).to_contain_text("The old secret stopped working just now.")
    new_key = page.get_by_test_id("new-api-key").input_value()
    assert new_key != old.plaintext and new_key[:21] == old.plaintext[:21]  # same prefix
    keys_shot(page, "5-rotated")

    assert send_usage(live_server, old.plaintext).status_code == 401
    assert send_usage(live_server, new_key).status_code == 200

    # With a grace period the row says until when the old secret works.
    row.get_by_role("button", name="Rotate…").click()
    expect(row.get_by_label("Old secret of batch jobs keeps working")).to_have_value("24")
    keys_shot(page, "6-rotate-open")
    row.get_by_label("Old secret of batch jobs keeps working").select_option("168")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Rotate now").click()
    expect(row).to_contain_text("rotated — old secret valid until")
    expect(reveal).to_contain_text("The old secret keeps working until")
    keys_shot(page, "7-rotated-with-grace")
    assert send_usage(live_server, new_key, {**EVENT, "event_id": "e2e-2"}).status_code == 200
