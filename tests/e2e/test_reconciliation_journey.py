"""Issue 16 in the browser: an owner connects an OpenAI admin key (the fake
admin API holding a known history), the 30-day backfill runs, the page shows
the drift table with a highlighted row, the hours of a day, a shadow key that
the owner marks as known, and the cost check's one-click price override. The
page is also checked at 390 px: no horizontal page scroll."""
from __future__ import annotations

import re
from datetime import datetime

import time_machine
from playwright.sync_api import expect

from costguardian.models import PriceOverride
from costguardian.services.usage import ingest
from tests.provider_sync_support import NOW, admin_api  # noqa: F401

MOBILE = {"width": 390, "height": 844}
DESKTOP = {"width": 1366, "height": 900}


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def _history(org, fake):
    """gpt-4o billed 20% above the catalog on 4 and 5 Dec; gpt-4o-mini used on
    5 Dec under a key that never went through Cost Guardian."""
    for day, billed in ((3, "2.50"), (4, "3.00"), (5, "3.00")):
        fake.add_openai_usage(datetime(2026, 12, day, 10), "gpt-4o", "key_gateway", "proj_main",
                              input_tokens=1_000_000, output_tokens=0, num_model_requests=1)
        fake.add_openai_cost(datetime(2026, 12, day), billed, "gpt-4o-2024-08-06, input", "proj_main")
    fake.add_openai_usage(datetime(2026, 12, 5, 9), "gpt-4o-mini", "key_laptop", "proj_main",
                          input_tokens=2_000_000, output_tokens=500_000, num_model_requests=40)
    events = [{"event_id": f"ev-{day}", "provider": "openai", "model": "gpt-4o", "input_tokens": 1_000_000,
               "output_tokens": 0, "occurred_at": f"2026-12-0{day}T10:15:00Z"} for day in (3, 4, 5)]
    result = ingest.ingest(org, None, events, now=NOW.replace(tzinfo=None))
    assert result.count("accepted") == 3


def test_owner_reconciles_openai_and_fixes_a_price(page, live_server, app_ctx, make_user, make_org, admin_api,
                                                  sign_in, shot):
    with time_machine.travel(NOW, tick=True):
        owner = make_user("olga@acme.example.com", name="Olga Owner")
        org = make_org("Acme", owner=owner, time_zone="UTC")
        _history(org, admin_api)
        page.set_viewport_size(DESKTOP)
        sign_in(page, owner.email)

        # 1. Connect the admin key; the backfill runs and the provider page opens.
        page.goto("/reconciliation/")
        openai = page.locator("#connection-openai")
        openai.get_by_label(re.compile("Admin key")).fill(admin_api.openai_key)
        openai.get_by_role("button", name="Connect").click()
        expect(page).to_have_url(re.compile(r"/reconciliation/openai$"))
        expect(page.locator("#sync-progress")).to_contain_text("Up to date")
        shot(page, "1-connected")

        # 2. The drift table: gpt-4o-mini was reported and never recorded.
        flagged = page.locator("#drift tbody tr.drift-flagged")
        expect(flagged).to_have_count(1)
        expect(flagged).to_contain_text("gpt-4o-mini")
        expect(page.locator("#drift tbody tr:not(.drift-flagged)")).to_have_count(3)

        # 3. The hours of that day, in place.
        flagged.get_by_role("link", name="Hours").click()
        hours = page.locator("#hours-panel table")
        expect(hours).to_be_visible()
        expect(hours.locator("tbody tr.drift-flagged")).to_contain_text("09:00")
        shot(page, "2-hours")

        # 4. By provider key: the ingest API's calls are recorded under no key; the shadow key, marked as ours.
        expect(page.locator("#provider-keys tbody tr[data-status=not_matched]")).to_contain_text("3,000,000")
        laptop = page.locator("#provider-keys tbody tr", has_text="key_laptop")
        expect(laptop).to_contain_text("Shadow")
        laptop.get_by_role("button", name="This key is ours").click()
        expect(page.locator("#provider-keys tbody tr", has_text="key_laptop")).to_contain_text("Known")

        # 5. The cost check flags gpt-4o; one click sets the organization's price.
        expect(page.locator("#cost-check tbody tr.drift-flagged")).to_have_count(2)
        fix = page.locator("#price-fixes tbody tr", has_text="gpt-4o")
        expect(fix).to_contain_text("1.2000")
        expect(fix).to_contain_text("2026-12-04")
        shot(page, "3-before-fix")
        fix.get_by_role("button", name="Set this price").click()
        expect(page.locator(".flash, [role=status]").first).to_contain_text("openai/gpt-4o")
        expect(page.locator("#price-fixes")).to_have_count(0)
        expect(page.locator("#cost-check tbody tr.drift-flagged")).to_have_count(0)
        [override] = PriceOverride.select().where(PriceOverride.organization == org)
        assert override.input_nanos_per_mtok == 3 * 10**9 and "billed 1.2000x" in override.note
        shot(page, "4-fixed")

        # 6. A phone: tables scroll inside their containers, never the page.
        page.set_viewport_size(MOBILE)
        page.locator("#drift tbody tr.drift-flagged").get_by_role("link", name="Hours").click()
        expect(page.locator("#hours-panel table")).to_be_visible()
        assert _no_horizontal_scroll(page), page.evaluate("[document.documentElement.scrollWidth, "
                                                          "window.innerWidth]")
        shot(page, "5-phone")
