"""The billing journey of issue 12 §7: a Free organization's owner upgrades to
Team through Stripe Checkout (the fake's hosted page, filled like a person
would), waits on the activation page until the signed webhooks have landed,
sees the plan change on the billing page, opens the Customer Portal, comes
back, and reads its first invoice on the fake's hosted invoice page. The
billing page is also checked at 1366 px and 390 px, and a viewer of the same
organization has neither the link nor the page.

Stripe is only the local fake (tests/fakes/stripe_api.py); the clock is the
real one (the fake and the app read the same process clock)."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.fakes.stripe_billing import CARD_OK
from tests.support import PASSWORD, add_member

DESKTOP = {"width": 1366, "height": 900}
MOBILE = {"width": 390, "height": 844}


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_free_org_upgrades_to_team_through_checkout_opens_the_portal_and_reads_its_first_invoice(
        page, new_context, live_server, billing_live, make_user, make_org, sign_in, shot):
    stripe_api = billing_live
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    add_member(org, make_user("vic@acme.example.com", name="Vic Viewer"), "viewer")
    page.set_viewport_size(DESKTOP)
    sign_in(page, "olga@acme.example.com")

    # 1. The billing page of a Free organization: the plan and the plan cards.
    page.locator("ul.mainnav").get_by_role("link", name="Billing").click()
    expect(page).to_have_url(f"{live_server}/billing/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Billing")
    expect(page.get_by_test_id("current-plan").locator("header")).to_contain_text("Free")
    for code in ("free", "team", "business"):
        expect(page.get_by_test_id(f"plan-{code}")).to_be_visible()
    expect(page.get_by_test_id("plan-free")).to_have_class(re.compile(r"\bcurrent\b"))
    expect(page.get_by_text("No invoices yet.")).to_be_visible()
    shot(page, "1-free-1366")
    page.set_viewport_size(MOBILE)
    expect(page.get_by_test_id("upgrade")).to_be_visible()
    assert _no_horizontal_scroll(page), page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    shot(page, "1-free-390")
    page.set_viewport_size(DESKTOP)

    # 2. Team, monthly, three seats, through Stripe Checkout.
    form = page.get_by_test_id("checkout-form")
    form.get_by_label("Plan", exact=True).select_option("team")
    form.get_by_label("Billing", exact=True).select_option("month")
    form.get_by_label("Seats", exact=True).fill("3")
    form.get_by_test_id("upgrade").click()
    expect(page).to_have_url(re.compile("^" + re.escape(f"{stripe_api.url}/pay/checkout/")))
    expect(page.locator("#items")).to_contain_text("Team")
    expect(page.locator("#items .quantity")).to_have_text("3")
    expect(page.locator("#trial")).to_contain_text("14 days free")
    shot(page, "2-checkout")

    # 3. The hosted Checkout page, filled and submitted.
    page.get_by_label("Email").fill("olga@acme.example.com")
    page.get_by_label("Card number").fill(CARD_OK)
    page.get_by_label("Expiration").fill("12 / 34")
    page.get_by_label("CVC").fill("123")
    page.get_by_label("Cardholder name").fill("Olga Owner")
    page.get_by_test_id("hosted-payment-submit-button").click()

    # 4. Back on Cost Guardian: "activating…" until the webhooks have landed (polled every 2 s).
    expect(page).to_have_url(re.compile("^" + re.escape(f"{live_server}/billing/success?session_id=cs_")))
    activation = page.get_by_test_id("activation")
    expect(activation).to_contain_text(re.compile(r"Activating…|is now on Team"))
    expect(activation).to_contain_text("Acme Analytics is now on Team", timeout=15_000)
    expect(activation).to_contain_text("free until")
    shot(page, "3-activated")
    activation.get_by_role("button", name="Go to billing").click()  # a link styled as a button

    # 5. The billing page shows the new plan, its trial and the card.
    expect(page).to_have_url(f"{live_server}/billing/")
    current = page.get_by_test_id("current-plan")
    expect(current.locator("header")).to_contain_text("Team")
    expect(current.locator("header")).to_contain_text("trial until")
    expect(page.get_by_test_id("seats")).to_have_text("2 used of 3")  # the owner and the viewer
    expect(page.get_by_test_id("payment-method")).to_contain_text("Visa •••• 4242")
    expect(page.get_by_test_id("next-invoice")).to_contain_text("$")
    expect(page.get_by_test_id("checkout-form")).to_have_count(0)  # subscribed: the change form instead
    invoices = page.get_by_test_id("invoices")
    expect(invoices.locator("tbody tr")).to_have_count(1)
    shot(page, "4-team-1366")
    assert _no_horizontal_scroll(page)

    # 6. The Customer Portal, and back through its return link.
    page.get_by_test_id("open-portal").click()
    expect(page).to_have_url(re.compile("^" + re.escape(f"{stripe_api.url}/pay/portal/")))
    expect(page.locator("section.subscription")).to_contain_text("Team × 3")
    expect(page.locator("section.subscription .status")).to_have_text("trialing")
    expect(page.locator("#card")).to_contain_text("Visa •••• 4242")
    shot(page, "5-portal")
    page.get_by_role("link", name="Return to Cost Guardian").click()
    expect(page).to_have_url(f"{live_server}/billing/")

    # 7. The first invoice, on Stripe's hosted invoice page (a new tab).
    row = page.get_by_test_id("invoices").locator("tbody tr")
    expect(row).to_have_count(1)
    number = row.locator("td").first.inner_text().strip()
    assert number and number != "—"
    expect(row).to_contain_text("paid")
    with page.context.expect_page() as opened:
        row.get_by_role("link", name="View", exact=True).click()
    invoice_page = opened.value
    invoice_page.wait_for_load_state()
    assert invoice_page.url.startswith(f"{stripe_api.url}/pay/invoice/in_")
    expect(invoice_page.locator("#number")).to_have_text(number)
    expect(invoice_page.get_by_role("heading", level=1)).to_have_text(f"Invoice {number}")
    shot(invoice_page, "6-invoice")
    invoice_page.close()

    # 8. The same page on a phone: no sideways scrolling.
    page.set_viewport_size(MOBILE)
    page.reload()
    expect(page.get_by_test_id("current-plan")).to_be_visible()
    assert _no_horizontal_scroll(page), page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    shot(page, "7-team-390")

    # 9. A viewer of the same organization: no Billing link, and the page is refused.
    viewer = new_context().new_page()
    viewer.set_viewport_size(DESKTOP)
    sign_in(viewer, "vic@acme.example.com", PASSWORD)
    expect(viewer.locator("ul.mainnav")).to_be_visible()
    expect(viewer.locator("ul.mainnav").get_by_role("link", name="Billing")).to_have_count(0)
    answer = viewer.goto("/billing/")
    assert answer is not None and answer.status == 403
