"""Fault injection and fault accounting for e2e tests and ``bench.faults``.

- ``AriProxy``: a TCP proxy in front of Asterisk's HTTP/ARI port; point the
  engine's ``CALLCONTROL_ARI__URL`` at ``proxy.url`` and ``cut()`` aborts every
  open connection at once (REST keep-alives and the events WebSocket: the
  "ARI socket cut" fault). New connections are accepted again at once. Its
  event loop runs in a thread, so synchronous pytest code can use it.
  (``ss -K dst 127.0.0.1 dport = 8088`` does the same on kernels built with
  ``CONFIG_INET_DIAG_DESTROY``; the proxy needs no kernel support and cuts
  only the engine's connections.)
- ``leftovers()``: what a run left in Asterisk (channels, bridges, and what the
  app still holds), as counts and ids.
- ``cdr_callers()`` / ``cdr_ids()``: the CDRs the engine wrote, per caller
  number (the fault callers give every call its own number) or per CDR id
  (the caller's channel id).
- ``Prober``: a SIPp caller on its own address placing a short probe call
  every ~150 ms to a forwarded DID (and the far end it reaches), so a test can
  ask how long after a fault new calls were clean again (``recovery_s``).

Nothing here kills anything it did not start; every process is stopped by its PID.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from callcontrol.db.engine import create_engine
from callcontrol.settings import DatabaseSettings

from .fault_calls import CallRecord, caller_scenario, far_end_scenario, read_log

T = TypeVar("T")

# ---- the ARI socket cut --------------------------------------------------------


class AriProxy:
    """Forwards 127.0.0.1:<free port> to Asterisk's HTTP port; ``cut()`` drops all."""

    def __init__(self, upstream_host: str = "127.0.0.1", upstream_port: int = 8088) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    @property
    def url(self) -> str:
        """The value for ``CALLCONTROL_ARI__URL``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    def start(self) -> AriProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    def cut(self) -> int:
        """Abort every open connection (both sides, RST); return how many."""

        async def abort_all() -> int:
            pairs, self._pairs = list(self._pairs), set()
            for client, server in pairs:
                client.transport.abort()
                server.transport.abort()
            return len(pairs)

        count = self._call(abort_all())
        self.cuts += 1
        return count

    def stop(self) -> None:
        if not self._thread.is_alive():
            return

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for client, server in list(self._pairs):
                client.transport.abort()
                server.transport.abort()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> AriProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        pair = (client_w, server_w)
        self._pairs.add(pair)
        try:
            await asyncio.gather(_pump(client_r, server_w), _pump(server_r, client_w))
        finally:
            self._pairs.discard(pair)
            client_w.transport.abort()
            server_w.transport.abort()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with suppress(OSError, asyncio.IncompleteReadError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    with suppress(OSError):
        writer.write_eof()


# ---- what is left in Asterisk ------------------------------------------------------


@dataclass(frozen=True)
class Leftovers:
    channels: tuple[str, ...]
    bridges: tuple[str, ...]
    app_channels: tuple[str, ...]  # the channel ids the app is subscribed to
    app_bridges: tuple[str, ...]

    @property
    def clean(self) -> bool:
        return not self.channels and not self.bridges


def ari_get(base_url: str, path: str, user: str, password: str, timeout_s: float = 5.0) -> object:
    """GET ``base_url + path`` (base like ``http://127.0.0.1:8088/ari``) -> JSON, or None on 404."""
    return ari_request("GET", base_url, path, user, password, timeout_s)


def ari_request(
    method: str, base_url: str, path: str, user: str, password: str, timeout_s: float = 5.0
) -> object:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        base_url.rstrip("/") + path, method=method, headers={"Authorization": f"Basic {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return json.loads(body) if body else None


def leftovers(ari_base_url: str, user: str, password: str, app: str) -> Leftovers:
    channels = ari_get(ari_base_url, "/channels", user, password) or []
    bridges = ari_get(ari_base_url, "/bridges", user, password) or []
    application = ari_get(ari_base_url, f"/applications/{app}", user, password) or {}
    assert isinstance(channels, list) and isinstance(bridges, list)
    assert isinstance(application, dict)
    return Leftovers(
        channels=tuple(str(c["id"]) for c in channels),
        bridges=tuple(str(b["id"]) for b in bridges),
        app_channels=tuple(str(c) for c in application.get("channel_ids", [])),
        app_bridges=tuple(str(b) for b in application.get("bridge_ids", [])),
    )


def clear_asterisk(ari_base_url: str, user: str, password: str) -> int:
    """Hang up every channel and destroy every bridge (between fault runs); return the count."""
    gone = 0
    found = leftovers(ari_base_url, user, password, "-")
    for channel in found.channels:
        with suppress(urllib.error.URLError, OSError):
            ari_request("DELETE", ari_base_url, f"/channels/{channel}", user, password)
            gone += 1
    for bridge in found.bridges:
        with suppress(urllib.error.URLError, OSError):
            ari_request("DELETE", ari_base_url, f"/bridges/{bridge}", user, password)
            gone += 1
    return gone


# ---- CDRs ------------------------------------------------------------------------


def _query(db_url: str, sql: str, params: dict[str, object]) -> list[tuple[object, ...]]:
    async def run() -> list[tuple[object, ...]]:
        engine = create_engine(DatabaseSettings(url=db_url), pooled=False)
        try:
            async with engine.connect() as conn:
                result = await conn.execute(sa.text(sql), params)
                return [tuple(row) for row in result]
        finally:
            await engine.dispose()

    return asyncio.run(run())


def cdr_callers(db_url: str, did: str) -> Counter[str]:
    """Caller number -> CDRs written for calls to ``did`` (more than 1 = a duplicate)."""
    rows = _query(db_url, "SELECT caller FROM cdrs WHERE did = :did", {"did": did})
    return Counter(str(row[0]).lstrip("+") for row in rows if row[0] is not None)


def cdr_ids(db_url: str, did: str) -> list[str]:
    """The ids (the caller's channel id) of the CDRs written for calls to ``did``."""
    rows = _query(db_url, "SELECT id FROM cdrs WHERE did = :did", {"did": did})
    return [str(row[0]) for row in rows]


def cdr_count(db_url: str, did: str) -> int:
    rows = _query(db_url, "SELECT count(*) FROM cdrs WHERE did = :did", {"did": did})
    return int(str(rows[0][0])) if rows else 0


# ---- recovery time --------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    placed_at: float
    ok: bool
    outcome: str  # answered+END, a failure code, none ...


#: A probe answered later than this is not a clean call (a caller would have
#: heard seconds of silence), even if it was answered in the end.
PROBE_ANSWER_LIMIT_S = 2.0


def probes_from(
    records: dict[str, CallRecord], answer_limit_s: float = PROBE_ANSWER_LIMIT_S
) -> list[Probe]:
    """A probe is ok when answered within ``answer_limit_s`` and its own BYE was answered 200."""
    probes = [
        Probe(
            placed_at=r.placed_at,
            ok=r.answered_at is not None
            and r.answered_at - r.placed_at <= answer_limit_s
            and r.end == "END",
            outcome=r.outcome if r.end is None else f"{r.outcome}/{r.end}",
        )
        for r in records.values()
        if r.placed_at is not None
    ]
    return sorted(probes, key=lambda p: p.placed_at)


def recovery_s(probes: Sequence[Probe], fault_start: float, fault_end: float) -> float | None:
    """Seconds after ``fault_end`` until probe calls succeeded continuously.

    The last failed probe placed at or after ``fault_start`` ends the outage;
    the first good probe placed after it is the recovery. 0.0 when no probe
    failed, when recovery came before ``fault_end`` it is 0.0 too, and None
    when no probe after the last failure succeeded (not recovered).
    """
    relevant = [p for p in probes if p.placed_at >= fault_start]
    failed = [p for p in relevant if not p.ok]
    if not failed:
        return 0.0
    last_bad = failed[-1].placed_at
    later = [p for p in relevant if p.placed_at > last_bad and p.ok]
    if not later:
        return None
    return max(0.0, later[0].placed_at - fault_end)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (the smallest value with ``pct`` % at or below it)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil without floats drifting
    return ordered[min(len(ordered), int(rank)) - 1]


# ---- the prober -------------------------------------------------------------------


@dataclass
class SippRole:
    """One SIPp process of a generated scenario, with its own folder and call log."""

    name: str
    folder: Path
    scenario: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.folder / "calls.log"

    def start(self) -> SippRole:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{self.name}.xml"
        path.write_text(self.scenario, encoding="utf-8")
        command = ["sipp", "-sf", str(path), "-nostdin", "-trace_logs"]
        command += ["-log_file", str(self.log_path), "-trace_err"]
        command += ["-error_file", str(self.folder / "errors.log"), *self.args]
        with open(self.folder / "stdout.txt", "wb") as out:
            self.process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=self.folder,
            )  # fmt: skip
        return self

    def wait(self, timeout_s: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            return None

    def stop(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def calls(self) -> dict[str, CallRecord]:
        return read_log(self.log_path)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def udp_bound(ip: str, port: int) -> bool:
    wanted = "".join(f"{int(part):02X}" for part in reversed(ip.split("."))) + f":{port:04X}"
    with open("/proc/net/udp", encoding="ascii") as table:
        next(table)
        return any(line.split()[1] == wanted for line in table)


def wait_bound(role: SippRole, ip: str, port: int, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not udp_bound(ip, port):
        if role.process is None or role.process.poll() is not None or time.monotonic() > deadline:
            out = (role.folder / "stdout.txt").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"SIPp {role.name} did not start: {out}")
        time.sleep(0.05)


#: A probe placed this shortly before the prober stopped may not have finished.
IN_FLIGHT_S = 3.0


@dataclass
class Prober:
    """Probe calls from ``caller_ip`` to ``service`` (a DID forwarded to ``far_end``).

    Each probe: INVITE -> answered by the far end -> 300 ms -> the probe's own
    BYE -> 200. Placed ``rate`` per second (default ~every 150 ms) for at most
    ``max_seconds``; ``stop()`` ends it early. Results via ``probes()``.
    """

    folder: Path
    service: str
    far_end: tuple[str, int] = ("127.0.0.4", 5080)
    caller_ip: str = "127.0.0.7"
    caller_port: int = 5070
    asterisk: str = "127.0.0.1:5060"
    rate: float = 6.5
    max_seconds: float = 600.0
    caller_prefix: str = "4917700"
    proxied: bool = False
    """Through a record-routing proxy (the cluster's edge): the BYE follows the route set."""
    stopped_at: float | None = None
    _control_port: int = 0
    _roles: list[SippRole] = field(default_factory=list)

    def start(self) -> Prober:
        far = SippRole(
            "probe-far",
            self.folder / "probe-far",
            far_end_scenario(hold_min_ms=60_000, hold_max_ms=60_000),
            ["-i", self.far_end[0], "-p", str(self.far_end[1]), "-recv_timeout", "70000"],
        ).start()
        self._roles.append(far)
        wait_bound(far, *self.far_end)
        calls = int(self.rate * self.max_seconds) + 1
        self._control_port = free_udp_port()
        caller = SippRole(
            "probe",
            self.folder / "probe",
            caller_scenario(
                caller_prefix=self.caller_prefix, hangup_after_ms=300, proxied=self.proxied
            ),
            [
                "-i", self.caller_ip, "-p", str(self.caller_port), "-s", self.service,
                "-r", str(int(self.rate * 10)), "-rp", "10000", "-m", str(calls),
                "-l", "1000", "-recv_timeout", "10000", "-timeout", f"{self.max_seconds + 30}s",
                "-cp", str(self._control_port),
                self.asterisk,
            ],
        ).start()  # fmt: skip
        self._roles.append(caller)
        return self

    def stop(self) -> None:
        """Stop placing probes, let those in flight finish (<= 5 s), then stop both roles."""
        if self.stopped_at is None and self._roles:
            self.stopped_at = time.time()
            caller = self._roles[-1]
            if caller.process is not None and caller.process.poll() is None:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:
                    # "p" pauses the traffic: no new probe, those in flight finish.
                    # (SIPp's soft quit "q" aborts a probe in its 300 ms talk.)
                    control.sendto(b"p", ("127.0.0.1", self._control_port))
                time.sleep(IN_FLIGHT_S)
        for role in reversed(self._roles):
            role.stop()

    def probes(self) -> list[Probe]:
        """Every probe placed, but one left without a result just before the stop."""
        caller = next((r for r in self._roles if r.name == "probe"), None)
        if caller is None:
            return []
        cutoff = (self.stopped_at or time.time()) - IN_FLIGHT_S
        return [
            p for p in probes_from(caller.calls()) if p.placed_at <= cutoff or p.outcome != "none"
        ]

    def __enter__(self) -> Prober:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextmanager
def ari_proxy(upstream_port: int = 8088) -> Iterator[AriProxy]:
    proxy = AriProxy(upstream_port=upstream_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
