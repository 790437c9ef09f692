"""Engine memory per concurrent call, with thousands of calls held up.

    python -m bench.memory [--calls 5000] [--baseline-calls 200]

The engine's real call path (``Dispatcher`` -> ``CallRunner`` -> ``InboundCall``
-> ``CallExecutor`` -> the real ``AriClient`` over HTTP) runs in this process;
the fake ARI server (``tests/support/fake_ari.py``) runs in a child process,
so its own bookkeeping is not counted. The number directory and the CDR
ledger are in-memory fakes. Every call is a ``StasisStart`` for a DID
forwarded to one SIP leg that rings for an hour: the call looks the number up,
rings the caller, originates the leg, then waits, holding its task,
queue, state machine and timer - what a live call costs.

Measured twice in the same run, each against its own baseline taken after a
warm-up of ``--baseline-calls`` calls that were started and ended (so caches,
pools and the connection are already there at "0 calls"):

- RSS (``/proc/self/status`` VmRSS) before and after ``--calls`` calls are
  held up, divided by the number of calls;
- Python allocations (``tracemalloc``) before and after, divided likewise,
  with the allocation sites that hold the most.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import aiohttp  # noqa: E402
from support.fake_ari import FakeAri, sample_event, sample_response  # noqa: E402

from callcontrol.app import call_dispatcher  # noqa: E402
from callcontrol.ari.client import AriClient  # noqa: E402
from callcontrol.ari.events import parse_event  # noqa: E402
from callcontrol.ari.models import Channel  # noqa: E402
from callcontrol.domain.call_events import CallRecord  # noqa: E402
from callcontrol.domain.routing import DestinationFacts, NumberSnapshot, RoutingPolicy  # noqa: E402
from callcontrol.domain.vocabulary import (  # noqa: E402
    DestinationType,
    ForwardingMode,
    NumberKind,
    NumberState,
)
from callcontrol.engine.routers import InboundRouter  # noqa: E402
from callcontrol.engine.supervisor import TaskSupervisor  # noqa: E402

DID = "+4930777000002"
RING_FOREVER_S = 3600


@dataclass
class Directory:
    snapshot_: NumberSnapshot

    async def snapshot(self, did: str) -> NumberSnapshot | None:
        return self.snapshot_ if did == DID else None


@dataclass
class Ledger:
    written: int = 0

    async def record_call(self, record: CallRecord) -> None:
        self.written += 1


class Voicemail:
    async def deliver(self, **kwargs: Any) -> None:
        return None


@dataclass
class CountingAri:
    """The real client, counting legs dialled (to know when every call is held up)."""

    client: AriClient
    dials: int = 0
    _methods: dict[str, Any] = field(default_factory=dict)

    async def originate(self, *args: Any, **kwargs: Any) -> Channel:
        channel = await self.client.originate(*args, **kwargs)
        self.dials += 1
        return channel

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def number() -> NumberSnapshot:
    return NumberSnapshot(
        number_id=1,
        account_id=1,
        e164=DID,
        kind=NumberKind.VOICE,
        state=NumberState.ACTIVE,
        balance_minor=1000,
        currency="EUR",
        mode=ForwardingMode.SEQUENTIAL,
        destinations=(
            DestinationFacts(1, DestinationType.SIP_URI, "sip:far@127.0.0.3:5080", RING_FOREVER_S),
        ),
    )


class Harness:
    def __init__(self, ari: CountingAri) -> None:
        self.ari = ari
        self.ledger = Ledger()
        self.calls = TaskSupervisor("calls")
        self.jobs = TaskSupervisor("jobs")
        voicemail = Voicemail()
        router = InboundRouter(directory=Directory(number()), policy=RoutingPolicy())

        self.dispatcher = call_dispatcher(
            ari_client=ari,
            router=router,
            ledger=self.ledger,
            voicemail=voicemail,
            calls=self.calls,
            jobs=self.jobs,
        )
        self._template = sample_event("StasisStart")
        self._template["args"] = ["inbound", DID[1:]]
        self._next = 0
        self.live: list[str] = []

    async def start_calls(self, count: int, chunk: int = 100) -> None:
        """Deliver ``count`` StasisStarts as the event stream would, ``chunk`` at a time
        (calls arrive over time; 5,000 at once would queue past the client's timeout)."""
        target = self.ari.dials
        while count > 0:
            step = min(chunk, count)
            count -= step
            target += step
            for _ in range(step):
                self._next += 1
                data = dict(self._template)
                data["channel"] = dict(self._template["channel"], id=f"1795000000.{self._next}")
                self.live.append(data["channel"]["id"])
                self.dispatcher.on_event(parse_event(json.dumps(data)))
            await self._until(lambda t=target: self.ari.dials >= t, f"{target} calls dialled")
        if len(self.calls) != len(self.live):
            raise RuntimeError(f"{len(self.live)} calls started, {len(self.calls)} running")

    async def end_calls(self) -> None:
        """The callers hang up: every call ends and its tasks finish."""
        template = sample_event("ChannelDestroyed")
        for channel_id in self.live:
            data = dict(template)
            data["channel"] = dict(template["channel"], id=channel_id)
            self.dispatcher.on_event(parse_event(json.dumps(data)))
        self.live.clear()
        await self._until(lambda: len(self.calls) == 0, "calls ended")

    async def _until(self, done: Any, what: str, limit_s: float = 120.0) -> None:
        deadline = time.monotonic() + limit_s
        while not done():
            if time.monotonic() > deadline:
                raise RuntimeError(f"not reached within {limit_s} s: {what}")
            await asyncio.sleep(0.01)


def settled() -> None:
    gc.collect()
    gc.collect()


async def measure(base_url: str, calls: int, warmup: int) -> dict[str, Any]:
    fake = FakeAri()
    connector = aiohttp.TCPConnector(limit=200, keepalive_timeout=60)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = AriClient(session, base_url, fake.username, fake.password, "callcontrol")
        harness = Harness(CountingAri(client))
        await harness.start_calls(warmup)
        await harness.end_calls()
        settled()
        rss0 = rss_kb()
        await harness.start_calls(calls)
        settled()
        rss1 = rss_kb()
        await harness.end_calls()
        settled()

        tracemalloc.start(1)
        settled()
        traced0 = tracemalloc.take_snapshot()
        await harness.start_calls(calls)
        settled()
        traced1 = tracemalloc.take_snapshot()
        tracemalloc.stop()
        stats = traced1.compare_to(traced0, "lineno")
        traced_delta = sum(stat.size_diff for stat in stats)
        top = [
            (str(stat.traceback[0]).replace(str(ROOT) + "/", ""), stat.size_diff // calls)
            for stat in stats[:12]
        ]
        await harness.end_calls()
        await harness.calls.close()
        await harness.jobs.close()
    return {
        "calls": calls,
        "rss_baseline_mb": round(rss0 / 1024, 1),
        "rss_held_mb": round(rss1 / 1024, 1),
        "rss_per_call_kb": round((rss1 - rss0) / calls, 2),
        "traced_per_call_kb": round(traced_delta / calls / 1024, 2),
        "top_sites_bytes_per_call": top,
    }


def serve_fake_ari(port: int) -> None:
    async def run() -> None:
        fake = FakeAri()
        fake.respond("POST", "/ari/channels", body=sample_response("channel_created"))
        async with fake.running(port):
            print("ready", flush=True)
            while True:
                await asyncio.sleep(3600)
                fake.requests.clear()

    asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--baseline-calls", type=int, default=200)
    parser.add_argument("--serve-fake-ari", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.serve_fake_ari is not None:
        serve_fake_ari(args.serve_fake_ari)
        return 0
    import logging

    import structlog
    from support.engine import free_port

    # One info line per call would be most of the work here; not what is measured.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.memory", "--serve-fake-ari", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != b"ready":
            raise RuntimeError("fake ARI server did not start")
        result = asyncio.run(measure(f"http://127.0.0.1:{port}", args.calls, args.baseline_calls))
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    print(f"engine memory with {result['calls']} calls held up (leg ringing, timer running):")
    print(
        f"  RSS {result['rss_baseline_mb']} MB at 0 calls -> {result['rss_held_mb']} MB: "
        f"{result['rss_per_call_kb']} KB per call (goal <= 20 KB)"
    )
    print(f"  Python allocations (tracemalloc): {result['traced_per_call_kb']} KB per call")
    print("  largest allocation sites, bytes per call:")
    for site, size in result["top_sites_bytes_per_call"]:
        print(f"    {size:7d}  {site}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
