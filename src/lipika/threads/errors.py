"""Why a thread route or a thread's run was refused or stopped."""

from __future__ import annotations

from lipika.errors import Conflict, Forbidden, LipikaError


class RunInProgress(Conflict):
    code = "run_in_progress"


class CreatorOnly(Forbidden):
    """A shared thread is read-only to everyone but its creator."""

    code = "thread_creator_only"


class RunLeaseLost(LipikaError):
    """The run lost its lease on the thread (its renewals failed, or another process took the
    thread after the lease expired), so it stopped before two runs could write one history.
    Our failure: the step in flight is free, and the message may be sent again."""

    status_code = 503
    code = "run_interrupted"
    type = "api_error"
