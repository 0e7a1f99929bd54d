"""The SMTP sender against a real SMTP server (aiosmtpd on a free loopback port), and the
mailer's promise: a request never waits on delivery, failures are logged, shutdown drains."""

from __future__ import annotations

import asyncio
import email
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import structlog
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from lipika.config import Settings
from lipika.mail.base import Email, EmailSender
from lipika.mail.log import LogSender
from lipika.mail.mailer import Mailer, build_mailer
from lipika.mail.smtp import SmtpSender

MESSAGE = Email(
    to="ana@example.com",
    subject="Confirm your e-mail address",
    text="Open http://localhost:3000/verify-email?token=abc\n",
    link="http://localhost:3000/verify-email?token=abc",
)


@dataclass
class Inbox:
    """What the SMTP server received, and the credentials it accepts."""

    port: int
    username: str = "mailer"
    password: str = "smtp secret"
    received: list[Envelope] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        self.received.append(envelope)
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        ok = isinstance(auth_data, LoginPassword) and (
            auth_data.login.decode(),
            auth_data.password.decode(),
        ) == (self.username, self.password)
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    def settings(self, **overrides) -> Settings:  # noqa: ANN003
        values = {
            "smtp_host": "127.0.0.1",
            "smtp_port": self.port,
            "smtp_username": self.username,
            "smtp_password": self.password,
            "smtp_starttls": False,
            "smtp_timeout_seconds": 5,
            "mail_from": "Lipika <no-reply@lipika.test>",
            **overrides,
        }
        return Settings(_env_file=None, **values)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    inbox = Inbox(port=0)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(inbox, authenticator=inbox.authenticate, auth_require_tls=False),
        host="127.0.0.1",
        port=0,
    )
    inbox.port = server.sockets[0].getsockname()[1]
    try:
        yield inbox
    finally:
        server.close()
        await server.wait_closed()


async def test_the_smtp_sender_delivers_over_a_real_connection(inbox: Inbox) -> None:
    sender = SmtpSender(inbox.settings())
    await sender.send(MESSAGE)
    [envelope] = inbox.received
    assert envelope.mail_from == "no-reply@lipika.test"
    assert envelope.rcpt_tos == ["ana@example.com"]
    parsed = email.message_from_bytes(envelope.content)
    assert parsed["From"] == "Lipika <no-reply@lipika.test>"
    assert parsed["To"] == "ana@example.com"
    assert parsed["Subject"] == "Confirm your e-mail address"
    assert parsed.get_payload(decode=True).decode().replace("\r\n", "\n") == MESSAGE.text
    assert inbox.logins == ["mailer"]


async def test_the_settings_choose_the_sender(inbox: Inbox) -> None:
    assert isinstance(build_mailer(inbox.settings()).sender, SmtpSender)
    assert isinstance(build_mailer(Settings(_env_file=None)).sender, LogSender)


async def test_a_refused_login_is_logged_and_nothing_is_sent(inbox: Inbox) -> None:
    mailer = Mailer(SmtpSender(inbox.settings(smtp_password="wrong")))
    with structlog.testing.capture_logs() as logs:
        mailer.send(MESSAGE)
        await mailer.aclose()
    assert inbox.received == []
    [failure] = [entry for entry in logs if entry["event"] == "email_failed"]
    assert failure["to"] == "ana@example.com" and failure["log_level"] == "error"


async def test_the_mailer_returns_at_once_and_drains_at_shutdown() -> None:
    class Slow(EmailSender):
        def __init__(self) -> None:
            self.release = asyncio.Event()
            self.sent: list[Email] = []

        async def send(self, email: Email) -> None:
            await self.release.wait()
            self.sent.append(email)

    sender = Slow()
    mailer = Mailer(sender)
    mailer.send(MESSAGE)  # returns while the server "takes its time"
    assert sender.sent == []
    closing = asyncio.create_task(mailer.aclose())
    await asyncio.sleep(0)
    assert not closing.done()  # shutdown waits for what is in flight
    sender.release.set()
    await closing
    assert sender.sent == [MESSAGE]


async def test_the_log_sender_shows_the_link() -> None:
    with structlog.testing.capture_logs() as logs:
        await LogSender().send(MESSAGE)
    assert logs == [
        {
            "event": "email",
            "log_level": "info",
            "to": "ana@example.com",
            "subject": "Confirm your e-mail address",
            "link": MESSAGE.link,
        }
    ]


async def test_a_composed_message_is_built_and_sent_by_the_mailer() -> None:
    """Work that depends on whether an account exists runs in the mailer's task, after the
    answer: a message, no message, or a failure that is logged."""

    class Keeping(EmailSender):
        def __init__(self) -> None:
            self.sent: list[Email] = []

        async def send(self, email: Email) -> None:
            self.sent.append(email)

    async def message() -> Email:
        return MESSAGE

    async def nothing() -> None:
        return None

    async def broken() -> Email:
        raise RuntimeError("database gone")

    sender = Keeping()
    mailer = Mailer(sender)
    with structlog.testing.capture_logs() as logs:
        for compose in (message, nothing, broken):
            mailer.send_composed(compose)
        assert sender.sent == []  # nothing ran inside the caller
        await mailer.aclose()
    assert sender.sent == [MESSAGE]
    assert [(e["event"], e["error"]) for e in logs] == [
        ("email_failed", "RuntimeError('database gone')")
    ]
