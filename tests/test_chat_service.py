"""The chat's service, against the fake upstream: every message goes through
the gateway (attributed, tagged source:chat, recorded), the cost under an
answer is the recorded event's, a hard budget is a readable message, Stop
records the tokens seen, and a member's conversations are their own."""
from __future__ import annotations

import threading

import pytest

from costguardian.models import ChatMessage, GatewayRequest, UsageEvent
from costguardian.models.chat import BLOCKED, OK, STOPPED
from costguardian.services.budgets import budgets
from costguardian.services.chat import context, conversations, send
from tests.chat_support import chat_org  # noqa: F401  (fixture)
from tests.support import SYSTEM


def test_an_answer_streams_through_the_gateway_and_costs_what_its_event_costs(chat_org):
    conversation = chat_org.conversation(system_prompt="Be brief.", max_tokens=200, temperature=0.5)
    answer = chat_org.say(conversation, "Say hello in three words.")
    assert answer.status == OK and answer.content == "".join(answer.pieces) and len(answer.pieces) > 1
    [event] = UsageEvent.in_org(chat_org.org)
    assert event.event_id == answer.request_id
    assert answer.cost_nanos == event.cost_nanos > 0
    assert (answer.input_tokens, answer.output_tokens, answer.cached_tokens) == (
        event.input_tokens, event.output_tokens, event.cache_read_tokens)
    assert "source:chat" in event.tags and "source:gateway" in event.tags
    assert event.user_ref == "mia@acme.com" and event.api_key_id is None
    [sent] = chat_org.upstream.requests
    assert sent.body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert (sent.body["max_tokens"], sent.body["temperature"], sent.body["model"]) == (200, 0.5, "gpt-4o")
    [logged] = GatewayRequest.in_org(chat_org.org)
    assert logged.request_id == answer.request_id and logged.streamed
    assert conversations.total_nanos(conversation) == event.cost_nanos


def test_the_title_comes_from_the_first_message_and_history_is_sent(chat_org):
    conversation = chat_org.conversation()
    chat_org.say(conversation, "What is the capital of France?\nAnswer briefly.")
    chat_org.say(conversation, "And of Italy?")
    conversation = type(conversation).get_by_id(conversation.id)
    assert conversation.title == "What is the capital of France? Answer briefly."
    second = chat_org.upstream.requests[-1].body["messages"]
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[-1]["content"] == "And of Italy?"


def test_an_anthropic_model_is_translated_and_priced(chat_org):
    answer = chat_org.say(chat_org.conversation(model="anthropic/claude-sonnet-4-5-20250929", max_tokens=100),
                          "Hi")
    [event] = UsageEvent.in_org(chat_org.org)
    assert answer.status == OK and answer.content and event.provider == "anthropic"
    assert answer.cost_nanos == event.cost_nanos > 0
    assert chat_org.upstream.requests[0].path == "/v1/messages"


def test_a_hard_budget_is_a_readable_message_in_the_conversation(chat_org):
    budgets.create(chat_org.org, SYSTEM, {"name": "Chat cap", "amount_usd": "0.000001", "enforcement": "hard"})
    answer = chat_org.say(chat_org.conversation(), "Hello?")
    assert answer.status == BLOCKED
    assert 'hard budget "Chat cap"' in answer.error and "can raise it" in answer.error
    assert "resets" in answer.error
    assert chat_org.upstream.requests == [] and UsageEvent.select().count() == 0
    assert answer.cost_nanos is None


def test_stop_mid_stream_ends_the_upstream_call_and_records_the_tokens_seen(chat_org):
    chat_org.upstream.reply = " ".join(f"word{i}" for i in range(60))
    chat_org.upstream.hold_after = 6
    conversation = chat_org.conversation()
    answer = send.start(conversation, "Write a long answer.")
    stop = threading.Event()
    pieces = []
    for piece in send.stream(chat_org.org, chat_org.member, answer, should_stop=stop.is_set):
        pieces.append(piece)
        if len(pieces) == 3:
            stop.set()
    chat_org.upstream.release.set()
    answer = ChatMessage.get_by_id(answer.id)
    assert answer.status == STOPPED and answer.content == "".join(pieces)
    [event] = UsageEvent.in_org(chat_org.org)
    assert "status:cancelled" in event.tags and "usage:estimated" in event.tags
    assert 3 <= event.output_tokens < 60
    assert answer.output_tokens == event.output_tokens and answer.cost_nanos == event.cost_nanos


