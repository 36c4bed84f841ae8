"""The provider vault as a service (no HTTP to our app): keys checked with a
real (fake) provider before they are stored, stored only encrypted, one
default per provider, allow-lists, what the gateway will ask for, the SSRF
guard on admin-typed URLs, and the audit trail without the secret."""
from __future__ import annotations

import json
import socket

import pytest
from peewee import IntegrityError

from costguardian import crypto
from costguardian.extensions import db
from costguardian.models import AuditLog, ProviderCredential
from costguardian.services.errors import ValidationError
from costguardian.services.gateway import providers, vault
from costguardian.services.actor import Actor
from tests.fakes.llm_upstream import ANTHROPIC_KEY, AZURE_KEY, GEMINI_KEY, OPENAI_KEY


@pytest.fixture
def upstream(app, llm_upstream, monkeypatch):
    """The fake upstream, with every known provider's base URL pointing at it."""
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    return llm_upstream


@pytest.fixture
def acme(make_user, make_org):
    owner = make_user("olga@acme.com", name="Olga Owner")
    return make_org("Acme", owner=owner), Actor(user=owner, ip="10.0.0.1")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _plaintext_anywhere(secret: str) -> list[str]:
    """Every table cell, in provider_credential and audit_log, that holds the secret."""
    found = []
    for table in ("provider_credential", "audit_log"):
        for row in db.execute_sql(f'SELECT * FROM "{table}"').fetchall():
            found += [f"{table}: {cell}" for cell in row if secret in str(cell)]
    return found


# --- adding ------------------------------------------------------------------------

def test_an_openai_key_is_checked_stored_encrypted_and_audited(upstream, acme):
    org, actor = acme
    credential = vault.add(org, actor, "openai", "Production", OPENAI_KEY)

    assert credential.secret_last4 == OPENAI_KEY[-4:]
    assert credential.secret_encrypted != OPENAI_KEY and crypto.decrypt(credential.secret_encrypted) == OPENAI_KEY
    assert credential.is_default and credential.is_enabled and credential.checked_at is not None
    assert credential.available_model_list == sorted(upstream.models["openai"])
    [call] = upstream.requests
    assert (call.path, call.header("Authorization")) == ("/v1/models", f"Bearer {OPENAI_KEY}")
    [row] = AuditLog.select().where(AuditLog.action == "provider_credential.created")
    assert (row.organization_id, row.actor_id, row.target_id) == (org.id, actor.user.id, str(credential.id))
    assert row.detail["last4"] == OPENAI_KEY[-4:] and row.detail["provider"] == "openai"
    assert _plaintext_anywhere(OPENAI_KEY) == []


@pytest.mark.parametrize("provider, key, path, header", [
    ("anthropic", ANTHROPIC_KEY, "/v1/models", "x-api-key"),
    ("google", GEMINI_KEY, "/v1beta/models", "x-goog-api-key"),
    ("mistral", OPENAI_KEY, "/v1/models", "Authorization"),
    ("groq", OPENAI_KEY, "/v1/models", "Authorization"),
    ("deepseek", OPENAI_KEY, "/v1/models", "Authorization"),
    ("xai", OPENAI_KEY, "/v1/models", "Authorization"),
])
def test_each_known_provider_is_called_its_own_way(upstream, acme, provider, key, path, header):
    org, actor = acme
    credential = vault.add(org, actor, provider, "", key)
    assert credential.label == providers.PROVIDERS[provider].label  # an empty label is the provider's name
    call = upstream.requests[-1]
    assert call.path == path and key in call.header(header)
    assert "key" not in call.query  # a Gemini key travels in a header, never in the URL
    wire = {"anthropic": "anthropic", "google": "gemini"}.get(provider, "openai")
    assert credential.available_model_list == sorted(upstream.models[wire])


def test_openrouter_proves_the_key_first_because_its_models_list_is_public(upstream, acme):
    org, actor = acme
    vault.add(org, actor, "openrouter", "Router", OPENAI_KEY)
    assert [r.path for r in upstream.requests] == ["/v1/key", "/v1/models"]
    with pytest.raises(ValidationError) as refused:
        vault.add(org, actor, "openrouter", "Other", "sk-or-wrong-key-00000")
    assert "refused the key (HTTP 401)" in refused.value.errors["secret"]


