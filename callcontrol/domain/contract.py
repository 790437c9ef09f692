"""The contract between the dialplan, Asterisk and the engine, in one place.

Everything that several modules must agree on by convention lives here and
nowhere else: the Stasis arguments the dialplan passes, the dialplan contexts,
how channel, bridge, playback and recording ids are derived from a call id,
and the Q.850 causes with the SIP code chan_pjsip sends for each. Pure: no
I/O, so the core, the shell and the repositories all import it.

Ids are derived, never stored: a call's id is its caller channel's id (with
dots made safe), and everything the engine creates for the call is named from
it. So an engine that restarts can tell from Asterisk alone which leg and which
bridge belong to which call, and a bridge whose create timed out can still be
found and destroyed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ---- Stasis arguments (see dialplan/extensions_callcontrol.conf) -------------

ARG_INBOUND = "inbound"
"""First Stasis() argument of a call from the carrier to one of our DIDs."""
ARG_OUTBOUND = "outbound"
"""First Stasis() argument of a call from a customer's SIP account."""
ARG_LEG = "leg"
"""First Stasis argument of a leg the engine originated (it enters Stasis on answer)."""
CALL_DIRECTIONS = (ARG_INBOUND, ARG_OUTBOUND)

HOPS_HEADER = "X-CallControl-Hops"
"""SIP header every leg the engine originates carries: how many times a
callcontrol engine has forwarded this call (the inbound call's count + 1). The
dialplan passes an inbound INVITE's value as the third Stasis argument
(``${PJSIP_HEADER(read,X-CallControl-Hops)}``, empty when absent), so a loop
through the carrier (our DID forwards to a phone number the carrier routes to
another of our DIDs, which forwards back) is stopped at call time.
``Max-Forwards`` cannot do this: Asterisk starts every leg it originates with a
fresh ``Max-Forwards: 70`` (pjsip ``max_forwards``), so it never counts our hops."""
HOPS_HEADER_VARIABLE = f"PJSIP_HEADER(add,{HOPS_HEADER})"
"""The channel variable (set when a leg is originated) that adds the header."""
HOPS_ARG_INDEX = 2
"""Position of the hop count among an inbound call's Stasis arguments."""

INBOUND_CONTEXT = "callcontrol-inbound"
OUTBOUND_CONTEXT = "callcontrol-outbound"
REJECT_CONTEXT = "callcontrol-reject"


def leg_args(direction: str, number: str) -> str:
    """The appArgs of an originated leg: ``leg,<direction>,<number>``.

    Once the leg answers, Asterisk shows them in the leg's ``dialplan.app_data``;
    an engine that lost the caller channel still knows whose call the leg is.
    """
    return f"{ARG_LEG},{direction},{number}"


def stasis_args(app: str, app_data: str) -> tuple[str, ...] | None:
    """The arguments of ``Stasis(app,arg,...)`` from a channel's ``app_data``,
    or None when the channel is not in that application."""
    parts = tuple(app_data.split(","))
    if len(parts) < 2 or parts[0] != app:
        return None
    return parts[1:]


_HOPS = re.compile(r"[0-9]{1,9}")
MAX_HOPS_COUNTED = 999


def parse_hops(raw: str | None) -> int:
    """The hop count an inbound INVITE carried; 0 when absent or not a number
    (a header we did not write counts as no hop, never as a loop)."""
    if raw is None:
        return 0
    value = raw.strip()
    if _HOPS.fullmatch(value) is None:
        return 0
    return min(int(value), MAX_HOPS_COUNTED)


# ---- global variables shared with the dialplan ----------------------------------


def app_variable(prefix: str, app: str) -> str:
    """The name of a per-app global variable: ``<prefix><app>`` with every
    character outside ``[A-Za-z0-9]`` made ``_`` (the dialplan's ``{{APP_VAR}}``)."""
    return prefix + re.sub(r"[^A-Za-z0-9]", "_", app)


LEASE_VARIABLE = "CALLCONTROL_LEASE_"
"""Which engine serves the app (``engine/lease.py``)."""
SHED_VARIABLE = "CALLCONTROL_SHED_"
"""``<until epoch s>,<calls per 100 ms>``: until that second the dialplan turns
away new calls beyond that many per tenth of a second with ``Hangup(34)`` (503)
before ``Stasis()`` (``engine/admission.py``)."""
WINDOW_VARIABLE = "CALLCONTROL_WINDOW_"
"""``<tenth of a second>:<calls>``: the dialplan's count in the current window."""
SHED_WINDOWS_PER_S = 10
OFFERED_VARIABLE = "CALLCONTROL_OFFERED_"
"""Count of new calls the dialplan has seen (it adds one per call)."""
SHED_COUNT_VARIABLE = "CALLCONTROL_SHEDDED_"
"""Count of new calls the dialplan turned away by ``SHED_VARIABLE``."""


