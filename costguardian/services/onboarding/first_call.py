"""Step 4 of the wizard: the gateway key, the first event, and a test call the
wizard makes for the user through the gateway itself (the same proxy, budget
admission and recording an SDK call goes through)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from costguardian.models import ApiKey, Organization, UsageEvent
from costguardian.services import keys
from costguardian.services.actor import Actor
from costguardian.services.errors import RuleViolation

KEY_NAME = "Onboarding gateway key"


def create_key(org: Organization, actor: Actor) -> keys.NewKey:
    """A key with the gateway and ingest scopes, for the snippets (shown once)."""
    user = actor.user
    return keys.create_key(org, actor, KEY_NAME, ["gateway", "ingest"], user=user)


def key_of(org: Organization, key_id) -> ApiKey | None:
    key = ApiKey.get_in_org(org, key_id) if key_id else None
    return key if key is not None and key.revoked_at is None else None


@dataclass
class FirstEvent:
    event: UsageEvent

    @property
    def tokens(self) -> int:
        e = self.event  # input_tokens counts every prompt token, cached ones included
        return e.input_tokens + e.output_tokens


def first_event(org: Organization) -> FirstEvent | None:
    """The organization's earliest recorded call (ingest or gateway), if any."""
    event = (UsageEvent.select().where(UsageEvent.organization == org)
             .order_by(UsageEvent.id).first())
    return FirstEvent(event) if event is not None else None


def test_call(org: Organization, key: ApiKey, model: str, wire: str = "openai") -> dict:
    """One small chat call through the gateway with `key`, as an SDK would
    make it; answers {"status", "model", "text"} once it is recorded."""
    from costguardian.services.gateway import proxy

    refusal = proxy.organization_refusal(org)
    if refusal:
        raise RuleViolation(f"The test call was not made: {refusal[1]}")
    if wire == "anthropic":
        endpoint, body = "messages", {"model": model, "max_tokens": 16,
                                      "messages": [{"role": "user", "content": "Say hello in three words."}]}
    else:
        endpoint, body = "chat.completions", {"model": model, "max_tokens": 16,
                                              "messages": [{"role": "user", "content": "Say hello in three words."}]}
    request_id = proxy.new_request_id()
    reply = proxy.handle(org, key, endpoint, json.dumps(body).encode(),
                         {"content-type": "application/json", "user-agent": "cost-guardian-onboarding"}, request_id)
    raw = reply.body if isinstance(reply.body, bytes) else b"".join(reply.body)
    if reply.finish is not None:
        reply.finish()
    try:
        answer = json.loads(raw or b"{}")
    except ValueError:
        answer = {}
    if reply.status != 200:
        message = (answer.get("error") or {}).get("message") if isinstance(answer.get("error"), dict) else None
        raise RuleViolation(f"The test call failed ({reply.status}): {message or 'no details'}")
    if wire == "anthropic":
        text = "".join(part.get("text", "") for part in answer.get("content") or [] if isinstance(part, dict))
    else:
        choices = answer.get("choices") or [{}]
        text = ((choices[0] or {}).get("message") or {}).get("content") or ""
    return {"status": reply.status, "model": answer.get("model") or model, "text": text[:200]}
