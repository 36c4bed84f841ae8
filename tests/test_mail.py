"""Outgoing mail through the real backends: a real SMTP server on 127.0.0.1
(aiosmtpd, tests/fakes/smtp.py) and the console backend. Tasks run inline
(huey.immediate), so delivery happens inside send_email/send_template."""
from __future__ import annotations

import smtplib
from email.utils import parseaddr

import pytest

from costguardian.models import OutboxMessage
from costguardian.services.notifications import mail
from tasks import deliver_email, huey
from tests.fakes.smtp import free_port

TO = "alice@example.com"


@pytest.fixture
def smtp_app(app_ctx, smtp_server, monkeypatch):
    """The app sending through the local SMTP server (restored afterwards)."""
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", smtp_server.url(starttls="0"))
    return app_ctx


@pytest.fixture
def no_leftover_retries():
    """A failed delivery schedules a Huey retry; drop it after the test."""
    yield
    huey.storage.flush_schedule()


def reload(message: OutboxMessage) -> OutboxMessage:
    return OutboxMessage.get_by_id(message.id)


def parts_by_type(message) -> dict[str, str]:
    return {part.get_content_type(): part.get_content()
            for part in message.walk() if not part.is_multipart()}


# --- SMTP ---------------------------------------------------------------------

def test_send_template_over_smtp_delivers_text_and_html(smtp_app, smtp_server, make_user):
    user = make_user(TO, name="Alice")

    message = mail.send_template(user.email, "password_reset", user=user,
                                 link="http://cg.test/reset/TOKEN123", ttl_minutes=60)

    assert len(smtp_server.messages) == 1
    received = smtp_server.messages[0]
    sender = parseaddr(smtp_app.config["MAIL_FROM"])[1]
    assert received.mail_from == sender
    assert received.rcpt_tos == [TO]
    email = received.message
    assert email["From"] == smtp_app.config["MAIL_FROM"]
    assert email["To"] == TO
    assert email["Subject"] == "Reset your Cost Guardian password"
    assert email["Message-ID"].endswith("@" + sender.split("@")[1] + ">")
    assert email.get_content_type() == "multipart/alternative"
    parts = parts_by_type(email)
    assert set(parts) == {"text/plain", "text/html"}
    assert "Hello Alice," in parts["text/plain"]
    assert "http://cg.test/reset/TOKEN123" in parts["text/plain"]
    assert 'href="http://cg.test/reset/TOKEN123"' in parts["text/html"]
    assert "expires in 60 minutes" in parts["text/plain"]

    row = reload(message)
    assert (row.status, row.backend, row.error) == ("sent", "smtp", "")
    assert row.sent_at is not None
    assert row.to_address == TO
    assert row.subject == "Reset your Cost Guardian password"


def test_send_email_without_html_is_a_single_text_part(smtp_app, smtp_server):
    message = mail.send_email(TO, "Plain news", "Just text.\n")

    [received] = smtp_server.messages
    assert received.message.get_content_type() == "text/plain"
    assert received.message.get_content() == "Just text.\n"
    assert received.message["Subject"] == "Plain news"
    assert reload(message).status == "sent"


def test_smtp_credentials_from_the_url_are_decoded_and_used(app_ctx, smtp_server, monkeypatch):
    smtp_server.username, smtp_server.password = "mailer@cg.test", "p@ss:w/rd"
    monkeypatch.setitem(app_ctx.config, "MAIL_URL",
                        f"smtp://mailer%40cg.test:p%40ss%3Aw%2Frd@127.0.0.1:{smtp_server.port}?starttls=0")

    message = mail.send_email(TO, "Authenticated", "Hello")

    [received] = smtp_server.messages
    assert received.login == "mailer@cg.test"
    assert reload(message).status == "sent"


def test_wrong_smtp_credentials_fail_the_message(app_ctx, smtp_server, monkeypatch, no_leftover_retries):
    smtp_server.username, smtp_server.password = "mailer", "right"
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", f"smtp://mailer:wrong@127.0.0.1:{smtp_server.port}?starttls=0")

    message = mail.send_email(TO, "Authenticated", "Hello")

    assert smtp_server.messages == []
    row = reload(message)
    assert row.status == "failed"
    assert "535" in row.error