def test_azure_needs_an_endpoint_deployments_and_a_known_api_version(upstream, acme):
    org, actor = acme
    with pytest.raises(ValidationError) as missing:
        vault.add(org, actor, "azure", "EU", AZURE_KEY)
    assert set(missing.value.errors) == {"base_url", "deployments"}
    with pytest.raises(ValidationError) as bad_version:
        vault.add(org, actor, "azure", "EU", AZURE_KEY, base_url=upstream.url, api_version="2023-01-01",
                  deployments="prod-4o = gpt-4o")
    assert "no models list there (HTTP 404): Resource not found" in bad_version.value.errors["base_url"]
    credential = vault.add(org, actor, "azure", "EU", AZURE_KEY, base_url=upstream.url + "/openai/",
                           deployments="prod-4o = gpt-4o\nmini: gpt-4o-mini\n# a comment\n")
    assert credential.base_url == upstream.url  # "/openai/" trimmed: the endpoint is the resource's root
    assert credential.api_version == providers.AZURE_DEFAULT_API_VERSION
    assert credential.deployment_map == {"prod-4o": "gpt-4o", "mini": "gpt-4o-mini"}
    call = upstream.requests[-1]
    assert call.path == "/openai/models" and call.query == {"api-version": "2024-10-21"}
    assert call.header("api-key") == AZURE_KEY


def test_an_openai_compatible_server_at_its_own_base_url(upstream, acme):
    org, actor = acme
    credential = vault.add(org, actor, "openai_compatible", "vLLM box", OPENAI_KEY, base_url=upstream.url + "/v1/")
    assert credential.base_url == upstream.url + "/v1"
    with pytest.raises(ValidationError) as missing:
        vault.add(org, actor, "openai_compatible", "Ollama", "", base_url="")
    assert set(missing.value.errors) == {"base_url"}  # the key is optional, the URL is not


@pytest.mark.parametrize("provider, wrong, message", [
    ("openai", "sk-wrong-0000000000001234",
     "OpenAI refused the key (HTTP 401): Incorrect API key provided: sk-******************1234."),
    ("anthropic", "sk-ant-wrong-000000", "Anthropic refused the key (HTTP 401): invalid x-api-key"),
    ("google", "AIza-wrong-0000000", "Google Gemini refused the key (HTTP 400): API key not valid. Please pass a "
                                     "valid API key."),
])
def test_a_refused_key_saves_nothing_and_says_why(upstream, acme, provider, wrong, message):
    org, actor = acme
    with pytest.raises(ValidationError) as refused:
        vault.add(org, actor, provider, "Prod", wrong)
    assert refused.value.errors["secret"].startswith(message)
    assert ProviderCredential.select().count() == 0
    assert AuditLog.select().where(AuditLog.action.startswith("provider_credential")).count() == 0


def test_a_provider_echoing_the_whole_key_never_shows_it(upstream, acme, monkeypatch):
    org, actor = acme
    wrong = "sk-echoed-secret-value-9876"
    monkeypatch.setattr(upstream, "authorize", lambda request, wire: upstream.error(
        "openai", 401, f"Key {wrong} is not valid"))
    with pytest.raises(ValidationError) as refused:
        vault.add(org, actor, "openai", "Prod", wrong)
    assert wrong not in refused.value.errors["secret"] and "Key …9876 is not valid" in refused.value.errors["secret"]


def test_unreachable_and_stalled_providers_are_named(upstream, acme, app, monkeypatch):
    org, actor = acme
    port = _closed_port()
    with pytest.raises(ValidationError) as refused:
        vault.add(org, actor, "openai_compatible", "Box", "", base_url=f"http://127.0.0.1:{port}/v1")
    assert refused.value.errors == {"base_url": f"Could not connect to 127.0.0.1:{port}: connection refused."}

    monkeypatch.setitem(app.config, "CG_PROVIDER_TIMEOUT", 1)
    upstream.delay = 2
    with pytest.raises(ValidationError) as stalled:
        vault.add(org, actor, "openai", "Prod", OPENAI_KEY)
    assert stalled.value.errors == {"": "OpenAI did not answer within 1 s."}
    upstream.delay = 0
    upstream.fail_with = 503
    with pytest.raises(ValidationError) as failing:
        vault.add(org, actor, "anthropic", "Prod", ANTHROPIC_KEY)
    assert failing.value.errors == {"": "Anthropic answered HTTP 503: The server had an error while processing your "
                                        "request."}
    assert ProviderCredential.select().count() == 0


