"""The chat: a member's own conversations with the organization's models,
every message sent through the gateway's own proxy (the same admission,
recording and attribution as an SDK call, tagged `source:chat`).

Others may import: `conversations` (a member's conversations: list, search,
create, rename, delete, totals), `choices` (the model picker: what the
organization's credentials allow, with catalog prices), `send` (starting a
turn and streaming its answer), `render` (an answer's Markdown, sanitized).
`context` (the history that fits the model's context window) is send's own.
"""
__all__ = ["choices", "conversations", "render", "send"]