# ---- ids ------------------------------------------------------------------------

_LEG_ID = re.compile(r"^(?P<call>.+)-leg(?P<position>[12])$")
_BRIDGE_ID = re.compile(r"^(?P<call>.+)-bridge$")


def safe_id(raw: str) -> str:
    """Asterisk's unique ids contain dots; ids we derive from them must not."""
    return raw.replace(".", "_")


def leg_channel_id(call_id: str, position: int) -> str:
    return safe_id(f"{call_id}-leg{position}")


def bridge_id(call_id: str) -> str:
    return safe_id(f"{call_id}-bridge")


def playback_id(call_id: str, what: str) -> str:
    """``what``: greeting, ringback or vmgreeting."""
    return safe_id(f"{call_id}-{what}")


def recording_name(call_id: str) -> str:
    return safe_id(f"vm-{call_id}")


@dataclass(frozen=True, slots=True)
class LegRef:
    """A leg channel id taken apart: the call's safe id and the leg's position."""

    call_key: str
    position: int


def parse_leg_channel_id(channel_id: str) -> LegRef | None:
    match = _LEG_ID.match(channel_id)
    if match is None:
        return None
    return LegRef(match.group("call"), int(match.group("position")))


def call_key_of_bridge(bridge: str) -> str | None:
    """The safe call id a bridge id was derived from, or None if not ours."""
    match = _BRIDGE_ID.match(bridge)
    return match.group("call") if match else None


# ---- Q.850 causes and what the caller hears ------------------------------------

CAUSE_UNALLOCATED = 1  # -> SIP 404
CAUSE_NORMAL_CLEARING = 16
CAUSE_USER_BUSY = 17  # -> SIP 486
CAUSE_NO_USER_RESPONSE = 18  # -> SIP 408
CAUSE_NO_ANSWER = 19  # -> SIP 480
CAUSE_CALL_REJECTED = 21  # -> SIP 403
CAUSE_EXCHANGE_ROUTING_ERROR = 25  # -> SIP 603 (no mapping in chan_pjsip): final
CAUSE_ANSWERED_ELSEWHERE = 26
CAUSE_INVALID_NUMBER_FORMAT = 28  # -> SIP 484
CAUSE_CONGESTION = 34  # -> SIP 503
CAUSE_SWITCH_CONGESTION = 42  # -> SIP 503

CAUSE_RETRY_ELSEWHERE = CAUSE_CONGESTION
"""What the engine hangs up with when it cannot handle a call now (database
unreachable, engine saturated, restarted mid-call): 503, so a carrier tries its
next route. Not 41 ("temporary failure"): chan_pjsip has no SIP code for 41
and sends 603 Decline, which tells a carrier *not* to try elsewhere."""
CAUSE_DESTINATIONS_FAILED = CAUSE_SWITCH_CONGESTION
"""A call that was routed, but every destination failed (unreachable, refused,
congested): 503 as well, but ``Reason: Q.850;cause=42`` tells it from 34 ("this
node cannot take the call now, try another"). The cluster's edge retries 34 on
the next node and passes 42 back: the call was handled once, with its CDR, and
ringing its destinations again from another node would not help."""

SIP_CODE_OF_CAUSE: dict[int, int] = {
    1: 404,
    2: 404,
    3: 404,
    17: 486,
    18: 408,
    19: 480,
    20: 480,
    21: 403,
    22: 410,
    25: 603,  # not in hangup_cause2sip: its default (checked: tests/e2e/test_forwarding_loop.py)
    27: 502,
    28: 484,
    29: 501,
    31: 480,
    34: 503,
    38: 500,
    42: 503,
    58: 488,
    66: 503,
    127: 500,
}
"""chan_pjsip's ``hangup_cause2sip`` (Asterisk 22): the SIP response a caller
not yet answered gets for a hang-up cause. A cause missing here (16, 26, 41,
...) reaches an unanswered caller as 603 Decline."""
