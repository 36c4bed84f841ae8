"""The chat journey of issue 15: a member picks a model, sends a message and
watches the answer stream in, sees its exact cost (the recorded usage
event's), stops a long answer mid-way (the event holds the tokens seen),
compares two models side by side, hits a hard budget and reads why, then
reloads and finds the conversation by searching. Also at 390 px."""
from __future__ import annotations

import re

from playwright.sync_api import expect

from costguardian.models import ChatMessage, UsageEvent
from costguardian.services.actor import Actor
from costguardian.services.budgets import budgets
from costguardian.services.chat.render import exact_usd
from costguardian.services.gateway import vault
from tests.fakes.llm_upstream import ANTHROPIC_KEY, OPENAI_KEY
from tests.support import SYSTEM, add_member


def _no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_chat_stream_cost_stop_compare_budget_and_search(app, page, live_server, make_user, make_org, sign_in,
                                                         shot, llm_upstream, monkeypatch):
    monkeypatch.setitem(app.config, "CG_PROVIDER_BASE_URLS", llm_upstream.provider_base_urls())
    owner = make_user("olga@acme.example.com", name="Olga Owner")
    org = make_org("Acme Analytics", owner=owner)
    vault.add(org, Actor(user=owner), "openai", "Production", OPENAI_KEY)
    vault.add(org, Actor(user=owner), "anthropic", "Production", ANTHROPIC_KEY)
    member = make_user("mia@acme.example.com", name="Mia Member")
    add_member(org, member, "member")
    llm_upstream.requests.clear()
    page.set_viewport_size({"width": 1366, "height": 900})
    sign_in(page, member.email)

    # 1. Pick a model (grouped by provider, priced) and send: the answer streams in, then its cost.
    page.goto("/chat/")
    expect(page.get_by_test_id("model-model")).to_contain_text("in $2.5 · out $10 /1M")
    page.get_by_test_id("model-model").select_option("openai/gpt-4o")
    page.get_by_test_id("chat-input").fill("Say hello to the llamas")
    page.get_by_test_id("chat-send").click()
    expect(page).to_have_url(re.compile(r"/chat/\d+$"))
    answer = page.get_by_test_id("answer").last
    expect(answer.get_by_test_id("answer-cost")).to_be_visible()
    expect(answer).to_contain_text("Hello from the fake upstream")
    [event] = UsageEvent.in_org(org)
    expect(answer.get_by_test_id("answer-cost-usd")).to_have_text(exact_usd(event.cost_nanos))
    expect(page.get_by_test_id("chat-totals")).to_contain_text(exact_usd(event.cost_nanos))
    shot(page, "answered")

    # 2. A long answer trickles in; Stop ends it and the event holds the tokens seen.
    llm_upstream.reply = " ".join(f"word{i}" for i in range(400))
    llm_upstream.chunk_delay = 0.05
    page.get_by_test_id("chat-input").fill("Count slowly")
    page.get_by_test_id("chat-send").click()
    live = page.get_by_test_id("answer").last.locator("[data-live]")
    expect(live).to_contain_text("word5")  # streaming, not finished
    page.get_by_role("button", name="Stop").click()
    stopped = page.get_by_test_id("answer").last
    expect(stopped).to_contain_text("Stopped: the tokens generated until then are recorded")
    answer_row = ChatMessage.select().where(ChatMessage.role == "assistant").order_by(ChatMessage.id.desc()).get()
    stop_event = UsageEvent.in_org(org).where(UsageEvent.event_id == answer_row.request_id).get()
    assert "status:cancelled" in stop_event.tags and 0 < stop_event.output_tokens < 400
    expect(stopped.get_by_test_id("answer-cost-usd")).to_have_text(exact_usd(stop_event.cost_nanos))
    llm_upstream.chunk_delay, llm_upstream.reply = 0.0, "Short answer."

    # 3. Compare two models side by side, each with its own cost and latency.
    page.get_by_role("button", name="Compare models").click()
    page.get_by_test_id("model-models-0").select_option("openai/gpt-4o-mini")
    page.get_by_test_id("model-models-1").select_option("anthropic/claude-sonnet-4-5-20250929")
    page.get_by_test_id("compare-input").fill("Which llama is fastest?")
    page.get_by_test_id("compare-send").click()
    columns = page.get_by_test_id("compare-columns")
    expect(columns.get_by_test_id("answer-cost")).to_have_count(2)
    expect(columns.get_by_test_id("answer-cost").first).to_contain_text(" ms")
    shot(page, "compare")

    # 4. A hard budget without room: a readable message in the conversation, not an error page.
    budgets.create(org, SYSTEM, {"name": "Chat cap", "amount_usd": "0.000001", "enforcement": "hard"})
    page.goto("/chat/")
    page.get_by_test_id("model-model").select_option("openai/gpt-4o")
    page.get_by_test_id("chat-input").fill("One more question")
    page.get_by_test_id("chat-send").click()
    blocked = page.get_by_test_id("budget-blocked")
    expect(blocked).to_contain_text('hard budget "Chat cap"')
    expect(blocked).to_contain_text("can raise it")

    # 5. Reload and find the first conversation by searching its content.
    page.goto("/chat/")
    page.get_by_test_id("chat-search").fill("llamas")
    link = page.get_by_test_id("chat-list").get_by_role("link", name="Say hello to the llamas")
    expect(link).to_be_visible()
    link.click()
    expect(page.get_by_test_id("chat-title")).to_have_text("Say hello to the llamas")
    expect(page.get_by_test_id("answer")).to_have_count(2)

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    assert _no_horizontal_scroll(page)
    shot(page, "phone")
