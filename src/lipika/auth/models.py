from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from lipika.db import Base, CreatedAtMixin, IdMixin, str_enum, utcnow


class User(IdMixin, CreatedAtMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    # Set when a link mailed to the address came back: until then the address is only a claim.
    email_verified_at: Mapped[datetime | None]

    @property
    def verified(self) -> bool:
        return self.email_verified_at is not None


class AuthSession(IdMixin, CreatedAtMixin, Base):
    """One login. Access tokens name it (`sid`), so revoking it refuses them at once."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    revoked_at: Mapped[datetime | None]


class RefreshToken(IdMixin, CreatedAtMixin, Base):
    """A single-use refresh token; presenting a used one again revokes its whole session."""

    __tablename__ = "refresh_tokens"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class TokenPurpose(enum.StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"


class EmailToken(IdMixin, CreatedAtMixin, Base):
    """A secret mailed to the user's address: presenting it proves the mailbox. Stored only as a
    hash, it expires, and it works once (`used_at`)."""

    __tablename__ = "email_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[TokenPurpose] = mapped_column(str_enum(TokenPurpose, "email_token_purpose"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]


class Operator(Base):
    """A platform operator (may mint credits over HTTP), named by `lipika operators add`."""

    __tablename__ = "operators"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    added_at: Mapped[datetime] = mapped_column(default=utcnow)
    note: Mapped[str] = mapped_column(String(200), default="")
