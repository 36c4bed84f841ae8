"""The prices page: unpriced models, the organization's own prices and model
aliases, through the test client with and without htmx."""
from __future__ import annotations

import json
import re
from datetime import date

import pytest

from costguardian.models import ModelAlias, PriceOverride, UsageEvent, UsageRollup
from costguardian.services.usage import prices
from tests.support import SYSTEM, Client, add_member
from tests.test_prices import (assert_rollups_equal_events, azure_events, llama_events, rollup_cost, send, total_cost,
                               unpriced_count)

PRICE = {"provider": "mycorp", "model": "llama-x", "effective_from": "2026-11-01", "input_price": "1",
         "cache_read_price": "", "cache_write_price": "", "output_price": "2", "note": "self-hosted"}


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def viewer_client(app, owner_client, make_user):
    _, _, org = owner_client
    viewer = make_user("viewer@acme.com")
    add_member(org, viewer, "viewer")
    client = Client(app)
    client.sign_in(viewer.email)
    return client


def test_unpriced_models_panel(owner_client):
    client, _, org = owner_client
    send(org, llama_events(3))
    html = text(client.get("/prices/"))
    panel = html[html.index('id="unpriced"'):html.index('id="overrides"')]
    assert "llama-x" in panel and "mycorp" in panel
    assert "cost unknown" in panel and "never counted as $0" in panel and "repriced" in panel
    assert "2026-11-20 10:00" in panel  # first and last seen, by the hour
    assert "/prices/overrides/new?provider=mycorp&amp;model=llama-x&amp;effective_from=2026-11-20" in panel


def test_add_a_price_prefills_the_form(owner_client):
    client, _, org = owner_client
    response = client.get("/prices/overrides/new?provider=mycorp&model=llama-x&effective_from=2026-11-20", htmx=True)
    assert response.status_code == 200
    html = text(response)
    assert html.startswith('<section id="overrides"')
    assert 'name="provider" required type="text" value="mycorp"' in html
    assert 'value="llama-x"' in html and 'value="2026-11-20"' in html
    # a bad date in the link is ignored, not an error
    assert client.get("/prices/overrides/new?effective_from=yesterday").status_code == 200


def test_adding_a_price_reprices_events_and_rollups(owner_client):
    client, _, org = owner_client
    send(org, llama_events(3) + llama_events(2, "2026-11-21T08:00:00Z"))
    assert unpriced_count(org) == 5

    response = client.post("/prices/overrides", PRICE, htmx=True)

    assert response.status_code == 200, text(response)
    toast = json.loads(response.headers["HX-Trigger"])["showToast"]
    assert toast["message"] == "Price for mycorp/llama-x saved; its usage is being repriced."
    html = text(response)
    assert html.startswith('<section id="overrides"')
    assert "self-hosted" in html and "Not in the catalog" in html
    assert 'id="unpriced" class="prices-section" hx-swap-oob="true"' in html  # the panel, refreshed
    assert "Every recorded call has a known price." in html
    # 1,000 × 1,000 + 500 × 2,000 = 2,000,000 nanos per event
    assert {(e.cost_nanos, e.priced_by) for e in UsageEvent.in_org(org)} == {(2_000_000, "override")}
    assert total_cost(org) == rollup_cost(org) == 10_000_000
    assert unpriced_count(org) == 0
    assert_rollups_equal_events(org)


def test_adding_a_price_without_javascript_redirects(owner_client):
    client, _, org = owner_client
    response = client.post("/prices/overrides", PRICE)
    assert response.status_code == 302 and response.headers["Location"] == "/prices/"
    page = text(client.get("/prices/"))
    assert "Price for mycorp/llama-x saved" in page
    assert "<code>llama-x</code>" in page


@pytest.mark.parametrize("changes, message", [
    ({"input_price": "-1"}, "A price cannot be negative."),
    ({"output_price": "0.0000000001"}, "At most 9 decimal places."),
    ({"input_price": "two"}, "Not a number"),
    ({"output_price": ""}, "Enter a price in USD per million tokens"),
    ({"provider": ""}, "Enter the provider, e.g. openai."),
    ({"model": ""}, "Enter the model, e.g. gpt-4o."),
    ({"effective_from": "01/11/2026"}, "Enter a date as YYYY-MM-DD."),
    ({"effective_from": "20261101"}, "Enter a date as YYYY-MM-DD."),
])
def test_invalid_price_answers_422_with_field_messages(owner_client, changes, message):
    client, _, org = owner_client
    response = client.post("/prices/overrides", {**PRICE, **changes}, htmx=True)
    assert response.status_code == 422
    html = text(response)
    assert html.startswith('<section id="overrides"')
    assert message in html and 'aria-invalid="true"' in html
    assert PriceOverride.in_org(org).count() == 0
    page = client.post("/prices/overrides", {**PRICE, **changes})  # without htmx: the whole page, 422
    assert page.status_code == 422 and "<h1>Prices</h1>" in text(page) and message in text(page)


