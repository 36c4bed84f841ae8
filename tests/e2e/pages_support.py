"""Helpers for tests/e2e/test_every_page.py: a realistic organization to look
at, the pages each role can reach, and the checks run on every page (layout
width, console, CSP, axe-core).

axe-core comes from npm (package.json's devDependencies, `make vendor` runs
`npm ci`) and is evaluated through the DevTools protocol, which the page's
Content-Security-Policy does not govern; so the CSP stays on while axe runs and
any violation the page itself causes is still reported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
WIDTHS = {"desktop": (1366, 860), "phone": (390, 844)}
EVENTS = 300  # enough for every chart, table and budget state; seeding stays under a second or two

# Watches the page for CSP violations from the first byte on (init scripts are
# not subject to the page's CSP).
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
                              ' at ' + (e.sourceFile || '') + ':' + e.lineNumber);
});
"""

AXE_RUN = """async (tags) => {
  const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
  return result.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' -- ' +
    v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\\s+/g, ' ')
    ).join(' | '));
}"""

# The outermost elements that stick out of the window (not those inside a
# scrolling box, which scroll there): what makes a page too wide.
WIDEST = """() => {
  const w = window.innerWidth, out = [];
  const clipped = el => { for (let p = el.parentElement; p && p !== document.body; p = p.parentElement) {
    if (getComputedStyle(p).overflowX !== 'visible') return true; } return false; };
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > w + 1 && r.width > 0 && getComputedStyle(el).position !== 'fixed' && !clipped(el)
        && !(el.parentElement && el.parentElement.getBoundingClientRect().right > w + 1)) {
      const classes = typeof el.className === 'string' ? el.className.trim().split(/\\s+/).join('.') : '';
      out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (classes ? '.' + classes : '') +
               ' right=' + Math.round(r.right));
    }
  }
  return out.slice(0, 5);
}"""

# A page is settled when htmx has no request in flight (lazy panels load on
# "load" / "revealed").
# Loaded, no htmx request in flight, and static/js/a11y.js has marked the tables that scroll sideways
# (focusable: axe checks it) after the load (a page without the script has nothing to wait for).
SETTLED = ("() => document.readyState === 'complete' && !document.querySelector('.htmx-request')"
           " && (!document.querySelector('script[src*=\"a11y\"]')"
           " || document.documentElement.getAttribute('data-scrollers') === 'marked')")


def axe_source() -> str:
    if not AXE_JS.exists():
        pytest.fail("axe-core is missing: run `make vendor` (npm ci installs it into node_modules/)")
    return AXE_JS.read_text(encoding="utf-8")


@dataclass
class DemoOrg:
    org: object
    password: str
    pages: dict[str, str] = field(default_factory=dict)  # what -> path, beyond the header's links


