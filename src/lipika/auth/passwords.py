"""The password policy: long enough in characters that show, not too long, not guessable.

Guessability is zxcvbn's estimate (dictionaries of common passwords, names and words, keyboard
patterns, repeats, sequences, dates), with the user's own address and name as extra words.
"""

from __future__ import annotations

import asyncio
import threading
import unicodedata

from zxcvbn import zxcvbn

from lipika.auth.errors import WeakPassword

MIN_VISIBLE_CHARACTERS = 10
MAX_CHARACTERS = 128
# zxcvbn's scores run 0-4; 3 is "safely unguessable: moderate protection from an offline
# slow-hash scenario" (about 10^8 guesses and up).
MIN_SCORE = 3

# zxcvbn keeps the user inputs of the current call in a module-level dictionary, so two calls
# at once in different threads would check each password against the other's inputs.
_zxcvbn_lock = threading.Lock()


def weakness(password: str, *, email: str, name: str = "") -> str | None:
    """Why the password is refused, or None if it is acceptable."""
    if len(password) > MAX_CHARACTERS:
        return f"use at most {MAX_CHARACTERS} characters"
    categories = [unicodedata.category(ch) for ch in password]
    if "Cs" in categories:
        return "the password is not valid Unicode text"
    visible = sum(1 for category in categories if category[0] not in "ZC")
    if visible < MIN_VISIBLE_CHARACTERS:
        return (
            f"use at least {MIN_VISIBLE_CHARACTERS} characters that are not spaces "
            "or control characters"
        )
    words = name.split()
    user_inputs = [email, email.partition("@")[0], "".join(words), *words]
    with _zxcvbn_lock:
        estimate = zxcvbn(password, user_inputs=user_inputs, max_length=MAX_CHARACTERS)
    if estimate["score"] < MIN_SCORE:
        warning = estimate["feedback"]["warning"]
        return warning or "it is too easy to guess; add another uncommon word or two"
    return None


async def require_strong_password(password: str, *, email: str, name: str = "") -> None:
    """Raises WeakPassword with the reason. Runs off the event loop (zxcvbn takes milliseconds
    of CPU, up to tens of them for long passwords)."""
    reason = await asyncio.to_thread(weakness, password, email=email, name=name)
    if reason is not None:
        raise WeakPassword(reason)
