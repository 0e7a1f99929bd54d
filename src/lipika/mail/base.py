"""The message and the one interface every sender implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Email:
    to: str
    subject: str
    text: str
    link: str | None = None  # the one action the message asks for, if any (the log shows it)


class EmailSender(ABC):
    """Delivers one message or raises; the mailer logs failures and never retries."""

    @abstractmethod
    async def send(self, email: Email) -> None: ...

    async def aclose(self) -> None:  # noqa: B027 - most senders hold nothing open
        """Releases what the sender holds open."""
