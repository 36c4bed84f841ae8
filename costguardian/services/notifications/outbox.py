"""The outbox: every email Cost Guardian stored, from every organization,
for the superadmins' outbox page (and, with MAIL_URL=console://, the only
place development email can be read)."""
from __future__ import annotations

import json
from dataclasses import dataclass

from costguardian.models import OutboxMessage

STATUSES = ("queued", "sent", "failed")
PER_PAGE = 50


@dataclass
class Filters:
    status: str = ""
    page: int = 1


def parse_filters(args) -> Filters:
    status = args.get("status", "")
    try:
        page = min(max(int(args.get("page", 1)), 1), 100_000)
    except (TypeError, ValueError):
        page = 1
    return Filters(status if status in STATUSES else "", page)


def search(filters: Filters) -> tuple[list[OutboxMessage], bool]:
    query = OutboxMessage.select(OutboxMessage.id, OutboxMessage.to_address, OutboxMessage.subject,
                                 OutboxMessage.status, OutboxMessage.backend, OutboxMessage.error,
                                 OutboxMessage.created_at, OutboxMessage.sent_at)
    if filters.status:
        query = query.where(OutboxMessage.status == filters.status)
    rows = list(query.order_by(OutboxMessage.id.desc())
                .offset((filters.page - 1) * PER_PAGE).limit(PER_PAGE + 1))
    return rows[:PER_PAGE], len(rows) > PER_PAGE


def get(message_id: int) -> OutboxMessage | None:
    return OutboxMessage.get_or_none(OutboxMessage.id == message_id)


def headers_of(message: OutboxMessage) -> dict:
    try:
        value = json.loads(message.headers or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
