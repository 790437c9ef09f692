"""One engine per ARI app: the lease in an Asterisk global variable (``engine/lease.py``)."""

from __future__ import annotations

import asyncio

from callcontrol.engine.lease import AppLease, Claim


class Store:
    """Asterisk's global variables, as ARI reads and writes them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.written = asyncio.Event()

    async def get_global_variable(self, name: str) -> str:
        await asyncio.sleep(0)
        return self.values.get(name, "")

    async def set_global_variable(self, name: str, value: str) -> None:
        await asyncio.sleep(0)
        self.values[name] = value
        self.written.set()

    async def next_write(self) -> None:
        self.written.clear()
        await asyncio.wait_for(self.written.wait(), timeout=5)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Stream:
    """The event stream the lease fences: up until the lease drops it."""

    def __init__(self) -> None:
        self.connected = True
        self.dropped = asyncio.Event()

    async def disconnect(self) -> None:
        self.connected = False
        self.dropped.set()


def lease(
    store: Store, clock: Clock, holder: str, *, ttl_s: float = 6.0, **kwargs: object
) -> AppLease:
    return AppLease(
        store,
        "cc.test",
        holder=holder,
        ttl_s=ttl_s,
        verify_s=0.0,
        clock=clock,
        alive=lambda pid: True,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_second_engine_stands_by_until_the_first_stops_renewing() -> None:
    store, clock = Store(), Clock()
    first, second = lease(store, clock, "h1/10/a"), lease(store, clock, "h2/20/b")
    assert await first.try_acquire() and first.variable == "CALLCONTROL_LEASE_cc_test"
    assert not await second.try_acquire() and second.other == "h1/10/a"
    clock.now += 4
    assert await first.renew()
    clock.now += 4  # 4 s after the renewal: still held
    assert not await second.try_acquire()
    clock.now += 3  # 7 s without renewal: free
    assert await second.try_acquire()
    assert not await first.renew() and not first.held  # the first is fenced


async def test_a_lease_of_a_dead_engine_on_this_host_is_free_at_once() -> None:
    store, clock = Store(), Clock()
    store.values["CALLCONTROL_LEASE_cc_test"] = Claim("h1/4242/old", clock.now + 6).encode()
    restarted = AppLease(
        store,
        "cc.test",
        holder="h1/77/new",
        verify_s=0.0,
        clock=clock,
        alive=lambda pid: pid != 4242,
    )
    assert await restarted.try_acquire()
    elsewhere = AppLease(
        store, "cc.test", holder="h2/77/x", verify_s=0.0, clock=clock, alive=lambda pid: False
    )
    assert not await elsewhere.try_acquire()  # another host's live claim is not judged by PID


async def test_of_two_engines_claiming_at_once_only_the_last_writer_goes_on() -> None:
    store, clock = Store(), Clock()
    a = AppLease(store, "x", holder="h/1/a", verify_s=0.01, clock=clock, alive=lambda p: True)
    b = AppLease(store, "x", holder="h/2/b", verify_s=0.01, clock=clock, alive=lambda p: True)
    results = await asyncio.gather(a.try_acquire(), b.try_acquire())
    assert sorted(results) == [False, True]


async def test_after_a_lease_less_client_took_the_app_the_engine_holds_off_and_backs_off() -> None:
    store, clock = Store(), Clock()
    engine = lease(store, clock, "h1/10/a", replaced_holdoff_s=60.0)
    assert await engine.try_acquire()
    engine.replaced()
    clock.now += 10  # our own lease expired, nobody else holds one
    assert not await engine.try_acquire()
    clock.now += 51
    assert await engine.try_acquire()
    engine.replaced()  # again: twice as long now
    clock.now += 61
    assert not await engine.try_acquire()
    clock.now += 60
    assert await engine.try_acquire()


async def test_after_a_lease_holding_engine_took_the_app_no_holdoff_delays_the_failover() -> None:
    store, clock = Store(), Clock()
    first, second = lease(store, clock, "h1/10/a"), lease(store, clock, "h2/20/b")
    assert await first.try_acquire()
    clock.now += 7
    assert await second.try_acquire()
    first.replaced()
    assert not await first.try_acquire()  # sees the second's claim: the holdoff is dropped
    clock.now += 7  # the second died without renewing
    assert await first.try_acquire()


async def test_a_kept_lease_is_renewed_past_its_ttl_and_free_at_once_when_released() -> None:
    store, clock = Store(), Clock()
    first = lease(store, clock, "h1/10/a", ttl_s=0.03)  # renewed every 10 ms
    second = lease(store, clock, "h2/20/b", ttl_s=0.03)
    assert await first.try_acquire()
    keeping = asyncio.create_task(first.keep(Stream(), on_lost=lambda: None))
    try:
        for _ in range(4):  # 0.08 s of the lease's clock in all: past the first claim's ttl
            clock.now += 0.02
            await store.next_write()
            assert not await second.try_acquire() and second.other == "h1/10/a"
    finally:
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)
    assert first.held
    await first.release()
    assert not first.held
    assert await second.try_acquire()  # at once: the clock has not reached the last expiry


async def test_a_kept_lease_found_in_another_holders_hands_stops_serving_and_drops_the_stream() -> (
    None
):
    store, clock = Store(), Clock()
    first = lease(store, clock, "h1/10/a", ttl_s=0.03)
    assert await first.try_acquire()
    stream, lost = Stream(), []
    keeping = asyncio.create_task(first.keep(stream, on_lost=lambda: lost.append(stream.connected)))
    try:
        store.values[first.variable] = Claim("h2/20/b", clock.now + 6).encode()
        await asyncio.wait_for(stream.dropped.wait(), timeout=5)
    finally:
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)
    assert lost == [True]  # stopped serving before the stream was dropped
    assert not first.held and first.other == "h2/20/b"
    assert store.values[first.variable].startswith("h2/20/b;")  # the other's claim stands
    await first.release()
    assert store.values[first.variable].startswith("h2/20/b;")


def test_a_claim_survives_its_text_form_and_garbage_is_no_claim() -> None:
    claim = Claim("host/1/x", 12.5)
    assert Claim.decode(claim.encode()) == claim
    assert Claim.decode("") is None and Claim.decode("nonsense") is None
    assert Claim.decode("h;notanumber") is None
