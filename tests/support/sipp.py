"""Run SIPp scenarios from ``sipp-scenarios/`` and read what happened.

One ``Sipp`` object is one SIPp process. Callers usually ``run()`` (start and
wait); far ends ``start()`` in the background, ``wait_ready()`` until their UDP
port is bound, and ``wait()`` (they exit after ``calls`` calls) or ``stop()``.
Every process writes its message trace (``-trace_msg``), its statistics
(``-trace_stat``), its log actions and errors into its own folder, so a
``SippResult`` can say how many calls succeeded and what each side received.

SIPp 3.6.1 facts: exit code 0 = all calls succeeded, 1 = at least one failed,
97/99 = stopped before all calls ran, 255 = fatal (see ``errors``). Variables
given with ``-set`` must be declared in the scenario (``<Global .../>``), and
a variable assigned but never used is a fatal error.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SCENARIO_DIR = Path(__file__).resolve().parents[2] / "sipp-scenarios"
_SEPARATOR = re.compile(r"^-{20,} .*$", re.MULTILINE)
_counter = itertools.count(1)
#: Options a scenario needs to behave as its comment says. caller_expect_code
#: fails a call on purpose after ACKing the final response; SIPp's default
#: "bye" behaviour would then send a BYE for a call that never existed.
SCENARIO_ARGS: Mapping[str, Sequence[str]] = {
    "caller_expect_code.xml": ("-default_behaviors", "all,-bye"),
    "phone_call_expect_code.xml": ("-default_behaviors", "all,-bye"),
}


@dataclass(frozen=True)
class SipMessage:
    direction: str  # "sent" or "received"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def status(self) -> int | None:
        """The status code of a response, None for a request."""
        match = re.match(r"SIP/2\.0 (\d{3})", self.first_line)
        return int(match.group(1)) if match else None

    @property
    def method(self) -> str:
        """The request method, or the CSeq method of a response."""
        if self.status is None:
            return self.first_line.split(" ", 1)[0]
        return (self.header("CSeq") or " ").split()[-1]

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive; compact forms not mapped)."""
        head = self.text.split("\n\n", 1)[0]
        for line in head.split("\n")[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                return value.strip()
        return None


def parse_messages(trace: str) -> list[SipMessage]:
    """Split a ``-trace_msg`` file into messages."""
    messages: list[SipMessage] = []
    for block in _SEPARATOR.split(trace):
        block = block.strip("\n")
        title, _, body = block.partition("\n")
        if "message sent" in title:
            direction = "sent"
        elif "message received" in title:
            direction = "received"
        else:
            continue
        text = body.strip("\n").replace("\r\n", "\n")
        messages.append(SipMessage(direction, text))
    return messages


@dataclass(frozen=True)
class SippResult:
    exit_code: int
    successful: int
    failed: int
    messages: tuple[SipMessage, ...]
    stdout: str
    errors: str
    logs: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def received(self, method_or_status: str | int | None = None) -> list[SipMessage]:
        got = [m for m in self.messages if m.direction == "received"]
        if method_or_status is None:
            return got
        if isinstance(method_or_status, int):
            return [m for m in got if m.status == method_or_status]
        return [m for m in got if m.status is None and m.method == method_or_status]

    def final_invite_responses(self) -> list[int]:
        """Final (>= 200) responses to INVITEs, in order received (retransmissions included)."""
        return [
            m.status
            for m in self.received()
            if m.status is not None and m.status >= 200 and m.method == "INVITE"
        ]

    def final_response(self) -> int | None:
        finals = self.final_invite_responses()
        return finals[0] if finals else None

    def describe(self) -> str:
        """For assertion messages."""
        return (
            f"sipp exit {self.exit_code}, {self.successful} ok / {self.failed} failed, "
            f"final responses {self.final_invite_responses()}\nerrors:\n{self.errors[-2000:]}"
            f"\nlogs:\n{self.logs[-2000:]}"
        )


@dataclass
class Sipp:
    """One SIPp process running a scenario file from ``sipp-scenarios/``."""

    scenario: str
    local_ip: str
    local_port: int
    workdir: Path
    remote: str | None = None  # "127.0.0.1:5060" for callers; None for far ends
    service: str | None = None  # -s: the Request-URI user a caller dials
    keys: Mapping[str, str] = field(default_factory=dict)  # -key NAME VALUE
    variables: Mapping[str, str] = field(default_factory=dict)  # -set NAME VALUE
    calls: int = 1  # -m
    rate: float | None = None  # -r calls per second
    duration_ms: int | None = None  # -d (the <pause/> of caller_answered)
    timeout_s: float = 30.0  # -timeout, with -timeout_error
    recv_timeout_ms: int | None = None
    media_port: int | None = None  # -mp; several SIPps on one address need distinct ports
    extra_args: Sequence[str] = ()
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _dir: Path | None = field(default=None, init=False, repr=False)

    def command(self, folder: Path) -> list[str]:
        path = Path(self.scenario)
        scenario = path if path.is_absolute() else SCENARIO_DIR / self.scenario
        args = ["sipp", "-sf", str(scenario), "-i", self.local_ip, "-p", str(self.local_port)]
        # -aa: answer INFO/NOTIFY/OPTIONS/UPDATE with 200 outside the scenario.
        args += ["-m", str(self.calls), "-nostdin", "-aa", "-timeout", f"{self.timeout_s}s"]
        args += ["-timeout_error", "-trace_msg", "-message_file", str(folder / "messages.log")]
        args += ["-trace_stat", "-stf", str(folder / "stat.csv"), "-fd", "1"]
        args += ["-trace_err", "-error_file", str(folder / "errors.log")]
        args += ["-trace_logs", "-log_file", str(folder / "logs.log")]
        for name, value in self.keys.items():
            args += ["-key", name, value]
        for name, value in self.variables.items():
            args += ["-set", name, value]
        if self.service is not None:
            args += ["-s", self.service]
        if self.rate is not None:
            args += ["-r", str(self.rate)]
        if self.duration_ms is not None:
            args += ["-d", str(self.duration_ms)]
        if self.recv_timeout_ms is not None:
            args += ["-recv_timeout", str(self.recv_timeout_ms)]
        if self.media_port is not None:
            args += ["-mp", str(self.media_port)]
        args += list(SCENARIO_ARGS.get(path.name, ()))
        args += list(self.extra_args)
        if self.remote is not None:
            args.append(self.remote)
        return args

    def start(self) -> Sipp:
        name = Path(self.scenario).stem
        folder = (
            self.workdir / f"sipp-{next(_counter):03d}-{name}-{self.local_ip}-{self.local_port}"
        )
        folder.mkdir(parents=True, exist_ok=False)
        self._dir = folder
        with open(folder / "stdout.txt", "wb") as out:
            self._process = subprocess.Popen(
                self.command(folder),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )
        return self

    @property
    def pid(self) -> int:
        assert self._process is not None, "not started"
        return self._process.pid

    def wait_ready(self, timeout_s: float = 5.0) -> Sipp:
        """Block until SIPp's UDP port is bound; raise if it exited or never bound."""
        assert self._process is not None, "not started"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"sipp exited early: {self._collect().describe()}")
            if udp_port_bound(self.local_ip, self.local_port):
                return self
            time.sleep(0.02)
        raise RuntimeError(f"sipp did not bind {self.local_ip}:{self.local_port}")

    def wait(self, timeout_s: float | None = None) -> SippResult:
        """Wait for SIPp to finish (by default up to its -timeout plus a margin)."""
        assert self._process is not None, "not started"
        limit = timeout_s if timeout_s is not None else self.timeout_s + 10.0
        try:
            self._process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            self.stop()
            raise
        return self._collect()

    def stop(self, timeout_s: float = 5.0) -> SippResult:
        """Stop THIS SIPp (SIGTERM, then SIGKILL) and return what it recorded."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGTERM)
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        return self._collect()

    def run(self) -> SippResult:
        return self.start().wait()

    def _collect(self) -> SippResult:
        assert self._process is not None and self._dir is not None, "not started"
        folder = self._dir
        code = self._process.poll()
        successful, failed = read_call_counts(folder / "stat.csv")
        return SippResult(
            exit_code=code if code is not None else -1,
            successful=successful,
            failed=failed,
            messages=tuple(parse_messages(_read(folder / "messages.log"))),
            stdout=_read(folder / "stdout.txt"),
            errors=_read(folder / "errors.log"),
            logs=_read(folder / "logs.log"),
        )


def read_call_counts(stat_csv: Path) -> tuple[int, int]:
    """(successful, failed) cumulative calls from the last row of a ``-trace_stat`` file."""
    rows = [line for line in _read(stat_csv).splitlines() if line.strip()]
    if len(rows) < 2:
        return 0, 0
    header, last = rows[0].split(";"), rows[-1].split(";")
    values = dict(zip(header, last, strict=False))
    return int(values.get("SuccessfulCall(C)", 0)), int(values.get("FailedCall(C)", 0))


def udp_port_bound(ip: str, port: int) -> bool:
    """Whether some socket is bound to ip:port (IPv4 UDP) in /proc/net/udp."""
    wanted = f"{_hex_ip(ip)}:{port:04X}"
    anywhere = f"00000000:{port:04X}"
    with open("/proc/net/udp", encoding="ascii") as table:
        next(table)
        return any(line.split()[1] in (wanted, anywhere) for line in table)


def _hex_ip(ip: str) -> str:
    return "".join(f"{int(part):02X}" for part in reversed(ip.split(".")))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def kill_leftover(process_ids: Sequence[int]) -> None:
    """Best-effort SIGKILL of SIPp PIDs this test started (never by name)."""
    for pid in process_ids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def late_answer_scenario(workdir: Path, ring_ms: int) -> Path:
    """A copy of far_late_answer.xml that answers after ``ring_ms`` instead of 3000 ms.

    SIPp reads a receive timeout as a fixed number, so the ring time cannot be a
    ``-set`` variable; pass the returned path as ``Sipp(scenario=...)``.
    """
    text = (SCENARIO_DIR / "far_late_answer.xml").read_text(encoding="utf-8")
    marker = '<recv request="CANCEL" timeout="3000" ontimeout="answer"/>'
    if marker not in text:
        raise RuntimeError("far_late_answer.xml changed; update late_answer_scenario")
    path = workdir / f"far_late_answer_{ring_ms}ms.xml"
    path.write_text(text.replace('timeout="3000"', f'timeout="{ring_ms}"'), encoding="utf-8")
    return path


def ulaw_tone_wav(path: Path, seconds: float = 3.0, hz: float = 440.0) -> Path:
    """A G.711 u-law WAV (format 7, 8 kHz mono): what SIPp's rtp_stream plays."""
    import math
    import struct

    frames = int(8000 * seconds)
    samples = [int(12000 * math.sin(2 * math.pi * hz * n / 8000)) for n in range(frames)]
    data = bytes(_linear_to_ulaw(s) for s in samples)
    fmt = struct.pack("<HHIIHH", 7, 1, 8000, 8000, 1, 8) + b"\x00\x00"
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _linear_to_ulaw(sample: int) -> int:
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), clip) + bias
    exponent = 7
    for bit in range(7, -1, -1):
        if magnitude & (1 << (bit + 7)):
            exponent = bit
            break
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def speaking_caller_scenario(workdir: Path, voice: Path) -> Path:
    """caller_speaking.xml with the audio file's absolute path filled in."""
    text = (SCENARIO_DIR / "caller_speaking.xml").read_text(encoding="utf-8")
    path = workdir / "caller_speaking.xml"
    path.write_text(text.replace("VOICE_FILE", str(voice.resolve())), encoding="utf-8")
    return path