def test_starttls_auto_sends_in_plain_when_the_server_offers_none(app_ctx, smtp_server, monkeypatch):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", smtp_server.url())  # starttls defaults to auto

    message = mail.send_email(TO, "Auto", "Hello")

    assert len(smtp_server.messages) == 1
    assert reload(message).status == "sent"


def test_starttls_required_but_not_offered_fails(app_ctx, smtp_server, monkeypatch, no_leftover_retries):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", smtp_server.url(starttls="1"))

    message = mail.send_email(TO, "Must be encrypted", "Hello")

    assert smtp_server.messages == []
    row = reload(message)
    assert (row.status, row.backend) == ("failed", "smtp")
    assert "STARTTLS" in row.error
    with pytest.raises(smtplib.SMTPException, match="STARTTLS"):
        mail.deliver(message.id)


def test_unreachable_smtp_server_marks_failed_raises_and_schedules_a_retry(app_ctx, monkeypatch,
                                                                          no_leftover_retries):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", f"smtp://127.0.0.1:{free_port()}?starttls=0&timeout=5")
    huey.storage.flush_schedule()

    message = mail.send_email(TO, "Nobody listens", "Hello", "<p>Hello</p>")

    row = reload(message)
    assert (row.status, row.backend) == ("failed", "smtp")
    assert row.error  # the connection error, for the outbox page
    assert row.sent_at is None
    # The task body re-raises, so Huey keeps the message for a retry ...
    retries = [task for task in huey.scheduled() if task.args == (message.id,)]
    assert len(retries) == 1 and retries[0].name == "deliver_email"
    assert retries[0].retries == 4  # 5 configured, this was the first failure
    # ... and the exception itself reaches whoever runs the task.
    with pytest.raises(OSError):
        mail.deliver(message.id)
    assert reload(message).status == "failed"


def test_a_failed_message_is_delivered_by_a_later_retry(app_ctx, smtp_server, monkeypatch, no_leftover_retries):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", f"smtp://127.0.0.1:{free_port()}?starttls=0")
    message = mail.send_email(TO, "Second time lucky", "Hello")
    assert reload(message).status == "failed"

    monkeypatch.setitem(app_ctx.config, "MAIL_URL", smtp_server.url(starttls="0"))
    deliver_email(message.id)  # what Huey runs when the retry is due

    row = reload(message)
    assert (row.status, row.backend, row.error) == ("sent", "smtp", "")
    assert [m.message["Subject"] for m in smtp_server.messages] == ["Second time lucky"]


def test_a_sent_message_is_not_sent_again(smtp_app, smtp_server):
    message = mail.send_email(TO, "Once", "Hello")

    mail.deliver(message.id)
    deliver_email(message.id)

    assert len(smtp_server.messages) == 1


def test_delivering_a_missing_message_does_nothing(smtp_app, smtp_server):
    mail.deliver(987654)

    assert smtp_server.messages == []


# --- other backends -----------------------------------------------------------

def test_console_backend_prints_and_marks_sent(app_ctx, capsys, monkeypatch):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", "console://")

    message = mail.send_email(TO, "Hello from the console", "Line one\nLine two\n", "<p>x</p>")

    out = capsys.readouterr().out
    assert f"To: {TO}" in out
    assert "Subject: Hello from the console" in out
    assert "Line one\nLine two" in out
    row = reload(message)
    assert (row.status, row.backend, row.error) == ("sent", "console", "")
    assert row.sent_at is not None
    assert row.html_body == "<p>x</p>"


def test_send_template_on_console_renders_subject_and_bodies(app_ctx, capsys, make_user):
    user = make_user(TO)

    message = mail.send_template(TO, "password_reset", user=user, link="http://cg.test/r/abc", ttl_minutes=15)

    row = reload(message)
    assert row.subject == "Reset your Cost Guardian password"
    assert "http://cg.test/r/abc" in row.text_body and "http://cg.test/r/abc" in row.html_body
    assert "Hello alice@example.com," in row.text_body  # display name falls back to the email
    assert "http://cg.test/r/abc" in capsys.readouterr().out


