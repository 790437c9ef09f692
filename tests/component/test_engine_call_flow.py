"""The engine shell against a fake Asterisk: ARI events in, ARI requests out.

Real ``AriClient`` and ``AriEventStream`` talk to ``FakeAri``; the number
directory and the CDR store are in-memory fakes. Each test drives one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import pytest
from support.fake_ari import FakeAri, sample_event, sample_response

from callcontrol.app import call_dispatcher
from callcontrol.ari.client import AriClient
from callcontrol.ari.stream import AriEventStream
from callcontrol.domain.call_events import CallRecord
from callcontrol.domain.routing import DestinationFacts, NumberSnapshot, RoutingPolicy
from callcontrol.domain.vocabulary import (
    DestinationType,
    Disposition,
    ForwardingMode,
    LegOutcome,
    NumberKind,
    NumberState,
)
from callcontrol.engine.dispatcher import Dispatcher
from callcontrol.engine.routers import InboundRouter
from callcontrol.engine.supervisor import TaskSupervisor

CALLER = "1736936430.12"
DID = "+4930123456"


@dataclass
class Directory:
    numbers: dict[str, NumberSnapshot] = field(default_factory=dict)

    async def snapshot(self, did: str) -> NumberSnapshot | None:
        return self.numbers.get(did)


@dataclass
class Ledger:
    records: list[CallRecord] = field(default_factory=list)

    async def record_call(self, record: CallRecord) -> None:
        self.records.append(record)


class Voicemail:
    async def deliver(self, **kwargs: Any) -> None:
        raise AssertionError("no voicemail expected")


@dataclass
class Rig:
    fake: FakeAri
    directory: Directory
    ledger: Ledger
    dispatcher: Dispatcher

    async def send(self, event: dict[str, Any]) -> None:
        await self.fake.send_event(event)

    async def wait_request(
        self, method: str, path: str, timeout_s: float = 3.0, **query: str
    ) -> Any:
        """The first request with this method and path (and these query values)."""
        for _ in range(int(timeout_s / 0.01)):
            for request in self.fake.requests:
                if request.method == method and request.path == path:
                    if all(request.query.get(key) == value for key, value in query.items()):
                        return request
            await asyncio.sleep(0.01)
        seen = [(r.method, r.path, r.query) for r in self.fake.requests]
        raise AssertionError(f"no {method} {path} {query}; seen {seen}")

    async def wait_record(self) -> CallRecord:
        for _ in range(300):
            if self.ledger.records:
                return self.ledger.records[-1]
            await asyncio.sleep(0.01)
        raise AssertionError("no CDR")


def event(name: str, **changes: Any) -> dict[str, Any]:
    data = sample_event(name)
    channel = changes.pop("channel_id", None)
    state = changes.pop("state", None)
    if channel is not None:
        data["channel"]["id"] = channel
    if state is not None:
        data["channel"]["state"] = state
    data.update(changes)
    return data


def start_event() -> dict[str, Any]:
    return event("StasisStart", args=["inbound", DID[1:]])


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    fake = FakeAri()
    fake.respond("GET", "/ari/applications/callcontrol", body=_application([]))
    fake.respond("POST", "/ari/channels", body=sample_response("channel_created"))
    fake.respond("POST", "/ari/bridges", body=sample_response("bridge"))
    directory, ledger = Directory(), Ledger()
    router = InboundRouter(directory=directory, policy=RoutingPolicy())
    calls, jobs = TaskSupervisor("calls"), TaskSupervisor("jobs")
    async with fake.running() as base_url, aiohttp.ClientSession() as session:
        client = AriClient(session, base_url, fake.username, fake.password, "callcontrol")

        dispatcher = call_dispatcher(
            ari_client=client,
            router=router,
            ledger=ledger,
            voicemail=Voicemail(),
            calls=calls,
            jobs=jobs,
            settle_s=0.05,
        )

        async def on_connected() -> None:
            dispatcher.connected()

        stream = AriEventStream(
            session,
            base_url,
            fake.username,
            fake.password,
            "callcontrol",
            on_event=dispatcher.on_event,
            on_connected=on_connected,
        )
        task = asyncio.create_task(stream.run())
        for _ in range(300):
            if fake.open_sockets:
                break
            await asyncio.sleep(0.01)
        yield Rig(fake, directory, ledger, dispatcher)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await calls.close()
        await jobs.close()


def _application(channel_ids: list[str]) -> dict[str, Any]:
    return {
        "name": "callcontrol",
        "channel_ids": channel_ids,
        "bridge_ids": [],
        "endpoint_ids": [],
        "device_names": [],
    }


def snapshot(**changes: Any) -> NumberSnapshot:
    base = NumberSnapshot(
        number_id=1,
        account_id=1,
        e164=DID,
        kind=NumberKind.VOICE,
        state=NumberState.ACTIVE,
        balance_minor=100,
        currency="EUR",
        mode=ForwardingMode.SEQUENTIAL,
        destinations=(
            DestinationFacts(1, DestinationType.SIP_URI, "sip:a@127.0.0.3:5080", 10),
            DestinationFacts(2, DestinationType.SIP_URI, "sip:b@127.0.0.4:5080", 10),
        ),
    )
    return replace(base, **changes)


async def test_an_unknown_did_is_hung_up_with_cause_1_and_recorded(rig: Rig) -> None:
    await rig.send(start_event())
    request = await rig.wait_request("DELETE", f"/ari/channels/{CALLER}")
    assert request.query == {"reason_code": "1"}
    record = await rig.wait_record()
    assert record.disposition is Disposition.REJECTED and record.did == DID


async def test_sequential_call_rings_the_next_leg_on_busy_then_bridges_the_answer(
    rig: Rig,
) -> None:
    rig.directory.numbers[DID] = snapshot()
    leg1, leg2 = "1736936430_12-leg1", "1736936430_12-leg2"
    await rig.send(start_event())
    await rig.wait_request("POST", f"/ari/channels/{CALLER}/ring")
    # One request per leg: originated into our app, linked to the caller.
    originate = await rig.wait_request("POST", "/ari/channels", channelId=leg1)
    assert originate.query["endpoint"] == "PJSIP/callcontrol-external/sip:a@127.0.0.3:5080"
    assert originate.query["originator"] == CALLER
    assert originate.query["app"] == "callcontrol"
    assert originate.query["appArgs"] == f"leg,inbound,{DID}"  # whose call, should it be lost
    assert originate.query["timeout"] == "15"  # the leg's 10 s, and Asterisk's 5 s margin

    await rig.send(event("ChannelDestroyed", channel_id=leg1, cause=17))
    await rig.wait_request("POST", "/ari/channels", channelId=leg2)
    # Up comes before the leg is in Stasis: not yet an answer that can be bridged.
    await rig.send(event("ChannelStateChange", channel_id=leg2, state="Up"))
    await asyncio.sleep(0.1)
    assert not [r for r in rig.fake.requests if r.path == f"/ari/channels/{CALLER}/answer"]
    await rig.send(event("StasisStart", channel_id=leg2, state="Up", args=["leg"]))
    await rig.wait_request("POST", f"/ari/channels/{CALLER}/answer")
    bridge = "1736936430_12-bridge"
    add = await rig.wait_request("POST", f"/ari/bridges/{bridge}/addChannel")
    assert add.query["channel"] == f"{CALLER},{leg2}"

    await rig.send(event("ChannelHangupRequest", channel_id=CALLER, cause=16))
    await rig.wait_request("DELETE", f"/ari/channels/{leg2}")
    record = await rig.wait_record()
    assert record.disposition is Disposition.ANSWERED and record.answered_position == 2
    assert [leg.outcome for leg in record.legs] == [LegOutcome.BUSY, LegOutcome.ANSWERED]
    await rig.wait_request("DELETE", f"/ari/bridges/{bridge}")


async def test_a_failed_leg_creation_moves_on_instead_of_losing_the_call(rig: Rig) -> None:
    rig.directory.numbers[DID] = snapshot()
    rig.fake.respond("POST", "/ari/channels", status=400, body={"message": "bad endpoint"})
    await rig.send(start_event())
    # Both legs fail to be created: the caller gets 503 (cause 42: routed, every
    # destination failed - final at the cluster's edge) and a FAILED CDR.
    request = await rig.wait_request("DELETE", f"/ari/channels/{CALLER}")
    assert request.query == {"reason_code": "42"}
    record = await rig.wait_record()
    assert record.disposition is Disposition.FAILED


async def test_a_leg_answering_after_its_call_ended_is_hung_up(rig: Rig) -> None:
    await rig.send(event("StasisStart", channel_id="gone.1-leg1", state="Up", args=["leg"]))
    request = await rig.wait_request("DELETE", "/ari/channels/gone.1-leg1")
    assert request.query == {"reason_code": "16"}


async def test_a_lookup_failure_rejects_with_503_so_the_carrier_retries(rig: Rig) -> None:
    async def broken(did: str) -> NumberSnapshot | None:
        raise OSError("database down")

    rig.directory.snapshot = broken  # type: ignore[method-assign]
    await rig.send(start_event())
    request = await rig.wait_request("DELETE", f"/ari/channels/{CALLER}")
    assert request.query == {"reason_code": "34"}  # chan_pjsip: 503 (41 would be 603)


# ---- reconciliation after a (re)connect: adoption, lost events, leaked bridges -----------

KEY = "1736936430_12"
LEG1 = f"{KEY}-leg1"
BRIDGE = f"{KEY}-bridge"


def channel(channel_id: str, state: str, app_data: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = event("StasisStart")["channel"]
    data.update(id=channel_id, state=state, **changes)
    data["dialplan"] = {**data["dialplan"], "app_name": "Stasis", "app_data": app_data}
    return data


def bridge(bridge_id: str, channels: list[str], name: str = "callcontrol") -> dict[str, Any]:
    data: dict[str, Any] = sample_response("bridge")
    data.update(id=bridge_id, channels=channels, name=name)
    data["creationtime"] = "2025-01-15T10:20:40.000+0000"
    return data


async def reconnect(rig: Rig, channels: list[dict[str, Any]], bridges: list[Any]) -> None:
    rig.fake.respond(
        "GET", "/ari/applications/callcontrol", body=_application([c["id"] for c in channels])
    )
    rig.fake.respond("GET", "/ari/channels", body=channels)
    rig.fake.respond("GET", "/ari/bridges", body=bridges)
    await rig.fake.drop()
    for _ in range(300):
        if rig.fake.open_sockets:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the stream did not reconnect")


async def test_a_bridged_call_nobody_follows_is_adopted_and_ends_with_a_true_cdr(rig: Rig) -> None:
    rig.directory.numbers[DID] = snapshot()
    caller = channel(CALLER, "Up", f"callcontrol,inbound,{DID[1:]}")
    leg = channel(LEG1, "Up", f"callcontrol,leg,inbound,{DID}")
    await reconnect(rig, [caller, leg], [bridge(BRIDGE, [CALLER, LEG1])])
    await asyncio.sleep(0.3)
    assert not [r for r in rig.fake.requests if r.method == "DELETE"], "the talk goes on"
    assert rig.dispatcher.calls_adopted == 1
    await rig.send(event("ChannelDestroyed", channel_id=LEG1, cause=16))
    request = await rig.wait_request("DELETE", f"/ari/channels/{CALLER}")
    assert request.query == {"reason_code": "16"}
    record = await rig.wait_record()
    assert record.disposition is Disposition.ANSWERED and record.answered_position == 1
    assert record.answered_at is not None and record.answered_at.second == 40  # the bridge's
    assert record.number_id == 1 and record.call_id == CALLER
    await rig.wait_request("DELETE", f"/ari/bridges/{BRIDGE}")


async def test_a_leg_whose_caller_vanished_is_hung_up_and_its_call_recorded(rig: Rig) -> None:
    rig.directory.numbers[DID] = snapshot()
    leg = channel(LEG1, "Up", f"callcontrol,leg,inbound,{DID}")
    leg["connected"] = {"name": "", "number": "+4915112345678"}
    await reconnect(rig, [leg], [bridge(BRIDGE, [LEG1])])
    await rig.wait_request("DELETE", f"/ari/channels/{LEG1}")
    record = await rig.wait_record()
    assert record.disposition is Disposition.ANSWERED and record.call_id == KEY
    assert record.caller == "+4915112345678" and record.did == DID
    await rig.wait_request("DELETE", f"/ari/bridges/{BRIDGE}")


async def test_a_bridge_of_ours_that_no_call_owns_is_destroyed_and_others_are_left(
    rig: Rig,
) -> None:
    await reconnect(
        rig, [], [bridge("gone_1-bridge", []), bridge("theirs-bridge", [], name="other-app")]
    )
    await rig.wait_request("DELETE", "/ari/bridges/gone_1-bridge")
    await asyncio.sleep(0.2)
    assert not [r for r in rig.fake.requests if r.path == "/ari/bridges/theirs-bridge"]


async def test_a_call_whose_channels_vanished_while_disconnected_ends_with_its_cdr(
    rig: Rig,
) -> None:
    rig.directory.numbers[DID] = snapshot()
    await rig.send(start_event())
    await rig.wait_request("POST", "/ari/channels", channelId=LEG1)
    await asyncio.sleep(0.1)
    await reconnect(rig, [], [])  # its hang-up was lost with the socket
    await rig.wait_request("DELETE", f"/ari/channels/{LEG1}")
    record = await rig.wait_record()
    assert record.disposition is Disposition.ABANDONED


async def test_an_exception_in_a_call_ends_it_with_503_and_a_cdr(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from callcontrol.domain.inbound_call import InboundCall

    def broken(self: InboundCall, event: object) -> list[Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(InboundCall, "handle", broken)
    rig.directory.numbers[DID] = snapshot()
    await rig.send(start_event())
    await rig.wait_request("POST", "/ari/channels", channelId=LEG1)
    await rig.send(event("ChannelDestroyed", channel_id=LEG1, cause=17))
    request = await rig.wait_request("DELETE", f"/ari/channels/{CALLER}")
    assert request.query == {"reason_code": "34"}
    record = await rig.wait_record()
    assert record.disposition is Disposition.FAILED and record.reject_reason == "engine_error"
