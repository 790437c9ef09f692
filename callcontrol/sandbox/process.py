"""Starting, finding and stopping the sandbox's Asterisk process.

Rules: Asterisk runs as ``chroot ROOT asterisk -f`` (as root; ``-U/-G`` fails in
the chroot) in its own session, detached from the caller, so a CLI call can
return while it keeps running. Its PID and the fingerprint of the configuration
it was started with are kept in a state file inside the root. A PID counts as
"our Asterisk" only while ``/proc/PID/root`` is the chroot and its name is
``asterisk``, so a reused PID is never signalled.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from callcontrol.sandbox.config import SandboxConfig
from callcontrol.sandbox.errors import SandboxError
from callcontrol.sandbox.layout import SandboxLayout

LOG_TAIL_LINES = 40


@dataclass(frozen=True)
class RunState:
    pid: int
    fingerprint: str
    started_at: float


def read_state(layout: SandboxLayout) -> RunState | None:
    try:
        raw: dict[str, Any] = json.loads(layout.state_file.read_text(encoding="utf-8"))
        return RunState(int(raw["pid"]), str(raw["fingerprint"]), float(raw["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(layout: SandboxLayout, state: RunState) -> None:
    layout.state_file.parent.mkdir(parents=True, exist_ok=True)
    layout.state_file.write_text(json.dumps(asdict(state)), encoding="utf-8")


def _is_sandbox_asterisk(pid: int, root: Path) -> bool:
    try:
        if os.readlink(f"/proc/{pid}/root") != str(root.resolve()):
            return False
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return name == "asterisk" and state != "Z"


def _is_alive(pid: int) -> bool:
    """Exists and is not a zombie (whatever it is called yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def asterisk_pids(layout: SandboxLayout) -> list[int]:
    """Every live Asterisk running in this chroot (normally zero or one)."""
    pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    return sorted(pid for pid in pids if _is_sandbox_asterisk(pid, layout.root))


def running_state(layout: SandboxLayout) -> RunState | None:
    state = read_state(layout)
    if state is not None and _is_sandbox_asterisk(state.pid, layout.root):
        return state
    return None


def start(layout: SandboxLayout, fingerprint: str) -> RunState:
    """Start Asterisk detached; return at once (see ``wait_for_ari``)."""
    log = layout.console_log
    log.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        log.replace(log.with_name(log.name + ".1"))
    # sh starts Asterisk in the background and exits, so Asterisk is nobody's
    # child here: no zombie, no "subprocess still running" warning.
    script = 'chroot "$1" asterisk -f >>"$2" 2>&1 </dev/null & echo $!'
    done = subprocess.run(
        ["sh", "-c", script, "sh", str(layout.root), str(log)],
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise SandboxError(f"could not start asterisk: {done.stderr.strip()}")
    state = RunState(int(done.stdout.strip()), fingerprint, time.time())
    _write_state(layout, state)
    return state


def log_tail(layout: SandboxLayout, lines: int = LOG_TAIL_LINES) -> str:
    parts: list[str] = []
    for path in (layout.console_log, layout.messages_log):
        try:
            text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        parts.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(parts) or "(no Asterisk log written)"


def ari_info(config: SandboxConfig, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """``GET /ari/asterisk/info`` → the JSON body, or None if ARI does not answer 200."""
    token = base64.b64encode(f"{config.ari_username}:{config.ari_password}".encode()).decode()
    request = urllib.request.Request(
        f"{config.ari_base_url}/asterisk/info", headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            if response.status != 200:
                return None
            body: dict[str, Any] = json.loads(response.read())
            return body
    except (OSError, ValueError, urllib.error.URLError):
        return None


def wait_for_ari(
    layout: SandboxLayout, config: SandboxConfig, pid: int, timeout_s: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        info = ari_info(config)
        if info is not None:
            return info
        # Right after start the PID may still be "sh" or "chroot" (before exec),
        # so only its death counts here, not its name.
        if not _is_alive(pid):
            raise SandboxError(f"asterisk (pid {pid}) exited during start\n{log_tail(layout)}")
        time.sleep(0.2)
    raise SandboxError(
        f"ARI did not answer at {config.ari_base_url} within {timeout_s:.0f} s\n{log_tail(layout)}"
    )


def cli(layout: SandboxLayout, command: str, timeout_s: float = 10.0) -> str:
    """Run ``asterisk -rx COMMAND`` in the chroot; return its output."""
    try:
        done = subprocess.run(
            ["chroot", str(layout.root), "asterisk", "-rx", command],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise SandboxError(f"asterisk -rx {command!r} timed out") from exc
    if done.returncode != 0:
        raise SandboxError(f"asterisk -rx {command!r} failed: {done.stderr.strip()}")
    return done.stdout


def _wait_gone(layout: SandboxLayout, pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _is_sandbox_asterisk(pid, layout.root):
            return True
        time.sleep(0.1)
    return not _is_sandbox_asterisk(pid, layout.root)


def stop(layout: SandboxLayout, pid: int, timeout_s: float = 10.0) -> None:
    """``core stop now``, then SIGTERM, then SIGKILL, each after a wait."""
    if not _is_sandbox_asterisk(pid, layout.root):
        return
    try:
        cli(layout, "core stop now", timeout_s=5.0)
    except SandboxError:
        pass
    if _wait_gone(layout, pid, timeout_s):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(layout, pid, timeout_s):
            return
    raise SandboxError(f"asterisk (pid {pid}) survived SIGKILL")


def forget(layout: SandboxLayout) -> None:
    layout.state_file.unlink(missing_ok=True)