def seed_demo_org(instance: Path, webhook_url: str) -> DemoOrg:
    """The demo organization `make run` creates (people in every role,
    departments, usage over 90 days, budgets in every state with their alerts),
    plus an API key, a webhook endpoint with a delivered and a failed delivery,
    and a price override: every list has rows."""
    from datetime import date

    from costguardian.models import (ApiKey, Budget, Department, Membership, Organization, User,
                                     WebhookEndpoint)
    from costguardian.services import keys
    from costguardian.services.demo import seed as demo, usage as demo_usage
    from costguardian.services.notifications import webhooks
    from costguardian.services.usage import prices
    from tests.support import SYSTEM

    credentials = demo.seed(instance)
    org = Organization.get(Organization.name == demo.DEMO_ORG)
    demo_usage.generate(org, EVENTS, seed=18)
    demo.seed_budgets(org)
    keys.create_key(org, SYSTEM, "ci deploy", ["ingest"])
    endpoint = webhooks.create_endpoint(org, SYSTEM, "Ops alerts", webhook_url).endpoint
    webhooks.send_test(endpoint, SYSTEM)
    broken = webhooks.create_endpoint(org, SYSTEM, "Old receiver",
                                      webhook_url.rsplit(":", 1)[0] + ":9/gone").endpoint
    webhooks.send_test(broken, SYSTEM)
    prices.create_override(org, SYSTEM, provider="openai", model="gpt-4o", effective_from=date(2026, 1, 1),
                           input_price="2.00", output_price="8.00", note="negotiated")

    budget = Budget.in_org(org).order_by(Budget.id).first()
    department = Department.in_org(org).where(Department.name == "Engineering").get()
    member = (Membership.select().join(User)
              .where(Membership.organization == org, User.email == "member@example.com").get())
    key = ApiKey.select().where(ApiKey.organization == org).order_by(ApiKey.id).first()
    pages = {
        "budget": f"/budgets/{budget.id}", "new budget": "/budgets/new",
        "budget report": "/budgets/report", "allocation": "/budgets/allocation", "explain": "/budgets/explain",
        "explorer by model": "/usage/?group_by=model", "usage latency": "/usage/latency",
        "key": f"/keys/{key.id}", "webhook": f"/notifications/webhooks/{endpoint.id}",
        "webhook edit": f"/notifications/webhooks/{endpoint.id}/edit",
        "webhook failing": f"/notifications/webhooks/{broken.id}",
        "department": f"/departments/{department.id}", "departments": "/departments/",
        "team activity": "/team/activity", "team roles": "/team/roles", "team member": f"/team/members/{member.id}",
        "gateway requests": "/gateway/requests", "invitations": "/invitations/", "chat compare": "/chat/compare",
        "new price": "/prices/overrides/new", "reconciliation openai": "/reconciliation/openai",
        "email template": "/notifications/templates/budget.threshold",
    }
    assert WebhookEndpoint.in_org(org).count() == 2
    return DemoOrg(org=org, password=credentials["password"], pages=pages)


# --- what a role can reach ----------------------------------------------------------

_SKIP = re.compile(r"(\.csv$|/export/|/open$|/login/oidc|^/admin|^/billing|^/onboarding|^/api/|^/docs/api)")


def header_links(page) -> list[str]:
    """Every same-site page the header offers (section nav, menus, bell)."""
    hrefs = page.eval_on_selector_all("header a[href^='/']", "els => els.map(e => e.getAttribute('href'))")
    seen: list[str] = []
    for href in hrefs:
        href = href.split("#")[0]
        # One visit per page: "/?stack=model" is the dashboard again.
        if href and not _SKIP.search(href) and href.split("?")[0] not in [s.split("?")[0] for s in seen]:
            seen.append(href)
    return seen


def reachable(context, paths) -> list[str]:
    """The paths this signed-in context gets as a page (200 HTML), in order."""
    found = []
    for path in paths:
        response = context.request.get(path, max_redirects=0)
        if response.status == 200 and "text/html" in response.headers.get("content-type", ""):
            found.append(path)
    return found


# --- the checks on one page -------------------------------------------------------

class PageWatch:
    """Console errors, uncaught exceptions and failed same-site requests of a page."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))

    def _console(self, message):
        if message.type == "error":
            self.errors.append(f"console: {message.text}")

    def take(self) -> list[str]:
        errors, self.errors = self.errors, []
        return errors


def check_page(page, watch: PageWatch, path: str, axe: str) -> list[str]:
    """Visit `path` and return what is wrong with it (nothing, one hopes)."""
    problems: list[str] = []
    response = page.goto(path)
    if response is None or response.status != 200:
        return [f"{path}: HTTP {response.status if response else 'none'}"]
    page.wait_for_function(SETTLED)
    width = page.evaluate("() => [document.scrollingElement.scrollWidth, window.innerWidth]")
    if width[0] > width[1]:
        wide = page.evaluate(WIDEST)
        problems.append(f"{path}: page is {width[0]} px wide in a {width[1]} px window: {wide}")
    page.evaluate(axe)
    for violation in page.evaluate(AXE_RUN, AXE_TAGS):
        problems.append(f"{path}: axe {violation}")
    for violation in page.evaluate("() => window.__cspViolations || []"):
        problems.append(f"{path}: CSP {violation}")
    problems.extend(f"{path}: {error}" for error in watch.take())
    return problems
