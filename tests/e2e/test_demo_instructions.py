"""The README's first command prints SIPp commands for a demo call; they must
work exactly as printed. This runs `callcontrol demo seed` on the test
database, takes the two `sipp` lines from scripts/demo.sh, and runs them
(with only `-nostdin` and a timeout added) against the real Asterisk and
the engine: the demo DID is forwarded to the far end, answered, and leaves
an answered CDR."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from support.data import Seeder
from support.engine import EngineProcess

from callcontrol.demo import DEMO_DID

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
UNATTENDED = ["-nostdin", "-timeout", "30s", "-timeout_error"]


def printed_sipp_commands() -> list[list[str]]:
    lines = (ROOT / "scripts" / "demo.sh").read_text().splitlines()
    return [shlex.split(line.strip()) for line in lines if line.strip().startswith("sipp -sf")]


def test_the_demo_call_printed_by_the_demo_works_as_given(
    engine: EngineProcess, data: Seeder, workdir: Path
) -> None:
    seeded = subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "demo", "seed"],
        env=engine.env, capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    far_end, caller = printed_sipp_commands()[:2]  # the forwarded call
    assert far_end[2].endswith("far_answer.xml") and caller[2].endswith("caller_answered.xml")
    far = subprocess.Popen(
        [*far_end, *UNATTENDED], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        called = subprocess.run(
            [*caller, *UNATTENDED], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert called.returncode == 0, called.stdout[-2000:] + called.stderr[-2000:]
        assert far.wait(timeout=30) == 0
    finally:
        if far.poll() is None:
            far.kill()
            far.wait()
    cdr = data.wait_for_cdr(DEMO_DID)
    assert cdr["disposition"] == "answered"
    assert cdr["answered_destination"] == "1:sip_uri:sip:demo@127.0.0.3:5080"