def test_unsupported_scheme_fails_the_message(app_ctx, monkeypatch, no_leftover_retries):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", "pigeon://loft")

    message = mail.send_email(TO, "Coo", "Hello")

    row = reload(message)
    assert (row.status, row.backend) == ("failed", "pigeon")
    assert "pigeon" in row.error
    with pytest.raises(ValueError, match="not supported"):
        mail.deliver(message.id)


def test_long_subjects_are_cut_to_the_column_size(app_ctx, capsys):
    message = mail.send_email(TO, "x" * 300, "Hello")

    assert len(reload(message).subject) == 255


# --- Date header, and the HTTP API backends (local fakes of Resend and SendGrid) ---

def test_smtp_messages_carry_a_date_header(smtp_app, smtp_server):
    from email.utils import parsedate_to_datetime

    mail.send_email(TO, "Dated", "Hello")

    [received] = smtp_server.messages
    assert parsedate_to_datetime(received.message["Date"]).utcoffset().total_seconds() == 0


def test_resend_backend_posts_the_message_as_json(app_ctx, resend_api, monkeypatch):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", resend_api.url())

    message = mail.send_email(TO, "Through Resend", "Text part", "<p>HTML part</p>")

    [body] = resend_api.messages
    assert body == {"from": app_ctx.config["MAIL_FROM"], "to": [TO], "subject": "Through Resend",
                    "text": "Text part", "html": "<p>HTML part</p>"}
    row = reload(message)
    assert (row.status, row.backend, row.error) == ("sent", "resend", "")


def test_sendgrid_backend_posts_text_first_then_html(app_ctx, sendgrid_api, monkeypatch):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", sendgrid_api.url())

    message = mail.send_email(TO, "Through SendGrid", "Text part", "<p>HTML part</p>")

    [body] = sendgrid_api.messages
    assert body == {"personalizations": [{"to": [{"email": TO}]}],
                    "from": {"email": "no-reply@costguardian.example.com", "name": "Cost Guardian"},
                    "subject": "Through SendGrid",
                    "content": [{"type": "text/plain", "value": "Text part"},
                                {"type": "text/html", "value": "<p>HTML part</p>"}]}
    assert reload(message).backend == "sendgrid"


def test_http_api_key_may_be_given_as_the_password(app_ctx, resend_api, monkeypatch):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", f"resend://:{resend_api.api_key}@?api_base={resend_api.base}")

    assert reload(mail.send_email(TO, "Key as password", "Hello")).status == "sent"
    assert len(resend_api.messages) == 1


@pytest.mark.parametrize("kind", ["resend", "sendgrid"])
def test_http_api_refusal_fails_with_status_and_excerpt(kind, app_ctx, resend_api, sendgrid_api, monkeypatch,
                                                        no_leftover_retries):
    api = {"resend": resend_api, "sendgrid": sendgrid_api}[kind]
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", api.url(key="wrong-key"))

    message = mail.send_email(TO, "Refused", "Hello")

    row = reload(message)
    assert (row.status, row.backend) == ("failed", kind)
    assert "invalid api key" in row.error and ("HTTP 401" in row.error or "HTTP 403" in row.error)
    with pytest.raises(mail.MailApiError) as caught:
        mail.deliver(message.id)
    assert caught.value.status_code in (401, 403)


def test_http_api_without_a_key_is_a_configuration_error(app_ctx, monkeypatch, no_leftover_retries):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", "sendgrid://")

    message = mail.send_email(TO, "No key", "Hello")

    assert "needs the API key" in reload(message).error


def test_unreachable_http_api_fails_the_message(app_ctx, monkeypatch, no_leftover_retries):
    monkeypatch.setitem(app_ctx.config, "MAIL_URL", f"resend://k?api_base=http://127.0.0.1:{free_port()}&timeout=3")

    message = mail.send_email(TO, "Nobody listens", "Hello")

    row = reload(message)
    assert row.status == "failed" and "Connection" in row.error
