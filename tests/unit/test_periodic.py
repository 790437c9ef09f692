"""The jobs' one loop and its owned task (``services/periodic.py``): the billing
scheduler, the privacy purge, the reminder rounds and the cluster jobs' lock run on it."""

from __future__ import annotations

import asyncio
import itertools

from callcontrol.services.periodic import every, owned_task


async def test_the_loop_ticks_at_once_then_after_every_interval() -> None:
    ticks: list[float] = []
    first, third = asyncio.Event(), asyncio.Event()

    async def tick() -> None:
        ticks.append(asyncio.get_running_loop().time())
        first.set()
        if len(ticks) >= 3:
            third.set()

    async with owned_task(lambda: every(3600.0, tick), name="hourly"):
        await asyncio.wait_for(first.wait(), timeout=5)  # not an hour later
    assert len(ticks) == 1
    async with owned_task(lambda: every(0.01, tick), name="fast"):
        await asyncio.wait_for(third.wait(), timeout=5)
    assert all(later - earlier >= 0.009 for earlier, later in itertools.pairwise(ticks[1:]))


async def test_leaving_the_block_cancels_the_loop_and_waits_for_its_tick_to_end() -> None:
    started, ended = asyncio.Event(), asyncio.Event()

    async def slow_tick() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()

    async with owned_task(lambda: every(0.01, slow_tick), name="slow") as task:
        await asyncio.wait_for(started.wait(), timeout=5)
        assert not task.done()
    assert task.cancelled() and ended.is_set()
