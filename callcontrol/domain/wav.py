"""Greeting and voicemail uploads: is this a WAV file Asterisk will play?

Owns the check of an uploaded file against the business rule "greeting and
voicemail files must be WAV, PCM, 8 kHz, 16 bit, mono; upload must check this
and say so". Pure: bytes in, a ``WavInfo`` or a ``WavRejected`` out.

Rules kept here:

- RIFF is parsed chunk by chunk with ``struct`` (not the stdlib ``wave``
  module, whose errors are vague). Unknown chunks (``LIST``, ``fact``, ``bext``,
  ...) are skipped; a chunk of odd size is followed by one pad byte; a missing
  final pad byte and trailing bytes too short to be a chunk header are ignored;
  the RIFF size field is ignored (many writers get it wrong).
- Whatever the bytes, the only exception raised is ``WavRejected`` (a
  ``InvalidInput``), whose message says what is wrong and what is expected,
  and whose ``problems`` name the failures for code.
- "Telephony WAV" is exactly what Asterisk's ``format_wav`` reads as ``.wav``
  (checked against its source): format tag 1 (plain PCM), 1 channel,
  8000 Hz, block align 2 (16-bit). So WAVE_FORMAT_EXTENSIBLE (0xFFFE) is
  refused even when its sub-format is PCM: Asterisk logs "Not a supported wav
  file format (65534)" and plays nothing. 16 kHz is Asterisk's ``.wav16`` and
  is not accepted either: the service stores one format.
- A data chunk announcing more bytes than the file holds is refused (the
  upload was cut), as is a data chunk with no whole sample.
- Asterisk's reader does not skip pad bytes after odd-sized chunks and stops
  reading ``header size`` bytes early, so callers store ``canonical_wav()``
  (a 44-byte header followed by the samples), never the uploaded bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, NoReturn

from callcontrol.domain.errors import InvalidInput

EXPECTED = "expected WAV PCM, 8000 Hz, 16-bit, mono"
CONVERT_HINT = "convert it with e.g. `sox input -r 8000 -c 1 -b 16 -e signed-integer output.wav`"

TELEPHONY_RATE = 8000
TELEPHONY_BITS = 16
TELEPHONY_CHANNELS = 1

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# The 14 bytes that follow the 2-byte format tag in a KSDATAFORMAT_SUBTYPE_* GUID.
_KSDATAFORMAT_SUFFIX = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

_FORMAT_NAMES = {
    0x0001: "PCM",
    0x0002: "Microsoft ADPCM",
    0x0003: "IEEE float",
    0x0006: "A-law",
    0x0007: "µ-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MP3",
    0xFFFE: "WAVE_FORMAT_EXTENSIBLE",
}

_RIFF_HEADER = struct.Struct("<4sI4s")
_CHUNK_HEADER = struct.Struct("<4sI")
_FMT_BASE = struct.Struct("<HHIIHH")  # tag, channels, rate, byte rate, block align, bits
_FMT_EXTENSIBLE_SIZE = 40


class WavProblem(StrEnum):
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_WAV = "not_wav"
    TRUNCATED_HEADER = "truncated_header"
    CORRUPT_HEADER = "corrupt_header"
    MISSING_FMT = "missing_fmt"
    MISSING_DATA = "missing_data"
    TRUNCATED_AUDIO = "truncated_audio"
    NOT_PCM = "not_pcm"
    WRONG_CHANNELS = "wrong_channels"
    WRONG_RATE = "wrong_rate"
    WRONG_BITS = "wrong_bits"
    NO_AUDIO = "no_audio"


class WavRejected(InvalidInput):
    """The upload is not a WAV file Asterisk will play; the message says why."""

    code: ClassVar[str] = "wav_rejected"

    def __init__(self, message: str, *problems: WavProblem) -> None:
        super().__init__(message)
        self.message = message
        self.problems: tuple[WavProblem, ...] = problems


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What the RIFF header says, checked against the file's real size."""

    channels: int
    sample_rate: int
    bits: int
    format_tag: int  # as written; 0xFFFE for WAVE_FORMAT_EXTENSIBLE
    subformat_tag: int | None  # the sub-format of an EXTENSIBLE header, else None
    block_align: int
    duration_ms: int  # whole frames only, rounded down
    data_offset: int  # where the samples start in the file
    data_size: int  # bytes of samples, as announced by the data chunk

    @property
    def effective_format(self) -> int:
        """The encoding of the samples: the sub-format for EXTENSIBLE headers."""
        if self.format_tag == WAVE_FORMAT_EXTENSIBLE and self.subformat_tag is not None:
            return self.subformat_tag
        return self.format_tag

    @property
    def frames(self) -> int:
        return self.data_size // self.block_align

    def describe(self) -> str:
        """E.g. 'PCM, 44100 Hz, 16-bit, stereo'."""
        return (
            f"{_format_name(self.format_tag, self.subformat_tag)}, {self.sample_rate} Hz, "
            f"{self.bits}-bit, {_channels_name(self.channels)}"
        )


