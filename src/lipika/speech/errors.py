"""The speech domain's errors: each is an `error` event on a live session (and the close code
after a fatal one), or an HTTP error of the file route."""

from __future__ import annotations

from lipika.errors import LipikaError, NotFound, Unauthorized
from lipika.kit.audio import UnreadableAudio

__all__ = [
    "CredentialsInURL",
    "FrameTooLarge",
    "InvalidTicket",
    "MalformedFrame",
    "MalformedMessage",
    "SpeechModelUnavailable",
    "UnknownControl",
    "UnknownSpeechModel",
    "UnreadableAudio",
]


class CredentialsInURL(LipikaError):
    """A long-lived token in a URL ends up in proxy and server logs: refused, never read."""

    code = "credentials_in_url"


class InvalidTicket(Unauthorized):
    code = "invalid_ticket"


class UnknownSpeechModel(NotFound):
    code = "model_not_found"


class SpeechModelUnavailable(LipikaError):
    status_code = 503
    code = "model_unavailable"
    type = "api_error"
    should_retry = False


class FrameTooLarge(LipikaError):
    status_code = 413
    code = "frame_too_large"


class MalformedFrame(LipikaError):
    code = "malformed_frame"


class MalformedMessage(LipikaError):
    code = "malformed_message"


class UnknownControl(LipikaError):
    code = "unknown_control"
