"""Secrets kept encrypted at rest (webhook signing secrets, …) with the keys
in CG_ENCRYPTION_KEYS: comma-separated Fernet keys, the first encrypts, all
decrypt, so keys can be rotated by putting a new one first."""
from __future__ import annotations

from cryptography.fernet import Fernet, MultiFernet
from flask import current_app


def _fernet() -> MultiFernet:
    keys = [k.strip() for k in str(current_app.config["CG_ENCRYPTION_KEYS"]).split(",") if k.strip()]
    return MultiFernet([Fernet(k.encode()) for k in keys])


def encrypt(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    return _fernet().decrypt(token.encode()).decode()