def test_every_bad_field_shows_at_once(owner_client):
    client, _, _ = owner_client
    html = text(client.post("/prices/overrides", {**PRICE, "input_price": "-1", "output_price": "x",
                                                   "model": ""}, htmx=True))
    assert "A price cannot be negative." in html and "Not a number" in html and "Enter the model" in html


def test_duplicate_price_is_a_422_not_a_500(owner_client):
    client, _, org = owner_client
    assert client.post("/prices/overrides", PRICE, htmx=True).status_code == 200
    response = client.post("/prices/overrides", {**PRICE, "provider": "MyCorp", "input_price": "3"}, htmx=True)
    assert response.status_code == 422
    assert "mycorp/llama-x already has a price from 2026-11-01; edit that one instead." in text(response)
    assert PriceOverride.in_org(org).count() == 1


def test_edit_and_delete_reprice_again(owner_client):
    client, _, org = owner_client
    send(org, llama_events(4))
    client.post("/prices/overrides", PRICE, htmx=True)
    row = PriceOverride.in_org(org).get()

    form = text(client.get(f"/prices/overrides/{row.id}/edit", htmx=True))
    assert "Edit the price for mycorp/llama-x" in form
    assert f'hx-post="/prices/overrides/{row.id}"' in form and 'value="1"' in form and 'value="2026-11-01"' in form

    response = client.post(f"/prices/overrides/{row.id}", {**PRICE, "input_price": "0.5", "output_price": "4"},
                           htmx=True)
    assert response.status_code == 200, text(response)
    # 1,000 × 500 + 500 × 4,000 = 2,500,000 each
    assert {e.cost_nanos for e in UsageEvent.in_org(org)} == {2_500_000}
    assert total_cost(org) == rollup_cost(org) == 10_000_000
    assert_rollups_equal_events(org)

    bad = client.post(f"/prices/overrides/{row.id}", {**PRICE, "input_price": "-2"}, htmx=True)
    assert bad.status_code == 422 and "Edit the price for mycorp/llama-x" in text(bad)

    response = client.post(f"/prices/overrides/{row.id}/delete", htmx=True)
    assert response.status_code == 200
    assert "No prices of your own yet" in text(response)
    assert "llama-x" in text(response)  # back in the (out-of-band) unpriced panel
    assert {(e.cost_nanos, e.priced_by) for e in UsageEvent.in_org(org)} == {(None, "")}
    assert unpriced_count(org) == 4 and rollup_cost(org) == 0
    assert_rollups_equal_events(org)


def test_edit_page_works_without_javascript(owner_client):
    client, _, org = owner_client
    client.post("/prices/overrides", PRICE)
    row = PriceOverride.in_org(org).get()
    page = text(client.get(f"/prices/overrides/{row.id}/edit"))
    assert "<h1>Prices</h1>" in page and "Edit the price for mycorp/llama-x" in page
    assert client.post(f"/prices/overrides/{row.id}/delete").status_code == 302
    assert PriceOverride.in_org(org).count() == 0


def test_alias_moves_usage_through_the_page(owner_client):
    client, _, org = owner_client
    send(org, azure_events(3))
    assert unpriced_count(org) == 3
    response = client.post("/prices/aliases", {"alias-provider": "azure", "alias-alias": "prod-4o",
                                                "alias-model": "gpt-4o"}, htmx=True)
    assert response.status_code == 200, text(response)
    html = text(response)
    assert html.startswith('<section id="aliases"') and "<code>prod-4o</code>" in html
    assert json.loads(response.headers["HX-Trigger"])["showToast"]["message"] == "'prod-4o' now counts as azure/gpt-4o."
    assert "Every recorded call has a known price." in html
    assert not UsageRollup.select().where(UsageRollup.model == "prod-4o").exists()
    assert total_cost(org) == rollup_cost(org) == 22_500_000  # 3 × (1,000 × 2,500 + 500 × 10,000)
    assert_rollups_equal_events(org)

    alias = ModelAlias.in_org(org).get()
    response = client.post(f"/prices/aliases/{alias.id}/delete", htmx=True)
    assert response.status_code == 200 and "No aliases yet." in text(response)