def test_a_page_that_is_not_a_models_list_is_refused(upstream, acme):
    org, actor = acme
    with pytest.raises(ValidationError) as refused:  # the fake's Gemini route answers OpenAI-style clients oddly
        vault.add(org, actor, "openai_compatible", "Box", OPENAI_KEY, base_url=upstream.url + "/v1beta/x")
    assert "has no models list there (HTTP 404)" in refused.value.errors["base_url"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:{port}/v1", "http://169.254.169.254/latest", "http://[::1]:{port}/v1",
                                 "http://10.1.2.3/v1"])
def test_ssrf_guard_refuses_private_base_urls_when_private_addresses_are_off(upstream, acme, app, monkeypatch, url):
    org, actor = acme
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)
    url = url.format(port=upstream._server.server_port)
    for provider, extra in (("openai_compatible", {}), ("azure", {"deployments": "d = gpt-4o"})):
        with pytest.raises(ValidationError) as refused:
            vault.add(org, actor, provider, "Inside", OPENAI_KEY, base_url=url, **extra)
        assert "Cost Guardian only calls providers at public addresses" in refused.value.errors["base_url"]
    assert upstream.requests == [] and ProviderCredential.select().count() == 0


def test_ssrf_guard_does_not_apply_to_operator_configured_provider_urls(upstream, acme, app, monkeypatch):
    org, actor = acme
    monkeypatch.setitem(app.config, "CG_ALLOW_PRIVATE_WEBHOOKS", False)
    assert vault.add(org, actor, "openai", "Prod", OPENAI_KEY).id  # CG_PROVIDER_BASE_URLS is the operator's choice


def test_base_url_shape_rules(upstream, acme):
    org, actor = acme
    for url, message in (("ftp://x.example.com", "Use an http:// or https:// URL"),
                         ("https://user:pw@x.example.com/v1", "Leave credentials out of the URL"),
                         ("https://x.example.com/v1?key=1", "Leave the query string out"),
                         ("https://x.example.com:99999/v1", "This is not a valid URL.")):
        with pytest.raises(ValidationError) as refused:
            vault.add(org, actor, "openai_compatible", "Box", "", base_url=url)
        assert refused.value.errors["base_url"].startswith(message), url
    assert upstream.requests == []


def test_labels_are_unique_per_provider_ignoring_case(upstream, acme):
    org, actor = acme
    vault.add(org, actor, "openai", "Prod", OPENAI_KEY)
    with pytest.raises(ValidationError) as taken:
        vault.add(org, actor, "openai", "PROD", OPENAI_KEY)
    assert "already called “PROD”" in taken.value.errors["label"]
    assert vault.add(org, actor, "groq", "Prod", OPENAI_KEY).label == "Prod"  # another provider may


# --- defaults ----------------------------------------------------------------------

def _defaults(org, provider="openai"):
    return [c.label for c in ProviderCredential.in_org(org).where(ProviderCredential.provider == provider,
                                                                 ProviderCredential.default_for.is_null(False))]


def test_one_default_per_provider(upstream, acme):
    org, actor = acme
    first = vault.add(org, actor, "openai", "First", OPENAI_KEY)
    second = vault.add(org, actor, "openai", "Second", OPENAI_KEY)
    other = vault.add(org, actor, "anthropic", "Claude", ANTHROPIC_KEY)
    assert _defaults(org) == ["First"] and not second.is_default and other.is_default
    vault.make_default(second, actor)
    assert _defaults(org) == ["Second"] and _defaults(org, "anthropic") == ["Claude"]
    third = vault.add(org, actor, "openai", "Third", OPENAI_KEY, make_default=True)
    assert _defaults(org) == ["Third"] and third.is_default
    vault.update(first, actor, label="First", allowed_models="", make_default=True)
    assert _defaults(org) == ["First"]
    with pytest.raises(IntegrityError), db.atomic():  # the database holds the rule too
        ProviderCredential.update(default_for="openai").where(ProviderCredential.id == second.id).execute()


