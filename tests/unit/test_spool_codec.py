"""The spool's CallRecord codec (``spool_codec``), pure: what it writes is read
back field by field, whatever the caller's name holds, and what an earlier
release wrote (stdlib ``json``, ASCII-escaped) is read as before."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from callcontrol.domain.call_events import CallRecord, LegRecord
from callcontrol.domain.rating import Rate
from callcontrol.domain.vocabulary import CallDirection, DestinationType, Disposition, LegOutcome
from callcontrol.repositories.spool_codec import decode_call, encode_call

T0 = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)


def answered_call(caller: str | None) -> CallRecord:
    leg = LegRecord(
        position=1, type=DestinationType.PSTN, target="+33612345678", channel_id="c-leg1",
        started_at=T0 + timedelta(seconds=1), answered_at=T0 + timedelta(seconds=3),
        ended_at=T0 + timedelta(seconds=64), outcome=LegOutcome.ANSWERED, cause=16,
        billed_seconds=61, rate=Rate("336", 12, "EUR"),
    )  # fmt: skip
    return CallRecord(
        call_id="c.1", direction=CallDirection.INBOUND, did="+4930123456", number_id=3,
        account_id=7, caller=caller, started_at=T0, answered_at=T0 + timedelta(seconds=3),
        ended_at=T0 + timedelta(seconds=64), disposition=Disposition.ANSWERED, cause=16,
        reject_reason=None, answered_position=1, ring_ms=2000, talk_ms=61_000, legs=(leg,),
    )  # fmt: skip


def test_a_record_is_one_line_and_reads_back_whatever_the_callers_name_holds() -> None:
    for caller in ("4915112345678", 'Jürgen "JJ" Müller\n', "\ud800 lone surrogate", None):
        record = answered_call(caller)
        encoded = encode_call(record)
        assert b"\n" not in encoded  # the journal keeps one record per line
        assert decode_call(encoded) == record


def test_a_record_written_by_the_stdlib_encoder_reads_the_same() -> None:
    record = answered_call("Jürgen")
    body = json.loads(encode_call(record))
    earlier = json.dumps(body, separators=(",", ":")).encode()  # ensure_ascii, as before
    assert earlier != encode_call(record)
    assert decode_call(earlier) == replace(record)