def test_invalid_alias_answers_422(owner_client):
    client, _, org = owner_client
    response = client.post("/prices/aliases", {"alias-provider": "azure", "alias-alias": "gpt-4o",
                                                "alias-model": "gpt-4o"}, htmx=True)
    assert response.status_code == 422
    assert "an alias must stand for a different model" in text(response)
    response = client.post("/prices/aliases", {"alias-provider": "", "alias-alias": "", "alias-model": ""}, htmx=True)
    assert response.status_code == 422 and "Enter the provider, e.g. azure." in text(response)
    assert ModelAlias.in_org(org).count() == 0


def test_viewer_sees_prices_but_cannot_change_them(owner_client, viewer_client):
    _, _, org = owner_client
    send(org, llama_events(2))
    row = prices.create_override(org, SYSTEM, provider="openai", model="gpt-4o", effective_from=date(2026, 11, 1),
                                 input_price="2", output_price="8")
    alias = prices.create_alias(org, SYSTEM, provider="azure", alias="prod-4o", model="gpt-4o")
    page = viewer_client.get("/prices/")
    assert page.status_code == 200
    html = text(page)
    assert "llama-x" in html and "<code>gpt-4o</code>" in html and "<code>prod-4o</code>" in html
    assert "Add a price" not in html and "override-form" not in html and "Delete" not in html
    assert 'href="/prices/"' in html  # the nav link
    for url, data in [("/prices/overrides", PRICE), (f"/prices/overrides/{row.id}", PRICE),
                      (f"/prices/overrides/{row.id}/delete", {}),
                      ("/prices/aliases", {"alias-provider": "azure", "alias-alias": "x", "alias-model": "gpt-4o"}),
                      (f"/prices/aliases/{alias.id}/delete", {})]:
        assert viewer_client.post(url, data, htmx=True).status_code == 403, url
        assert viewer_client.post(url, data).status_code == 403, url
    assert viewer_client.get(f"/prices/overrides/{row.id}/edit").status_code == 403
    assert viewer_client.get("/prices/overrides/new").status_code == 403
    assert PriceOverride.in_org(org).count() == 1 and ModelAlias.in_org(org).count() == 1


def test_another_organizations_ids_are_404(owner_client, make_org):
    client, _, _ = owner_client
    other = make_org("Other")
    row = prices.create_override(other, SYSTEM, provider="openai", model="gpt-4o", effective_from=date(2026, 11, 1),
                                 input_price="2", output_price="8")
    alias = prices.create_alias(other, SYSTEM, provider="azure", alias="prod-4o", model="gpt-4o")
    assert client.get(f"/prices/overrides/{row.id}/edit").status_code == 404
    assert client.post(f"/prices/overrides/{row.id}", PRICE, htmx=True).status_code == 404
    assert client.post(f"/prices/overrides/{row.id}/delete", htmx=True).status_code == 404
    assert client.post(f"/prices/aliases/{alias.id}/delete", htmx=True).status_code == 404
    assert client.post("/prices/overrides/99999999999/delete", htmx=True).status_code == 404
    assert PriceOverride.in_org(other).count() == 1 and ModelAlias.in_org(other).count() == 1
    html = text(client.get("/prices/"))  # nor are its rows listed
    assert not re.search(r'id="(override|alias)-\d+"', html) and "No aliases yet." in html


def test_changes_need_the_csrf_token(owner_client):
    client, _, org = owner_client
    assert client.post("/prices/overrides", PRICE, csrf=False).status_code == 400
    assert client.post("/prices/overrides", PRICE, htmx=True, csrf=False).status_code == 400
    assert PriceOverride.in_org(org).count() == 0


def test_page_has_no_inline_scripts_or_styles(owner_client):
    client, _, org = owner_client
    send(org, llama_events(1))
    client.post("/prices/overrides", {**PRICE, "model": "other"})
    for url in ("/prices/", "/prices/overrides/new?provider=a&model=b"):
        html = text(client.get(url))
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, tag
        assert "style=" not in html and "hx-on" not in html
