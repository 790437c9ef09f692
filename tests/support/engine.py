"""Runs the real engine (``callcontrol serve``) as a child process for e2e tests.

Started with its settings in the environment, ready when ``/health`` says ARI
is connected; stopped (or killed, for the restart test) by its own PID.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from support.asterisk import AsteriskSandbox


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def engine_env(
    asterisk: AsteriskSandbox, db_url: str, *, spool: Path, smtp_port: int | None = None
) -> dict[str, str]:
    """The settings of an engine on the test bed's Asterisk (ARI app: the bed's)."""
    env = {
        "CALLCONTROL_ENVIRONMENT": "test",
        "CALLCONTROL_DATABASE__URL": db_url,
        "CALLCONTROL_ARI__URL": asterisk.ari_url,
        "CALLCONTROL_ARI__USERNAME": asterisk.ari_username,
        "CALLCONTROL_ARI__PASSWORD": asterisk.ari_password,
        "CALLCONTROL_ARI__APP": asterisk.app,
        "CALLCONTROL_MEDIA__ROOT": str(asterisk.media_dir),
        "CALLCONTROL_MEDIA__ASTERISK_ROOT": asterisk.media_asterisk_root,
        "CALLCONTROL_LOG_FORMAT": "json",
        # A lab on loopback: far ends are 127.0.0.3/4 (Asterisk's own ports stay refused).
        "CALLCONTROL_FORWARDING__ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        "CALLCONTROL_ARI__RECONNECT_MAX_BACKOFF_S": "1",
        # The engine's own spool (never ./var/spool.db of the working copy).
        "CALLCONTROL_SPOOL__PATH": str(spool),
    }
    if smtp_port is not None:
        env["CALLCONTROL_SMTP__PORT"] = str(smtp_port)
    return env


class EngineProcess:
    def __init__(self, *, env: dict[str, str], log_path: Path, cwd: Path | None = None) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "CALLCONTROL_HTTP__PORT": str(self.port)}
        self.log_path = log_path
        self.cwd = cwd
        """Run from this source tree (``python -m`` imports ``callcontrol`` from it)."""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0, *, role: str = "active") -> None:
        """Start and wait until ``/health`` shows the engine in ``role``
        (``active``: connected to ARI with the app's lease; ``standby``: waiting
        for another engine's lease)."""
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "callcontrol.cli", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode}:\n{self.log_tail()}")
            health = self.health()
            if health.get("role") == role and (role != "active" or health.get("ari_connected")):
                return
            time.sleep(0.1)
        raise RuntimeError(f"engine not {role} after {timeout_s}s:\n{self.log_tail()}")

    def wait_role(self, role: str, timeout_s: float = 15.0) -> float:
        """Seconds until ``/health`` shows ``role`` (raises after ``timeout_s``)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if self.health().get("role") == role:
                return time.monotonic() - started
            time.sleep(0.05)
        raise AssertionError(f"engine not {role} after {timeout_s}s: {self.health()}")

    def health(self) -> dict[str, object]:
        try:
            with urllib.request.urlopen(self.base_url + "/health", timeout=1) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as exc:
            return dict(json.load(exc))
        except OSError:
            return {}

    def metrics(self) -> str:
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=2) as resp:
            return str(resp.read().decode())

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
