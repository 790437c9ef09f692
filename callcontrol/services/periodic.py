"""The one loop of the jobs inside ``callcontrol serve``, and the task that owns it.

The billing scheduler, the privacy purge, the phone-reminder rounds and the
cluster jobs' lock (which starts and stops those jobs) all tick this way. The
rules:

- ``every()`` ticks at once, then after every ``interval_s``; a tick handles
  (and logs) its own failures, so only cancellation ends the loop;
- ``owned_task()`` runs a loop as a task for as long as its block lasts, then
  cancels and awaits it (a ``cleanup_ctx``'s shape): nothing ticks after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager, suppress
from typing import Any


async def every(interval_s: float, tick: Callable[[], Awaitable[object]]) -> None:
    """Tick, sleep ``interval_s``, tick again - until cancelled."""
    while True:
        await tick()
        await asyncio.sleep(interval_s)


@asynccontextmanager
async def owned_task(
    loop: Callable[[], Coroutine[Any, Any, None]], *, name: str
) -> AsyncIterator[asyncio.Task[None]]:
    """``loop()`` as a task for the block; cancelled and awaited on exit."""
    task = asyncio.create_task(loop(), name=name)
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
