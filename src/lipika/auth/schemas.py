from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator


def _normalise_email(value: str) -> str:
    return value.strip().lower()


# Passwords are bounded here only against absurd payloads; the policy (auth/passwords.py)
# refuses what it must with 400 `weak_password` and a reason.
Password = Annotated[str, Field(max_length=1024)]
EmailToken = Annotated[str, Field(min_length=1, max_length=200)]


class SignupRequest(BaseModel):
    email: EmailStr
    password: Password
    name: str = Field("", max_length=200)

    _email = field_validator("email")(_normalise_email)


class EmailRequest(BaseModel):
    email: EmailStr

    _email = field_validator("email")(_normalise_email)


class VerifyEmailRequest(BaseModel):
    token: EmailToken


class PasswordResetConfirm(BaseModel):
    token: EmailToken
    password: Password


class Accepted(BaseModel):
    """The same answer whatever the address: it never tells whether an account exists."""

    status: Literal["verification_sent", "reset_sent"]


class LoginRequest(BaseModel):
    email: EmailStr
    password: str = Field(min_length=1, max_length=128)

    _email = field_validator("email")(_normalise_email)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutRequest(BaseModel):
    all_sessions: bool = False


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    name: str
    created_at: datetime
    email_verified_at: datetime | None


class TokenPair(BaseModel):
    token_type: str = "bearer"
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int


class AuthResponse(TokenPair):
    user: UserOut
