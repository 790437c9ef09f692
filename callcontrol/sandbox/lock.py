"""The machine-wide lock on the one sandbox Asterisk.

The sandbox's SIP and HTTP addresses are fixed, so the tests, the benchmarks,
``scripts/demo.sh`` and ``callcontrol sandbox up|down`` share one Asterisk.
They all take ``flock`` on the same file (``tests/support/asterisk.py``
``exclusive_asterisk`` does too). The sandbox commands do not wait: they refuse
in one line while someone else holds it. A script that holds the lock itself
(the demo) sets ``CALLCONTROL_ASTERISK_LOCK_HELD=1`` for the commands it runs.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from callcontrol.sandbox.errors import SandboxError

LOCK_PATH = Path("/tmp/callcontrol-asterisk.lock")
HELD_ENV = "CALLCONTROL_ASTERISK_LOCK_HELD"


@contextmanager
def sandbox_lock(path: Path = LOCK_PATH) -> Iterator[None]:
    """Hold the lock for the duration, or raise ``SandboxError`` at once if it is taken."""
    if os.environ.get(HELD_ENV) == "1":
        yield
        return
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise SandboxError(
                f"another user of the sandbox (tests, a benchmark or the demo) holds {path}; "
                "try again when it is done"
            ) from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
