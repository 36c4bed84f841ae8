"""Admin credentials for the providers' usage APIs, one per organization and
provider, encrypted like the vault's keys (crypto.py): only the last four
characters are ever shown, audit rows never carry the secret. A key is saved
only after the provider accepted it for one cheap usage call."""
from __future__ import annotations

from datetime import timedelta

from peewee import IntegrityError

from costguardian import clock, crypto
from costguardian.db import write_transaction
from costguardian.models import KnownProviderKey, ProviderSyncConnection
from costguardian.services.actor import Actor
from costguardian.services.errors import ValidationError
from costguardian.services.provider_sync import admin_api
from costguardian.services.team import audit

BACKFILL_DAYS = 30
LABELS = {"openai": "OpenAI", "anthropic": "Anthropic"}
KEY_HINTS = {"openai": "an organization admin key (sk-admin-…)", "anthropic": "an Admin API key (sk-ant-admin…)"}


def of(org) -> dict[str, ProviderSyncConnection]:
    return {c.provider: c for c in ProviderSyncConnection.in_org(org)}


def get(org, provider: str) -> ProviderSyncConnection | None:
    return ProviderSyncConnection.in_org(org).where(ProviderSyncConnection.provider == provider).first()


def secret_of(conn: ProviderSyncConnection) -> str:
    return crypto.decrypt(conn.secret_encrypted)


def connect(org, actor: Actor, provider: str, secret: str) -> ProviderSyncConnection:
    """Check the admin key with the provider and store it (replacing the
    organization's previous one for that provider). A new connection starts
    a 30-day backfill; a replaced key keeps the cursors."""
    secret = (secret or "").strip()
    if provider not in admin_api.SUPPORTED:
        raise ValidationError({"provider": "Choose OpenAI or Anthropic."})
    if not secret:
        raise ValidationError({"secret": f"Paste {KEY_HINTS[provider]}."})
    if len(secret) > 500:
        raise ValidationError({"secret": "That is too long for an admin key."})
    now = clock.now()
    try:
        admin_api.check_key(provider, secret, now)
    except admin_api.AdminApiError as exc:
        raise ValidationError({"secret": _redacted(str(exc), secret)}) from None
    last4 = secret[-4:] if len(secret) >= 8 else ""
    existing = get(org, provider)
    with write_transaction():
        if existing is not None:
            existing.secret_encrypted, existing.secret_last4 = crypto.encrypt(secret), last4
            existing.checked_at, existing.last_error = now, ""
            existing.save()
            conn, action = existing, "provider_sync.key_replaced"
        else:
            try:
                conn = ProviderSyncConnection.create(
                    organization=org, provider=provider, secret_encrypted=crypto.encrypt(secret), secret_last4=last4,
                    backfill_from=now.replace(minute=0, second=0, microsecond=0) - timedelta(days=BACKFILL_DAYS),
                    checked_at=now, created_by=actor.user)
            except IntegrityError:
                raise ValidationError({"secret": "This provider was connected meanwhile; reload the page."}) from None
            action = "provider_sync.connected"
        audit.record(actor, action, org=org, target=conn, provider=provider, last4=last4)
    return conn


def disconnect(org, actor: Actor, provider: str) -> bool:
    """Forget the admin key. The reported buckets stay (history)."""
    conn = get(org, provider)
    if conn is None:
        return False
    with write_transaction():
        conn.delete_instance()
        audit.record(actor, "provider_sync.disconnected", org=org, provider=provider, last4=conn.secret_last4)
    return True


def update_settings(conn: ProviderSyncConnection, actor: Actor, *, tolerance_pct, shadow_alert_usd) -> None:
    from decimal import Decimal, InvalidOperation

    errors = {}
    try:
        tolerance = Decimal(str(tolerance_pct).strip())
        if not Decimal(0) <= tolerance <= Decimal(100):
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errors["tolerance_pct"] = "Enter a percentage between 0 and 100, e.g. 1."
    try:
        threshold = Decimal(str(shadow_alert_usd).strip())
        if not Decimal(0) <= threshold <= Decimal(10**9):
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        errors["shadow_alert_usd"] = "Enter an amount in USD, e.g. 10."
    if errors:
        raise ValidationError(errors)
    conn.tolerance_bp = int(tolerance * 100)
    conn.shadow_alert_nanos = int(threshold * 10**9)
    conn.save(only=[ProviderSyncConnection.tolerance_bp, ProviderSyncConnection.shadow_alert_nanos])
    audit.record(actor, "provider_sync.settings_changed", org=conn.organization, target=conn,
                 tolerance_pct=str(tolerance), shadow_alert_usd=str(threshold))


def known_keys(org, provider: str) -> dict[str, KnownProviderKey]:
    return {k.key_id: k for k in KnownProviderKey.in_org(org).where(KnownProviderKey.provider == provider)}


def mark_known(org, actor: Actor, provider: str, key_id: str, label: str = "") -> KnownProviderKey:
    """Say a provider key id (or "project:<id>") is the organization's own."""
    key_id, label = (key_id or "").strip(), (label or "").strip()
    if not key_id or len(key_id) > 128:
        raise ValidationError({"key_id": "Choose a key."})
    if len(label) > 80:
        raise ValidationError({"label": "At most 80 characters."})
    existing = known_keys(org, provider).get(key_id)
    if existing is not None:
        return existing
    with write_transaction():
        row = KnownProviderKey.create(organization=org, provider=provider, key_id=key_id, label=label,
                                      created_by=actor.user)
        audit.record(actor, "provider_sync.key_known", org=org, target=row, provider=provider, key_id=key_id)
    return row


def forget_known(org, actor: Actor, provider: str, key_id: str) -> None:
    with write_transaction():
        deleted = KnownProviderKey.delete().where(KnownProviderKey.organization == org,
                                                  KnownProviderKey.provider == provider,
                                                  KnownProviderKey.key_id == key_id).execute()
        if deleted:
            audit.record(actor, "provider_sync.key_forgotten", org=org, provider=provider, key_id=key_id)


def _redacted(text: str, secret: str) -> str:
    return text.replace(secret, f"…{secret[-4:]}") if secret else text
