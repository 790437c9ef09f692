"""JSON log lines as production writes them (callcontrol/logs.py), read from the
stderr of a separate process as the engine's log file is: one valid JSON
object per line, with the call's bound ids, values JSON has no type for
(Decimal) written as text rather than losing the line, and tracebacks kept."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

PROGRAM = """
from decimal import Decimal
import structlog
from callcontrol.logs import bind_call, configure_logging

configure_logging("info", "json")
log = structlog.get_logger("test")
bind_call(call_id="c-1", did="+4930123", channel_id="ch-1")
log.info("call_decided", decision="Reject", amount=Decimal("1.50"))
log.debug("not_shown_at_info")
try:
    raise ValueError("broken peer")
except ValueError:
    log.exception("lookup_failed")
"""


def logged_lines() -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_each_event_is_one_json_line_with_the_calls_ids_and_tracebacks_kept() -> None:
    decided, failed = logged_lines()  # the debug line is filtered out at level info
    assert decided["event"] == "call_decided" and decided["level"] == "info"
    assert (decided["call_id"], decided["did"], decided["channel_id"]) == (
        "c-1",
        "+4930123",
        "ch-1",
    )
    assert decided["amount"] == "1.50"
    assert decided["timestamp"].endswith("Z")
    assert failed["event"] == "lookup_failed" and failed["level"] == "error"
    assert "ValueError: broken peer" in failed["exception"]