def test_deleting_the_default_passes_it_to_the_oldest_enabled_other(upstream, acme):
    org, actor = acme
    first = vault.add(org, actor, "openai", "First", OPENAI_KEY)
    second = vault.add(org, actor, "openai", "Second", OPENAI_KEY, enabled=False)
    vault.add(org, actor, "openai", "Third", OPENAI_KEY)
    successor = vault.delete(first, actor)
    assert successor.label == "Third" and _defaults(org) == ["Third"]
    assert vault.delete(second, actor) is None  # not the default: nothing moves
    row = AuditLog.select().where(AuditLog.action == "provider_credential.deleted").order_by(AuditLog.id).first()
    assert row.detail["new_default"] == "Third"


# --- settings without the key, and replacing it --------------------------------------

def test_settings_change_without_the_key_and_are_audited(upstream, acme):
    org, actor = acme
    credential = vault.add(org, actor, "openai", "Prod", OPENAI_KEY)
    calls = len(upstream.requests)
    vault.update(credential, actor, label="Production", allowed_models="gpt-4o-MINI, gpt-4o*", enabled=False)
    assert len(upstream.requests) == calls  # no provider call
    fresh = ProviderCredential.get_by_id(credential.id)
    assert (fresh.label, fresh.allowed_model_list, fresh.is_enabled) == ("Production", ["gpt-4o-mini", "gpt-4o*"],
                                                                          False)
    assert crypto.decrypt(fresh.secret_encrypted) == OPENAI_KEY
    row = AuditLog.select().where(AuditLog.action == "provider_credential.updated").first()
    assert row.detail["changes"] == {"label": ["Prod", "Production"], "enabled": ["yes", "no"],
                                     "allowed_models": ["all", "gpt-4o-mini, gpt-4o*"]}


def test_the_allow_list_is_checked_against_the_models_the_provider_listed(upstream, acme):
    org, actor = acme
    with pytest.raises(ValidationError) as unknown:
        vault.add(org, actor, "openai", "Prod", OPENAI_KEY, allowed_models="gpt-4o, claude*, gpt-9")
    assert unknown.value.errors == {"allowed_models": "OpenAI does not list claude*, gpt-9 for this key."}
    assert ProviderCredential.select().count() == 0
    with pytest.raises(ValidationError) as malformed:
        vault.add(org, actor, "openai", "Prod", OPENAI_KEY, allowed_models="gpt*4o")
    assert "a * may only end one" in malformed.value.errors["allowed_models"]
    azure = vault.add(org, actor, "azure", "EU", AZURE_KEY, base_url=upstream.url, deployments="prod-4o = gpt-4o",
                      allowed_models="gpt-4o")
    with pytest.raises(ValidationError) as not_deployed:
        vault.update(azure, actor, label="EU", allowed_models="gpt-4.1", deployments="prod-4o = gpt-4o")
    assert not_deployed.value.errors == {"allowed_models": "No deployment runs gpt-4.1 for this key."}


def test_replacing_the_key_checks_it_first(upstream, acme):
    org, actor = acme
    credential = vault.add(org, actor, "openai", "Prod", OPENAI_KEY)
    with pytest.raises(ValidationError):
        vault.replace_secret(credential, actor, "sk-wrong-new-key-00005678")
    fresh = ProviderCredential.get_by_id(credential.id)
    assert crypto.decrypt(fresh.secret_encrypted) == OPENAI_KEY and fresh.secret_last4 == OPENAI_KEY[-4:]

    new_key = "sk-fake-openai-rotated-key-00004321"
    upstream.openai_key = new_key
    vault.replace_secret(fresh, actor, new_key)
    fresh = ProviderCredential.get_by_id(credential.id)
    assert crypto.decrypt(fresh.secret_encrypted) == new_key and fresh.secret_last4 == "4321"
    row = AuditLog.select().where(AuditLog.action == "provider_credential.secret_replaced").first()
    assert row.detail["changed"] == ["secret"] and row.detail["last4"] == "4321"
    vault.replace_secret(fresh, actor, "")  # the stored key, checked again
    assert AuditLog.select().where(AuditLog.action == "provider_credential.checked").count() == 1
    assert _plaintext_anywhere(new_key) == [] and _plaintext_anywhere(OPENAI_KEY) == []


