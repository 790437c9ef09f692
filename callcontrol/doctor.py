"""``callcontrol doctor``: is everything the engine needs there? One line per check.

Rules this module keeps:
- Each check is an async function of the settings returning a :class:`Finding`:
  ``ok``, ``fail`` (with what to do) or ``skip`` (not configured); a check never
  raises for a condition it tests, and none changes anything but its own probe
  file (written, asked about, removed).
- Checks that depend on ARI are skipped when ARI itself failed, so the first
  failure is the one to fix.
- Towards Asterisk only ``GET`` requests and CLI ``dialplan show`` over AMI,
  except the media probe: a one-second silent WAV is played on a bridge of its
  own (``doctor-probe-*``, no channel, no call; needs ``chan_bridge_media.so``),
  which plays only if Asterisk finds the file, and is removed at once. The app
  is "taken" when another client holds its WebSocket (``GET /applications``)
  or a live lease (``CALLCONTROL_LEASE_<app>``, see ``callcontrol/engine/lease.py``).
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import aiohttp

from callcontrol.db.preflight import DatabaseProblem, check_schema
from callcontrol.engine.lease import Claim
from callcontrol.settings import Settings
from provisioning.asterisk_check import basic_auth
from provisioning.reloaders import reloader_kind

Status = Literal["ok", "fail", "skip"]


@dataclass(frozen=True)
class Finding:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status.upper():4} {self.name}: {self.detail}"


class _Ari:
    """The few read-only ARI requests of the checks."""

    def __init__(self, session: aiohttp.ClientSession, settings: Settings) -> None:
        self.session = session
        self.base = str(settings.ari.url).rstrip("/") + "/ari"
        self.headers = {
            "Authorization": basic_auth(
                settings.ari.username, settings.ari.password.get_secret_value()
            )
        }

    async def get(self, path: str, **params: str) -> tuple[int, Any]:
        timeout = aiohttp.ClientTimeout(total=5)
        async with self.session.get(
            self.base + path, params=params, headers=self.headers, timeout=timeout
        ) as response:
            body = await response.json() if response.status == 200 else None
            return response.status, body

    async def send(self, method: str, path: str, **params: str) -> int:
        timeout = aiohttp.ClientTimeout(total=5)
        async with self.session.request(
            method, self.base + path, params=params, headers=self.headers, timeout=timeout
        ) as response:
            return response.status

    async def variable(self, name: str) -> str | None:
        status, body = await self.get("/asterisk/variable", variable=name)
        return str(body.get("value", "")) if status == 200 and isinstance(body, dict) else None


async def check_database(settings: Settings) -> Finding:
    try:
        revision = await check_schema(settings.database.url)
    except DatabaseProblem as exc:
        return Finding("database", "fail", str(exc))
    return Finding("database", "ok", f"reachable, at revision {revision} (head)")


async def check_ari(ari: _Ari, settings: Settings) -> Finding:
    try:
        status, info = await ari.get("/asterisk/info")
    except (aiohttp.ClientError, TimeoutError) as exc:
        return Finding(
            "ari",
            "fail",
            f"no ARI at {ari.base} ({type(exc).__name__}); check CALLCONTROL_ARI__URL and "
            "Asterisk's http.conf (enabled, bindaddr, bindport)",
        )
    if status == 401:
        return Finding(
            "ari",
            "fail",
            f"user {settings.ari.username!r} refused (401): CALLCONTROL_ARI__USERNAME/"
            "__PASSWORD must match a type=user section of ari.conf",
        )
    if status != 200:
        return Finding("ari", "fail", f"GET /asterisk/info answered {status}")
    version = info.get("system", {}).get("version", "?") if isinstance(info, dict) else "?"
    return Finding("ari", "ok", f"Asterisk {version} at {ari.base}, credentials accepted")


async def check_app_free(ari: _Ari, settings: Settings) -> Finding:
    app = settings.ari.app
    status, apps = await ari.get("/applications")
    if status == 200 and isinstance(apps, list) and any(a.get("name") == app for a in apps):
        return Finding(
            "ari-app",
            "fail",
            f"app {app!r} is connected by another client; stop it or set another "
            "CALLCONTROL_ARI__APP (and the dialplan's Stasis() to it)",
        )
    variable = "CALLCONTROL_LEASE_" + re.sub(r"[^A-Za-z0-9]", "_", app)
    claim = Claim.decode(await ari.variable(variable) or "")
    if claim is not None and claim.expires > time.time():
        return Finding(
            "ari-app",
            "fail",
            f"app {app!r} is leased by {claim.holder} (an engine runs); this one would "
            "stand by - stop that engine or use another CALLCONTROL_ARI__APP",
        )
    return Finding("ari-app", "ok", f"app {app!r} is free")


async def check_media(ari: _Ari, settings: Settings) -> Finding:
    root = settings.media.root
    name = f"doctor-probe-{uuid.uuid4().hex[:8]}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        _write_silence(root / f"{name}.wav")
    except OSError as exc:
        return Finding("media", "fail", f"cannot write {root}: {exc.strerror}; fix its owner")
    seen_as = settings.media.asterisk_path(name)
    try:
        playing = await _plays(ari, name, seen_as)
    finally:
        (root / f"{name}.wav").unlink(missing_ok=True)
    if playing is None:
        return Finding(
            "media", "fail", "Asterisk cannot play on a bridge: load chan_bridge_media.so"
        )
    if not playing:
        return Finding(
            "media",
            "fail",
            f"{root.resolve()} is writable, but Asterisk does not find {seen_as}.wav: set "
            "CALLCONTROL_MEDIA__ASTERISK_ROOT to where Asterisk sees this folder, or mount it",
        )
    return Finding("media", "ok", f"{root.resolve()} writable; Asterisk plays it as {seen_as}")


def _write_silence(path: Path) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\0" * 16000)
    path.chmod(0o644)


async def _plays(ari: _Ari, name: str, seen_as: str) -> bool | None:
    """True: Asterisk plays the file; False: it does not find it; None: cannot try."""
    bridge = f"/bridges/{name}"
    if await ari.send("POST", bridge, type="mixing", name=name) != 200:
        return None
    try:
        started = await ari.send("POST", f"{bridge}/play/{name}", media=f"sound:{seen_as}")
        if started != 201:
            return None
        await asyncio.sleep(0.3)  # a missing file ends the playback at once
        status, body = await ari.get(f"/playbacks/{name}")
        await ari.send("DELETE", f"/playbacks/{name}")
        return status == 200 and isinstance(body, dict) and body.get("state") == "playing"
    finally:
        await ari.send("DELETE", bridge)


async def check_dialplan(settings: Settings) -> Finding:
    if not settings.ami.enabled:
        return Finding("dialplan", "skip", "needs AMI (CALLCONTROL_AMI__ENABLED=true) to read it")
    from provisioning.ami import AmiClient, AmiError

    ami = AmiClient(settings.ami, timeout_s=5.0)
    try:
        inbound = await ami.command("dialplan show callcontrol-inbound")
    except AmiError as exc:
        return Finding("dialplan", "skip", f"AMI failed: {exc}")
    finally:
        await ami.close()
    wanted = f"Stasis({settings.ari.app},inbound"
    if wanted not in inbound:
        return Finding(
            "dialplan",
            "fail",
            f"context callcontrol-inbound does not run {wanted},...): install the "
            "extensions_callcontrol.conf of `callcontrol asterisk-config render`",
        )
    return Finding("dialplan", "ok", f"callcontrol-inbound runs {wanted},...)")


async def check_ami(settings: Settings) -> Finding:
    if not settings.ami.enabled:
        return Finding("ami", "skip", "AMI off (as recommended: pjsip reloads go over ARI)")
    from provisioning.ami import AmiClient, AmiError

    ami = AmiClient(settings.ami, timeout_s=5.0)
    try:
        await ami.connect()
    except AmiError as exc:
        return Finding(
            "ami", "fail", f"{exc}; CALLCONTROL_AMI__* must match manager.conf (bindaddr, user)"
        )
    finally:
        await ami.close()
    return Finding("ami", "ok", f"logged in at {settings.ami.host}:{settings.ami.port}")


async def check_smtp(settings: Settings) -> Finding:
    smtp = settings.smtp
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(smtp.host, smtp.port), timeout=smtp.timeout_s
        )
    except (OSError, TimeoutError) as exc:
        return Finding(
            "smtp",
            "fail",
            f"no SMTP server at {smtp.host}:{smtp.port} ({type(exc).__name__}): voicemail "
            "mails would fail; check CALLCONTROL_SMTP__HOST/__PORT",
        )
    try:
        banner = await asyncio.wait_for(reader.readline(), timeout=smtp.timeout_s)
    except TimeoutError:
        banner = b""
    finally:
        writer.close()
    if not banner.startswith(b"220"):
        return Finding("smtp", "fail", f"{smtp.host}:{smtp.port} is not an SMTP server")
    return Finding("smtp", "ok", f"{smtp.host}:{smtp.port} answers 220")


async def check_provisioning(settings: Settings) -> Finding:
    part = settings.provisioning
    if part.backend == "realtime":
        return Finding("provisioning", "skip", "realtime back-end: rows in its database")
    folder = part.file_path.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        return Finding(
            "provisioning",
            "fail",
            f"{folder} is not a writable folder: CALLCONTROL_PROVISIONING__FILE_PATH must "
            "name the pjsip_callcontrol.conf pjsip.conf includes",
        )
    kind = reloader_kind(part.reload_via, ami_enabled=settings.ami.enabled)
    how = f"reloads res_pjsip over {kind.upper()}" if kind else "no reloads (reload_via=off)"
    return Finding("provisioning", "ok", f"{part.file_path} can be written; {how}")


async def run_checks(settings: Settings) -> list[Finding]:
    findings = [await check_database(settings)]
    async with aiohttp.ClientSession() as session:
        ari = _Ari(session, settings)
        reached = await check_ari(ari, settings)
        findings.append(reached)
        dependent: list[tuple[str, Callable[[_Ari, Settings], Awaitable[Finding]]]] = [
            ("ari-app", check_app_free),
            ("media", check_media),
        ]
        for name, check in dependent:
            if reached.status == "ok":
                findings.append(await check(ari, settings))
            else:
                findings.append(Finding(name, "skip", "ARI unreachable"))
    for other in (check_ami, check_dialplan, check_smtp, check_provisioning):
        findings.append(await other(settings))
    return findings
