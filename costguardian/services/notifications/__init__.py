"""Telling people: in-app notifications, email and webhooks.

Others may import: `notify` (`notify()` is the one entry point for every
event), `types` (the event registry), `mail` (account mail such as password
resets), `webhooks` (endpoints and their log), `deliveries` (the retrying
delivery engine the tasks run), `templates` (per-organization overrides),
`email` (rendering and digests) and `outbox` (the dev outbox).
`webhook_urls` is the SSRF guard used by webhooks.
"""
__all__ = ["deliveries", "email", "mail", "notify", "outbox", "templates", "types", "webhooks"]
