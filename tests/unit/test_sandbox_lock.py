"""``sandbox up|down`` refuse at once, in one line, while another user of the
sandbox holds the machine-wide lock; a script holding it itself says so."""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.lock import HELD_ENV, sandbox_lock


def test_a_held_lock_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "asterisk.lock"
    with path.open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(SandboxError, match=r"holds .*asterisk\.lock"), sandbox_lock(path):
            pass


def test_a_free_lock_is_taken_and_given_back(tmp_path: Path) -> None:
    path = tmp_path / "asterisk.lock"
    with sandbox_lock(path):
        with path.open("a") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with path.open("a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_the_demo_holding_the_lock_runs_its_own_sandbox_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "asterisk.lock"
    monkeypatch.setenv(HELD_ENV, "1")
    with path.open("a") as held_by_the_script:
        fcntl.flock(held_by_the_script, fcntl.LOCK_EX)
        with sandbox_lock(path):
            pass
