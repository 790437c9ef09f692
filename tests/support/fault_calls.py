"""SIPp roles for fault runs, each logging every call, and reading those logs.

A fault run needs to know, per call, *when* things happened relative to the
fault, which SIPp's statistics cannot say. So the scenarios here are generated
(holding times are random, and SIPp's ``recv timeout`` is a constant) and each
one writes a line per event with SIPp's ``[timestamp]`` (wall clock, epoch
seconds in its third field) through ``-trace_logs``:

- caller (``caller_scenario``): ``INV`` (INVITE sent), ``ANS`` (200 received),
  ``FAIL <code> <cause>`` (a final failure response, ACKed; the Q.850 cause
  from its ``Reason`` header, ``-`` if none), then either ``BYE`` (Asterisk
  hung the call up, the normal end) or ``HUNG`` (no BYE within ``wait_bye_s``
  after the answer: the call never ended; the caller hangs up itself). A
  caller with ``hangup_after_ms`` (the prober) sends the BYE itself after that
  long and logs ``END`` when it is answered 200, ``BYEFAIL`` otherwise.
- far end (``far_end_scenario``): ``ANS`` (ACK of its 200 received), then
  ``DROP`` (a BYE from Asterisk came before its holding time was up: the call
  was cut), ``END`` (its own BYE answered 200: the call lasted as long as the
  far end wanted), ``BYE481`` (its BYE was answered 481: Asterisk had lost the
  call) or ``BYELOST`` (its BYE got no answer in 5 s).

Every caller carries its own number in ``From`` (``<prefix><call_number>``),
which the engine stores as the CDR's caller, so CDRs can be matched per call.
SIPp 3.6.1 rejects a scenario that assigns a variable it never uses; every
variable below is printed in a log line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: Final responses a caller expects as failures (anything else is "unexpected"
#: to SIPp and ends up as a call with no outcome, counted as ``none``).
FAILURE_CODES = (
    400, 401, 403, 404, 407, 408, 410, 480, 481, 484, 486, 487, 488,
    500, 501, 502, 503, 504, 600, 603, 604,
)  # fmt: skip

_SDP = """
      v=0
      o=sipp 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 8
      a=rtpmap:0 PCMU/8000
      a=rtpmap:8 PCMA/8000
      a=sendrecv
