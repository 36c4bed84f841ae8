"""The gateway journey of issue 11 §7: a new owner adds an OpenAI key on the
Providers page (the fake upstream checks it), creates a Cost Guardian key with
the gateway scope, copies the OpenAI Python snippet from the Gateway page, runs
it with the real `openai` SDK in a subprocess against the live server (which
forwards to the fake upstream), and sees the call priced on the dashboard — to
the nano-dollar, priced by the project's own pricing service from the tokens
the fake reported. The Gateway page is also checked at 1366 px and 390 px."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from playwright.sync_api import expect

from costguardian import clock
from costguardian.services.usage import pricing
from costguardian.services.usage.ingest import usd_string
from tests.fakes.llm_upstream import OPENAI_KEY

PLACEHOLDER = "cg_live_…"


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def _run_snippet(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("OPENAI_")}
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60,
                          env=env)


def test_add_a_key_copy_the_snippet_run_it_and_see_the_call_priced(app, page, live_server, make_user, make_org,
                                                                   sign_in, shot, llm_upstream, monkeypatch):
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server)
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, "olga@acme.example.com")

    # Before any provider key, the Gateway page says where to add one.
    page.locator("ul.mainnav").get_by_role("link", name="Gateway").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Gateway")
    expect(page.get_by_test_id("gateway-no-credentials")).to_be_visible()

    # 1. An OpenAI key, checked by the (fake) provider.
    page.locator("ul.mainnav").get_by_role("link", name="Providers").click()
    form = page.locator("#provider-form")
    form.get_by_label("Provider", exact=True).select_option("openai")
    form.get_by_label("Label", exact=True).fill("Production")
    form.get_by_label("API key", exact=True).fill(OPENAI_KEY)
    form.get_by_role("button", name="Check and save").click()
    expect(page.get_by_test_id("credential-row")).to_have_count(1)

    # 2. A Cost Guardian key with the gateway scope, read from the page that reveals it once.
    page.locator("ul.mainnav").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("gateway journey")
    page.get_by_role("checkbox", name=re.compile(r"^ingest\b")).uncheck()
    page.get_by_role("checkbox", name=re.compile(r"^gateway\b")).check()
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("key-reveal")).to_contain_text("Copy it now")
    key = page.get_by_test_id("new-api-key").input_value()
    assert re.fullmatch(r"cg_live_[a-z0-9]{12}_[A-Za-z0-9_-]{43}", key)

    # 3. The Gateway page: this server's URL and a model the OpenAI key allows.
    page.locator("ul.mainnav").get_by_role("link", name="Gateway").click()
    expect(page.get_by_test_id("gateway-no-credentials")).to_have_count(0)
    expect(page.get_by_test_id("gateway-openai-url")).to_have_text(f"{live_server}/v1")
    snippet = page.locator("#snippet-openai-python")
    expect(snippet).to_contain_text('model="gpt-4o-mini"')
    copy = page.get_by_role("button", name="Copy the Python (openai) snippet")
    page.wait_for_load_state()  # the copy buttons' script (deferred) runs after the markup is there
    copy.click()
    expect(copy).to_have_text("Copied")
    code = page.evaluate("navigator.clipboard.readText()")
    assert code == snippet.text_content()
    assert f'base_url="{live_server}/v1"' in code and code.count(PLACEHOLDER) == 1
    assert _no_horizontal_scroll(page)
    shot(page, "1-gateway-1366")
    page.set_viewport_size({"width": 390, "height": 844})
    expect(snippet).to_be_visible()
    assert _no_horizontal_scroll(page)
    shot(page, "2-gateway-390")
    page.set_viewport_size({"width": 1366, "height": 900})

    # 4. Run it: the real openai SDK, in another process, through the gateway to the fake.
    llm_upstream.usage_log.clear()
    result = _run_snippet(code.replace(PLACEHOLDER, key))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip()  # the fake's answer, printed by the snippet
    [usage] = llm_upstream.usage_log
    expected, priced_by = pricing.OrgPrices.for_org(org).price(
        "openai", "gpt-4o-mini", clock.now(), pricing.Tokens(input=usage["input"], output=usage["output"]))
    assert priced_by == "catalog" and expected > 0

    # 5. The dashboard shows the call's exact cost (recorded just after the answer was sent).
    page.locator("ul.mainnav").get_by_role("link", name="Dashboard").click()
    spend = page.get_by_test_id("spend-this-month").locator("data")
    deadline = time.monotonic() + 10
    while spend.count() == 0 or spend.get_attribute("value") != usd_string(expected):
        assert time.monotonic() < deadline, "the call never reached the dashboard"
        time.sleep(0.2)
        page.reload()
    expect(page.get_by_test_id("requests-this-month")).to_have_text("1")
    shot(page, "3-dashboard")

    # 6. The usage explorer tells gateway traffic apart and shows its latency per model.
    page.locator("ul.mainnav").get_by_role("link", name="Usage").click()
    page.get_by_label("Source").select_option("gateway")
    expect(page.get_by_test_id("usage-heading")).to_have_text("All usage, through the gateway")
    expect(page.get_by_test_id("usage-total-cost").locator("data")).to_have_attribute("value", usd_string(expected))
    latency = page.get_by_test_id("usage-latency")
    expect(latency.locator("tbody tr")).to_have_count(1)
    expect(latency.locator("tbody tr th")).to_have_text("gpt-4o-mini")
    page.wait_for_timeout(300)  # the results' fade-in after the swap (app.css), for the screenshot only
    shot(page, "4-usage-gateway")
    page.get_by_label("Source").select_option("ingest")
    expect(page.get_by_test_id("usage-empty")).to_be_visible()
    expect(page.get_by_test_id("usage-latency")).to_have_count(0)
    shot(page, "5-usage-ingest")