def test_a_custom_base_url_moves_only_after_a_check(upstream, acme):
    org, actor = acme
    credential = vault.add(org, actor, "openai_compatible", "Box", OPENAI_KEY, base_url=upstream.url + "/v1")
    with pytest.raises(ValidationError) as caught:
        vault.replace_secret(credential, actor, OPENAI_KEY, base_url=f"http://127.0.0.1:{_closed_port()}/v1")
    assert "base_url" in caught.value.errors or "secret" in caught.value.errors
    assert ProviderCredential.get_by_id(credential.id).base_url == upstream.url + "/v1"


def test_the_stored_key_is_never_sent_to_a_new_address(upstream, acme):
    """Whoever may edit a credential could otherwise point it at a server of
    theirs and collect the key someone else entered."""
    org, actor = acme
    credential = vault.add(org, actor, "openai_compatible", "Box", OPENAI_KEY, base_url=upstream.url + "/v1")
    elsewhere = upstream.url.replace("127.0.0.1", "localhost") + "/v1"  # the same server, another name
    calls = len(upstream.requests)
    with pytest.raises(ValidationError) as caught:
        vault.replace_secret(credential, actor, "", base_url=elsewhere)
    assert caught.value.errors["secret"] == "Paste the key again to use it at a new address."
    assert len(upstream.requests) == calls  # nothing was sent
    assert ProviderCredential.get_by_id(credential.id).base_url == upstream.url + "/v1"
    vault.replace_secret(credential, actor, OPENAI_KEY, base_url=elsewhere)  # with the key pasted again: fine
    assert ProviderCredential.get_by_id(credential.id).base_url == elsewhere


def test_a_key_echoed_across_the_message_cut_is_still_redacted():
    from costguardian.services.gateway import upstream as upstream_calls

    secret = "sk-" + "A" * 41
    raw = json.dumps({"error": {"message": "x" * 275 + secret + " was refused"}}).encode()
    message = upstream_calls.provider_message(raw, secret)
    assert "sk-AAAA" not in message and secret[:10] not in message


def test_rechecking_the_stored_key_does_not_undo_a_rotation(upstream, acme, app, monkeypatch):
    from cryptography.fernet import Fernet

    from costguardian.services import encryption

    org, actor = acme
    credential = vault.add(org, actor, "openai", "Main", OPENAI_KEY)
    loaded_before_rotation = ProviderCredential.get_by_id(credential.id)
    old_key, new_key = app.config["CG_ENCRYPTION_KEYS"], Fernet.generate_key().decode()
    monkeypatch.setitem(app.config, "CG_ENCRYPTION_KEYS", f"{new_key},{old_key}")
    encryption.rotate_all()
    vault.replace_secret(loaded_before_rotation, actor, "")  # a check that began before the rotation ended
    monkeypatch.setitem(app.config, "CG_ENCRYPTION_KEYS", new_key)  # the operator drops the old key
    assert crypto.decrypt(ProviderCredential.get_by_id(credential.id).secret_encrypted) == OPENAI_KEY


def test_making_a_deleted_key_the_default_is_not_found_and_keeps_the_default(upstream, acme):
    from costguardian.services.errors import NotFound

    org, actor = acme
    first = vault.add(org, actor, "openai", "First", OPENAI_KEY)
    second = vault.add(org, actor, "openai", "Second", OPENAI_KEY)
    stale = ProviderCredential.get_by_id(second.id)
    vault.delete(second, actor)
    with pytest.raises(NotFound):
        vault.make_default(stale, actor)
    assert ProviderCredential.get_by_id(first.id).default_for == "openai"
    assert not AuditLog.select().where(AuditLog.action == "provider_credential.default_set").exists()


# --- what the gateway asks -------------------------------------------------------------

