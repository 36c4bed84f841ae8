"""The gateway's vault: an organization's keys for AI providers, encrypted."""
from __future__ import annotations

import json

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, TextField

from costguardian import clock
from costguardian.models.org import TenantModel
from costguardian.models.user import User


class ProviderCredential(TenantModel):
    """One key for one provider. The secret is stored only as a Fernet token
    (crypto.py) and shown only as its last four characters.

    `default_for` is the provider's key while this is that provider's default
    credential and NULL otherwise: the unique index on (organization,
    default_for) lets each provider have one default per organization on both
    databases (NULLs never collide)."""

    provider = CharField(max_length=32)  # services.gateway.providers.PROVIDERS key
    label = CharField(max_length=80)
    secret_encrypted = TextField()
    secret_last4 = CharField(max_length=4, default="")
    base_url = CharField(max_length=2000, default="")  # custom base URL, or the Azure endpoint
    api_version = CharField(max_length=32, default="")  # Azure OpenAI's api-version
    deployments = TextField(default="{}")  # Azure: JSON {deployment: model}
    allowed_models = TextField(default="")  # one per line; empty admits every model
    available_models = TextField(default="")  # what the provider listed at the last check, one per line
    default_for = CharField(max_length=32, null=True)
    is_enabled = BooleanField(default=True)
    checked_at = DateTimeField(null=True)  # the last successful check with the provider
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    updated_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(default=clock.now)
    updated_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "provider"), False), (("organization", "default_for"), True))

    @property
    def is_default(self) -> bool:
        return self.default_for is not None

    @property
    def allowed_model_list(self) -> list[str]:
        return [m for m in self.allowed_models.splitlines() if m]

    @property
    def available_model_list(self) -> list[str]:
        return [m for m in self.available_models.splitlines() if m]

    @property
    def deployment_map(self) -> dict[str, str]:
        try:
            value = json.loads(self.deployments or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}