"""


def _log(event: str, extra: str = "") -> str:
    tail = f" {extra}" if extra else ""
    return f'<log message="{event} [timestamp] [call_id]{tail}"/>'


def caller_scenario(
    *,
    caller_prefix: str,
    wait_bye_s: float = 30.0,
    hangup_after_ms: int | None = None,
    proxied: bool = False,
) -> str:
    """A UAC: INVITE with SDP, then as described in the module docstring.

    ``proxied``: the calls go through a record-routing proxy (the cluster's
    edge), so the ACK of a 200 and the caller's BYE carry the 200's route set."""
    who = f"{caller_prefix}[call_number]"
    invite = f"""
      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "{who}" <sip:{who}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:{who}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]
{_SDP}"""
    headers = f"""
      From: "{who}" <sip:{who}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]"""
    if proxied:
        headers += "\n      [routes]"
    parts = [
        '<?xml version="1.0" encoding="ISO-8859-1" ?>',
        '<scenario name="fault_caller">',
        f'  <send retrans="500" start_rtd="1"><action>{_log("INV")}</action>'
        f"<![CDATA[{invite}]]></send>",
        '  <recv response="100" optional="true"/>',
        '  <recv response="180" optional="true"/>',
        '  <recv response="183" optional="true"/>',
    ]
    for code in FAILURE_CODES:
        # The action must sit on the recv: an ereg in a <nop> crashes SIPp 3.6.1.
        parts.append(
            f'  <recv response="{code}" optional="true" next="fail"><action>'
            '<ereg regexp="cause=([0-9]+)" search_in="hdr" header="Reason:" check_it="false" '
            f'assign_to="reason,cause"/>{_log("FAIL", f"{code} [$cause] [$reason]")}'
            "</action></recv>"
        )
    parts += [
        '  <recv response="200" rtd="1" rrs="true"><action>' + _log("ANS") + "</action></recv>",
        f"""  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]{headers}
      CSeq: 1 ACK
      Contact: <sip:{who}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
]]></send>""",
    ]
    if hangup_after_ms is None:
        parts += _wait_for_bye(wait_bye_s, headers, who)
    else:
        parts += _hang_up_after(hangup_after_ms, headers, who)
    parts += [
        '  <label id="fail"/>',
        """  <send><![CDATA[
      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
]]></send>""",
        '  <label id="done"/>',
        "</scenario>",
        "",
    ]
    return "\n".join(parts)


def _bye(headers: str, who: str, cseq: int) -> str:
    return f"""  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]{headers}
      CSeq: {cseq} BYE
      Contact: <sip:{who}@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Length: 0
]]></send>"""


def _wait_for_bye(wait_bye_s: float, headers: str, who: str) -> list[str]:
    return [
        f'  <recv request="BYE" timeout="{int(wait_bye_s * 1000)}" ontimeout="hung">'
        f"<action>{_log('BYE')}</action></recv>",
        """  <send next="done"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0
]]></send>""",
        f'  <label id="hung"/><nop><action>{_log("HUNG")}</action></nop>',
        _bye(headers, who, 2),
        '  <recv response="200" optional="true" next="done"/>',
        '  <recv response="481" timeout="5000" ontimeout="done" next="done"/>',
    ]


def _hang_up_after(ms: int, headers: str, who: str) -> list[str]:
    return [
        f'  <pause milliseconds="{ms}"/>',
        _bye(headers, who, 2),
        '  <recv response="200" timeout="5000" ontimeout="byefail" next="done">'
        f"<action>{_log('END')}</action></recv>",
        f'  <label id="byefail"/><nop next="done"><action>{_log("BYEFAIL")}</action></nop>',
    ]


def far_end_scenario(*, hold_min_ms: int, hold_max_ms: int, step_ms: int = 500) -> str:
    """A UAS that answers at once and holds each call for a random time.

    The holding time is one of the steps from ``hold_min_ms`` to ``hold_max_ms``
    (uniform); a connected-line re-INVITE during the hold is answered and the
    hold starts over for that step. Events as in the module docstring.
    """
    holds = list(range(hold_min_ms, hold_max_ms + 1, max(1, step_ms))) or [hold_min_ms]
    ok_headers = """
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]"""
    answer = f"""  <send retrans="500"><![CDATA[
      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]TAG
      [last_Call-ID:]
      [last_CSeq:]
      [last_Record-Route:]
      Contact: <sip:far@[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]
{_SDP}]]></send>"""
    parts = [
        '<?xml version="1.0" encoding="ISO-8859-1" ?>',
        '<scenario name="fault_far_end">',
        # The hold is picked before answering: SIPp 3.6.1 leaves a call stuck at
        # a <nop> when a message (Asterisk's connected-line re-INVITE, 8 ms after
        # the ACK) arrives while the call stands there, so no <nop> may follow
        # the ACK. Before the 200 nothing else arrives for the dialog.
        '  <recv request="INVITE" crlf="true" rrs="true"><action>'
        '<ereg regexp=".*" search_in="hdr" header="From:" assign_to="invite_from"/>'
        '<ereg regexp=".*" search_in="hdr" header="To:" assign_to="invite_to"/>'
        f'<sample assign_to="pick" distribution="uniform" min="0" max="{len(holds)}"/>'
        + "".join(
            f'<test assign_to="b{i}" variable="pick" compare="less_than" value="{i + 1}"/>'
            for i in range(len(holds))
        )
        + "</action></recv>",
    ]
    parts += [f'  <nop test="b{i}" next="a{i}"/>' for i in range(len(holds))]
    parts.append('  <nop next="a0"><action><log message="PICK [$pick]"/></action></nop>')
    for i, hold in enumerate(holds):
        parts += [
            f'  <label id="a{i}"/>',
            # The first 200 gives the dialog its To tag; a re-INVITE's To has it already.
            answer.replace("TAG", ";tag=[pid]SIPpTag01[call_number]"),
            f'  <recv request="ACK" crlf="true"><action>{_log("ANS")}</action></recv>',
            f'  <label id="h{i}"/>',
            # SIPp times a wait by the message it stands at: the optional one.
            f'  <recv request="INVITE" optional="true" timeout="{hold}" ontimeout="bye" '
            f'next="r{i}"/>',
            f'  <recv request="BYE" timeout="{hold}" ontimeout="bye" next="dropped">'
            f"<action>{_log('DROP')}</action></recv>",
            f'  <label id="r{i}"/>',
            answer.replace("TAG", ""),
            f'  <recv request="ACK" crlf="true" next="h{i}"/>',
        ]
    parts += [
        '  <label id="dropped"/>',
        f"""  <send next="done"><![CDATA[
      SIP/2.0 200 OK{ok_headers}
      Content-Length: 0
]]></send>""",
        '  <label id="bye"/>',
        """  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From:[$invite_to];tag=[pid]SIPpTag01[call_number]
      To:[$invite_from]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 BYE
      Contact: <sip:far@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Length: 0
]]></send>""",
        '  <recv response="481" optional="true" next="lost481"/>',
        '  <recv response="200" timeout="5000" ontimeout="lost" next="done">'
        f"<action>{_log('END')}</action></recv>",
        f'  <label id="lost481"/><nop next="done"><action>{_log("BYE481")}</action></nop>',
        f'  <label id="lost"/><nop><action>{_log("BYELOST")}</action></nop>',
        '  <label id="done"/>',
        "</scenario>",
        "",
    ]
    return "\n".join(parts)


# ---- reading the logs --------------------------------------------------------------


@dataclass
class CallRecord:
    """One SIPp call as its log lines tell it (times are epoch seconds)."""

    call_id: str
    placed_at: float | None = None
    answered_at: float | None = None
    failed_code: int | None = None
    failed_cause: str | None = None
    failed_at: float | None = None
    ended_at: float | None = None
    end: str | None = None  # BYE, HUNG, END, DROP, BYE481, BYELOST, BYEFAIL
    events: list[str] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """``answered``, ``<code>`` of a failure, or ``none`` (no final response seen)."""
        if self.answered_at is not None:
            return "answered"
        if self.failed_code is not None:
            return str(self.failed_code)
        return "none"


END_EVENTS = frozenset({"BYE", "HUNG", "END", "DROP", "BYE481", "BYELOST", "BYEFAIL"})


def parse_log(lines: Iterable[str]) -> dict[str, CallRecord]:
    """Call-ID -> record, from the lines of a ``-trace_logs`` file of these scenarios.

    A line is ``EVENT <date> <time> <epoch> <call-id> [extra ...]`` (SIPp's
    ``[timestamp]`` prints date, time and epoch). Unknown lines are skipped.
    """
    calls: dict[str, CallRecord] = {}
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        event, epoch_text, call_id, extra = fields[0], fields[3], fields[4], fields[5:]
        try:
            at = float(epoch_text)
        except ValueError:
            continue
        call = calls.setdefault(call_id, CallRecord(call_id))
        call.events.append(event)
        if event == "INV":
            call.placed_at = at
        elif event == "ANS":
            call.answered_at = at
        elif event == "FAIL":
            call.failed_at = at
            call.failed_code = _int(extra[0]) if extra else None
            call.failed_cause = extra[1] if len(extra) > 1 and extra[1].isdigit() else None
        elif event in END_EVENTS:
            call.ended_at, call.end = at, event
    return calls


def read_log(path: Path) -> dict[str, CallRecord]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    return parse_log(text.splitlines())


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None