def test_credential_for_prefers_the_default_then_the_oldest_that_admits_the_model(upstream, acme):
    org, actor = acme
    cheap = vault.add(org, actor, "openai", "Cheap", OPENAI_KEY, allowed_models="gpt-4o-mini")
    full = vault.add(org, actor, "openai", "Full", OPENAI_KEY)
    assert vault.credential_for(org, "openai").label == "Cheap"  # the default, for any model
    assert vault.credential_for(org, "openai", "gpt-4o-mini").label == "Cheap"
    assert vault.credential_for(org, "openai", "gpt-4o").label == "Full"  # the default's allow-list leaves it out
    vault.set_enabled(full, actor, False)
    assert vault.credential_for(org, "openai", "gpt-4o") is None
    vault.set_enabled(cheap, actor, False)
    vault.set_enabled(full, actor, True)
    resolved = vault.credential_for(org, "openai", "gpt-4o-mini")
    assert resolved.label == "Full" and resolved.secret == OPENAI_KEY
    assert resolved.base_url == upstream.url + "/v1"
    assert resolved.headers() == {"Authorization": f"Bearer {OPENAI_KEY}"}
    assert vault.credential_for(org, "anthropic") is None and vault.credential_for(org, "nonsense") is None


def test_credential_for_azure_names_the_deployment(upstream, acme):
    org, actor = acme
    vault.add(org, actor, "azure", "EU", AZURE_KEY, base_url=upstream.url, deployments="prod-4o = gpt-4o\nmini = gpt-4o-mini")
    resolved = vault.credential_for(org, "azure", "gpt-4o-mini")
    assert (resolved.deployment, resolved.api_version, resolved.base_url) == ("mini", "2024-10-21", upstream.url)
    assert resolved.headers() == {"api-key": AZURE_KEY}
    assert vault.credential_for(org, "azure", "prod-4o").deployment == "prod-4o"  # a deployment's own name
    assert vault.credential_for(org, "azure", "gpt-4.1") is None


def test_allowed_models_lists_what_the_enabled_credentials_allow(upstream, acme):
    org, actor = acme
    vault.add(org, actor, "openai", "Cheap", OPENAI_KEY, allowed_models="gpt-4o*")
    vault.add(org, actor, "anthropic", "Claude", ANTHROPIC_KEY)
    vault.add(org, actor, "azure", "EU", AZURE_KEY, base_url=upstream.url, deployments="prod-4o = gpt-4o")
    disabled = vault.add(org, actor, "google", "Gemini", GEMINI_KEY, enabled=False)
    pairs = [(m.provider, m.model) for m in vault.allowed_models(org)]
    assert [m for p, m in pairs if p == "openai"] == ["gpt-4o", "gpt-4o-2024-08-06", "gpt-4o-mini"]
    assert [m for p, m in pairs if p == "anthropic"] == sorted(upstream.models["anthropic"])
    assert [m for p, m in pairs if p == "azure"] == ["gpt-4o"]
    assert not any(p == "google" for p, _ in pairs)
    vault.set_enabled(disabled, actor, True)
    assert any(p == "google" for p, _ in (( m.provider, m.model) for m in vault.allowed_models(org)))


def test_another_organization_sees_none_of_it(upstream, acme, make_user, make_org):
    org, actor = acme
    credential = vault.add(org, actor, "openai", "Prod", OPENAI_KEY)
    globex = make_org("Globex", owner=make_user("gus@globex.com"))
    assert vault.get(globex, credential.id) is None and vault.credentials_of(globex) == []
    assert vault.credential_for(globex, "openai") is None and vault.allowed_models(globex) == []


def test_the_audit_rows_never_hold_the_secret(upstream, acme):
    org, actor = acme
    credential = vault.add(org, actor, "anthropic", "Claude", ANTHROPIC_KEY, allowed_models="claude*")
    vault.update(credential, actor, label="Claude 2", allowed_models="")
    vault.set_enabled(credential, actor, False)
    vault.set_enabled(credential, actor, True)
    vault.replace_secret(credential, actor, "")
    vault.delete(credential, actor)
    rows = list(AuditLog.select().where(AuditLog.action.startswith("provider_credential")))
    assert [r.action.split(".")[1] for r in rows] == ["created", "updated", "disabled", "enabled", "checked",
                                                      "deleted"]
    assert all(ANTHROPIC_KEY not in json.dumps(r.detail) for r in rows)
    assert _plaintext_anywhere(ANTHROPIC_KEY) == []


# --- the check's edges ---------------------------------------------------------------