def test_the_stop_flag_is_read_from_the_database(chat_org):
    answer = send.start(chat_org.conversation(), "Hi")
    send.request_stop(answer)  # not started yet: never sent
    assert list(send.stream(chat_org.org, chat_org.member, answer)) == []
    assert ChatMessage.get_by_id(answer.id).status == STOPPED and chat_org.upstream.requests == []


def test_an_answer_is_streamed_once(chat_org):
    conversation = chat_org.conversation()
    answer = chat_org.say(conversation, "Hi")
    assert list(send.stream(chat_org.org, chat_org.member, answer)) == []
    assert len(chat_org.upstream.requests) == 1


def test_a_member_sees_only_their_own_conversations(chat_org):
    mine = chat_org.conversation()
    chat_org.say(mine, "My secret plan")
    theirs = chat_org.conversation(user=chat_org.owner)
    assert conversations.list_for(chat_org.org, chat_org.member) == [mine]
    assert conversations.list_for(chat_org.org, chat_org.owner) == [theirs]
    assert conversations.get(chat_org.org, chat_org.owner, mine.id) is None
    assert conversations.list_for(chat_org.org, chat_org.owner, "secret") == []
    assert conversations.list_for(chat_org.org, chat_org.member, "SECRET") == [mine]
    assert conversations.list_for(chat_org.org, chat_org.member, "nothing like it") == []


def test_compare_sends_one_prompt_to_each_model(chat_org):
    settings = conversations.Settings("openai/gpt-4o", max_tokens=50)
    conversation, answers = send.start_compare(chat_org.org, chat_org.member,
                                               ["openai/gpt-4o", "anthropic/claude-sonnet-4-5-20250929"],
                                               settings, "Compare me")
    for answer in answers:
        list(send.stream(chat_org.org, chat_org.member, answer))
    done = [ChatMessage.get_by_id(a.id) for a in answers]
    events = {e.event_id: e for e in UsageEvent.in_org(chat_org.org)}
    assert [a.status for a in done] == [OK, OK] and len({a.compare_group for a in done}) == 1
    assert all(a.cost_nanos == events[a.request_id].cost_nanos for a in done)
    assert {e.provider for e in events.values()} == {"openai", "anthropic"}


def test_stop_through_the_database_flag_while_streaming(chat_org):
    chat_org.upstream.reply = " ".join(f"word{i}" for i in range(80))
    chat_org.upstream.chunk_delay = 0.05
    answer = send.start(chat_org.conversation(), "Write a long answer.")
    pieces = []
    for piece in send.stream(chat_org.org, chat_org.member, answer):
        pieces.append(piece)
        if len(pieces) == 3:
            send.request_stop(answer)  # what the Stop button's request does
    answer = ChatMessage.get_by_id(answer.id)
    assert answer.status == STOPPED and 3 <= len(pieces) < 40
    [event] = UsageEvent.in_org(chat_org.org)
    assert "status:cancelled" in event.tags and answer.output_tokens == event.output_tokens >= 3


def test_a_closed_stream_records_what_was_seen(chat_org):
    """The browser went away: the generator is closed mid-answer."""
    chat_org.upstream.reply = " ".join(f"word{i}" for i in range(60))
    answer = send.start(chat_org.conversation(), "Write a long answer.")
    stream = send.stream(chat_org.org, chat_org.member, answer)
    seen = [next(stream) for _ in range(4)]
    stream.close()
    answer = ChatMessage.get_by_id(answer.id)
    assert answer.status == STOPPED and answer.content == "".join(seen)
    [event] = UsageEvent.in_org(chat_org.org)
    assert answer.cost_nanos == event.cost_nanos and "status:cancelled" in event.tags


