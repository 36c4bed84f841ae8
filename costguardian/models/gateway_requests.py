"""The gateway's request log: how each call through the gateway went (latency,
time to first token, status, streamed), beside the usage event that prices it;
and, only when the organization turns request logging on, the call's bodies."""
from __future__ import annotations

from peewee import BooleanField, CharField, DateTimeField, ForeignKeyField, IntegerField, TextField

from costguardian import clock
from costguardian.models.keys import ApiKey
from costguardian.models.org import TenantModel


class GatewayRequest(TenantModel):
    """One request to a gateway endpoint that reached routing (the key was
    valid). `request_id` is the `X-CG-Request-Id` the caller got back and,
    for a call that was forwarded, the `event_id` of its usage event (the
    tokens and the cost live there, once). Nothing of the prompt or the
    completion is kept here (see GatewayRequestBody)."""

    request_id = CharField(max_length=40, unique=True)
    api_key = ForeignKeyField(ApiKey, null=True)  # keys are revoked, never deleted
    endpoint = CharField(max_length=32)  # chat.completions, completions, embeddings, responses, messages
    provider = CharField(max_length=64, default="")  # as the usage event names it; "" when routing failed
    model = CharField(max_length=200, default="")  # as asked by the caller
    credential_id = IntegerField(null=True)  # the vault credential used (no key: a deleted one keeps the log)
    started_at = DateTimeField()
    status_code = IntegerField()  # what the caller got (the upstream's own, or the gateway's)
    outcome = CharField(max_length=16)  # ok, upstream_error, blocked, refused, timeout, unreachable, cancelled
    error = CharField(max_length=300, default="")  # the error's type and message, never the request
    streamed = BooleanField(default=False)
    forwarded = BooleanField(default=False)  # the upstream was called (a usage event exists)
    usage_estimated = BooleanField(default=False)  # no usage from the provider: tokens estimated
    latency_ms = IntegerField(default=0)  # from the request to the last byte of the answer
    ttft_ms = IntegerField(null=True)  # streams: to the first generated token relayed

    class Meta:
        # The key page counts a key's calls by outcome over a window.
        indexes = ((("organization", "started_at"), False),
                   (("organization", "api_key", "started_at", "outcome"), False))


class GatewayRequestBody(TenantModel):
    """The bodies of one gateway call, kept only while its organization logs
    requests (Organization.request_logging) and for its retention
    (request_log_days, from `created_at`). The request as the caller sent it;
    the answer as the caller got it (a whole JSON body, or the server-sent
    events relayed). Each is capped; `*_bytes` is its full size. Headers are
    never kept, and the provider's key is redacted from both."""

    request_id = CharField(max_length=40)  # GatewayRequest.request_id
    created_at = DateTimeField(default=clock.now)
    request_body = TextField(default="")
    request_bytes = IntegerField(default=0)
    request_truncated = BooleanField(default=False)
    answer_body = TextField(default="")
    answer_bytes = IntegerField(default=0)
    answer_truncated = BooleanField(default=False)

    class Meta:
        indexes = ((("organization", "request_id"), True), (("organization", "created_at"), False))
