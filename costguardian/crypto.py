"""Secrets kept encrypted at rest (webhook signing secrets, …) with the keys
in CG_ENCRYPTION_KEYS: comma-separated Fernet keys, the first encrypts, all
decrypt, so keys can be rotated by putting a new one first."""
from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

DECRYPTED = 4096  # tokens whose plaintext a process keeps (the gateway decrypts its credential on every call)


def _fernet() -> MultiFernet:
    return _fernet_of(str(current_app.config["CG_ENCRYPTION_KEYS"]))


@functools.lru_cache(maxsize=8)
def _fernet_of(setting: str) -> MultiFernet:
    keys = [k.strip() for k in setting.split(",") if k.strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    return _decrypt(str(current_app.config["CG_ENCRYPTION_KEYS"]), token)


@functools.lru_cache(maxsize=DECRYPTED)
def _decrypt(setting: str, token: str) -> str:
    """A token's plaintext under these keys: the same token always opens to
    the same text (a changed secret is a new token), so it is worked out once
    per process (its HMAC check and AES were 2.5% of a gateway call's CPU).
    A token no key opens raises every time (exceptions are not cached)."""
    return _fernet_of(setting).decrypt(token.encode()).decode()


def _current() -> Fernet:
    """The key that encrypts: the first of CG_ENCRYPTION_KEYS."""
    first = next(k.strip() for k in str(current_app.config["CG_ENCRYPTION_KEYS"]).split(",") if k.strip())
    return Fernet(first.encode())


def reencrypted(token: str) -> str | None:
    """`token` encrypted again under the newest key, or None when it already
    is (so a rotation run twice changes nothing the second time). Raises
    cryptography's InvalidToken when no configured key opens it."""
    try:
        _current().decrypt(token.encode())
        return None
    except InvalidToken:
        return _fernet().rotate(token.encode()).decode()
