"""The mailer sends from tasks it owns, and an outbox hands it mail only once a commit stands.

A request never waits on the mail server: how long the server takes, or whether it fails,
must not show in the answer (sign-up and reset answer the same whether or not the address is
registered, in what they say and in how long they take). Failures are logged; the user can ask
for another link.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from lipika.config import Settings
from lipika.db import SessionDep
from lipika.mail.base import Email, EmailSender
from lipika.mail.log import LogSender
from lipika.mail.smtp import SmtpSender

log = structlog.get_logger()

# Builds a message in the mailer's own task (its own database session, say), or decides that
# there is none to send.
Compose = Callable[[], Awaitable[Email | None]]


class Mailer:
    def __init__(self, sender: EmailSender) -> None:
        self.sender = sender
        self._sending: set[asyncio.Task[None]] = set()

    def send(self, email: Email) -> None:
        """Starts delivering `email` and returns at once."""
        self._start(self._deliver(email))

    def send_composed(self, compose: Compose) -> None:
        """Starts building a message and delivering it, if there is one, and returns at once:
        for work whose cost depends on a fact that the answer must not reveal (whether an
        account exists), so that it takes no time in the request."""
        self._start(self._compose_and_deliver(compose))

    def _start(self, sending: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(sending, name="send-email")
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _compose_and_deliver(self, compose: Compose) -> None:
        try:
            email = await compose()
        except Exception as exc:  # noqa: BLE001 - as a failed delivery: logged, not retried
            log.error("email_failed", error=repr(exc))
            return
        if email is not None:
            await self._deliver(email)

    async def _deliver(self, email: Email) -> None:
        try:
            await self.sender.send(email)
        except Exception as exc:  # noqa: BLE001 - a mail failure must not outlive its log line
            log.error("email_failed", to=email.to, subject=email.subject, error=repr(exc))

    async def drain(self) -> None:
        """Waits until every message handed over so far is delivered (or has failed)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self.sender.aclose()


def build_mailer(settings: Settings) -> Mailer:
    if settings.smtp_host:
        return Mailer(SmtpSender(settings))
    if settings.env == "production":
        log.warning("mail_to_log", hint="set LIPIKA_SMTP_HOST; links are only written to the log")
    return Mailer(LogSender())


class Outbox:
    """Mail that a request's unit of work sends: handed to the mailer when the session commits,
    dropped when it rolls back, so nobody is mailed a link the database does not hold."""

    def __init__(self, session: AsyncSession, mailer: Mailer) -> None:
        self._mailer = mailer
        self._pending: list[Email | Compose] = []
        event.listen(session.sync_session, "after_commit", self._hand_over)
        event.listen(session.sync_session, "after_rollback", self._drop)

    def send(self, email: Email) -> None:
        self._pending.append(email)

    def send_composed(self, compose: Compose) -> None:
        """See `Mailer.send_composed`; handed over at the commit like any message."""
        self._pending.append(compose)

    def _hand_over(self, _: Any) -> None:
        pending, self._pending = self._pending, []
        for item in pending:
            if isinstance(item, Email):
                self._mailer.send(item)
            else:
                self._mailer.send_composed(item)

    def _drop(self, _: Any) -> None:
        self._pending.clear()


async def get_outbox(request: Request, session: SessionDep) -> Outbox:
    return Outbox(session, request.state.mailer)


OutboxDep = Annotated[Outbox, Depends(get_outbox)]
