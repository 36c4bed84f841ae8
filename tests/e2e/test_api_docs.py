"""The API reference and the key-created panel in a real browser: a failed
create logs no Content-Security-Policy violation and no console error; the
new key's curl snippet, run as shown, records an event; the reference page
renders under the site's strict CSP."""
from __future__ import annotations

import json
import re
import shlex

import requests
from playwright.sync_api import expect

# Collected in the page: every CSP violation and console error, from the start.
WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(
    e.violatedDirective + " " + (e.blockedURI || "") + " " + (e.sourceFile || "") + ":" + e.lineNumber);
});
"""


def _watch(page) -> list[str]:
    """Console errors of the page's own code (a 422's "Failed to load
    resource" line is the browser reporting the status, which is expected)."""
    errors: list[str] = []
    page.add_init_script(WATCH)
    page.on("console", lambda m: errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def _violations(page) -> list[str]:
    return page.evaluate("window.__cspViolations")


def test_a_failed_create_then_a_key_with_a_working_snippet(page, live_server, make_user, make_org, sign_in):
    owner = make_user("olga@docs.example.com", name="Olga Owner")
    make_org("Docs Co", owner=owner)
    errors = _watch(page)
    sign_in(page, "olga@docs.example.com")
    page.goto(f"{live_server}/keys/")
    page.get_by_label("Name").fill("")
    page.get_by_label("ingest").uncheck()
    page.get_by_label("Expires").select_option("custom")
    page.get_by_role("button", name="Create key").click()
    expect(page.locator("#key-form .field-error").first).to_be_visible()
    page.wait_for_timeout(300)  # let anything the swap starts (focus, toasts) run
    assert _violations(page) == [] and errors == []
    page.get_by_label("ingest").check()
    page.get_by_label("Expires").select_option("never")

    page.get_by_label("Name").fill("docs demo")
    page.get_by_role("button", name="Create key").click()
    snippet = page.locator("#snippet-ingest-curl")
    expect(snippet).to_be_visible()
    expect(page.get_by_test_id("key-docs-link")).to_have_attribute("href", "/docs/api")
    assert _violations(page) == [] and errors == []

    args = shlex.split(snippet.inner_text().replace("\\\n", " "))
    url, headers = args[1], dict(h.split(": ", 1) for h in args[3::2][:2])
    body = json.loads(args[args.index("-d") + 1])
    answer = requests.post(url, data=json.dumps(body), headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json()["accepted"] == 1

    page.get_by_test_id("key-docs-link").click()
    expect(page).to_have_url(re.compile(r"/docs/api$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("API reference")
    expect(page.locator("#post-api-v1-usage")).to_be_visible()
    assert _violations(page) == [] and errors == []


def test_a_superseded_htmx_request_logs_no_console_error(page, live_server, make_user, make_org, sign_in):
    """The explorer's filters sync with hx-sync "replace": a newer change aborts
    the request in flight, which is expected, not an error."""
    owner = make_user("olga@abort.example.com", name="Olga Owner")
    make_org("Abort Co", owner=owner)
    errors = _watch(page)
    sign_in(page, "olga@abort.example.com")
    page.goto(f"{live_server}/usage/")
    page.evaluate("""() => {
      window.__aborts = 0;
      document.addEventListener("htmx:sendAbort", () => { window.__aborts += 1; });
      const select = document.getElementById("filter-group_by");
      select.value = "provider";
      select.dispatchEvent(new Event("change", {bubbles: true}));
      select.value = "day";
      select.dispatchEvent(new Event("change", {bubbles: true}));
    }""")
    page.wait_for_function("window.__aborts > 0")  # the first request was superseded
    expect(page).to_have_url(re.compile(r"group_by=day"))
    assert errors == [] and _violations(page) == []
