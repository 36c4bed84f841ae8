"""Provider usage sync: an organization's admin credential per provider, the
buckets the providers report (kept apart from our own usage events), and the
provider keys the organization says are its own."""
from __future__ import annotations

import json

from peewee import BigIntegerField, CharField, DateField, DateTimeField, ForeignKeyField, IntegerField, TextField

from costguardian import clock
from costguardian.models.org import TenantModel
from costguardian.models.user import User

NO_ID = ""  # a provider's null key, project or tier, so the unique keys work on both databases


class ProviderSyncConnection(TenantModel):
    """One admin credential (OpenAI organization admin key, Anthropic admin
    key), encrypted like the vault's keys, with where the sync has got to.

    `cursors` maps a stream ("usage:completions", "costs" …) to the start of
    the first bucket not yet known to be final (ISO, UTC); the sync resumes
    there, so a run stopped mid-way loses at most one page."""

    provider = CharField(max_length=32)  # "openai" | "anthropic"
    secret_encrypted = TextField()
    secret_last4 = CharField(max_length=4, default="")
    cursors = TextField(default="{}")
    backfill_from = DateTimeField()  # the first hour pulled (30 days before connecting)
    tolerance_bp = IntegerField(default=100)  # drift highlighted beyond this, in basis points (1%)
    shadow_alert_nanos = BigIntegerField(default=10 * 10**9)  # shadow spend in a day that raises an alert
    last_sync_at = DateTimeField(null=True)
    last_error = TextField(default="")
    checked_at = DateTimeField(null=True)
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "provider"), True),)

    @property
    def cursor_map(self) -> dict[str, str]:
        try:
            value = json.loads(self.cursors or "{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


class ProviderUsageBucket(TenantModel):
    """One provider-reported usage bucket (one UTC hour) for one group: model,
    provider key, project/workspace and tier. Tokens in genai-prices terms:
    input counts every prompt token, cache reads and writes included. A bucket
    pulled again replaces its numbers (the provider's latest word)."""

    provider = CharField(max_length=32)
    source = CharField(max_length=32)  # completions, embeddings, … ; messages for Anthropic
    hour = DateTimeField()  # UTC start of the bucket
    model = CharField(max_length=128)  # normalised like our own events
    model_raw = CharField(max_length=200, default="")
    key_id = CharField(max_length=128, default=NO_ID)  # the provider's API key id
    project_id = CharField(max_length=128, default=NO_ID)  # OpenAI project, Anthropic workspace
    tier = CharField(max_length=32, default=NO_ID)  # "batch", or Anthropic's service tier
    requests = BigIntegerField(default=0)
    input_tokens = BigIntegerField(default=0)
    cache_read_tokens = BigIntegerField(default=0)
    cache_write_tokens = BigIntegerField(default=0)
    output_tokens = BigIntegerField(default=0)
    pulled_at = DateTimeField(default=clock.now)

    KEY = ("provider", "source", "hour", "model", "key_id", "project_id", "tier")

    class Meta:
        indexes = ((("organization", "provider", "source", "hour", "model", "key_id", "project_id", "tier"), True),)


class ProviderCostBucket(TenantModel):
    """One provider-reported cost (one UTC day) for a line item (OpenAI) or a
    model and token type (Anthropic), and a project or workspace."""

    provider = CharField(max_length=32)
    day = DateField()  # UTC
    line_item = CharField(max_length=200, default=NO_ID)
    model = CharField(max_length=128, default=NO_ID)  # normalised, "" when the line item names none
    project_id = CharField(max_length=128, default=NO_ID)
    amount_nanos = BigIntegerField(default=0)
    pulled_at = DateTimeField(default=clock.now)

    KEY = ("provider", "day", "line_item", "project_id")

    class Meta:
        indexes = ((("organization", "provider", "day", "line_item", "project_id"), True),)


class KnownProviderKey(TenantModel):
    """A provider key id (or project) the organization says is its own: its
    usage is not shadow usage."""

    provider = CharField(max_length=32)
    key_id = CharField(max_length=128)
    label = CharField(max_length=80, default="")
    created_by = ForeignKeyField(User, null=True, on_delete="SET NULL", backref="+")
    created_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "provider", "key_id"), True),)


class ProviderKey(TenantModel):
    """A key in the provider's own list (OpenAI's project API keys, Anthropic's
    API keys), pulled on every sync: its name and the redacted hint the
    provider shows ("sk-proj-abc...wxyz"), never the secret. A key that left
    the list keeps its row (`seen_at` says when it was last listed)."""

    provider = CharField(max_length=32)
    key_id = CharField(max_length=128)
    name = CharField(max_length=200, default="")
    hint = CharField(max_length=64, default="")  # OpenAI's redacted_value, Anthropic's partial_key_hint
    project_id = CharField(max_length=128, default=NO_ID)  # OpenAI project, Anthropic workspace
    status = CharField(max_length=32, default="")  # active, inactive, archived ("" when the provider says none)
    seen_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "provider", "key_id"), True),)


class ProviderKeyMatch(TenantModel):
    """A vault credential (ProviderCredential) whose secret fits exactly one
    provider key's hint: usage recorded through that credential is that key's.
    Recomputed on every sync; a credential deleted from the vault keeps its
    last match, so the events it served still count for their key. No
    foreign key, like usage_event.credential_id."""

    provider = CharField(max_length=32)
    credential_id = IntegerField()
    key_id = CharField(max_length=128)
    matched_at = DateTimeField(default=clock.now)

    class Meta:
        indexes = ((("organization", "credential_id"), True),)