def test_a_long_conversation_is_trimmed_to_the_context_window_with_a_note(chat_org):
    conversation = chat_org.conversation(max_tokens=1000)  # gpt-4o: a 128,000-token window
    for i in range(12):  # 40,000 characters each: about 13,338 tokens by the estimate
        role = "user" if i % 2 == 0 else "assistant"
        ChatMessage.create(organization=chat_org.org, conversation=conversation, role=role,
                           content=f"{i} " + "x" * 40_000)
    answer = chat_org.say(conversation, "Sum it up.")
    sent = chat_org.upstream.requests[0].body["messages"]
    assert answer.trimmed == 13 - len(sent) > 0 and sent[0]["role"] == "user" and sent[-1]["content"] == "Sum it up."
    assert sum(context.estimate(m["content"]) for m in sent) <= 128_000 - 1000


def test_trimming_keeps_the_system_prompt_and_the_newest_message():
    history = [("user", "a" * 300), ("assistant", "b" * 300), ("user", "c" * 300)]
    prompt = context.build("Be brief.", history, context_window=300, max_tokens=100)
    assert prompt.messages == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "c" * 300}]
    assert prompt.trimmed == 2
    whole = context.build("", history, context_window=None, max_tokens=None)  # unknown model: 32,000 tokens
    assert len(whole.messages) == 3 and whole.trimmed == 0
    alone = context.build("", [("user", "z" * 10_000)], context_window=100, max_tokens=50)
    assert alone.messages == [{"role": "user", "content": "z" * 10_000}]  # too long: the provider's to refuse
    assert context.estimate("€" * 3) == 4 + 3  # UTF-8 bytes / 3


def test_a_hard_budget_on_the_chat_tag_blocks_before_the_call(chat_org):
    """`source:chat` is counted by admission (proxy.handle's extra_tags), not
    only added to the record afterwards."""
    budgets.create(chat_org.org, SYSTEM, {"name": "Chat only", "amount_usd": "0.000001", "enforcement": "hard",
                                          "tag": "source:chat"})
    answer = chat_org.say(chat_org.conversation(), "Hello?")
    assert answer.status == BLOCKED and 'hard budget "Chat only"' in answer.error
    assert chat_org.upstream.requests == [] and UsageEvent.select().count() == 0


def test_a_failing_provider_is_a_readable_error_in_the_conversation(chat_org):
    from costguardian.models.chat import ERROR

    chat_org.upstream.fail_with = 503
    answer = chat_org.say(chat_org.conversation(), "Hello?")
    assert answer.status == ERROR and answer.error
    assert "503" in answer.error or "unavailable" in answer.error.lower() or "provider" in answer.error.lower()
    assert answer.cost_nanos in (None, 0)


def test_a_provider_dropping_the_stream_keeps_what_was_said_and_records_it(chat_org):
    chat_org.upstream.reply = " ".join(f"word{i}" for i in range(40))
    chat_org.upstream.disconnect_after = 5
    answer = chat_org.say(chat_org.conversation(), "Write a long answer.")
    assert answer.status != OK
    assert answer.content and answer.content == "".join(answer.pieces)
    [event] = UsageEvent.in_org(chat_org.org)
    assert event.output_tokens > 0 and answer.output_tokens == event.output_tokens
    assert answer.cost_nanos == event.cost_nanos


def test_the_organizations_request_limit_counts_chat_calls(chat_org, app):
    """Chat calls share the organization's gateway requests-per-minute limit
    with every key (services/gateway/ratelimits.py, no key: the organization's)."""
    import time_machine

    from costguardian.models import Organization
    from costguardian.models.chat import ERROR
    from costguardian.services.gateway import ratelimits

    if not str(app.config["RATELIMIT_STORAGE_URI"]).startswith(("memory", "cg-sqlite")):
        pytest.skip("Redis keeps its windows by its own clock, which time-machine does not move")
    ratelimits.reset(app)
    Organization.update(gateway_rpm_limit=2).where(Organization.id == chat_org.org.id).execute()
    chat_org.org.gateway_rpm_limit = 2
    try:
        with time_machine.travel("2026-12-02 10:00:20", tick=False):  # mid-minute: one window for all three
            conversation = chat_org.conversation()
            answers = [chat_org.say(conversation, f"Question {n}") for n in range(3)]
        assert [a.status for a in answers[:2]] == [OK, OK]
        assert answers[2].status == ERROR and "requests per minute" in answers[2].error
        assert len(chat_org.upstream.requests) == 2
    finally:
        ratelimits.reset(app)
