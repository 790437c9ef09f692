"""``sandbox build`` shows debootstrap's progress lines as they come, keeps the
tail of the output for the error, and kills a build that takes too long."""

from __future__ import annotations

import io
import sys

import pytest

from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.rootfs import run_showing_progress

FAKE_DEBOOTSTRAP = "print('I: Retrieving Release'); print('noise'); print('I: Extracting base'); "


def test_progress_lines_are_shown_and_the_tail_kept() -> None:
    shown = io.StringIO()
    code, tail = run_showing_progress(
        [sys.executable, "-c", FAKE_DEBOOTSTRAP + "raise SystemExit(3)"],
        timeout_s=30,
        progress=shown,
    )
    assert code == 3
    assert shown.getvalue().splitlines() == [
        "sandbox build: Retrieving Release",
        "sandbox build: Extracting base",
    ]
    assert tail == ["I: Retrieving Release", "noise", "I: Extracting base"]


def test_a_build_that_takes_too_long_is_killed_with_one_line() -> None:
    with pytest.raises(SandboxError, match="longer than 1 s"):
        run_showing_progress(
            [sys.executable, "-c", "import time; time.sleep(30)"],
            timeout_s=1,
            progress=io.StringIO(),
        )
