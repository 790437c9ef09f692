"""The cluster sandbox's Kamailio edge: install its files, start, probe, stop.

Rules: Kamailio runs in the foreground (``-DD -E``) under ``sh``'s background
job, so it is nobody's child; its PID is kept in a state file in the edge's
folder. A PID counts as "our Kamailio" only while its name is ``kamailio`` and
its command line names our ``kamailio.cfg``, so a reused PID or another
user's Kamailio is never signalled. Ready means: it answers an OPTIONS.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from callcontrol.sandbox.errors import SandboxError

STATE_NAME = "kamailio.json"
LOG_NAME = "kamailio.log"
CFG_NAME = "kamailio.cfg"


def install(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def check(folder: Path) -> None:
    """``kamailio -c``: refuse a configuration Kamailio would not start with."""
    done = subprocess.run(
        ["kamailio", "-c", "-f", str(folder / CFG_NAME)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SandboxError(f"kamailio -c failed:\n{done.stderr.strip()[-2000:]}")


def start(folder: Path) -> int:
    log = folder / LOG_NAME
    if log.exists():
        log.replace(log.with_name(LOG_NAME + ".1"))
    # -x fm: f_malloc instead of the package's default q_malloc (which keeps
    # debugging data per chunk): measured here 0.25-0.30 instead of
    # 0.38-0.57 ms of CPU per call (docs/cluster.md).
    script = 'kamailio -DD -E -x fm -f "$1" >>"$2" 2>&1 </dev/null & echo $!'
    done = subprocess.run(
        ["sh", "-c", script, "sh", str(folder / CFG_NAME), str(log)],
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
    )
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        raise SandboxError(f"could not start kamailio: {done.stderr.strip()}")
    pid = int(done.stdout.strip())
    (folder / STATE_NAME).write_text(json.dumps({"pid": pid}), encoding="utf-8")
    return pid


def running_pid(folder: Path) -> int | None:
    try:
        pid = int(json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if is_our_kamailio(pid, folder) else None


def is_our_kamailio(pid: int, folder: Path) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    name, state = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2]
    return name == "kamailio" and state != "Z" and str(folder / CFG_NAME).encode() in cmdline


def all_pids(folder: Path) -> list[int]:
    """Every live Kamailio process (main and children) running our ``kamailio.cfg``."""
    pids = [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]
    return sorted(pid for pid in pids if is_our_kamailio(pid, folder))


def stop(folder: Path, timeout_s: float = 10.0) -> None:
    """SIGTERM to the main process (it stops its children), then SIGKILL to any
    of ours left after ``timeout_s``; forget the state."""
    pid = running_pid(folder)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while all_pids(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    for left in all_pids(folder):
        with contextlib.suppress(ProcessLookupError):
            os.kill(left, signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while all_pids(folder) and time.monotonic() < deadline:
        time.sleep(0.05)
    if all_pids(folder):
        raise SandboxError(f"kamailio {all_pids(folder)} survived SIGKILL")
    (folder / STATE_NAME).unlink(missing_ok=True)


def log_tail(folder: Path, lines: int = 30) -> str:
    try:
        text = (folder / LOG_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no kamailio log)"
    return "\n".join(text.splitlines()[-lines:])


def sip_options(
    host: str, port: int, *, timeout_s: float = 1.0, source: str = "127.0.0.1"
) -> int | None:
    """Send one OPTIONS to ``host:port``; the status code of the answer, or None."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.settimeout(timeout_s)
        local_port = sock.getsockname()[1]
        call_id = uuid.uuid4().hex
        message = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{local_port};branch=z9hG4bK{call_id[:16]};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{source}>;tag={call_id[:8]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(message.encode(), (host, port))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65535)
            except OSError:
                return None
            parts = data.split(b" ", 2)
            if len(parts) > 1 and call_id.encode() in data and parts[1].isdigit():
                code = int(parts[1])
                if code >= 200:
                    return code
    return None


def wait_ready(folder: Path, pid: int, host: str, port: int, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sip_options(host, port, timeout_s=0.5) == 200:
            return
        if not is_our_kamailio(pid, folder) and not _alive(pid):
            raise SandboxError(f"kamailio (pid {pid}) exited during start\n{log_tail(folder)}")
    raise SandboxError(f"kamailio did not answer OPTIONS at {host}:{port}\n{log_tail(folder)}")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8")
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def rpc(folder: Path, command: str, timeout_s: float = 5.0) -> str:
    """``kamcmd`` on the edge's control socket (e.g. ``dispatcher.list``)."""
    done = subprocess.run(
        ["kamcmd", "-s", f"unix:{folder / 'kamailio_ctl'}", *command.split()],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise SandboxError(f"kamcmd {command} failed: {done.stderr.strip()}")
    return done.stdout


def edge_counters(folder: Path) -> dict[str, int]:
    """The edge's script counters (``edge_shed``, ``edge_admitted``) by name."""
    text = rpc(folder, "stats.get_statistics script:")
    counters: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.strip().partition(" = ")
        if value.strip().isdigit():
            counters[name.removeprefix("script:")] = int(value)
    return counters


def dispatcher_flags(folder: Path, node_uris: dict[str, str]) -> dict[str, str]:
    """Node name -> the dispatcher's flags (``AP`` active, ``IP`` inactive and
    probing ...), from ``kamcmd dispatcher.list``; ``node_uris``: name -> SIP URI."""
    text = rpc(folder, "dispatcher.list")
    names = {uri: name for name, uri in node_uris.items()}
    return {
        names.get(uri, uri): flags
        for uri, flags in re.findall(r"URI: (sip:\S+)\s+FLAGS: (\S+)", text)
    }
