"""The jobs domain's errors."""

from __future__ import annotations

from lipika.errors import BadRequest, Conflict, LipikaError, NotFound, ServiceUnavailable


class InvalidJob(BadRequest):
    code = "invalid_job"


class JobNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such job")


class JobFinished(Conflict):
    code = "job_finished"


class JobHasNoContent(Conflict):
    code = "job_has_no_content"


class ShuttingDown(ServiceUnavailable):
    code = "shutting_down"
    retry_after = 1.0


class JobFailed(LipikaError):
    """A job answered when ready (an image request) that did not succeed: its error, with the
    status of the failure's kind (the provider's refusal is the caller's 400)."""

    def __init__(self, message: str, *, code: str, status_code: int) -> None:
        super().__init__(message, code=code)
        self.status_code = status_code
        self.type = "invalid_request_error" if status_code < 500 else "api_error"
