"""What the far end sees: the executor makes the caller's CallerID the leg's.

ARI's originate copies the originator's (the caller's) CallerID onto the
leg's connected line (the far end's From / P-Asserted-Identity), so a leg that
must show another id has the caller's set first - and only then; an inbound
call passing the caller's own number on costs no extra request.
"""

from __future__ import annotations

from typing import Any

import pytest

from callcontrol.ari.errors import AriConflict, AriUnavailable
from callcontrol.domain import call_events as ev
from callcontrol.engine.executor import CallExecutor


class RecordingAri:
    def __init__(self) -> None:
        self.requests: list[tuple[str, tuple[Any, ...]]] = []

    async def set_variable(self, channel_id: str, name: str, value: str) -> None:
        self.requests.append(("set_variable", (channel_id, name, value)))

    async def originate(self, endpoint: str, channel_id: str, **kwargs: Any) -> None:
        assert kwargs["originator"] == "caller-1"
        self.requests.append(("originate", (endpoint, channel_id, kwargs.get("variables"))))


def executor(ari: RecordingAri, caller_number: str | None) -> CallExecutor:
    return CallExecutor(
        ari=ari,  # type: ignore[arg-type]
        caller_channel_id="caller-1",
        feed=lambda event: None,
        outbox=None,  # type: ignore[arg-type]  # no call ends here
        leg_args="leg,inbound,+4930123456",
        caller_number=caller_number,
    )


def dial(position: int, caller_id: str | None, withhold: bool = False) -> ev.DialLeg:
    return ev.DialLeg(
        position=position,
        channel_id=f"caller-1-leg{position}",
        endpoint="PJSIP/+49305550123@callcontrol-pstn",
        caller_id=caller_id,
        timeout_s=20,
        withhold_caller_id=withhold,
    )


async def test_a_leg_showing_the_callers_own_number_costs_no_extra_request() -> None:
    ari = RecordingAri()
    await executor(ari, "4915112345678").execute([dial(1, "4915112345678")])
    assert [name for name, _ in ari.requests] == ["originate"]
    # No CallerID variable on the leg: Asterisk copies the originator's CallerID
    # onto it, and each variable would be one more snapshot (and JSON) in
    # Asterisk. Its one variable is the header counting our forwarding hops.
    assert ari.requests[0][1][2] == {"PJSIP_HEADER(add,X-CallControl-Hops)": "1"}


async def test_a_leg_carries_the_hop_count_the_core_gave_it() -> None:
    ari = RecordingAri()
    command = ev.DialLeg(
        2, "caller-1-leg2", "PJSIP/x@callcontrol-pstn", "4915112345678", 20, hops=3
    )
    await executor(ari, "4915112345678").execute([command])
    assert ari.requests == [
        (
            "originate",
            (
                "PJSIP/x@callcontrol-pstn",
                "caller-1-leg2",
                {"PJSIP_HEADER(add,X-CallControl-Hops)": "3"},
            ),
        )
    ]


async def test_a_presented_rented_number_is_set_on_the_caller_before_the_leg() -> None:
    ari = RecordingAri()
    await executor(ari, "alice").execute([dial(1, "+4930123456")])
    assert ari.requests[:2] == [
        ("set_variable", ("caller-1", "CALLERID(all)", '"" <+4930123456>')),
        ("set_variable", ("caller-1", "CALLERID(pres)", "allowed")),
    ]
    assert [name for name, _ in ari.requests[2:]] == ["originate"]


@pytest.mark.parametrize("caller_number", ["alice", None])
async def test_a_withheld_call_goes_out_anonymous_and_is_set_up_once(
    caller_number: str | None,
) -> None:
    ari = RecordingAri()
    run = executor(ari, caller_number)
    await run.execute([dial(1, None, withhold=True)])
    await run.execute([dial(2, None, withhold=True)])
    sets = [args for name, args in ari.requests if name == "set_variable"]
    assert sets == [
        ("caller-1", "CALLERID(all)", '"Anonymous" <anonymous>'),
        ("caller-1", "CALLERID(pres)", "prohib"),
    ]
    # The legs copy the anonymous caller: no CallerID variables of their own
    # (only the hop header), and the SIP login is in no request at all (e2e
    # checks the carrier's INVITE).
    created = [args for name, args in ari.requests if name == "originate"]
    hop = {"PJSIP_HEADER(add,X-CallControl-Hops)": "1"}
    assert [variables for _, _, variables in created] == [hop, hop]
    assert "alice" not in str(ari.requests)


class FlakyAri(RecordingAri):
    """Asterisk that drops the first attempt of every request (a cut connection)."""

    def __init__(self, happened: bool) -> None:
        super().__init__()
        self.happened = happened
        self.attempts = 0

    async def answer(self, channel_id: str) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise AriUnavailable("POST", "/answer", None, "connection reset")
        self.requests.append(("answer", (channel_id,)))

    async def originate(self, endpoint: str, channel_id: str, **kwargs: Any) -> None:
        self.attempts += 1
        if self.attempts == 1:
            raise AriUnavailable("POST", "/channels", None, "connection reset")
        if self.happened:
            raise AriConflict("POST", "/channels", 409, "channel id exists")
        self.requests.append(("originate", (endpoint, channel_id, None)))


async def test_an_unanswered_request_is_sent_once_more_and_a_409_then_means_done() -> None:
    fed: list[ev.CallEvent] = []
    for happened in (False, True):
        ari = FlakyAri(happened)
        run = CallExecutor(
            ari=ari,  # type: ignore[arg-type]
            caller_channel_id="caller-1",
            feed=fed.append,
            outbox=None,  # type: ignore[arg-type]
            leg_args="leg,inbound,+4930123456",
        )
        await run.execute([dial(1, None)])
        assert ari.attempts == 2
        assert ari.requests == (
            []
            if happened
            else [("originate", ("PJSIP/+49305550123@callcontrol-pstn", "caller-1-leg1", None))]
        )
    assert fed == [], "neither attempt was reported as a failure"
    ari = FlakyAri(False)
    run = CallExecutor(
        ari=ari,  # type: ignore[arg-type]
        caller_channel_id="caller-1",
        feed=fed.append,
        outbox=None,  # type: ignore[arg-type]
        leg_args="leg,inbound,+4930123456",
    )
    await run.execute([ev.Answer()])
    assert ari.requests == [("answer", ("caller-1",))] and fed == []
