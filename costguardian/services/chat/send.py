"""Sending a chat message: through the gateway's own proxy (`proxy.handle`,
after `proxy.organization_refusal`), so the call is attributed, admitted
against hard budgets, recorded and priced exactly like an SDK call.

    answer = send.start(org, user, conversation, text)      # the user's message, a pending answer
    for text in send.stream(org, user, answer): ...          # the answer's text as it is generated
    # when the iterator ends — or is closed (the browser left, Stop) — the call
    # is recorded and the answer row holds its text, tokens and the usage event's cost

No API key: the chat calls `handle` with `api_key=None`, as an ingest batch
without a key is recorded (the event has no key; the key pages never show
one). Attribution is by header, as an SDK caller would: `X-CG-User` (the
member's email) and `X-CG-Department` (their department in the
organization); the recorded event is also tagged `source:chat` beside the
gateway's `source:gateway`, so the dashboard can tell the chat's spend apart.
The cost shown under an answer is read back from the recorded usage event
(`event_id` = the gateway request id), never computed here.
"""
from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator

from costguardian import clock
from costguardian.models import ChatMessage, Conversation, Membership, UsageEvent
from costguardian.models.chat import (ASSISTANT, BLOCKED, COMPARE, ERROR, OK, PENDING, STOPPED, STOPPING,
                                      STREAMING, USER)
from costguardian.services.budgets import budgets
from costguardian.services.chat import choices, context, conversations
from costguardian.services.gateway import proxy, ratelimits
from costguardian.services.ops import partitions

log = logging.getLogger(__name__)

CHAT_TAG = "source:chat"
STOP_POLL_SECONDS = 0.3  # how often a streaming answer looks for a Stop (one primary-key read)
MAX_COMPARE = 3


def start(conversation: Conversation, text: str) -> ChatMessage:
    """Save the user's message and a pending answer (streamed by `stream`)."""
    return start_turn(conversation, text)[1]


def start_turn(conversation: Conversation, text: str) -> tuple[ChatMessage, ChatMessage]:
    """(the user's message, its pending answer)."""
    question = conversations.add_user_message(conversation, text)
    return question, conversations.add_pending_answer(conversation, conversation.model)


def start_compare(org, user, models: list[str], settings: conversations.Settings, text: str) \
        -> tuple[Conversation, list[ChatMessage]]:
    """One prompt to two or three models: a compare conversation with one pending answer per model."""
    conversation = conversations.create(org, user, settings, kind=COMPARE)
    conversations.add_user_message(conversation, text)
    group = uuid.uuid4().hex[:12]
    return conversation, [conversations.add_pending_answer(conversation, model, group) for model in models]


def request_stop(answer: ChatMessage) -> None:
    """Stop an answer: the stream sees it within STOP_POLL_SECONDS and ends
    the upstream call; one not started yet is never sent."""
    ChatMessage.update(status=STOPPED).where(ChatMessage.id == answer.id, ChatMessage.status == PENDING).execute()
    ChatMessage.update(status=STOPPING).where(ChatMessage.id == answer.id, ChatMessage.status == STREAMING).execute()


def stream(org, user, answer: ChatMessage, should_stop: Callable[[], bool] | None = None) -> Iterator[str]:
    """The answer's text, piece by piece, as the model generates it. Nothing
    when the answer was already streamed (each is sent once)."""
    claimed = ChatMessage.update(status=STREAMING).where(ChatMessage.id == answer.id,
                                                         ChatMessage.status == PENDING).execute()
    if not claimed:
        return
    answer.status = STREAMING
    turn = _Turn(org, user, answer, should_stop or _stop_flag(answer.id))
    try:
        yield from turn.run()
    finally:
        turn.finish()


def _stop_flag(answer_id: int) -> Callable[[], bool]:
    last = [clock.monotonic()]

    def should_stop() -> bool:
        now = clock.monotonic()
        if now - last[0] < STOP_POLL_SECONDS:
            return False
        last[0] = now
        return ChatMessage.select(ChatMessage.status).where(ChatMessage.id == answer_id).scalar() == STOPPING

    return should_stop


def history(answer: ChatMessage) -> list[tuple[str, str]]:
    """What came before the answer: the user's messages and the earlier
    finished answers (not the columns of a compare), oldest first."""
    rows = (ChatMessage.in_org(answer.organization_id)
            .where(ChatMessage.conversation == answer.conversation_id, ChatMessage.id < answer.id)
            .order_by(ChatMessage.id))
    return [(m.role, m.content) for m in rows
            if m.role == USER or (m.role == ASSISTANT and m.status in (OK, STOPPED) and m.content
                                  and not m.compare_group)]


def attribution_headers(org, user) -> dict[str, str]:
    headers = {"content-type": "application/json", "user-agent": "cost-guardian-chat",
               "x-cg-user": user.email.lower()}
    membership = Membership.of(user, org)
    if membership is not None and membership.department_id:
        headers["x-cg-department"] = membership.department.name
    return headers


@dataclass
class _Seen:
    text: list
    error: str = ""


