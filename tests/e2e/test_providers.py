"""Journey on the Providers page: an owner adds an OpenAI key, which the
(fake) provider checks; a wrong key first shows the provider's own refusal
inline and saves nothing; the saved key is listed by its last 4 characters
only. The page is checked at 1366 px and at a phone's 390 px."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.fakes.llm_upstream import OPENAI_KEY

WRONG_KEY = "sk-wrong-typed-key-000000000000ab12"


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_owner_adds_an_openai_key_checked_by_the_provider(app, page, make_user, make_org, sign_in, shot,
                                                          llm_upstream, monkeypatch):
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    make_org("Acme Analytics", owner=owner)
    page.set_viewport_size({"width": 1366, "height": 900})

    sign_in(page, "olga@acme.example.com")
    page.locator("ul.mainnav").get_by_role("link", name="Providers").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Providers")
    expect(page.get_by_test_id("providers-empty")).to_be_visible()

    form = page.locator("#provider-form")
    form.get_by_label("Provider", exact=True).select_option("azure")  # the Azure fields appear only for Azure
    expect(form.get_by_label("Azure deployments")).to_be_visible()
    expect(form.get_by_label("Base URL or endpoint")).to_be_visible()
    shot(page, "0-azure-fields")
    form.get_by_label("Provider", exact=True).select_option("openai")
    expect(form.get_by_label("Azure deployments")).to_be_hidden()
    expect(form.get_by_label("Base URL or endpoint")).to_be_hidden()

    form.get_by_label("Label", exact=True).fill("Production")
    form.get_by_label("API key", exact=True).fill(WRONG_KEY)
    form.get_by_role("button", name="Check and save").click()
    error = page.locator("#provider-form .field-error")
    expect(error).to_contain_text("OpenAI refused the key (HTTP 401): Incorrect API key provided: sk-")
    expect(page.get_by_test_id("providers-empty")).to_be_visible()  # nothing saved
    expect(page.locator("#provider-form").get_by_label("Label", exact=True)).to_have_value("Production")
    assert WRONG_KEY not in page.content()
    assert _no_horizontal_scroll(page)
    shot(page, "1-refused-inline")

    page.locator("#provider-form").get_by_label("API key", exact=True).fill(OPENAI_KEY)
    page.locator("#provider-form").get_by_role("button", name="Check and save").click()
    row = page.get_by_test_id("credential-row")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("OpenAI")
    expect(row).to_contain_text("Production")
    expect(row.get_by_test_id("secret-last4")).to_have_text(f"…{OPENAI_KEY[-4:]}")
    expect(row.get_by_test_id("default-marker")).to_be_visible()
    expect(page.locator("#toasts .toast", has_text="OpenAI key “Production” saved.")).to_be_visible()
    expect(page.locator("#provider-create")).not_to_have_attribute("open", "")
    assert OPENAI_KEY not in page.content()
    assert _no_horizontal_scroll(page)
    shot(page, "2-saved-1366")

    page.reload()
    expect(page.get_by_test_id("secret-last4")).to_have_text(f"…{OPENAI_KEY[-4:]}")
    assert OPENAI_KEY not in page.content()

    page.set_viewport_size({"width": 390, "height": 844})
    expect(row.get_by_role("button", name="Edit")).to_be_visible()
    assert _no_horizontal_scroll(page)
    shot(page, "3-phone-390")

    page.get_by_test_id("credential-row").get_by_role("button", name="Edit").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("OpenAI · Production")
    page.wait_for_load_state("load")  # measured once the page is laid out (once under load it was measured before)
    assert _no_horizontal_scroll(page)
    shot(page, "4-edit-phone")


def test_two_keys_of_a_provider_fit_the_page_at_every_width(app, page, make_user, make_org, sign_in, shot,
                                                            llm_upstream, monkeypatch):
    """A key that is not the default has four actions (Edit, Make default,
    Disable, Delete); at 1366 px they ran off the page, and the eight columns
    did not fit at 1024 either."""
    from costguardian.services.actor import Actor
    from costguardian.services.gateway import vault

    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    vault.add(org, Actor(user=owner), "openai", "Production", OPENAI_KEY)
    vault.add(org, Actor(user=owner), "openai", "Batch jobs for the nightly reports", OPENAI_KEY)
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, "olga@acme.example.com")
    page.locator("ul.mainnav").get_by_role("link", name="Providers").click()
    expect(page.get_by_test_id("credential-row")).to_have_count(2)
    for width in (1366, 1280, 1024, 800, 390):
        page.set_viewport_size({"width": width, "height": 900})
        delete = page.get_by_test_id("credential-row").nth(1).get_by_role("button", name="Delete")
        expect(delete).to_be_visible()
        assert _no_horizontal_scroll(page), width
        box = delete.bounding_box()
        assert box["x"] + box["width"] <= width, width  # the last action is on the page
    shot(page, "providers-two-keys-390")
