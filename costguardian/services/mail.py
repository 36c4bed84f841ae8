"""Outgoing email: rendered from templates, stored, delivered by a Huey task.

Backends come from MAIL_URL: `console://` (the default: print and keep in the
outbox table) or `smtp://user:pass@host:587` (STARTTLS when the server offers
it) / `smtps://…` (TLS from the start). The notification issue will add more.
"""
from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import parse_qs, unquote, urlparse

from flask import current_app, render_template

from costguardian.models import OutboxMessage, utcnow


def send_template(to: str, template: str, **context) -> OutboxMessage:
    """Render emails/<template>.{subject,txt,html} and send them to one address."""
    subject = render_template(f"emails/{template}.subject.txt", **context).strip()
    text = render_template(f"emails/{template}.txt", **context)
    html = render_template(f"emails/{template}.html", **context)
    return send_email(to, subject, text, html)


def send_email(to: str, subject: str, text: str, html: str = "") -> OutboxMessage:
    """Store the message and queue its delivery; never sends inside a request."""
    from tasks import deliver_email

    message = OutboxMessage.create(to_address=to, subject=subject[:255], text_body=text, html_body=html)
    deliver_email(message.id)
    return message


def deliver(message_id: int) -> None:
    """Send one stored message through the configured backend (the task body).
    A failure is recorded and re-raised, so Huey retries it."""
    message = OutboxMessage.get_or_none(OutboxMessage.id == message_id)
    if message is None or message.status == "sent":
        return
    url = current_app.config["MAIL_URL"]
    scheme = urlparse(url).scheme
    try:
        if scheme == "console":
            _print(message)
        elif scheme in ("smtp", "smtps"):
            _send_smtp(url, _build(message))
        else:
            raise ValueError(f"MAIL_URL scheme {scheme!r} is not supported")
    except Exception as exc:
        message.status, message.error, message.backend = "failed", str(exc)[:2000], scheme
        message.save()
        raise
    message.status, message.error, message.backend, message.sent_at = "sent", "", scheme, utcnow()
    message.save()


def _build(message: OutboxMessage) -> EmailMessage:
    sender = current_app.config["MAIL_FROM"]
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to_address
    email["Subject"] = message.subject
    email["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1].strip(">"))
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


def _print(message: OutboxMessage) -> None:
    print(
        f"\n----- email (MAIL_URL=console://) -----\nTo: {message.to_address}\n"
        f"Subject: {message.subject}\n\n{message.text_body}\n----- end of email -----\n",
        flush=True,
    )
