"""Outgoing email: rendered from templates, stored, delivered by a Huey task.

Backends come from MAIL_URL: `console://` (the default: print and keep in the
outbox table), `smtp://user:pass@host:587` (STARTTLS when the server offers
it) / `smtps://…` (TLS from the start), `resend://API_KEY` and
`sendgrid://API_KEY` (their HTTP APIs; `?api_base=` points them elsewhere,
e.g. at the local fakes in tests). Every message, whatever the backend, stays
in the outbox table with its status, for the superadmins' outbox page.
"""
from __future__ import annotations

import json
import smtplib
import ssl
from datetime import timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import parse_qs, unquote, urlparse

import requests
from flask import current_app, render_template

from costguardian import clock
from costguardian.models import OutboxMessage
from costguardian.services import queue


def send_template(to: str, template: str, **context) -> OutboxMessage:
    """Render emails/<template>.{subject,txt,html} and send them to one address."""
    subject = render_template(f"emails/{template}.subject.txt", **context).strip()
    text = render_template(f"emails/{template}.txt", **context)
    html = render_template(f"emails/{template}.html", **context)
    return send_email(to, subject, text, html)


def send_email(to: str, subject: str, text: str, html: str = "") -> OutboxMessage:
    """Store the message and queue its delivery; never sends inside a request."""
    message = OutboxMessage.create(to_address=to, subject=subject[:255], text_body=text, html_body=html)
    queue.enqueue("deliver_email", message.id)
    return message


def deliver(message_id: int) -> None:
    """Send one stored message through the configured backend (the task body
    for account mail). A failure is recorded and re-raised, so Huey retries it."""
    message = OutboxMessage.get_or_none(OutboxMessage.id == message_id)
    if message is None or message.status == "sent":
        return
    transmit(message)


def transmit(message: OutboxMessage) -> None:
    """Hand one message to the configured backend; records the outcome on
    the message and raises on failure."""
    url = current_app.config["MAIL_URL"]
    scheme = urlparse(url).scheme
    try:
        if scheme == "console":
            _print(message)
        elif scheme in ("smtp", "smtps"):
            _send_smtp(url, _build(message))
        elif scheme in HTTP_APIS:
            _send_http(url, message)
        else:
            raise ValueError(f"MAIL_URL scheme {scheme!r} is not supported")
    except Exception as exc:
        message.status, message.error, message.backend = "failed", str(exc)[:2000], scheme
        message.save()
        raise
    message.status, message.error, message.backend, message.sent_at = "sent", "", scheme, clock.now()
    message.save()


def _sender() -> str:
    """MAIL_FROM when the environment sets it, else the console's setting, else the default."""
    from costguardian.services.platform import settings

    return settings.get("mail_from")


def _build(message: OutboxMessage) -> EmailMessage:
    sender = _sender()
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to_address
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip(">"))
    email["Date"] = format_datetime((message.created_at or clock.now()).replace(tzinfo=timezone.utc))
    for name, value in json.loads(message.headers or "{}").items():
        email[name] = value
    email.set_content(message.text_body)
    if message.html_body:
        email.add_alternative(message.html_body, subtype="html")
    return email


def _send_smtp(url: str, email: EmailMessage) -> None:
    parts = urlparse(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    timeout = float(options.get("timeout", 20))
    if parts.scheme == "smtps":
        client = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=timeout,
                                  context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(parts.hostname, parts.port or 587, timeout=timeout)
    with client:
        if parts.scheme == "smtp" and options.get("starttls", "auto") != "0":
            client.ehlo()
            if client.has_extn("starttls"):
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            elif options.get("starttls") == "1":
                raise smtplib.SMTPException("MAIL_URL asks for STARTTLS and the server does not offer it")
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        client.send_message(email)


# --- HTTP APIs (Resend, SendGrid) ----------------------------------------------

HTTP_TIMEOUT = 20  # seconds, connect and read


class MailApiError(RuntimeError):
    """The provider's API refused the message (its status and an excerpt of its answer)."""

    def __init__(self, message: str, status_code: int, excerpt: str):
        super().__init__(message)
        self.status_code, self.excerpt = status_code, excerpt


def _resend(key: str, message: OutboxMessage, headers: dict) -> tuple[str, dict]:
    body = {"from": _sender(), "to": [message.to_address], "subject": message.subject,
            "text": message.text_body}
    if message.html_body:
        body["html"] = message.html_body
    if headers:
        body["headers"] = headers
    return "/emails", body


def _sendgrid(key: str, message: OutboxMessage, headers: dict) -> tuple[str, dict]:
    name, address = parseaddr(_sender())
    sender = {"email": address, **({"name": name} if name else {})}
    content = [{"type": "text/plain", "value": message.text_body}]
    if message.html_body:
        content.append({"type": "text/html", "value": message.html_body})
    body = {"personalizations": [{"to": [{"email": message.to_address}]}], "from": sender,
            "subject": message.subject, "content": content}
    if headers:
        body["headers"] = headers
    return "/v3/mail/send", body


# scheme -> (default API base, request builder)
HTTP_APIS = {
    "resend": ("https://api.resend.com", _resend),
    "sendgrid": ("https://api.sendgrid.com", _sendgrid),
}


def _send_http(url: str, message: OutboxMessage) -> None:
    parts = urlparse(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    # The key is the URL's "host" (resend://re_123) or its password (resend://:re_123@).
    key = unquote(parts.password or parts.netloc.rsplit("@", 1)[-1])
    if not key:
        raise ValueError(f"MAIL_URL {parts.scheme}:// needs the API key: {parts.scheme}://API_KEY")
    default_base, build = HTTP_APIS[parts.scheme]
    path, body = build(key, message, json.loads(message.headers or "{}"))
    base = options.get("api_base", default_base).rstrip("/")
    response = requests.post(base + path, json=body, timeout=float(options.get("timeout", HTTP_TIMEOUT)),
                             headers={"Authorization": f"Bearer {key}", "User-Agent": "CostGuardian"})
    if not 200 <= response.status_code < 300:
        excerpt = " ".join(response.text.split())[:300]
        raise MailApiError(f"{parts.scheme} answered HTTP {response.status_code}: {excerpt}",
                           response.status_code, excerpt)


def _print(message: OutboxMessage) -> None:
    print(
        f"\n----- email (MAIL_URL=console://) -----\nTo: {message.to_address}\n"
        f"Subject: {message.subject}\n\n{message.text_body}\n----- end of email -----\n",
        flush=True,
    )