@dataclass(frozen=True, slots=True)
class _Fmt:
    format_tag: int
    channels: int
    sample_rate: int
    block_align: int
    bits: int
    subformat_tag: int | None


def inspect_wav(data: bytes, *, max_bytes: int) -> WavInfo:
    """Describe a WAV file of any encoding; raise ``WavRejected`` if it is not one."""
    size = len(data)
    if size == 0:
        raise WavRejected(f"the file is empty; {EXPECTED}", WavProblem.EMPTY)
    if size > max_bytes:
        raise WavRejected(
            f"the file is {_human_size(size)}, more than the {_human_size(max_bytes)} allowed; "
            f"{EXPECTED} (one minute of it is about 960 KB)",
            WavProblem.TOO_LARGE,
        )
    if size < _RIFF_HEADER.size or data[:4] != b"RIFF":
        _reject_not_riff(data)
    _riff, _riff_size, form = _RIFF_HEADER.unpack_from(data, 0)
    if form != b"WAVE":
        raise WavRejected(
            f"a RIFF file of type {_fourcc(form)}, not a WAV file (WAVE); {EXPECTED}",
            WavProblem.NOT_WAV,
        )
    fmt, data_offset, data_size = _walk_chunks(data)
    frame = fmt.block_align
    duration_ms = (data_size // frame) * 1000 // fmt.sample_rate
    return WavInfo(
        channels=fmt.channels,
        sample_rate=fmt.sample_rate,
        bits=fmt.bits,
        format_tag=fmt.format_tag,
        subformat_tag=fmt.subformat_tag,
        block_align=fmt.block_align,
        duration_ms=duration_ms,
        data_offset=data_offset,
        data_size=data_size,
    )


def require_telephony_wav(data: bytes, *, max_bytes: int) -> WavInfo:
    """Accept only WAV PCM 8000 Hz 16-bit mono with at least one sample."""
    info = inspect_wav(data, max_bytes=max_bytes)
    got = f"got {info.describe()}"
    if info.format_tag == WAVE_FORMAT_EXTENSIBLE and info.subformat_tag == WAVE_FORMAT_PCM:
        raise WavRejected(
            f"the header is WAVE_FORMAT_EXTENSIBLE (PCM inside), which Asterisk does not "
            f"read; {EXPECTED} with a plain PCM header (format 1); {got}; {CONVERT_HINT}",
            WavProblem.NOT_PCM,
        )
    if info.format_tag != WAVE_FORMAT_PCM:
        name = _format_name(info.format_tag, info.subformat_tag)
        raise WavRejected(
            f"the audio is encoded as {name}, not PCM; {EXPECTED}; {got}; {CONVERT_HINT}",
            WavProblem.NOT_PCM,
        )
    problems = _format_problems(info)
    if problems:
        wrong = " and ".join(_PROBLEM_WORDS[p] for p in problems)
        message = f"wrong {wrong}: {EXPECTED}; {got}"
        if info.sample_rate == 16000:
            message += (
                "; 16 kHz WAV is what Asterisk calls .wav16, which this service does not "
                "accept: resample to 8000 Hz"
            )
        raise WavRejected(f"{message}; {CONVERT_HINT}", *problems)
    if info.frames == 0:
        raise WavRejected(
            f"the file holds no audio (its data chunk has 0 samples); {EXPECTED} "
            f"with at least one sample",
            WavProblem.NO_AUDIO,
        )
    return info


def canonical_wav(data: bytes, info: WavInfo) -> bytes:
    """The same samples behind a canonical 44-byte header: what Asterisk reads best.

    Extra chunks (LIST, fact, ...) and any part-frame at the end are dropped.
    ``info`` must come from ``require_telephony_wav(data, ...)``.
    """
    size = info.frames * info.block_align
    samples = data[info.data_offset : info.data_offset + size]
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + size,
        b"WAVE",
        b"fmt ",
        16,
        WAVE_FORMAT_PCM,
        info.channels,
        info.sample_rate,
        info.sample_rate * info.block_align,
        info.block_align,
        info.bits,
        b"data",
        size,
    )
    return header + samples


