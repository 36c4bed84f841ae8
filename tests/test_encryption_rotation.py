"""`flask rotate-encryption`: with a new key put first, every stored secret
(provider keys and webhook signing secrets) moves under it, a second run
changes nothing, and once the old key is removed everything still decrypts."""
from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken

from costguardian import crypto
from costguardian.models import ProviderCredential, WebhookEndpoint
from costguardian.services import encryption
from costguardian.services.gateway import vault
from costguardian.services.notifications import webhooks
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.support import SYSTEM


@pytest.fixture
def stored(app, app_ctx, llm_upstream, monkeypatch, make_user, make_org):
    """Two provider keys and a webhook secret, encrypted under the test's key."""
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    org = make_org("Acme", owner=make_user("olga@acme.com"))
    vault.add(org, SYSTEM, "openai", "Prod", OPENAI_KEY)
    vault.add(org, SYSTEM, "anthropic", "Claude", ANTHROPIC_KEY)
    hook = webhooks.create_endpoint(org, SYSTEM, "Ops", "https://hooks.example.com/cost-guardian")
    return org, hook.secret


def _tokens():
    return ([c.secret_encrypted for c in ProviderCredential.select().order_by(ProviderCredential.id)]
            + [w.secret_encrypted for w in WebhookEndpoint.select()])


def test_rotate_with_two_keys_then_drop_the_old_one(app, stored, monkeypatch):
    org, webhook_secret = stored
    old_key, new_key = app.config["CG_ENCRYPTION_KEYS"], Fernet.generate_key().decode()
    before = _tokens()
    monkeypatch.setitem(app.config, "CG_ENCRYPTION_KEYS", f"{new_key},{old_key}")
    runner = app.test_cli_runner()

    result = runner.invoke(args=["rotate-encryption"])
    assert result.exit_code == 0, result.output
    assert "provider credentials: 2 re-encrypted, 0 already under the newest key" in result.output
    assert "webhook signing secrets: 1 re-encrypted, 0 already under the newest key" in result.output
    after = _tokens()
    assert all(a != b for a, b in zip(after, before))
    assert all(Fernet(new_key.encode()).decrypt(t.encode()) for t in after)  # the new key alone opens each

    again = runner.invoke(args=["rotate-encryption"])  # idempotent: nothing left to do
    assert again.exit_code == 0, again.output
    assert "provider credentials: 0 re-encrypted, 2 already under the newest key" in again.output
    assert _tokens() == after

    monkeypatch.setitem(app.config, "CG_ENCRYPTION_KEYS", new_key)  # the old key is gone
    assert vault.credential_for(org, "openai").secret == OPENAI_KEY
    assert vault.credential_for(org, "anthropic").secret == ANTHROPIC_KEY
    assert crypto.decrypt(WebhookEndpoint.get().secret_encrypted) == webhook_secret
    monkeypatch.setitem(app.config, "CG_ENCRYPTION_KEYS", old_key)
    with pytest.raises(InvalidToken):
        crypto.decrypt(after[0])


def test_a_secret_no_key_opens_is_reported_and_fails_the_command(app, stored, monkeypatch):
    monkeypatch.setitem(app.config, "CG_ENCRYPTION_KEYS", Fernet.generate_key().decode())  # the old key lost
    result = app.test_cli_runner().invoke(args=["rotate-encryption"])
    assert result.exit_code == 1
    assert "3 secret(s) no configured key can decrypt: provider credentials #" in result.output
    report = encryption.rotate_all()
    assert not report.ok and len(report.unreadable) == 3


def test_a_secret_replaced_during_the_run_is_not_overwritten(app, stored, monkeypatch):
    """Each row is written only if its token is still the one read."""
    old_key = app.config["CG_ENCRYPTION_KEYS"]
    monkeypatch.setitem(app.config, "CG_ENCRYPTION_KEYS", f"{Fernet.generate_key().decode()},{old_key}")
    real = crypto.reencrypted
    replaced = crypto.encrypt("sk-replaced-meanwhile-0000")

    def racing(token):
        fresh = real(token)
        first = ProviderCredential.select().order_by(ProviderCredential.id).first()
        if token == first.secret_encrypted:  # someone saves a new key for it right now
            ProviderCredential.update(secret_encrypted=replaced).where(ProviderCredential.id == first.id).execute()
        return fresh

    monkeypatch.setattr(crypto, "reencrypted", racing)
    report = encryption.rotate_all()
    assert report.rotated["provider credentials"] == 1
    assert ProviderCredential.select().order_by(ProviderCredential.id).first().secret_encrypted == replaced
