"""Browser journeys: the session app served on a real port, driven by Chromium.

`live_server` serves the session `app` (tests/conftest.py) with Werkzeug in a
daemon thread; pytest-playwright's `base_url` points at it, so `page.goto("/login")`
works. The browser is the system Chromium (CHROMIUM_PATH, else /usr/bin/chromium)
when there is one, else Playwright's own.

Data comes from the factories in tests/support.py (`make_user`, `make_org`,
`add_member`), written from the test thread while the server reads it from its
own; the autouse `_clean_state` fixture empties the tables after each test.
Screenshots go to /tmp/e2e-shots/<backend>/ (outside the repository).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

E2E_DIR = Path(__file__).resolve().parent
SHOTS_DIR = Path("/tmp/e2e-shots")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def pytest_collection_modifyitems(config, items):
    """Every test under tests/e2e/ carries the registered `e2e` marker (a
    conftest's own `pytestmark` would not reach the test modules)."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


# --- the server and the browser ------------------------------------------------

@pytest.fixture(scope="session")
def live_server(app):
    """The session app on http://127.0.0.1:<free port>, for the whole session."""
    from tests.support import serving

    with serving(app, "e2e-live-server") as url:
        yield url


@pytest.fixture(scope="session")
def base_url(live_server) -> str:
    """pytest-playwright gives every browser context this base URL."""
    return live_server


def _chromium_path() -> str | None:
    for candidate in (os.environ.get("CHROMIUM_PATH"), "/usr/bin/chromium"):
        if candidate and Path(candidate).exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def browser_type_launch_args(pytestconfig) -> dict:
    """The system Chromium, when installed, with flags for a quiet, sandbox-less
    container; `--headed` and `--slowmo` still work for debugging."""
    args: dict = {"args": list(CHROMIUM_ARGS)}
    path = _chromium_path()
    if path:
        args["executable_path"] = path
    if pytestconfig.getoption("--headed", default=False):
        args["headless"] = False
    slowmo = pytestconfig.getoption("--slowmo", default=0)
    if slowmo:
        args["slow_mo"] = slowmo
    return args


@pytest.fixture(autouse=True)
def _expect_timeout():
    """Auto-waiting assertions give up after 10 s rather than 5 s: a busy
    CI runner should not fail a journey, a broken page still fails quickly."""
    from playwright.sync_api import expect

    expect.set_options(timeout=10_000)


# --- helpers for the journeys -------------------------------------------------

@pytest.fixture
def shot(request, backend):
    """shot(page, "step") saves a full-page screenshot as
    /tmp/e2e-shots/<backend>/<test name>-<step>.png and returns its path."""
    folder = SHOTS_DIR / backend
    folder.mkdir(parents=True, exist_ok=True)
    test_name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")

    def take(page, step: str) -> Path:
        path = folder / f"{test_name}-{step}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def sign_in():
    """sign_in(page, email, password=PASSWORD): the login form, as a person
    would use it; waits until the browser has left /login."""
    from playwright.sync_api import expect

    from tests.support import PASSWORD

    def do(page, email: str, password: str = PASSWORD):
        page.goto("/login")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password", exact=True).fill(password)
        page.get_by_role("button", name="Sign in", exact=True).click()
        expect(page).not_to_have_url(re.compile(r"/login"))

    return do


@pytest.fixture
def sign_out():
    """sign_out(page): the account menu's "Sign out"; waits for the login page."""
    from playwright.sync_api import expect

    def do(page):
        menu = page.locator("details.user-menu")
        menu.locator("summary").click()
        menu.get_by_role("button", name="Sign out").click()
        expect(page).to_have_url(re.compile(r"/login$"))

    return do


# --- billing on, for the journeys that go through the fake Stripe -----------------

BILLING_SETTINGS = ("BILLING_ENABLED", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "STRIPE_API_BASE", "CG_BASE_URL")


@pytest.fixture
def billing_live(app, app_ctx, live_server, stripe_api):
    """Billing on for the session app (the one `live_server` serves), pointed
    at the fake, whose signed webhooks reach the live server; the default
    plans get their Stripe prices through the real setup command. The
    settings are put back afterwards (the app lives for the whole session)."""
    from costguardian.services.billing import limits, plans
    from tests.support import SYSTEM

    saved = {name: app.config.get(name) for name in BILLING_SETTINGS}
    app.config.update(BILLING_ENABLED=True, STRIPE_SECRET_KEY=stripe_api.api_key,
                      STRIPE_WEBHOOK_SECRET=stripe_api.webhook_secret, STRIPE_API_BASE=stripe_api.url,
                      CG_BASE_URL=live_server)
    stripe_api.webhook_url = f"{live_server}/billing/stripe/webhook"
    try:
        plans.setup_stripe(stripe_api.client(), app.config["STRIPE_METER_EVENT_NAME"], SYSTEM)
        yield stripe_api
    finally:
        app.config.update(saved)
        limits._GATEWAY_ANSWERS.clear()  # organization ids are reused by the next test
