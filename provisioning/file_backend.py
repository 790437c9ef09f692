"""The file back-end: ``pjsip_callcontrol.conf`` rendered from the database, then one reload.

Rules kept here:

- The file is replaced atomically: written to a temporary file in the same
  folder, fsynced, ``os.replace``d over the old one, then the folder is
  fsynced. Asterisk (or anyone) reading it sees the old or the new file,
  never a part. The file holds HA1 digests (password equivalents for this
  realm), so it is created mode 0640 (an existing file keeps its mode).
- Unchanged text is not rewritten and causes no reload: ``sync`` is idempotent.
- Changes are coalesced: ``account_changed``/``account_removed`` only mark
  the state dirty; one owned task waits until ``coalesce_s`` passes without a
  new change (at most ``max_delay_s`` after the first), re-renders everything
  from the database and reloads once. A burst of 1,000 changes is one reload.
- A failed reload is logged and retried (backing off from ``retry_s`` to 60 s)
  until it succeeds; ``sync`` reports it. A render that is already on disk but
  never reloaded is reloaded on the next round even though the text is equal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
from pathlib import Path

from provisioning.pjsip import AccountTemplates, Changes, diff_sections, render_pjsip_conf
from provisioning.settings import ProvisioningSettings
from provisioning.state import (
    DesiredState,
    PjsipReloader,
    ReloadStatus,
    StateSource,
    SyncReport,
)

log = logging.getLogger(__name__)

FILE_MODE = 0o640
MAX_RETRY_S = 60.0
DEFAULT_TEMPLATES = AccountTemplates()  # the [callcontrol-account](!) family of pjsip.conf


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that readers see either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = FILE_MODE
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as tmp:
            tmp.write(text)
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


class FileBackend:
    def __init__(
        self,
        *,
        path: Path,
        realm: str,
        source: StateSource,
        reloader: PjsipReloader | None,
        templates: AccountTemplates | None = DEFAULT_TEMPLATES,
        coalesce_s: float = 0.5,
        max_delay_s: float = 5.0,
        retry_s: float = 2.0,
    ) -> None:
        self.path = path
        self._realm = realm
        self._source = source
        self._reloader = reloader
        self._templates = templates
        self._coalesce_s = coalesce_s
        self._max_delay_s = max_delay_s
        self._retry_s = retry_s
        self._lock = asyncio.Lock()  # one render/write/reload at a time
        self._task: asyncio.Task[None] | None = None
        self._first_change: float | None = None  # loop time of the oldest unapplied change
        self._last_change = 0.0
        # On disk but not (successfully) reloaded. True at first: a process cannot know
        # whether Asterisk read the file an earlier one wrote (its reload may have
        # failed, the process ended before the retry), so its first apply reloads.
        self._reload_pending = True
        self.last_reload_error: str | None = None
        self.reloads = 0  # successful reloads asked for (tests, benchmark)

    @classmethod
    def from_settings(
        cls,
        settings: ProvisioningSettings,
        *,
        source: StateSource,
        reloader: PjsipReloader | None,
    ) -> FileBackend:
        return cls(
            path=settings.file_path,
            realm=settings.realm,
            source=source,
            reloader=reloader,
            templates=DEFAULT_TEMPLATES if settings.use_templates else None,
            coalesce_s=settings.reload_coalesce_s,
            max_delay_s=settings.reload_max_delay_s,
            retry_s=settings.reload_retry_s,
        )

    # --- Backend ------------------------------------------------------------

    async def account_changed(self, spec: object) -> None:
        self._mark_dirty()

    async def account_removed(self, login: str) -> None:
        self._mark_dirty()

    async def sync(self, state: DesiredState) -> SyncReport:
        """Render ``state`` now (no coalescing), write it if it differs, reload if needed."""
        async with self._lock:
            changes, status = await self._apply(state)
        if status == "failed":
            self._mark_dirty()  # the coalescing task retries until the reload succeeds
        return SyncReport(changes, status, self.last_reload_error if status == "failed" else None)

    async def flush(self) -> None:
        """Apply marked changes now; return once they are on disk and reloaded.

        Returns early when the reload is failing: the retries go on in the
        background and ``last_reload_error`` says why.
        """
        while self._task is not None and not self._task.done():
            if self._first_change is not None:
                self._first_change = self._last_change = float("-inf")  # stop waiting
            elif (
                self._reload_pending
                and self.last_reload_error is not None
                and not self._lock.locked()  # an apply in flight writes newer changes
            ):
                return
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    # --- internals ------------------------------------------------------------

    def _mark_dirty(self) -> None:
        loop = asyncio.get_running_loop()
        self._last_change = loop.time()
        if self._first_change is None:
            self._first_change = self._last_change
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._pump(), name="pjsip-file-reload")

    async def _pump(self) -> None:
        retry_s = self._retry_s
        while True:
            await self._wait_quiet()
            self._first_change = None
            try:
                async with self._lock:
                    _, status = await self._apply(await self._source())
            except Exception:
                log.exception("rendering pjsip_callcontrol.conf failed")
                status = "failed"
            if status != "failed":
                retry_s = self._retry_s
                if self._first_change is None:
                    return
                continue
            await asyncio.sleep(retry_s)
            retry_s = min(retry_s * 2, MAX_RETRY_S)
            if self._first_change is None:  # retry at once unless new changes are gathering
                self._first_change = self._last_change = float("-inf")

    async def _wait_quiet(self) -> None:
        loop = asyncio.get_running_loop()
        while self._first_change is not None:
            wake = min(self._last_change + self._coalesce_s, self._first_change + self._max_delay_s)
            delay = wake - loop.time()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def _apply(self, state: DesiredState) -> tuple[Changes, ReloadStatus]:
        new_text = render_pjsip_conf(
            state.accounts, state.trunks, realm=self._realm, account_templates=self._templates
        )
        try:
            old_text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            old_text = ""
        changes = diff_sections(old_text, new_text)
        if new_text != old_text:
            await asyncio.to_thread(atomic_write, self.path, new_text)
            self._reload_pending = True
            log.info("pjsip_callcontrol.conf rewritten: %s", changes.summary())
        if not self._reload_pending:
            return changes, "not-needed"
        return changes, await self._reload()

    async def _reload(self) -> ReloadStatus:
        if self._reloader is None:
            self._reload_pending = False
            return "skipped"
        result = await self._reloader.reload_pjsip()
        if result.ok:
            self._reload_pending = False
            self.last_reload_error = None
            self.reloads += 1
            log.info("res_pjsip reloaded")
            return "done"
        self.last_reload_error = result.message
        log.error("res_pjsip reload failed (will retry): %s", result.message)
        return "failed"
