"""The Providers pages through the test client, with and without htmx: who
may see them, adding a key (checked by the fake provider), its refusal shown
inline with 422 and nothing saved, settings, replacing the key, default,
enable/disable, delete, another tenant's ids, and the secret never on a page."""
from __future__ import annotations

import json

import pytest

from costguardian.models import ProviderCredential
from costguardian.services.gateway import vault
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.support import SYSTEM, Client, add_member


@pytest.fixture
def upstream(app, llm_upstream, monkeypatch):
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    return llm_upstream


@pytest.fixture
def owner(owner_client, upstream):
    return owner_client


def _add(client, htmx=False, csrf=True, **fields):
    data = {"provider": "openai", "label": "Production", "secret": OPENAI_KEY, "is_enabled": "y", **fields}
    return client.post("/providers/", data, htmx=htmx, csrf=csrf)


def _toast(response) -> str:
    return json.loads(response.headers["HX-Trigger"])["showToast"]["message"]


def _text(response) -> str:
    return response.get_data(as_text=True)


# --- who may -----------------------------------------------------------------------

@pytest.mark.parametrize("role, allowed", [("owner", True), ("admin", True), ("billing", False),
                                           ("member", False), ("viewer", False)])
def test_only_owners_and_admins(app, make_user, make_org, upstream, role, allowed):
    org = make_org("Acme", owner=make_user("olga@acme.com"))
    credential = vault.add(org, SYSTEM, "openai", "Prod", OPENAI_KEY)
    if role != "owner":
        add_member(org, make_user(f"{role}@acme.com"), role)
    client = Client(app)
    client.sign_in("olga@acme.com" if role == "owner" else f"{role}@acme.com")
    expected = 200 if allowed else 403
    assert client.get("/providers/").status_code == expected
    assert client.get(f"/providers/{credential.id}").status_code == expected
    assert client.get("/providers/", htmx=True).status_code == expected
    nav = _text(client.get("/"))
    assert ('href="/providers/"' in nav) == allowed
    if not allowed:
        for url, data in (("/providers/", {"provider": "openai", "secret": OPENAI_KEY}),
                          (f"/providers/{credential.id}", {"label": "x"}),
                          (f"/providers/{credential.id}/secret", {"secret": OPENAI_KEY}),
                          (f"/providers/{credential.id}/default", {}),
                          (f"/providers/{credential.id}/enabled", {"enabled": "0"}),
                          (f"/providers/{credential.id}/delete", {})):
            assert client.post(url, data).status_code == 403, url
            assert client.post(url, data, htmx=True).status_code == 403, url
        assert ProviderCredential.get_by_id(credential.id).is_enabled


def test_the_empty_page_opens_the_form(owner):
    client, _, _ = owner
    html = _text(client.get("/providers/"))
    assert 'data-testid="providers-empty"' in html
    assert '<details id="provider-create" class="key-create" open>' in html
    for label in ("OpenAI", "Anthropic", "Google Gemini", "Azure OpenAI", "Mistral", "Groq", "DeepSeek", "xAI",
                  "OpenRouter", "OpenAI-compatible"):
        assert f">{label}</option>" in html


# --- adding ------------------------------------------------------------------------

def test_adding_without_javascript_redirects_and_lists_the_last_four(owner, upstream):
    client, user, org = owner
    response = _add(client)
    assert response.status_code == 302 and response.headers["Location"] == "/providers/"
    html = _text(client.get("/providers/"))
    assert "OpenAI key “Production” saved." in html
    assert f"…{OPENAI_KEY[-4:]}" in html and 'data-testid="default-marker"' in html
    assert "by Olga Owner" in html and "Enabled" in html
    assert OPENAI_KEY not in html and OPENAI_KEY[:-4] not in html


def test_adding_with_htmx_swaps_the_form_and_the_table(owner):
    client, _, _ = owner
    response = _add(client, htmx=True, allowed_models="gpt-4o-mini")
    assert response.status_code == 200
    html = _text(response)
    assert html.lstrip().startswith('<div id="provider-form-region">')
    assert '<details id="provider-create" class="key-create" >' in html  # closed again, and empty
    assert 'id="providers-table" hx-swap-oob="true"' in html and "gpt-4o-mini" in html
    assert _toast(response) == "OpenAI key “Production” saved."
    assert OPENAI_KEY not in html


@pytest.mark.parametrize("htmx", [True, False])
def test_a_refused_key_is_shown_inline_with_422_and_nothing_is_saved(owner, htmx):
    client, _, _ = owner
    wrong = "sk-wrong-key-for-the-test-000001234"
    response = _add(client, htmx=htmx, secret=wrong, label="Typo")
    assert response.status_code == 422
    html = _text(response)
    assert "OpenAI refused the key (HTTP 401): Incorrect API key provided: sk-" in html
    assert 'class="field-error"' in html and 'aria-invalid="true"' in html
    assert wrong not in html  # the key field never renders its value
    assert 'value="Typo"' in html  # the rest of what was typed stays
    assert ("<html" in html) is not htmx
    assert ProviderCredential.select().count() == 0


def test_form_errors_without_a_provider_call(owner, upstream):
    client, _, _ = owner
    response = _add(client, htmx=True, provider="azure", secret="", base_url="", deployments="")
    assert response.status_code == 422
    html = _text(response)
    assert "Paste the Azure OpenAI API key." in html and "Enter the Azure OpenAI endpoint" in html
    assert "Map at least one deployment" in html
    assert upstream.requests == []
    assert _add(client, htmx=True, provider="nope").status_code == 422


