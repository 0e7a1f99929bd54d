"""Stopping a background task for sure."""

from __future__ import annotations

import asyncio
import contextlib


async def cancel_and_wait(task: asyncio.Task, *, poll: float = 0.1) -> None:
    """Cancels `task` until it has ended, then returns (its result or error is dropped).

    One `cancel()` is not a promise that a task ends: a library may swallow the cancellation
    (on Python 3.11 `asyncio.wait_for`, which asyncpg and redis use, does when the awaited
    call completes at the same moment), and a loop that swallowed it sleeps on to its next
    pass, so a shutdown that awaited it once would wait for that whole period."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=poll)
    with contextlib.suppress(asyncio.CancelledError, Exception):
        task.result()
