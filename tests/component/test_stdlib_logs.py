"""Lines logged through stdlib ``logging`` (provisioning does) come out as the
engine's structured lines: JSON with the event, level, logger name and the
call's bound context; INFO is not lost."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import logging
from callcontrol.logs import bind_call, configure_logging
configure_logging("info", "json")
bind_call(call_id="c1", did="+4930123456", channel_id="ch1")
logging.getLogger("provisioning.service").info("reloaded %s accounts", 3)
logging.getLogger("provisioning.ami").error("AMI down")
logging.getLogger("provisioning.ami").debug("not shown at info")
"""


def test_stdlib_lines_are_json_lines_with_the_calls_context() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["event"] for line in lines] == ["reloaded 3 accounts", "AMI down"]
    first, second = lines
    assert first["level"] == "info" and first["logger"] == "provisioning.service"
    assert first["call_id"] == "c1" and "timestamp" in first
    assert second["level"] == "error"