def test_a_private_base_url_is_refused_when_private_addresses_are_off(owner, upstream, app, monkeypatch):
    client, _, _ = owner
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)
    response = _add(client, htmx=True, provider="openai_compatible", secret="", base_url=upstream.url + "/v1")
    assert response.status_code == 422
    assert "127.0.0.1 resolves to 127.0.0.1, a loopback address" in _text(response)
    assert upstream.requests == [] and ProviderCredential.select().count() == 0


# --- changing ----------------------------------------------------------------------

def test_settings_change_without_the_key(owner):
    client, _, org = owner
    credential = vault.add(org, SYSTEM, "openai", "Prod", OPENAI_KEY)
    page = _text(client.get(f"/providers/{credential.id}"))
    assert f"…{OPENAI_KEY[-4:]}" in page and OPENAI_KEY not in page
    response = client.post(f"/providers/{credential.id}", {"label": "Production", "allowed_models": "gpt-4o*"},
                           htmx=True)
    assert response.status_code == 204 and response.headers["HX-Redirect"] == "/providers/"
    fresh = ProviderCredential.get_by_id(credential.id)
    assert (fresh.label, fresh.allowed_models, fresh.is_enabled) == ("Production", "gpt-4o*", False)
    refused = client.post(f"/providers/{credential.id}", {"label": "Production", "allowed_models": "claude-3"},
                          htmx=True)
    assert refused.status_code == 422
    assert 'id="credential-settings"' in _text(refused) and "OpenAI does not list claude-3" in _text(refused)
    plain = client.post(f"/providers/{credential.id}", {"label": "Prod", "is_enabled": "y"})
    assert plain.status_code == 302


def test_replacing_the_key(owner, upstream):
    client, _, org = owner
    credential = vault.add(org, SYSTEM, "anthropic", "Claude", ANTHROPIC_KEY)
    wrong = "sk-ant-wrong-replacement-0000"
    refused = client.post(f"/providers/{credential.id}/secret", {"secret": wrong}, htmx=True)
    assert refused.status_code == 422
    assert "Anthropic refused the key (HTTP 401): invalid x-api-key" in _text(refused)
    assert wrong not in _text(refused) and 'id="credential-replace"' in _text(refused)
    new_key = "sk-ant-fake-replaced-key-000009999"
    upstream.anthropic_key = new_key
    response = client.post(f"/providers/{credential.id}/secret", {"secret": new_key})
    assert response.status_code == 302
    assert "The key of “Claude” was replaced; it ends in …9999." in _text(client.get("/providers/"))
    assert ProviderCredential.get_by_id(credential.id).secret_last4 == "9999"


def test_default_enable_and_delete_from_the_list(owner):
    client, _, org = owner
    first = vault.add(org, SYSTEM, "openai", "First", OPENAI_KEY)
    second = vault.add(org, SYSTEM, "openai", "Second", OPENAI_KEY)

    response = client.post(f"/providers/{second.id}/default", htmx=True)
    assert response.status_code == 200 and _text(response).lstrip().startswith('<div id="providers-table"')
    assert _toast(response) == "“Second” is now the default OpenAI key."
    assert vault.credential_for(org, "openai").label == "Second"

    response = client.post(f"/providers/{first.id}/enabled", {"enabled": "0"}, htmx=True)
    assert _toast(response) == "“First” is disabled."
    assert not ProviderCredential.get_by_id(first.id).is_enabled
    assert client.post(f"/providers/{first.id}/enabled", {"enabled": "1"}).status_code == 302
    assert ProviderCredential.get_by_id(first.id).is_enabled

    response = client.post(f"/providers/{second.id}/delete", htmx=True)
    assert _toast(response) == "“Second” deleted. “First” is now the default OpenAI key."
    assert client.post(f"/providers/{first.id}/delete").status_code == 302
    assert ProviderCredential.select().count() == 0


def test_another_organizations_ids_are_404(owner, make_user, make_org):
    client, _, _ = owner
    globex = make_org("Globex", owner=make_user("gus@globex.com"))
    theirs = vault.add(globex, SYSTEM, "openai", "Theirs", OPENAI_KEY)
    assert client.get(f"/providers/{theirs.id}").status_code == 404
    for suffix, data in (("", {"label": "Mine"}), ("/secret", {"secret": OPENAI_KEY}), ("/default", {}),
                         ("/enabled", {"enabled": "0"}), ("/delete", {})):
        assert client.post(f"/providers/{theirs.id}{suffix}", data).status_code == 404, suffix
        assert client.post(f"/providers/{theirs.id}{suffix}", data, htmx=True).status_code == 404, suffix
    assert client.get("/providers/99999999999").status_code == 404
    fresh = ProviderCredential.get_by_id(theirs.id)
    assert (fresh.label, fresh.is_enabled) == ("Theirs", True)


def test_the_secret_appears_on_no_page(owner):
    client, _, org = owner
    _add(client)
    credential = ProviderCredential.get()
    client.post(f"/providers/{credential.id}", {"label": "Prod 2", "is_enabled": "y"})
    client.post(f"/providers/{credential.id}/secret", {"secret": ""})
    for path in ("/providers/", f"/providers/{credential.id}", "/audit/", "/team/activity", "/"):
        html = _text(client.get(path))
        assert OPENAI_KEY not in html, path
    activity = _text(client.get("/team/activity"))
    assert (f'<strong>Olga Owner</strong> added the OpenAI key <a href="/providers/{credential.id}">“Production”</a> '
            f"(…{OPENAI_KEY[-4:]})") in activity
    assert "checked the OpenAI key" in activity


def test_posts_need_the_csrf_token(owner):
    client, _, _ = owner
    assert _add(client, csrf=False).status_code == 400
    assert ProviderCredential.select().count() == 0
