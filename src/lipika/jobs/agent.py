"""The jobs domain as the agent's media tools see it (agent/tools/base.py `JobTools`), and the
note a job leaves in the thread that started it when it ends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from lipika.agent.tools.base import JobRef
from lipika.auth.dependencies import Principal
from lipika.jobs.models import Job, JobStatus
from lipika.jobs.repository import JobRepository
from lipika.jobs.runner import JobRunner
from lipika.jobs.service import JobService
from lipika.workspaces.models import Role, WorkspaceKind


class AgentJobs:
    def __init__(self, runner: JobRunner) -> None:
        self.runner = runner

    async def run_image(
        self,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        params: Mapping[str, Any],
        *,
        thread_id: uuid.UUID | None,
    ) -> JobRef:
        job = await JobService(self.runner).submit(
            _member(workspace_id, user_id), "image", params, None, thread_id=None
        )
        task = self.runner.task_of(job.id)
        if task is not None:
            await asyncio.shield(task)
        return await self._ref(job.id)

    async def start_video(
        self,
        workspace_id: uuid.UUID,
        user_id: uuid.UUID | None,
        params: Mapping[str, Any],
        *,
        thread_id: uuid.UUID | None,
    ) -> JobRef:
        job = await JobService(self.runner).submit(
            _member(workspace_id, user_id), "video", params, None, thread_id=thread_id
        )
        return JobRef(job.id, job.status.value)

    async def _ref(self, job_id: uuid.UUID) -> JobRef:
        async with self.runner.sessionmaker() as session:
            job = await JobRepository(session).get(job_id)
        assert job is not None
        return JobRef(job.id, job.status.value, len(job.result or []), job.error_message)


def _member(workspace_id: uuid.UUID, user_id: uuid.UUID | None) -> Principal:
    """The run's member, as the jobs service takes it (a run always has its member)."""
    assert user_id is not None
    return Principal(user_id, workspace_id, WorkspaceKind.TEAM, Role.MEMBER)


def thread_note(note: Callable[..., Awaitable[None]]) -> Callable[[Job], Awaitable[None]]:
    """What a job tells its thread when it ends: the agent's `note`, with the job's end."""

    async def tell(job: Job) -> None:
        assert job.thread_id is not None
        if job.status is JobStatus.SUCCEEDED:
            text = f"The {job.kind} of job {job.id} is ready: /v1/jobs/{job.id}/content"
        else:
            text = f"The {job.kind} job {job.id} {job.status.value}: {job.error_message or ''}"
        await note(job.thread_id, text.strip(), job_id=str(job.id), job_status=job.status.value)

    return tell
