"""The message an invitee receives."""

from __future__ import annotations

from lipika.mail.base import Email


def invitation(to: str, workspace: str, inviter: str, role: str, link: str, days: int) -> Email:
    return Email(
        to=to,
        subject=f"You are invited to {workspace} on Lipika",
        text=(
            f"{inviter} invited you to the workspace {workspace} as {role}. Sign in with this "
            f"address (or sign up with it and confirm it) to accept or decline:\n\n{link}\n\n"
            f"The invitation is open for {days} days.\n"
        ),
        link=link,
    )
