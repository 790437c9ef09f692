"""How spooled work is written down: a ``CallRecord`` or a voicemail as JSON.

Explicit field by field (no pickle: a spool written by one release is read by
the next, and a file on disk must never be able to run code). Times are ISO
8601 with their offset, enums their values, money integer minor units.
``decode_*(encode_*(x)) == x`` is tested for every field. Encoded with orjson
(the journal encodes every finished call: stdlib ``json`` was a measurable
part of its CPU); the bytes are compact JSON that ``json.loads`` reads, so a
spool written before is read as before.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from callcontrol.domain.call_events import CallRecord, LegRecord
from callcontrol.domain.rating import Rate
from callcontrol.domain.vocabulary import CallDirection, DestinationType, Disposition, LegOutcome

FORMAT = 1


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _leg(leg: LegRecord) -> dict[str, Any]:
    rate = leg.rate
    return {
        "position": leg.position,
        "type": leg.type.value,
        "target": leg.target,
        "channel_id": leg.channel_id,
        "started_at": _time(leg.started_at),
        "answered_at": _time(leg.answered_at),
        "ended_at": _time(leg.ended_at),
        "outcome": leg.outcome.value,
        "cause": leg.cause,
        "billed_seconds": leg.billed_seconds,
        "rate": (
            None if rate is None else [rate.prefix, rate.rate_per_minute_minor, rate.currency]
        ),
    }


def _parse_leg(raw: dict[str, Any]) -> LegRecord:
    rate = raw["rate"]
    return LegRecord(
        position=raw["position"],
        type=DestinationType(raw["type"]),
        target=raw["target"],
        channel_id=raw["channel_id"],
        started_at=_parse_time(raw["started_at"]),
        answered_at=_parse_time(raw["answered_at"]),
        ended_at=_parse_time(raw["ended_at"]),
        outcome=LegOutcome(raw["outcome"]),
        cause=raw["cause"],
        billed_seconds=raw["billed_seconds"],
        rate=None if rate is None else Rate(rate[0], int(rate[1]), rate[2]),
    )


def encode_call(record: CallRecord) -> bytes:
    body = {
        "format": FORMAT,
        "call_id": record.call_id,
        "direction": record.direction.value,
        "did": record.did,
        "number_id": record.number_id,
        "account_id": record.account_id,
        "caller": record.caller,
        "started_at": _time(record.started_at),
        "answered_at": _time(record.answered_at),
        "ended_at": _time(record.ended_at),
        "disposition": record.disposition.value,
        "cause": record.cause,
        "reject_reason": record.reject_reason,
        "answered_position": record.answered_position,
        "ring_ms": record.ring_ms,
        "talk_ms": record.talk_ms,
        "legs": [_leg(leg) for leg in record.legs],
        "caller_answered": record.caller_answered,
    }
    try:
        return orjson.dumps(body)
    except orjson.JSONEncodeError:  # a lone surrogate in a caller name: stdlib escapes it
        return json.dumps(body, separators=(",", ":")).encode()


def decode_call(payload: bytes) -> CallRecord:
    raw = json.loads(payload)
    if raw.get("format") != FORMAT:
        raise ValueError(f"spooled CDR in unknown format {raw.get('format')!r}")
    started, ended = _parse_time(raw["started_at"]), _parse_time(raw["ended_at"])
    assert started is not None and ended is not None
    return CallRecord(
        call_id=raw["call_id"],
        direction=CallDirection(raw["direction"]),
        did=raw["did"],
        number_id=raw["number_id"],
        account_id=raw["account_id"],
        caller=raw["caller"],
        started_at=started,
        answered_at=_parse_time(raw["answered_at"]),
        ended_at=ended,
        disposition=Disposition(raw["disposition"]),
        cause=raw["cause"],
        reject_reason=raw["reject_reason"],
        answered_position=raw["answered_position"],
        ring_ms=raw["ring_ms"],
        talk_ms=raw["talk_ms"],
        legs=tuple(_parse_leg(leg) for leg in raw["legs"]),
        caller_answered=raw["caller_answered"],
    )


@dataclass(frozen=True, slots=True)
class VoicemailWork:
    """A recorded message to deliver (the audio travels beside it, as the entry's attachment)."""

    call_id: str
    number_id: int
    account_id: int | None
    did: str
    caller: str | None
    duration_s: int


def encode_voicemail(work: VoicemailWork) -> bytes:
    body = {
        "format": FORMAT,
        "call_id": work.call_id,
        "number_id": work.number_id,
        "account_id": work.account_id,
        "did": work.did,
        "caller": work.caller,
        "duration_s": work.duration_s,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_voicemail(payload: bytes) -> VoicemailWork:
    raw = json.loads(payload)
    if raw.get("format") != FORMAT:
        raise ValueError(f"spooled voicemail in unknown format {raw.get('format')!r}")
    return VoicemailWork(
        call_id=raw["call_id"],
        number_id=raw["number_id"],
        account_id=raw["account_id"],
        did=raw["did"],
        caller=raw["caller"],
        duration_s=raw["duration_s"],
    )
