"""Why an identity request was refused: each refusal has its own stable code."""

from __future__ import annotations

from lipika.errors import BadRequest, Forbidden, Unauthorized


class InvalidCredentials(Unauthorized):
    """A wrong password, an unknown address, and an unverified one look the same from outside."""

    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("email or password is incorrect, or the address is not verified yet")


class UnverifiedLogin(InvalidCredentials):
    """The right password for an unverified address: refused like a wrong one, but the fresh
    verification link it mails must be kept."""

    keep_changes = True


class RefreshTokenReused(Unauthorized):
    """A used refresh token came back: it was stolen or replayed, so its session is revoked."""

    code = "refresh_token_reused"
    keep_changes = True


class SessionOfUnverifiedAddress(Unauthorized):
    """A refresh for a login whose address was never verified (it began before verification
    existed): the login ends, and logging in again mails the link."""

    code = "session_revoked"
    keep_changes = True

    def __init__(self) -> None:
        super().__init__("this login has ended: verify your address, then log in again")


class InvalidEmailToken(BadRequest):
    code = "invalid_token"

    def __init__(self) -> None:
        super().__init__("this link is invalid, expired or already used; ask for a new one")


class WeakPassword(BadRequest):
    code = "weak_password"

    def __init__(self, reason: str) -> None:
        super().__init__(f"choose a stronger password: {reason}", reason=reason)


class EmailNotVerified(Forbidden):
    code = "email_not_verified"

    def __init__(self, action: str) -> None:
        super().__init__(f"verify your e-mail address before you {action}")