_PROBLEM_WORDS = {
    WavProblem.WRONG_RATE: "sample rate",
    WavProblem.WRONG_BITS: "bit depth",
    WavProblem.WRONG_CHANNELS: "channels",
}


def _format_problems(info: WavInfo) -> tuple[WavProblem, ...]:
    problems: list[WavProblem] = []
    if info.sample_rate != TELEPHONY_RATE:
        problems.append(WavProblem.WRONG_RATE)
    if info.bits != TELEPHONY_BITS:
        problems.append(WavProblem.WRONG_BITS)
    if info.channels != TELEPHONY_CHANNELS:
        problems.append(WavProblem.WRONG_CHANNELS)
    return tuple(problems)


def _walk_chunks(data: bytes) -> tuple[_Fmt, int, int]:
    """Find fmt and data; return (fmt, data offset, data size)."""
    size = len(data)
    pos = _RIFF_HEADER.size
    fmt: _Fmt | None = None
    if size < pos + _CHUNK_HEADER.size:
        raise WavRejected(
            f"the header is cut short: the file ends after {size} bytes, before its first "
            f"chunk; a WAV header is at least 44 bytes; {EXPECTED}",
            WavProblem.TRUNCATED_HEADER,
        )
    while pos + _CHUNK_HEADER.size <= size:
        chunk_id, chunk_size = _CHUNK_HEADER.unpack_from(data, pos)
        body = pos + _CHUNK_HEADER.size
        if chunk_id == b"data":
            if fmt is None:
                raise _missing_fmt()
            _check_data_fits(chunk_size, body, size)
            return fmt, body, chunk_size
        if body + chunk_size > size:
            raise WavRejected(
                f"the file is cut short: its {_fourcc(chunk_id)} chunk at byte {pos} announces "
                f"{chunk_size} bytes but the file ends {size - body} bytes later; {EXPECTED}",
                WavProblem.TRUNCATED_HEADER,
            )
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body : body + chunk_size])
        pos = body + chunk_size + (chunk_size & 1)
    if fmt is None:
        raise _missing_fmt()
    raise WavRejected(
        f"no 'data' chunk: the file has a WAV header but no audio; {EXPECTED}",
        WavProblem.MISSING_DATA,
    )


def _missing_fmt() -> WavRejected:
    return WavRejected(
        f"no 'fmt ' chunk before the audio: the file does not say how its audio is "
        f"encoded; {EXPECTED}",
        WavProblem.MISSING_FMT,
    )


def _check_data_fits(chunk_size: int, body: int, size: int) -> None:
    present = size - body
    if chunk_size <= present:
        return
    if chunk_size == 0xFFFFFFFF:
        detail = (
            "its data chunk size was never filled in (0xFFFFFFFF, as written by a "
            "streaming recorder)"
        )
    else:
        detail = (
            f"its data chunk announces {chunk_size} bytes of audio but only {present} are present"
        )
    raise WavRejected(
        f"the audio is cut short: {detail}; upload the complete file; {EXPECTED}",
        WavProblem.TRUNCATED_AUDIO,
    )


