"""One engine per ARI app: the lease in an Asterisk global variable (``engine/lease.py``)."""

from __future__ import annotations

import asyncio

from callcontrol.engine.lease import AppLease, Claim


class Store:
    """Asterisk's global variables, as ARI reads and writes them."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get_global_variable(self, name: str) -> str:
        await asyncio.sleep(0)
        return self.values.get(name, "")

    async def set_global_variable(self, name: str, value: str) -> None:
        await asyncio.sleep(0)
        self.values[name] = value


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def lease(store: Store, clock: Clock, holder: str, **kwargs: object) -> AppLease:
    return AppLease(
        store,
        "cc.test",
        holder=holder,
        ttl_s=6.0,
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


def test_a_claim_survives_its_text_form_and_garbage_is_no_claim() -> None:
    claim = Claim("host/1/x", 12.5)
    assert Claim.decode(claim.encode()) == claim
    assert Claim.decode("") is None and Claim.decode("nonsense") is None
    assert Claim.decode("h;notanumber") is None
