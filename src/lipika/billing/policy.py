"""The published charge policy: what each outcome of a paid operation costs the user.

One table, served at `GET /v1/billing/charge-policy` and in docs/charge-policy.md, and the only
place the meter looks when it settles. Tests hold every row to the code.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    SUCCESS = "success"
    PROVIDER_ERROR_BEFORE_OUTPUT = "provider_error_before_output"
    PROVIDER_ERROR_MID_OUTPUT = "provider_error_mid_output"
    PROVIDER_TIMEOUT = "provider_timeout"
    CLIENT_DISCONNECT = "client_disconnect"
    JOB_CANCELLED = "job_cancelled"
    JOB_FINISHED_AFTER_DEADLINE = "job_finished_after_deadline"
    REFUSED_BY_PROVIDER = "refused_by_provider"
    INTERNAL_ERROR = "internal_error"
    ABANDONED = "abandoned"
    PROVIDER_ERROR_MID_SESSION = "provider_error_mid_session"
    SERVER_SHUTDOWN = "server_shutdown"


class Charge(enum.StrEnum):
    REPORTED_USAGE = "reported_usage"  # the usage the provider reported, at the frozen price
    USAGE_SO_FAR = "usage_so_far"  # input plus the output actually delivered before the stop
    NOTHING = "nothing"


@dataclass(frozen=True, slots=True)
class Rule:
    outcome: Outcome
    charge: Charge
    why: str


POLICY: dict[Outcome, Rule] = {
    rule.outcome: rule
    for rule in (
        Rule(
            Outcome.SUCCESS,
            Charge.REPORTED_USAGE,
            "The operation completed: the provider's reported usage, never more than the hold.",
        ),
        Rule(
            Outcome.PROVIDER_ERROR_BEFORE_OUTPUT,
            Charge.NOTHING,
            "The provider failed before producing anything: free.",
        ),
        Rule(
            Outcome.PROVIDER_ERROR_MID_OUTPUT,
            Charge.NOTHING,
            "The provider failed part-way: the partial answer is free, it was not the user's fault.",
        ),
        Rule(
            Outcome.PROVIDER_TIMEOUT, Charge.NOTHING, "The provider did not answer in time: free."
        ),
        Rule(
            Outcome.CLIENT_DISCONNECT,
            Charge.USAGE_SO_FAR,
            "The client hung up mid-stream: the input and the output sent to it before the hang-up.",
        ),
        Rule(
            Outcome.JOB_CANCELLED,
            Charge.NOTHING,
            "The user cancelled a job before it finished: nothing was delivered, nothing is charged.",
        ),
        Rule(
            Outcome.JOB_FINISHED_AFTER_DEADLINE,
            Charge.NOTHING,
            "The provider finished after our deadline, when the job had already been reported failed: free.",
        ),
        Rule(
            Outcome.REFUSED_BY_PROVIDER,
            Charge.NOTHING,
            "The provider rejected the request (bad request, content policy) before any output: free.",
        ),
        Rule(Outcome.INTERNAL_ERROR, Charge.NOTHING, "Our own failure: free."),
        Rule(
            Outcome.ABANDONED,
            Charge.NOTHING,
            "Never settled (the process died mid-operation): the expired hold is released by reconciliation, free.",
        ),
        Rule(
            Outcome.PROVIDER_ERROR_MID_SESSION,
            Charge.USAGE_SO_FAR,
            "A speech session's provider failed or dropped mid-session: the audio of the final "
            "segments delivered before the failure; the segment in flight is free.",
        ),
        Rule(
            Outcome.SERVER_SHUTDOWN,
            Charge.USAGE_SO_FAR,
            "The server stopped (a pod's SIGTERM) mid-session: the audio of the final segments "
            "delivered before it closed the socket; the segment in flight is free.",
        ),
    )
}

CAPTURE_ABOVE_HOLD = (
    "A hold is the most an operation may cost, quoted at admission. If the provider reports "
    "usage that prices above the hold, the user is charged the hold and no more; the excess is "
    "recorded on the hold as `overage` for operators."
)


USAGE_SO_FAR = (
    "The usage so far is the provider's own count where it gave one; otherwise the input the "
    "hold was sized for, and the output delivered: at least one token per streamed piece, or "
    "four characters a token, whichever is more. A call that was sent is never free for lack "
    "of a count."
)

STALLED_STREAM = (
    "A stream is relayed with back-pressure: the next piece is pulled from the provider only "
    "once the previous one was handed to the client's connection, and a connection buffers at "
    "most a few tens of KiB. A client that stops reading stops the stream; if it then hangs "
    "up, it is charged (as `client_disconnect`) the output that was sent to it, not the rest "
    "of the answer. A client still too slow to take the answer when the stream's time budget "
    "runs out is cut off and charged the same way; the budget running out while the stream "
    "waits on the provider is the provider's timeout, free."
)


SPEECH_SESSIONS = (
    "A real-time speech session is charged per second of audio, the session's total rounded "
    "up to a whole second, at the price frozen at admission, never more than its hold. It "
    "holds a first slice of audio at admission and grows the hold slice by slice as audio "
    "flows; when the next slice cannot be held (credits, a daily or member cap) the session "
    "is cut exactly at the slice boundary, and the audio up to it is charged. Audio is "
    "measured by the server (PCM bytes, or decoded WebM/Opus samples); the provider's own "
    "count, where it gives one, is charged when it is lower."
)


def charge_for(outcome: Outcome) -> Charge:
    return POLICY[outcome].charge
