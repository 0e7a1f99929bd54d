"""The messages identity sends: each carries one link into the front end."""

from __future__ import annotations

from lipika.mail.base import Email


def verification(to: str, link: str, hours: int) -> Email:
    return Email(
        to=to,
        subject="Confirm your e-mail address",
        text=(
            "Welcome to Lipika. Confirm that this address is yours to start using your account:\n\n"
            f"{link}\n\n"
            f"The link works once, within {hours} hours. If you did not sign up, ignore this "
            "message: the account cannot be used until the address is confirmed.\n"
        ),
        link=link,
    )


def already_registered(to: str, reset_link: str, minutes: int) -> Email:
    return Email(
        to=to,
        subject="You already have an account",
        text=(
            "Someone, perhaps you, tried to sign up with this address, which already has a "
            "Lipika account. If it was you and you have forgotten your password, choose a new "
            f"one here:\n\n{reset_link}\n\n"
            f"The link works once, within {minutes} minutes. Otherwise ignore this message; "
            "nothing has changed.\n"
        ),
        link=reset_link,
    )


def password_reset(to: str, link: str, minutes: int) -> Email:
    return Email(
        to=to,
        subject="Choose a new password",
        text=(
            f"Choose a new Lipika password here:\n\n{link}\n\n"
            f"The link works once, within {minutes} minutes, and signs out every device. "
            "If you did not ask for it, ignore this message; your password stays as it is.\n"
        ),
        link=link,
    )
