"""Mail through an SMTP server (aiosmtplib): a connection per message, TLS as configured."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from lipika.config import Settings
from lipika.mail.base import Email, EmailSender


class SmtpSender(EmailSender):
    def __init__(self, settings: Settings) -> None:
        if settings.smtp_host is None:
            raise ValueError("SmtpSender needs LIPIKA_SMTP_HOST")
        self.sender = settings.mail_from
        password = settings.smtp_password
        self.connection = {
            "hostname": settings.smtp_host,
            "port": settings.smtp_port,
            "username": settings.smtp_username,
            "password": password.get_secret_value() if password else None,
            "use_tls": settings.smtp_tls,
            "start_tls": settings.smtp_uses_starttls,
            "timeout": settings.smtp_timeout_seconds,
        }

    async def send(self, email: Email) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = email.to
        message["Subject"] = email.subject
        message.set_content(email.text)
        await aiosmtplib.send(message, **self.connection)
