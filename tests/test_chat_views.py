"""The chat's pages: permissions, a member's own conversations, sending and
streaming through the page's endpoints, rename/delete/search, a hard budget
shown in the conversation, compare, and the sanitized Markdown."""
from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from costguardian.models import ChatMessage, Conversation, UsageEvent
from costguardian.services.budgets import budgets
from costguardian.services.chat import render
from tests.chat_support import chat_org  # noqa: F401  (fixture)
from tests.support import SYSTEM, Client, add_member


def _client(app, user) -> Client:
    client = Client(app)
    client.sign_in(user.email)
    return client


def _stream(client, answer_id) -> str:
    response = client.post(f"/chat/messages/{answer_id}/stream", htmx=True, buffered=True)  # read in its context
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    return response.get_data(as_text=True)


def _create(client, content="Hello there", model="openai/gpt-4o", **extra) -> Conversation:
    response = client.post("/chat/", data={"model": model, "content": content, **extra})
    assert response.status_code in (302, 204), response.get_data(as_text=True)
    return Conversation.select().order_by(Conversation.id.desc()).first()


def test_the_page_offers_the_allowed_models_grouped_with_prices(app, chat_org):
    html = _client(app, chat_org.member).get("/chat/").get_data(as_text=True)
    assert '<optgroup label="OpenAI">' in html and '<optgroup label="Anthropic">' in html
    assert 'value="openai/gpt-4o"' in html and "gpt-4o — in $2.5 · out $10 /1M" in html
    assert 'src="/static/js/chat.js"' in html


def test_a_viewer_may_not_chat(app, chat_org, make_user):
    viewer = make_user("vic@acme.com")
    add_member(chat_org.org, viewer, "viewer")
    client = _client(app, viewer)
    assert client.get("/chat/").status_code == 403
    assert client.post("/chat/", data={"model": "openai/gpt-4o", "content": "hi"}).status_code == 403


def test_send_stream_and_see_the_cost_of_the_recorded_event(app, chat_org):
    client = _client(app, chat_org.member)
    conversation = _create(client, "Say hello")
    page = client.get(f"/chat/{conversation.id}").get_data(as_text=True)
    [answer_id] = re.findall(r'data-stream-url="/chat/messages/(\d+)/stream"', page)
    body = _stream(client, answer_id)
    deltas = re.findall(r"event: delta\ndata: (.*)\n\n", body)
    assert len(deltas) > 3 and "event: done" in body
    [event] = UsageEvent.in_org(chat_org.org)
    answer = ChatMessage.get_by_id(int(answer_id))
    assert answer.cost_nanos == event.cost_nanos
    page = client.get(f"/chat/{conversation.id}").get_data(as_text=True)
    assert render.exact_usd(event.cost_nanos) in page and "Hello from the fake upstream" in page
    assert f"{event.output_tokens:,} out" in page and "No budget covers these calls." in page
    assert _stream(client, answer_id).count("event: delta") == 0  # streamed once


