"""The Gateway page: base URLs and copy-paste snippets filled with the
organization's own URL and a model its enabled provider keys allow (keys
checked by the fake upstream, tests/fakes/llm_upstream.py)."""
from __future__ import annotations

import html
import re

import pytest

from costguardian.services.actor import Actor
from costguardian.services.gateway import vault
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.support import Client, add_member

SNIPPET = re.compile(r'<code id="snippet-([a-z-]+)" data-snippet="[a-z-]+" data-language="[a-z]+">(.*?)</code>', re.DOTALL)
OPENAI_SNIPPETS = {"openai-python", "openai-javascript", "curl-openai", "langchain-python", "headers-python"}
ANTHROPIC_SNIPPETS = {"anthropic-python", "anthropic-javascript", "curl-anthropic"}


@pytest.fixture
def vaulted(app, llm_upstream, monkeypatch):
    """Provider keys are checked against the fake upstream."""
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    return llm_upstream


def snippets(response) -> dict[str, str]:
    return {name: html.unescape(text) for name, text in SNIPPET.findall(response.get_data(as_text=True))}


def test_snippets_carry_the_base_url_and_an_allowed_model(owner_client, vaulted, app):
    client, owner, org = owner_client
    vault.add(org, Actor(user=owner), "openai", "Production", OPENAI_KEY, allowed_models="gpt-4o, gpt-4.1")
    vault.add(org, Actor(user=owner), "anthropic", "Production", ANTHROPIC_KEY)
    app.config["CG_BASE_URL"] = "https://cg.example.com/"
    try:
        response = client.get("/gateway")
    finally:
        app.config["CG_BASE_URL"] = ""
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "https://cg.example.com/v1" in page and "https://cg.example.com/anthropic" in page
    found = snippets(response)
    assert set(found) == OPENAI_SNIPPETS | ANTHROPIC_SNIPPETS
    for name in OPENAI_SNIPPETS:
        assert "https://cg.example.com/v1" in found[name], name
        assert '"gpt-4o"' in found[name] or "'{\"model\": \"gpt-4o\"" in found[name], name  # allowed; gpt-4o-mini is not
        assert "cg_live_…" in found[name]
    for name in ANTHROPIC_SNIPPETS:
        assert "https://cg.example.com/anthropic" in found[name], name
        assert "claude-haiku-4-5-20251001" in found[name], name  # the cheapest Claude model the key lists
    assert 'OpenAI(\n    base_url="https://cg.example.com/v1",\n    api_key="cg_live_…"' in found["openai-python"]
    assert "ChatOpenAI(" in found["langchain-python"]
    assert "curl https://cg.example.com/anthropic/v1/messages" in found["curl-anthropic"]
    assert "X-CG-User" in page and "X-CG-Department" in page and "X-CG-Tags" in page
    assert 'href="/keys/"' in page  # an owner can create the gateway key
    assert 'data-testid="gateway-no-credentials"' not in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page) and " style=" not in page  # CSP: nothing inline


def test_without_base_url_setting_the_request_host_is_used(owner_client, vaulted):
    client, owner, org = owner_client
    vault.add(org, Actor(user=owner), "openai", "Production", OPENAI_KEY)
    found = snippets(client.get("/gateway"))  # the test client's host is http://localhost/
    assert 'base_url="http://localhost/v1"' in found["openai-python"]
    assert 'model="gpt-4o-mini"' in found["openai-python"]  # preferred when allowed
    assert not set(found) & ANTHROPIC_SNIPPETS  # no Anthropic key: no Anthropic snippet, a note instead


def test_no_enabled_credential_shows_a_callout_to_the_providers_page(owner_client, vaulted):
    client, owner, org = owner_client
    response = client.get("/gateway")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'data-testid="gateway-no-credentials"' in page
    assert 'href="/providers/"' in page
    assert snippets(response) == {}

    credential = vault.add(org, Actor(user=owner), "openai", "Production", OPENAI_KEY)
    vault.set_enabled(credential, Actor(user=owner), False)
    assert 'data-testid="gateway-no-credentials"' in client.get("/gateway").get_data(as_text=True)


def test_another_organizations_member_sees_their_own(owner_client, vaulted, app, make_user, make_org):
    client, owner, org = owner_client
    vault.add(org, Actor(user=owner), "anthropic", "Production", ANTHROPIC_KEY)
    other_owner = make_user("owner@globex.com")
    other = make_org("Globex", owner=other_owner)
    vault.add(other, Actor(user=other_owner), "openai", "Globex key", OPENAI_KEY, allowed_models="gpt-4.1")
    viewer = make_user("vera@globex.com")
    add_member(other, viewer, "viewer")
    other_client = Client(app)
    other_client.sign_in(viewer.email)

    found = snippets(other_client.get("/gateway"))
    assert set(found) == OPENAI_SNIPPETS
    assert 'model="gpt-4.1"' in found["openai-python"]
    page = other_client.get("/gateway").get_data(as_text=True)
    assert 'href="/keys/"' not in page and "Ask an owner or admin" in page  # a viewer cannot create keys
    assert set(snippets(client.get("/gateway"))) == ANTHROPIC_SNIPPETS


def test_the_nav_links_the_page(owner_client):
    client, _, _ = owner_client
    page = client.get("/gateway").get_data(as_text=True)
    assert re.search(r'<a href="/gateway"\s+aria-current="page">Gateway</a>', page)


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get("/gateway")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
