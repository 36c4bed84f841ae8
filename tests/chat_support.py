"""Fixtures for the chat tests: an organization whose vault holds OpenAI and
Anthropic keys pointing at the fake upstream (tests/fakes/llm_upstream.py),
a member of it, and helpers to start and stream a turn in the service.

    from tests.chat_support import chat_org  # noqa: F401  (fixture)
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from costguardian.services.actor import Actor
from costguardian.services.chat import conversations, send
from costguardian.services.gateway import vault
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.support import add_member


@dataclass
class ChatOrg:
    org: object
    owner: object
    member: object
    upstream: object

    def conversation(self, user=None, model: str = "openai/gpt-4o", **settings):
        return conversations.create(self.org, user or self.member, conversations.Settings(model, **settings))

    def say(self, conversation, text: str, user=None) -> object:
        """One turn, streamed to its end; the answer row, reloaded."""
        answer = send.start(conversation, text)
        pieces = list(send.stream(self.org, user or self.member, answer))
        answer = type(answer).get_by_id(answer.id)
        answer.pieces = pieces
        return answer


@pytest.fixture
def chat_org(app, llm_upstream, make_user, make_org, monkeypatch):
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    owner = make_user("olga@acme.com", name="Olga Owner")
    org = make_org("Acme", owner=owner)
    member = make_user("mia@acme.com", name="Mia Member")
    add_member(org, member, "member")
    actor = Actor(user=owner)
    vault.add(org, actor, "openai", "Production", OPENAI_KEY)
    vault.add(org, actor, "anthropic", "Production", ANTHROPIC_KEY)
    llm_upstream.requests.clear()
    return ChatOrg(org, owner, member, llm_upstream)
