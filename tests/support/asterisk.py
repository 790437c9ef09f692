"""The real Asterisk for end-to-end tests: a pytest fixture factory.

``asterisk_sandbox()`` builds the chroot if needed, ``up``s it and yields an
``AsteriskSandbox`` handle; on exit it runs ``down`` only if it started
Asterisk itself, so nested users (a session fixture in conftest and a module
fixture in a test file) share one Asterisk when their configuration is equal.
If Asterisk cannot start it RAISES: an e2e test never turns into a skip.

    # tests/e2e/conftest.py
    from tests.support.asterisk import make_asterisk_fixture
    asterisk = make_asterisk_fixture()            # session scope, default settings

The engine under test must use ``media.asterisk_root=/srv/callcontrol/media``
(``MEDIA_MOUNT_POINT``) and the sandbox's ``media_dir`` as ``media.root``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from callcontrol.sandbox import control, process
from callcontrol.sandbox.config import SandboxConfig
from callcontrol.sandbox.layout import MEDIA_MOUNT_POINT, SandboxLayout
from callcontrol.settings import AriSettings, load_settings


@dataclass(frozen=True)
class AsteriskSandbox:
    layout: SandboxLayout
    config: SandboxConfig
    media_dir: Path
    version: str
    pid: int

    @property
    def ari_base_url(self) -> str:
        """``http://127.0.0.1:8088/ari``"""
        return self.config.ari_base_url

    @property
    def ari_url(self) -> str:
        """The value for ``settings.ari.url``."""
        return f"http://{self.config.http_host}:{self.config.http_port}"

    @property
    def ari_username(self) -> str:
        return self.config.ari_username

    @property
    def ari_password(self) -> str:
        return self.config.ari_password

    @property
    def app(self) -> str:
        return self.config.ari_app

    @property
    def media_asterisk_root(self) -> str:
        return MEDIA_MOUNT_POINT

    @property
    def log_path(self) -> Path:
        """Asterisk's console output (``asterisk -f``) on the host."""
        return self.layout.console_log

    @property
    def messages_log_path(self) -> Path:
        return self.layout.messages_log

    @property
    def recordings_dir(self) -> Path:
        return self.layout.recordings

    def cli(self, command: str) -> str:
        """``asterisk -rx COMMAND`` inside the chroot."""
        return process.cli(self.layout, command)

    def hangup_all(self) -> None:
        """Clear channels a failed test left behind."""
        self.cli("channel request hangup all")

    def log_tail(self) -> str:
        return process.log_tail(self.layout)


PRIVATE_APP = f"callcontrol-test-{os.getpid()}"
"""The ARI app of this test process: an engine left running elsewhere with the
default name (or another test run's) never takes this run's calls."""


def default_config(*, realtime_url: str | None = None) -> SandboxConfig:
    """The sandbox of the default settings, but with a private ARI app name
    (unless ``CALLCONTROL_ARI__APP`` names one); with ``realtime_url`` SIP
    accounts are read from that PostgreSQL database (back-end ``realtime``)."""
    settings = load_settings()
    config = SandboxConfig.from_settings(settings.ari, settings.ami)
    app = config.ari_app if config.ari_app != AriSettings().app else PRIVATE_APP
    return replace(config, realtime_url=realtime_url, ari_app=app)


def realtime_url_for(db_url: str) -> str | None:
    """The test database doubles as Asterisk's realtime database when it is PostgreSQL."""
    return db_url if db_url.startswith("postgresql") else None


def default_media_dir(layout: SandboxLayout) -> Path:
    """A fixed host folder, so every user of the sandbox mounts the same one."""
    return layout.root.parent / "e2e-media"


_LOCK_PATH = Path("/tmp/callcontrol-asterisk.lock")
_lock_holders = 0


@contextmanager
def exclusive_asterisk() -> Iterator[None]:
    """Hold the machine's one Asterisk for this process (re-entrant within it).

    The sandbox's SIP and HTTP addresses are fixed, so two test or benchmark
    processes on one machine would share - and stop - each other's Asterisk.
    The second one waits on this lock until the first is done.
    """
    global _lock_holders
    if _lock_holders:
        _lock_holders += 1
        try:
            yield
        finally:
            _lock_holders -= 1
        return
    with _LOCK_PATH.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        _lock_holders = 1
        try:
            yield
        finally:
            _lock_holders = 0
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def asterisk_sandbox(
    config: SandboxConfig | None = None,
    media_dir: Path | None = None,
    *,
    layout: SandboxLayout | None = None,
    start_timeout_s: float = control.DEFAULT_START_TIMEOUT_S,
) -> Iterator[AsteriskSandbox]:
    layout = layout if layout is not None else SandboxLayout.default()
    config = config if config is not None else default_config()
    media = (media_dir if media_dir is not None else default_media_dir(layout)).resolve()
    with exclusive_asterisk():
        running = control.up(layout, config, media, start_timeout_s=start_timeout_s)
        if running.started and media_dir is None:
            _empty(media)  # files of earlier runs, whose databases are gone
        try:
            yield AsteriskSandbox(layout, config, media, running.asterisk_version, running.pid)
        finally:
            if running.started:
                control.down(layout)


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def make_asterisk_fixture(
    *,
    scope: Any = "session",
    config: Callable[[], SandboxConfig] | None = None,
    media_dir: Callable[[], Path] | None = None,
) -> Any:
    """A pytest fixture yielding an ``AsteriskSandbox``; assign it to a name in a conftest."""

    @pytest.fixture(scope=scope)
    def asterisk() -> Iterator[AsteriskSandbox]:
        with asterisk_sandbox(
            config() if config is not None else None,
            media_dir() if media_dir is not None else None,
        ) as sandbox:
            yield sandbox

    return asterisk
