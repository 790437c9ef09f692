"""A bare RTP receiver for e2e tests: what audio did Asterisk send to a far end?

Binds a UDP port on a loopback address (the one a SIPp far end's SDP names),
collects G.711 u-law payloads in a thread, and measures how much of the audio
is a given tone (Goertzel per 20 ms frame), so a test can tell that a prompt
it wrote (a pure tone) was played to the callee.
"""

from __future__ import annotations

import math
import socket
import threading
from types import TracebackType

FRAME = 160  # 20 ms at 8 kHz


def ulaw_to_linear(byte: int) -> int:
    byte = ~byte & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    sample = ((mantissa << 3) + 0x84) << exponent
    sample -= 0x84
    return -sample if sign else sample


def tone_share(samples: list[int], hz: float, rate: int = 8000) -> float:
    """The share of the frame's energy at ``hz`` (0..1)."""
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    energy = sum(x * x for x in samples) or 1
    return min(1.0, 2 * power / (len(samples) * energy))


class RtpSink:
    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.settimeout(0.2)
        self.payload = bytearray()
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RtpSink:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                packet = self._sock.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if len(packet) > 12 and packet[1] & 0x7F == 0:  # PCMU
                self.payload += packet[12 + 4 * (packet[0] & 0x0F) :]
                self.packets += 1

    def seconds_of_tone(self, hz: float, min_share: float = 0.8) -> float:
        samples = [ulaw_to_linear(b) for b in self.payload]
        frames = [samples[i : i + FRAME] for i in range(0, len(samples) - FRAME + 1, FRAME)]
        loud = [f for f in frames if max(abs(x) for x in f) > 1000]
        return sum(1 for f in loud if tone_share(f, hz) >= min_share) * FRAME / 8000
