"""A real SMTP server on 127.0.0.1 (aiosmtpd) that keeps what it receives."""
from __future__ import annotations

import email
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.policy import default as default_policy

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    """One message as the server got it: the envelope and the parsed message."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage  # parsed, with "\n" line ends
    login: str | None  # the user that authenticated on the session, if any


class _Recorder:
    def __init__(self, server: "FakeSMTPServer"):
        self.server = server

    async def handle_DATA(self, smtp, session, envelope):
        raw = (envelope.original_content or envelope.content).replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(raw, policy=default_policy)
        login = session.auth_data if session.authenticated else None
        with self.server.lock:
            self.server.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), parsed, login))
        return "250 Message accepted for delivery"


@dataclass
class FakeSMTPServer:
    """Plain SMTP (no STARTTLS offered). AUTH PLAIN/LOGIN accepts exactly
    `username`/`password` when they are set."""

    host: str = "127.0.0.1"
    port: int = 0
    username: str | None = None
    password: str | None = None
    messages: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> "FakeSMTPServer":
        self.port = self.port or free_port()
        self._controller = Controller(
            _Recorder(self), hostname=self.host, port=self.port,
            authenticator=self._authenticate, auth_require_tls=False,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        if not isinstance(auth_data, LoginPassword) or self.username is None:
            return AuthResult(success=False, handled=False)
        ok = (auth_data.login.decode() == self.username and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data.login.decode() if ok else None)

    def url(self, **options: str) -> str:
        """A MAIL_URL for this server (credentials added by the caller if needed)."""
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"smtp://{self.host}:{self.port}" + (f"?{query}" if query else "")

    def clear(self) -> None:
        with self.lock:
            self.messages.clear()
            self.username = self.password = None