def test_a_second_message_is_an_htmx_fragment_and_bad_input_is_422(app, chat_org):
    client = _client(app, chat_org.member)
    conversation = _create(client)
    response = client.post(f"/chat/{conversation.id}/messages", data={"model": "openai/gpt-4o-mini",
                                                                      "content": "Next"}, htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and "Next" in html and "data-stream-url" in html
    assert Conversation.get_by_id(conversation.id).model == "openai/gpt-4o-mini"
    bad = client.post(f"/chat/{conversation.id}/messages", data={"model": "openai/not-allowed", "content": "",
                                                                 "temperature": "9"}, htmx=True)
    assert bad.status_code == 422 and bad.headers["HX-Retarget"] == "#chat-composer"
    text = bad.get_data(as_text=True)
    assert "provider keys do not allow it" in text and "Write a message." in text and "Between 0 and 2" in text


def test_a_hard_budget_shows_a_readable_message_not_an_error_page(app, chat_org):
    budgets.create(chat_org.org, SYSTEM, {"name": "Chat cap", "amount_usd": "0.000001", "enforcement": "hard"})
    client = _client(app, chat_org.member)
    conversation = _create(client)
    answer = ChatMessage.select().where(ChatMessage.role == "assistant").get()
    body = _stream(client, answer.id)
    assert "event: done" in body and "Not sent: a hard budget has no room." in body and "Chat cap" in body
    page = client.get(f"/chat/{conversation.id}").get_data(as_text=True)
    assert 'data-testid="budget-blocked"' in page and "can raise it" in page
    assert "hard budget “Chat cap”" in page


def test_conversations_are_private_to_their_author(app, chat_org):
    member_client = _client(app, chat_org.member)
    conversation = _create(member_client, "The member's secret")
    answer = ChatMessage.select().where(ChatMessage.role == "assistant").get()
    owner = _client(app, chat_org.owner)
    assert owner.get(f"/chat/{conversation.id}").status_code == 404
    assert owner.post(f"/chat/messages/{answer.id}/stream", htmx=True, buffered=True).status_code == 404
    assert owner.get(f"/chat/messages/{answer.id}").status_code == 404
    assert owner.post(f"/chat/{conversation.id}/rename", data={"title": "x"}, htmx=True).status_code == 404
    assert owner.post(f"/chat/{conversation.id}/delete", htmx=True).status_code == 404
    assert "secret" not in owner.get("/chat/").get_data(as_text=True)
    assert "secret" not in owner.get("/chat/conversations?q=secret", htmx=True).get_data(as_text=True)


def test_rename_search_and_delete(app, chat_org):
    client = _client(app, chat_org.member)
    conversation = _create(client, "About llamas")
    _create(client, "About alpacas")
    found = client.get("/chat/conversations?q=llama", htmx=True).get_data(as_text=True)
    assert "About llamas" in found and "alpacas" not in found
    renamed = client.post(f"/chat/{conversation.id}/rename", data={"title": "Camelids"}, htmx=True)
    assert renamed.status_code == 200 and "Camelids" in renamed.get_data(as_text=True)
    assert client.post(f"/chat/{conversation.id}/rename", data={"title": " "}, htmx=True).status_code == 422
    assert "Camelids" in client.get("/chat/conversations?q=llamas", htmx=True).get_data(as_text=True)  # content
    response = client.post(f"/chat/{conversation.id}/delete", htmx=True)
    assert response.headers["HX-Redirect"] == "/chat/"
    assert Conversation.get_or_none(Conversation.id == conversation.id) is None
    assert not ChatMessage.select().where(ChatMessage.conversation == conversation.id).exists()


def test_stop_before_the_stream_starts_means_nothing_is_sent(app, chat_org):
    client = _client(app, chat_org.member)
    _create(client)
    answer = ChatMessage.select().where(ChatMessage.role == "assistant").get()
    assert client.post(f"/chat/messages/{answer.id}/stop", htmx=True).status_code == 204
    assert "event: delta" not in _stream(client, answer.id)
    assert chat_org.upstream.requests == []


def test_compare_two_models_side_by_side(app, chat_org):
    client = _client(app, chat_org.member)
    assert client.post("/chat/compare", data={"models": ["openai/gpt-4o"], "content": "x"}).status_code == 422
    response = client.post("/chat/compare", data={"models": ["openai/gpt-4o", "anthropic/claude-sonnet-4-5-20250929",
                                                              ""], "content": "Which is faster?",
                                                   "max_tokens": "60"})
    assert response.status_code == 302
    conversation = Conversation.select().order_by(Conversation.id.desc()).first()
    assert conversation.kind == "compare"
    page = client.get(f"/chat/{conversation.id}").get_data(as_text=True)
    assert page.count('data-testid="compare-columns"') == 1
    ids = re.findall(r'data-stream-url="/chat/messages/(\d+)/stream"', page)
    assert len(ids) == 2
    for answer_id in ids:
        _stream(client, answer_id)
    events = {e.event_id: e for e in UsageEvent.in_org(chat_org.org)}
    for answer in ChatMessage.select().where(ChatMessage.id.in_([int(i) for i in ids])):
        assert answer.cost_nanos == events[answer.request_id].cost_nanos and answer.latency_ms is not None
    page = client.get(f"/chat/{conversation.id}").get_data(as_text=True)
    assert page.count('data-testid="answer-cost"') == 2


@pytest.mark.parametrize("answer", [
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    '<a href="javascript:alert(1)">x</a>',
    "<img src=x onerror=alert(1)>",
    "[x](JaVaScRiPt:alert(1))",
    '<iframe src="https://evil.example"></iframe>',
])
def test_a_model_answer_is_rendered_inert(answer):
    elements = _elements(str(render.markdown(answer)))
    assert not [tag for tag, _ in elements if tag in ("script", "img", "iframe")]
    for _, attrs in elements:
        assert not [name for name in attrs if name.startswith("on")]
        assert not (attrs.get("href") or "").strip().lower().startswith("javascript")


def _elements(html: str) -> list[tuple[str, dict]]:
    """Every element a browser would build from `html` (text that merely looks like a tag is not one)."""
    found = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, dict(attrs)))

    Collect().feed(html)
    return found


def test_markdown_keeps_code_blocks_escaped_and_links_safe():
    html = str(render.markdown("Use `x < y`:\n\n```python\nprint('<b>hi</b>')\n```\n\n[docs](https://example.com)"))
    assert "<code>x &lt; y</code>" in html
    assert '<pre><code class="language-python">print(\'&lt;b&gt;hi&lt;/b&gt;\')' in html
    assert '<a href="https://example.com" rel="noopener noreferrer nofollow">docs</a>' in html


def test_a_trimmed_history_shows_a_note_under_the_answer(app, chat_org):
    client = _client(app, chat_org.member)
    conversation = _create(client, "x" * 99_000, max_tokens="1000")
    first = ChatMessage.select().where(ChatMessage.role == "assistant").get()
    _stream(client, first.id)
    for _ in range(4):  # about 33,000 tokens each: four do not fit gpt-4o's 128,000 with the answer's room
        client.post(f"/chat/{conversation.id}/messages", data={"model": "openai/gpt-4o", "max_tokens": "1000",
                                                               "content": "y" * 99_000}, htmx=True)
    last = ChatMessage.select().where(ChatMessage.role == "assistant").order_by(ChatMessage.id.desc()).get()
    body = _stream(client, last.id)
    assert "left out to fit the model" in body  # the note, in the finished answer's HTML
    assert ChatMessage.get_by_id(last.id).trimmed > 0
