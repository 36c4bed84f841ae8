"""The gateway's vault: an organization's keys for AI providers, encrypted."""
from __future__ import annotations

import json

from peewee import BigIntegerField, BooleanField, CharField, DateTimeField, ForeignKeyField, TextField

from costguardian import clock
from costguardian.models.budgets import Budget
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


class GatewayReservation(TenantModel):
    """Money held against one hard budget's period while a gateway call is in
    flight (services.gateway.admission): admission checks spend + the active
    reservations + the call's estimate against the limit, and the call's
    settle deletes them after its usage event is recorded. A reservation whose
    call never settles (a crashed worker) stops counting at `expires_at` and is
    swept by the periodic task.

    One admission holds one row per covering hard budget: the first row's id is
    the admission's id, the others name it in `admission` (NULL on the first)."""

    budget = ForeignKeyField(Budget, on_delete="CASCADE", index=False)  # the key below starts with it
    period_start = DateTimeField()  # UTC instant of the budget period the money is held in
    amount_nanos = BigIntegerField()
    admission = BigIntegerField(null=True, index=True)
    created_at = DateTimeField(default=clock.now)
    expires_at = DateTimeField(index=True)

    class Meta:
        indexes = ((("budget", "period_start", "expires_at"), False),)
