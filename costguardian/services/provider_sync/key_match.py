"""The providers' key lists, and which vault credential is which provider key.

A provider never shows a key's secret again, only a redacted hint: OpenAI's
`redacted_value` ("sk-abc...wxyz"), Anthropic's `partial_key_hint`
("sk-ant-api03-R2D...igAA"). A vault credential (ProviderCredential) of the
same provider is matched to a key when its decrypted secret starts with the
hint's prefix and ends with its last characters, and only when exactly one
listed key fits: two fitting keys is no match (the events stay "not matched"
rather than land on the wrong key). Keys the provider no longer lists keep
their rows and are only considered when no key of the latest list fits. Matches are recomputed after every pull
of the list; a credential since deleted from the vault keeps its last match,
so the events it served still count for their key."""
from __future__ import annotations

import logging

from cryptography.fernet import InvalidToken

from costguardian import clock, crypto
from costguardian.db import write_transaction
from costguardian.models import ProviderCredential, ProviderKey, ProviderKeyMatch
from costguardian.services.provider_sync import admin_api

log = logging.getLogger(__name__)
ELLIPSES = ("...", "\u2026")


def hint_parts(hint: str) -> tuple[str, str] | None:
    """(prefix, last characters) of a redacted hint, or None when the hint
    does not have that shape. Masking stars around the gap are not part of
    either."""
    for gap in ELLIPSES:
        if gap in hint:
            prefix, _, suffix = hint.partition(gap)
            prefix, suffix = prefix.rstrip("*"), suffix.lstrip("*")
            return (prefix, suffix) if prefix and suffix else None
    return None


def fits(hint: str, secret: str) -> bool:
    parts = hint_parts(hint)
    if parts is None:
        return False
    prefix, suffix = parts
    return len(secret) >= len(prefix) + len(suffix) and secret.startswith(prefix) and secret.endswith(suffix)


def refresh(conn) -> int:
    """Pull the provider's key list, store it and match the vault's
    credentials again; returns the number of keys listed. Raises
    admin_api.AdminApiError like the usage pulls."""
    from costguardian.services.provider_sync import connections

    rows = admin_api.list_keys(conn.provider, connections.secret_of(conn))
    now = clock.now()
    with write_transaction():
        _store(conn, rows, now)
        rematch(conn.organization, conn.provider, now)
    return len(rows)


def _store(conn, rows: list[admin_api.KeyRow], now) -> None:
    K = ProviderKey
    values = {r.key_id[:128]: {"organization": conn.organization_id, "provider": conn.provider,
                               "key_id": r.key_id[:128], "name": r.name[:200], "hint": r.hint[:64],
                               "project_id": r.project_id[:128], "status": r.status[:32], "seen_at": now}
              for r in rows if r.key_id}
    items = list(values.values())
    for i in range(0, len(items), 200):
        K.insert_many(items[i:i + 200]).on_conflict(
            conflict_target=[K.organization, K.provider, K.key_id],
            update={K.name: _excluded(K.name), K.hint: _excluded(K.hint), K.project_id: _excluded(K.project_id),
                    K.status: _excluded(K.status), K.seen_at: _excluded(K.seen_at)}).execute()


def rematch(org, provider: str, now=None) -> dict[int, str]:
    """Match every vault credential of `provider` to the one stored key its
    secret fits; returns {credential id: key id}."""
    now = now or clock.now()
    keys = list(ProviderKey.in_org(org).where(ProviderKey.provider == provider))
    latest = max((k.seen_at for k in keys), default=None)
    found: dict[int, str] = {}
    credentials = list(ProviderCredential.in_org(org).where(ProviderCredential.provider == provider))
    for credential in credentials:
        try:
            secret = crypto.decrypt(credential.secret_encrypted)
        except InvalidToken:
            log.warning("credential %s of organization %s cannot be decrypted; not matched", credential.id,
                        org.id)
            continue
        fitting = [k for k in keys if fits(k.hint, secret)]
        listed_now = [k for k in fitting if k.seen_at == latest]
        fitting = listed_now or fitting  # a key the provider still lists wins over one it dropped
        if len(fitting) == 1:
            found[credential.id] = fitting[0].key_id
    M = ProviderKeyMatch
    live = [c.id for c in credentials]
    stale = M.delete().where(M.organization == org, M.provider == provider)
    if live:  # a deleted credential keeps its last match
        stale.where(M.credential_id.in_(live)).execute()
    for credential_id, key_id in found.items():
        M.insert(organization=org, provider=provider, credential_id=credential_id, key_id=key_id,
                 matched_at=now).on_conflict(conflict_target=[M.organization, M.credential_id],
                                             update={M.key_id: key_id, M.provider: provider,
                                                     M.matched_at: now}).execute()
    return found


def matches(org, provider: str) -> dict[int, str]:
    """{credential id: provider key id} as last matched."""
    M = ProviderKeyMatch
    return {m.credential_id: m.key_id for m in M.in_org(org).where(M.provider == provider)}


def listed(org, provider: str) -> dict[str, ProviderKey]:
    return {k.key_id: k for k in ProviderKey.in_org(org).where(ProviderKey.provider == provider)}


def _excluded(field):
    from peewee import EXCLUDED

    return getattr(EXCLUDED, field.column_name)
