import asyncio
import time

from lipika.kit.tasks import cancel_and_wait


async def test_a_task_that_swallows_a_cancellation_is_still_stopped() -> None:
    passes = 0

    async def loop() -> None:
        nonlocal passes
        while True:
            passes += 1
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if passes == 1:  # as a library's wait_for can: the first one is eaten
                    asyncio.current_task().uncancel()
                    continue
                raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    started = time.monotonic()
    await cancel_and_wait(task)
    assert task.cancelled()
    assert passes == 2
    assert time.monotonic() - started < 5


async def test_a_task_that_already_ended_is_left_as_it_is() -> None:
    async def fails() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(task)  # the error is not raised into the shutdown
    assert isinstance(task.exception(), RuntimeError)
