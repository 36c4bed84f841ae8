"""Domain verification by DNS TXT record (services/team/domain_verification.py)."""
from __future__ import annotations

from peewee import CharField, DateTimeField, TextField

from costguardian import clock
from costguardian.models.org import TenantModel


class DomainVerification(TenantModel):
    """An organization's claim to a domain: the token it must publish at
    `_costguardian-challenge.<domain>`, and when the record was last seen."""

    domain = CharField(max_length=253)  # lower-case, IDNA (ASCII)
    token = CharField(max_length=64)
    created_at = DateTimeField(default=clock.now)
    verified_at = DateTimeField(null=True)
    last_checked_at = DateTimeField(null=True)
    last_error = TextField(default="")

    class Meta:
        indexes = ((("organization", "domain"), True), (("domain",), False))
