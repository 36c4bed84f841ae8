"""The whole journey of issue 3, as a new user makes it: sign up, create an
organization and an ingest key in the browser, send usage with curl and with
Python `requests` exactly as docs/API.md shows, and find it priced and
attributed on the dashboard and in the explorer; retries, bad events and an
unpriced model behave as promised; the CSV total equals the dashboard's."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from decimal import Decimal

import requests
from playwright.sync_api import expect

from tests.support import PASSWORD

# 800 uncached × $2.50 + 200 cached × $1.25 + 100 output × $10, per million tokens
GPT4O_EVENT_USD = Decimal("0.00325")


def test_new_user_sends_usage_and_sees_it_priced(page, live_server, shot):
    # Sign up and create the organization.
    page.goto("/signup")
    page.get_by_label("Your name").fill("Nora Newuser")
    page.get_by_label("Work email").fill("nora@nimbus.example.com")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    page.get_by_label("Organization name").fill("Nimbus")
    page.get_by_label("Time zone").select_option("UTC")
    page.get_by_role("button", name="Create organization").click()
    expect(page).to_have_url(re.compile(r"/onboarding/organization$"))  # the setup wizard opens first
    page.goto("/")
    expect(page.get_by_test_id("empty-dashboard")).to_be_visible()

    # Create an ingest key in the browser; it is shown once.
    page.locator("ul.mainnav").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("journey")
    page.get_by_label("read").check()
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-api-key").input_value()
    assert key.startswith("cg_live_")

    # curl, as docs/API.md shows.
    curl = shutil.which("curl")
    assert curl, "curl is needed for this journey (Debian: apt-get install curl)"
    body = json.dumps({"event_id": "req-8c1f", "provider": "openai", "model": "gpt-4o",
                       "input_tokens": 1000, "cache_read_tokens": 200, "output_tokens": 100,
                       "user": "nora@nimbus.example.com", "tags": {"feature": "search"}})
    out = subprocess.run([curl, "-sS", f"{live_server}/api/v1/usage", "-H", f"Authorization: Bearer {key}",
                          "-H", "Content-Type: application/json", "-d", body],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    result = json.loads(out)["results"][0]
    assert (result["status"], result["cost_usd"], result["priced"]) == ("accepted", "0.00325", True)

    # Python requests, as docs/API.md shows: a batch, retried, with a bad event and an unpriced model.
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    events = [{"event_id": f"job-42-{i}", "provider": "openai", "model": "gpt-4o-2024-08-06",
               "input_tokens": 1000, "cache_read_tokens": 200, "output_tokens": 100} for i in range(9)]
    events.append({"event_id": "bad-1", "provider": "openai", "model": "gpt-4o", "input_tokens": -3})
    events.append({"event_id": "own-1", "provider": "nimbus-gpu", "model": "llama-ft", "input_tokens": 500})
    first = session.post(f"{live_server}/api/v1/usage", json={"events": events}, timeout=30).json()
    assert (first["accepted"], first["duplicates"], first["rejected"]) == (10, 0, 1)
    retry = session.post(f"{live_server}/api/v1/usage", json={"events": events}, timeout=30).json()
    assert (retry["accepted"], retry["duplicates"], retry["rejected"]) == (0, 10, 1)

    # The dashboard shows it at once: 10 priced gpt-4o calls, the unpriced model flagged.
    expected = 10 * GPT4O_EVENT_USD
    page.locator("ul.mainnav").get_by_role("link", name="Dashboard").click()
    expect(page.get_by_test_id("spend-this-month")).to_contain_text(f"${expected:.2f}")
    expect(page.get_by_test_id("requests-this-month")).to_have_text("11")
    assert Decimal(page.get_by_test_id("spend-this-month").locator("data").get_attribute("value")) == expected
    expect(page.get_by_test_id("unpriced-models")).to_contain_text("llama-ft")
    expect(page.get_by_test_id("top-model")).to_contain_text("gpt-4o")
    expect(page.get_by_test_id("top-user")).to_contain_text("Nora Newuser")
    shot(page, "dashboard")

    # The explorer (by model unless told otherwise) regroups by provider in place;
    # the CSV of every event totals the same.
    page.locator("ul.mainnav").get_by_role("link", name="Usage").click()
    table = page.get_by_test_id("usage-table")
    expect(table.locator("tbody")).to_contain_text("gpt-4o")
    page.wait_for_load_state("domcontentloaded")  # htmx (deferred) binds the select's change then
    page.get_by_label("Group by", exact=True).select_option("provider")
    expect(page).to_have_url(re.compile(r"group_by=provider"))
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("tbody")).to_contain_text("nimbus-gpu")
    shot(page, "explorer")
    with page.expect_download() as download:
        page.get_by_role("link", name="every event").click()
    rows = list(csv.DictReader(io.StringIO(open(download.value.path(), encoding="utf-8").read())))
    assert len(rows) == 11
    assert sum(Decimal(r["cost_usd"]) for r in rows if r["cost_usd"]) == expected
    assert sum(1 for r in rows if not r["cost_usd"]) == 1