def test_long_model_lists_are_read_across_pages(upstream, acme):
    org, actor = acme
    upstream.models["anthropic"] = [f"claude-fake-{i:04d}" for i in range(1500)]
    upstream.models["gemini"] = [f"gemini-fake-{i:04d}" for i in range(1200)]
    claude = vault.add(org, actor, "anthropic", "Claude", ANTHROPIC_KEY)
    gemini = vault.add(org, actor, "google", "Gemini", GEMINI_KEY)
    assert len(claude.available_model_list) == 1500 and len(gemini.available_model_list) == 1200
    assert [r.query.get("after_id") for r in upstream.requests if r.path == "/v1/models"] == [None, "claude-fake-0999"]
    assert [r.query.get("pageToken") for r in upstream.requests if r.path == "/v1beta/models"] == [None, "1000"]


@pytest.fixture
def odd_routes(upstream):
    """Routes on the fake that answer the way a wrong base URL does."""
    from werkzeug.wrappers import Response

    added = {"/page/models": lambda r: Response("<html><body>Welcome</body></html>", 200, mimetype="text/html"),
             "/json/models": lambda r: Response('{"hello": "world"}', 200, mimetype="application/json"),
             "/moved/models": lambda r: Response("", 302, headers={"Location": "/v1/models"}),
             "/broken/models": lambda r: Response("<html>Internal error</html>", 500, mimetype="text/html")}
    for path, handler in added.items():
        upstream.route("GET", path, "custom")(handler)
    yield upstream
    for path in added:
        upstream._routes.pop(("GET", path))


@pytest.mark.parametrize("prefix, field, message", [
    ("/page", "base_url", "OpenAI-compatible answered, but not with a list of models: check the base URL."),
    ("/json", "base_url", "OpenAI-compatible answered, but not with a list of models: check the base URL."),
    ("/moved", "base_url", "OpenAI-compatible answered with a redirect (HTTP 302); use the final URL."),
    ("/broken", "", "OpenAI-compatible answered HTTP 500."),
])
def test_a_base_url_that_is_not_an_api_is_named(odd_routes, acme, prefix, field, message):
    org, actor = acme
    with pytest.raises(ValidationError) as refused:
        vault.add(org, actor, "openai_compatible", "Box", "", base_url=odd_routes.url + prefix)
    assert refused.value.errors == {field: message}


def test_a_stalled_custom_server_is_named_on_the_base_url(upstream, acme, app, monkeypatch):
    org, actor = acme
    monkeypatch.setitem(app.config, "CG_PROVIDER_TIMEOUT", 1)
    upstream.delay = 2
    with pytest.raises(ValidationError) as stalled:
        vault.add(org, actor, "openai_compatible", "Box", OPENAI_KEY, base_url=upstream.url + "/v1")
    assert stalled.value.errors == {"base_url": "OpenAI-compatible did not answer within 1 s."}


def test_operator_base_urls_from_the_environment_form(app, monkeypatch):
    from costguardian.services.gateway import providers as catalogue

    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", "openai=http://egress/openai/v1/, anthropic=http://egress/a")
    with app.app_context():
        assert catalogue.configured_base_urls() == {"openai": "http://egress/openai/v1", "anthropic": "http://egress/a"}
        assert catalogue.base_url_for(catalogue.PROVIDERS["openai"]) == "http://egress/openai/v1"
        assert catalogue.base_url_for(catalogue.PROVIDERS["groq"]) == "https://api.groq.com/openai/v1"
        assert catalogue.base_url_for(catalogue.PROVIDERS["azure"], "https://r.openai.azure.com/") == \
            "https://r.openai.azure.com"


def test_concurrent_default_changes_leave_exactly_one_default(upstream, acme, app):
    """Six requests make six different keys the default at the same moment:
    each runs under the organization's lock, so one of them wins whole."""
    import threading

    from costguardian.db import connected

    org, actor = acme
    ids = [vault.add(org, actor, "openai", f"Key {i}", OPENAI_KEY).id for i in range(6)]
    barrier, errors = threading.Barrier(len(ids)), []

    def run(credential_id):
        try:
            with app.app_context(), connected(db):
                credential = vault.get(org, credential_id)
                barrier.wait(timeout=10)
                vault.make_default(credential, actor)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert len(_defaults(org)) == 1
    winner = vault.credential_for(org, "openai")
    assert winner.label == _defaults(org)[0]
