"""The shared helpers of livecast.core: exponential backoff and supervised tasks."""

from __future__ import annotations

import asyncio

import pytest

from livecast.core.backoff import Backoff
from livecast.core.tasks import Supervisor, cancel_and_wait


def test_backoff_doubles_up_to_the_maximum_and_resets() -> None:
    retry = Backoff(0.1, 0.5)
    assert [retry.next() for _ in range(5)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])
    assert retry.attempts == 5
    retry.reset()
    assert retry.current == 0.1 and retry.attempts == 0
    assert retry.next() == pytest.approx(0.1)


def test_backoff_jitter_stays_within_its_fraction() -> None:
    low = Backoff(1.0, 8.0, jitter=0.25, rand=lambda: 0.0)
    high = Backoff(1.0, 8.0, jitter=0.25, rand=lambda: 0.999999)
    assert low.next() == pytest.approx(0.75)
    assert high.next() == pytest.approx(1.25, abs=1e-5)
    assert low.current == 2.0  # jitter never changes the sequence itself


@pytest.mark.parametrize("args", [(0.0, 1.0), (2.0, 1.0), (1.0, 2.0, 0.5), (1.0, 2.0, 2.0, 1.0)])
def test_backoff_refuses_nonsense(args: tuple[float, ...]) -> None:
    first, maximum, *rest = args
    kwargs = dict(zip(("factor", "jitter"), rest, strict=False))
    with pytest.raises(ValueError):
        Backoff(first, maximum, **kwargs)


async def test_cancel_and_wait_stops_a_task_and_keeps_its_error_inside() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(forever())
    await started.wait()
    await cancel_and_wait(task)
    assert task.cancelled()

    async def fails() -> None:
        raise RuntimeError("its own problem")

    failed = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await cancel_and_wait(failed)  # finished with an error: retrieved, not raised here
    assert isinstance(failed.exception(), RuntimeError)
    await cancel_and_wait(None)


async def test_cancel_and_wait_lets_the_callers_cancellation_through() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # refuses to stop until released

    victim = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    caller = asyncio.create_task(cancel_and_wait(victim))
    for _ in range(5):  # a few loop turns: the caller has cancelled the victim and waits
        await asyncio.sleep(0)
    assert not caller.done()  # still waiting for the stubborn task
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await cancel_and_wait(victim, timeout=0.05)  # bounded: returns though the task lives on
    assert not victim.done()
    release.set()
    await victim


async def test_supervisor_keeps_logs_and_cancels(caplog: pytest.LogCaptureFixture) -> None:
    supervisor = Supervisor("test")
    done = asyncio.Event()

    async def ok() -> None:
        done.set()

    async def broken() -> None:
        raise RuntimeError("boom")

    async def forever() -> None:
        await asyncio.Event().wait()

    supervisor.spawn(ok())
    supervisor.spawn(broken(), name="broken-one")
    endless = supervisor.spawn(forever())
    await supervisor.wait(timeout=0.05)
    assert done.is_set()
    assert len(supervisor) == 1  # finished tasks are forgotten
    assert "task broken-one failed" in caplog.text
    await supervisor.close()
    assert endless.cancelled() and len(supervisor) == 0
