"""A member's conversations. Every query is scoped to the organization AND
the member: nobody else — an owner or admin included — reads a conversation's
content; the costs are in usage like any other call (tag `source:chat`)."""
from __future__ import annotations

from dataclasses import dataclass

from peewee import fn

from costguardian import clock
from costguardian.models import ChatMessage, Conversation
from costguardian.models.chat import ASSISTANT, CHAT, COMPARE, PENDING, USER
from costguardian.services.errors import ValidationError

TITLE_CHARS = 80
MAX_TITLE = 200
MAX_SYSTEM_PROMPT = 20_000
MAX_MESSAGE = 100_000
MAX_ANSWER_TOKENS = 200_000
PAGE = 50


def title_from(text: str) -> str:
    """The first line of the first message, shortened at a word."""
    line = " ".join((text or "").split())
    if len(line) <= TITLE_CHARS:
        return line or "New conversation"
    cut = line[:TITLE_CHARS].rsplit(" ", 1)[0] or line[:TITLE_CHARS]
    return cut + "…"


def list_for(org, user, query: str = "") -> list[Conversation]:
    """The member's conversations, the latest first; `query` matches the
    title or any message's content (case-insensitive)."""
    found = Conversation.of_user(org, user)
    query = (query or "").strip()
    if query:
        in_messages = (ChatMessage.select(ChatMessage.conversation)
                       .where(ChatMessage.organization == org, ChatMessage.content.contains(query)))
        found = found.where(Conversation.title.contains(query) | Conversation.id.in_(in_messages))
    return list(found.order_by(Conversation.updated_at.desc(), Conversation.id.desc()).limit(PAGE))


def get(org, user, conversation_id) -> Conversation | None:
    """The member's own conversation, or None (someone else's answers 404)."""
    found = Conversation.get_in_org(org, conversation_id)
    return found if found is not None and found.user_id == user.id else None


def message(org, user, message_id) -> ChatMessage | None:
    found = ChatMessage.get_in_org(org, message_id)
    if found is None or found.conversation.user_id != user.id:
        return None
    return found


def messages(conversation: Conversation) -> list[ChatMessage]:
    return list(ChatMessage.in_org(conversation.organization_id).where(ChatMessage.conversation == conversation)
                .order_by(ChatMessage.id))


@dataclass(frozen=True)
class Settings:
    model: str
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int | None = None


def parse_settings(data, allowed: set[str]) -> Settings:
    """The picker's form: a model the organization's credentials allow,
    temperature 0–2, max tokens 1–200,000; ValidationError with field messages."""
    errors: dict[str, str] = {}
    model = (data.get("model") or "").strip()
    if not model:
        errors["model"] = "Choose a model."
    elif model not in allowed:
        errors["model"] = "This model is not available: your organization's provider keys do not allow it."
    system_prompt = (data.get("system_prompt") or "").strip()
    if len(system_prompt) > MAX_SYSTEM_PROMPT:
        errors["system_prompt"] = f"At most {MAX_SYSTEM_PROMPT:,} characters."
    temperature = _number(data.get("temperature"), float, 0, 2, "temperature", errors)
    max_tokens = _number(data.get("max_tokens"), int, 1, MAX_ANSWER_TOKENS, "max_tokens", errors)
    if errors:
        raise ValidationError(errors)
    return Settings(model, system_prompt, temperature, max_tokens)


def _number(raw, kind, low, high, name: str, errors: dict):
    raw = (raw or "").strip() if isinstance(raw, str) else raw
    if raw in (None, ""):
        return None
    try:
        value = kind(raw)
    except (TypeError, ValueError):
        errors[name] = "Enter a number." if kind is float else "Enter a whole number."
        return None
    if not low <= value <= high:
        errors[name] = f"Between {low} and {high:,}."
        return None
    return value


def parse_text(text) -> str:
    text = (text or "").strip()
    if not text:
        raise ValidationError({"content": "Write a message."})
    if len(text) > MAX_MESSAGE:
        raise ValidationError({"content": f"At most {MAX_MESSAGE:,} characters."})
    return text


def create(org, user, settings: Settings, kind: str = CHAT) -> Conversation:
    return Conversation.create(organization=org, user=user, kind=kind, model=settings.model,
                               system_prompt=settings.system_prompt, temperature=settings.temperature,
                               max_tokens=settings.max_tokens)


def update_settings(conversation: Conversation, settings: Settings) -> Conversation:
    conversation.model, conversation.system_prompt = settings.model, settings.system_prompt
    conversation.temperature, conversation.max_tokens = settings.temperature, settings.max_tokens
    conversation.updated_at = clock.now()
    conversation.save()
    return conversation


def rename(conversation: Conversation, title: str) -> Conversation:
    title = " ".join((title or "").split())
    if not title:
        raise ValidationError({"title": "Give the conversation a title."})
    if len(title) > MAX_TITLE:
        raise ValidationError({"title": f"At most {MAX_TITLE} characters."})
    conversation.title = title
    conversation.save(only=[Conversation.title])
    return conversation


def delete(conversation: Conversation) -> None:
    conversation.delete_instance(recursive=True)


def add_user_message(conversation: Conversation, text: str) -> ChatMessage:
    first = not ChatMessage.in_org(conversation.organization_id).where(
        ChatMessage.conversation == conversation).exists()
    if first:
        conversation.title = title_from(text)
    conversation.updated_at = clock.now()
    conversation.save()
    return ChatMessage.create(organization=conversation.organization_id, conversation=conversation, role=USER,
                              content=text)


def add_pending_answer(conversation: Conversation, model: str, compare_group: str = "") -> ChatMessage:
    return ChatMessage.create(organization=conversation.organization_id, conversation=conversation, role=ASSISTANT,
                              model=model, status=PENDING, compare_group=compare_group)


def total_nanos(conversation: Conversation) -> int:
    return (ChatMessage.in_org(conversation.organization_id, fn.COALESCE(fn.SUM(ChatMessage.cost_nanos), 0))
            .where(ChatMessage.conversation == conversation).scalar() or 0)


def is_compare(conversation: Conversation) -> bool:
    return conversation.kind == COMPARE