def _parse_fmt(body: bytes) -> _Fmt:
    if len(body) < _FMT_BASE.size:
        raise WavRejected(
            f"the 'fmt ' chunk is {len(body)} bytes, too short to describe the audio "
            f"(at least 16); {EXPECTED}",
            WavProblem.CORRUPT_HEADER,
        )
    tag, channels, rate, _byte_rate, block_align, bits = _FMT_BASE.unpack_from(body, 0)
    subformat: int | None = None
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < _FMT_EXTENSIBLE_SIZE:
            raise WavRejected(
                f"the 'fmt ' chunk says WAVE_FORMAT_EXTENSIBLE but is {len(body)} bytes, "
                f"too short to name its sub-format (40); {EXPECTED}",
                WavProblem.CORRUPT_HEADER,
            )
        guid = body[24:40]
        subformat = int.from_bytes(guid[:2], "little")
        if guid[2:] != _KSDATAFORMAT_SUFFIX:
            subformat = -1  # a GUID outside the KSDATAFORMAT family: unknown encoding
    if channels == 0 or rate == 0 or bits == 0 or block_align == 0:
        raise WavRejected(
            f"the 'fmt ' chunk is corrupt: {channels} channel(s), {rate} Hz, {bits}-bit, "
            f"block align {block_align}; {EXPECTED}",
            WavProblem.CORRUPT_HEADER,
        )
    pcm_like = tag == WAVE_FORMAT_PCM or subformat == WAVE_FORMAT_PCM
    if pcm_like and block_align != channels * ((bits + 7) // 8):
        raise WavRejected(
            f"the 'fmt ' chunk is inconsistent: block align {block_align} does not fit "
            f"{channels} channel(s) of {bits}-bit samples; {EXPECTED}",
            WavProblem.CORRUPT_HEADER,
        )
    return _Fmt(tag, channels, rate, block_align, bits, subformat)


def _reject_not_riff(data: bytes) -> NoReturn:
    head = data[:12]
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        kind = "it looks like an MP3 file"
    elif head.startswith(b"OggS"):
        kind = "it looks like an Ogg file (Vorbis/Opus)"
    elif head.startswith(b"fLaC"):
        kind = "it looks like a FLAC file"
    elif head.startswith(b"RIFX"):
        kind = "it is a big-endian RIFF (RIFX) file"
    elif head.startswith(b"RF64"):
        kind = "it is an RF64 (64-bit WAV) file"
    elif head.startswith(b"FORM"):
        kind = "it looks like an AIFF file"
    elif len(head) >= 8 and head[4:8] == b"ftyp":
        kind = "it looks like an MP4/M4A file"
    elif head.startswith(b"RIFF"):
        raise WavRejected(
            f"the header is cut short: the file is {len(data)} bytes, a WAV header is at "
            f"least 44; {EXPECTED}",
            WavProblem.TRUNCATED_HEADER,
        )
    else:
        kind = "it does not start with a RIFF/WAVE header"
    raise WavRejected(f"not a WAV file: {kind}; {EXPECTED}; {CONVERT_HINT}", WavProblem.NOT_WAV)


def _format_name(tag: int, subformat: int | None) -> str:
    if tag == WAVE_FORMAT_EXTENSIBLE:
        if subformat is None or subformat < 0:
            return "WAVE_FORMAT_EXTENSIBLE with an unknown sub-format"
        sub = _FORMAT_NAMES.get(subformat, f"format 0x{subformat:04X}")
        return f"WAVE_FORMAT_EXTENSIBLE ({sub})"
    if tag == WAVE_FORMAT_PCM:
        return "PCM"
    name = _FORMAT_NAMES.get(tag)
    return f"{name} (format {tag})" if name else f"format {tag}"


def _channels_name(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels} channels")


def _fourcc(raw: bytes) -> str:
    text = raw.decode("latin-1")
    return repr(text) if text.isprintable() else repr(raw)


def _human_size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.0f} KB"
    return f"{n} bytes"