class _Turn:
    def __init__(self, org, user, answer: ChatMessage, should_stop: Callable[[], bool]):
        self.org, self.user, self.answer, self.should_stop = org, user, answer, should_stop
        self.reply: proxy.Reply | None = None
        self.limits: ratelimits.Admitted | None = None
        self.seen = _Seen([])
        self.stopped = False
        self.outcome = OK
        self.finished = False

    def body(self) -> dict:
        conversation: Conversation = self.answer.conversation
        provider, _, model = self.answer.model.partition("/")
        info = choices.model_info(provider, model)
        prompt = context.build(conversation.system_prompt, history(self.answer),
                               getattr(info, "context_window", None), conversation.max_tokens)
        self.answer.trimmed = prompt.trimmed
        body = {"model": self.answer.model, "messages": prompt.messages, "stream": True,
                "stream_options": {"include_usage": True}}
        if conversation.max_tokens:
            body["max_tokens"] = conversation.max_tokens
        if conversation.temperature is not None:
            body["temperature"] = conversation.temperature
        return body

    def run(self) -> Iterator[str]:
        refusal = proxy.organization_refusal(self.org)
        if refusal:
            self.outcome, self.seen.error = ERROR, refusal[1]
            return
        try:  # the organization's gateway limits count chat calls too (all keys and the chat together)
            self.limits = ratelimits.admit(self.org, None)
        except ratelimits.Limited as exc:
            self.outcome, self.seen.error = ERROR, exc.message
            return
        request_id = proxy.new_request_id()
        self.answer.request_id = request_id
        body = self.body()
        self.answer.save(only=[ChatMessage.request_id, ChatMessage.trimmed])
        self.reply = reply = proxy.handle(self.org, None, "chat.completions", json.dumps(body).encode(),
                                          attribution_headers(self.org, self.user), request_id,
                                          extra_tags=(CHAT_TAG,))
        if isinstance(reply.body, bytes) or reply.status >= 300:
            self.refused(reply)
            return
        for chunk in reply.body:
            for text in self.read(chunk):
                yield text
            if self.seen.error:
                self.outcome = ERROR
                return
            if self.should_stop():
                self.stopped = True
                return

    def read(self, chunk: bytes) -> Iterator[str]:
        for line in chunk.decode("utf-8", errors="replace").splitlines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if not data or data == "[DONE]":
                continue
            try:
                event = json.loads(data)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if isinstance(event.get("error"), dict):
                self.seen.error = str(event["error"].get("message") or "The provider reported an error.")
                continue
            for choice in event.get("choices") or ():
                text = ((choice or {}).get("delta") or {}).get("content")
                if isinstance(text, str) and text:
                    self.seen.text.append(text)
                    yield text

    def refused(self, reply: proxy.Reply) -> None:
        raw = reply.body if isinstance(reply.body, bytes) else b"".join(reply.body)
        try:
            error = json.loads(raw or b"{}").get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        message = error.get("message") if isinstance(error, dict) else None
        code = error.get("code") if isinstance(error, dict) else None
        self.outcome = BLOCKED if code == "budget_exceeded" else ERROR
        if self.outcome == BLOCKED or reply.status < 500:
            self.seen.error = message or f"The call failed (HTTP {reply.status})."
        else:  # the provider (or the way to it) failed: say so, then what it said
            provider = self.answer.model.partition("/")[0] or "The provider"
            self.seen.error = (f"{provider} could not answer (HTTP {reply.status}); nothing was charged. "
                               f"Try again in a moment. {message or ''}").strip()

    def finish(self) -> None:
        """Record the call (the gateway's own finish: usage event, request
        log, reservation released), then complete the answer from the event."""
        if self.finished:
            return
        self.finished = True
        reply, answer = self.reply, self.answer
        if reply is not None and reply.finish is not None:
            try:
                reply.finish()
            except Exception:
                log.exception("recording chat answer %s failed", answer.id)
        if self.limits is not None and self.limits.token_limits and reply is not None:
            self.limits.charge(ratelimits.tokens_of(reply.record))
        if self.outcome == OK and (self.stopped or (reply is not None and _cut_short(reply))):
            self.outcome = STOPPED
        answer.content = "".join(self.seen.text)
        answer.status, answer.error = self.outcome, self.seen.error[:2000]
        if reply is not None and reply.record is not None:
            answer.latency_ms = reply.record.latency_ms
        event = (UsageEvent.select().where(*partitions.event_id_conditions(self.org.id, [answer.request_id])).first()
                 if answer.request_id else None)
        if event is not None:
            answer.input_tokens, answer.output_tokens = event.input_tokens, event.output_tokens
            answer.cached_tokens, answer.cost_nanos = event.cache_read_tokens, event.cost_nanos
        answer.save()
        Conversation.update(updated_at=clock.now()).where(Conversation.id == answer.conversation_id).execute()


def _cut_short(reply: proxy.Reply) -> bool:
    record = reply.record  # the gateway's outcome for a caller that left mid-stream (recording.CANCELLED)
    return record is not None and record.outcome == "cancelled"


# --- what the page shows beside an answer -----------------------------------------------------

@dataclass(frozen=True)
class BudgetLine:
    name: str
    enforcement: str
    limit: int
    remaining: int
    period_label: str


def budget_line(org, user, model: str) -> BudgetLine | None:
    """The budget a chat call with `model` counts against first (the one
    that would block first), with what remains of it this period."""
    provider, _, name = model.partition("/")
    membership = Membership.of(user, org)
    statuses = budgets.budget_status_for(org, user=user.email.lower(), provider=provider or None,
                                         model=name or None, department=membership.department_id if membership
                                         else None, tags=["source:gateway", CHAT_TAG])
    if not statuses:
        return None
    st = statuses[0]
    return BudgetLine(st.budget.name, st.budget.enforcement, st.limit, st.remaining, st.period.label)
