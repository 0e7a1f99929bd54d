"""The default sender: writes each message to the log instead of mailing it.

With no SMTP server configured (the embedded quick start), a new user reads their
verification link from the server's log.
"""

from __future__ import annotations

import structlog

from lipika.mail.base import Email, EmailSender

log = structlog.get_logger()


class LogSender(EmailSender):
    async def send(self, email: Email) -> None:
        log.info("email", to=email.to, subject=email.subject, link=email.link)
