"""Greeting/voicemail upload check: only WAV PCM 8000 Hz 16-bit mono passes,
and every refusal says what is wrong and what is expected."""

from __future__ import annotations

import io
import struct
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from callcontrol.domain.errors import InvalidInput
from callcontrol.domain.wav import (
    EXPECTED,
    WavInfo,
    WavProblem,
    WavRejected,
    canonical_wav,
    inspect_wav,
    require_telephony_wav,
)

LIMIT = 5 * 1024 * 1024


def make_wav(*, rate: int = 8000, channels: int = 1, width: int = 2, frames: int = 8000) -> bytes:
    """A WAV written by the stdlib ``wave`` module (plain PCM header)."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01" * (frames * channels * width))
    return buf.getvalue()


def chunk(cid: bytes, body: bytes, *, size: int | None = None) -> bytes:
    declared = len(body) if size is None else size
    pad = b"\x00" if len(body) % 2 else b""
    return struct.pack("<4sI", cid, declared) + body + pad


def fmt_body(
    tag: int = 1, channels: int = 1, rate: int = 8000, bits: int = 16, extra: bytes = b""
) -> bytes:
    align = channels * ((bits + 7) // 8)
    return struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits) + extra


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return struct.pack("<4sI", b"RIFF", len(body)) + body


def extensible_fmt(subformat: int, *, bits: int = 16) -> bytes:
    guid = (
        struct.pack("<H", subformat) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    )
    extra = struct.pack("<HHI", 22, bits, 0x4) + guid
    return fmt_body(0xFFFE, bits=bits, extra=extra)


def rejected(data: bytes, *, max_bytes: int = LIMIT) -> WavRejected:
    with pytest.raises(WavRejected) as info:
        require_telephony_wav(data, max_bytes=max_bytes)
    return info.value


# --- accepted -----------------------------------------------------------------


def test_a_telephony_wav_from_the_wave_module_is_accepted_with_its_duration() -> None:
    info = require_telephony_wav(make_wav(frames=12000), max_bytes=LIMIT)
    assert info == WavInfo(
        channels=1,
        sample_rate=8000,
        bits=16,
        format_tag=1,
        subformat_tag=None,
        block_align=2,
        duration_ms=1500,
        data_offset=44,
        data_size=24000,
    )


def test_unknown_chunks_before_data_are_skipped_including_odd_sizes_with_their_pad_byte() -> None:
    samples = b"\x00\x01" * 800
    data = riff(
        chunk(b"fmt ", fmt_body()),
        chunk(b"LIST", b"INFOISFT\x05\x00\x00\x00abcde"),  # odd size: one pad byte follows
        chunk(b"fact", struct.pack("<I", 800)),
        chunk(b"data", samples),
    )
    info = require_telephony_wav(data, max_bytes=LIMIT)
    assert info.duration_ms == 100
    assert data[info.data_offset : info.data_offset + info.data_size] == samples


def test_a_fmt_chunk_of_18_bytes_is_accepted() -> None:
    data = riff(chunk(b"fmt ", fmt_body(extra=b"\x00\x00")), chunk(b"data", b"\x00" * 160))
    assert require_telephony_wav(data, max_bytes=LIMIT).duration_ms == 10


def test_chunks_after_the_data_chunk_are_ignored() -> None:
    data = riff(
        chunk(b"fmt ", fmt_body()), chunk(b"data", b"\x00" * 16000), chunk(b"LIST", b"x" * 10)
    )
    assert require_telephony_wav(data, max_bytes=LIMIT).duration_ms == 1000


def test_the_canonical_form_has_a_44_byte_header_and_the_same_samples() -> None:
    samples = b"\x02\x03" * 400
    data = riff(
        chunk(b"fmt ", fmt_body(extra=b"\x00\x00")),
        chunk(b"LIST", b"odd"),
        chunk(b"data", samples),
    )
    info = require_telephony_wav(data, max_bytes=LIMIT)
    out = canonical_wav(data, info)
    assert len(out) == 44 + len(samples)
    assert out[44:] == samples
    with wave.open(io.BytesIO(out)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        assert w.getnframes() == 400
    assert require_telephony_wav(out, max_bytes=LIMIT).data_offset == 44


def test_inspect_describes_a_wav_that_is_not_telephony_without_refusing_it() -> None:
    info = inspect_wav(make_wav(rate=44100, channels=2, frames=44100), max_bytes=LIMIT)
    assert (info.sample_rate, info.channels, info.bits, info.duration_ms) == (44100, 2, 16, 1000)
    assert info.describe() == "PCM, 44100 Hz, 16-bit, stereo"


# --- refused: not a WAV -------------------------------------------------------


def test_an_empty_file_is_refused() -> None:
    err = rejected(b"")
    assert err.problems == (WavProblem.EMPTY,)
    assert str(err) == f"the file is empty; {EXPECTED}"


def test_a_file_over_the_limit_is_refused_before_it_is_parsed() -> None:
    err = rejected(make_wav(frames=8000), max_bytes=1000)
    assert err.problems == (WavProblem.TOO_LARGE,)
    assert "16.0 KB" in str(err) or "16 KB" in str(err)
    assert "1000 bytes allowed" in str(err)


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\x00" * 40, "MP3"),
        (b"\xff\xfb\x90\x64" + b"\x00" * 60, "MP3"),
        (b"OggS\x00\x02" + b"\x00" * 60, "Ogg"),
        (b"fLaC\x00\x00\x00\x22" + b"\x00" * 60, "FLAC"),
        (b"FORM\x00\x00\x00\x00AIFF" + b"\x00" * 60, "AIFF"),
        (b"<html><body>not audio</body></html>" + b" " * 40, "does not start with a RIFF"),
    ],
)
def test_other_formats_are_named_when_refused(head: bytes, words: str) -> None:
    err = rejected(head)
    assert err.problems == (WavProblem.NOT_WAV,)
    assert words in str(err)
    assert EXPECTED in str(err)


def test_a_riff_file_of_another_type_is_refused() -> None:
    err = rejected(b"RIFF\x10\x00\x00\x00AVI LIST\x00\x00\x00\x00")
    assert err.problems == (WavProblem.NOT_WAV,)
    assert "'AVI '" in str(err)


@pytest.mark.parametrize("size", [4, 11, 12, 19])
def test_a_header_cut_short_is_refused(size: int) -> None:
    err = rejected(make_wav()[:size])
    assert err.problems == (WavProblem.TRUNCATED_HEADER,)
    assert "cut short" in str(err)


def test_a_fmt_chunk_running_past_the_end_of_the_file_is_refused() -> None:
    err = rejected(make_wav()[:30])
    assert err.problems == (WavProblem.TRUNCATED_HEADER,)
    assert "'fmt '" in str(err)


def test_a_wav_without_fmt_chunk_is_refused() -> None:
    err = rejected(riff(chunk(b"LIST", b"abcd"), chunk(b"data", b"\x00" * 100)))
    assert err.problems == (WavProblem.MISSING_FMT,)
    assert "no 'fmt ' chunk" in str(err)


def test_a_wav_without_data_chunk_is_refused() -> None:
    err = rejected(riff(chunk(b"fmt ", fmt_body()), chunk(b"LIST", b"abcd")))
    assert err.problems == (WavProblem.MISSING_DATA,)
    assert "no 'data' chunk" in str(err)


def test_a_data_chunk_larger_than_the_file_is_refused_as_truncated_audio() -> None:
    whole = make_wav(frames=16000)
    err = rejected(whole[: len(whole) // 2])
    assert err.problems == (WavProblem.TRUNCATED_AUDIO,)
    assert "announces 32000 bytes of audio but only 15978 are present" in str(err)


def test_a_streaming_header_with_unknown_data_size_is_refused() -> None:
    data = riff(chunk(b"fmt ", fmt_body())) + struct.pack("<4sI", b"data", 0xFFFFFFFF) + b"\0" * 64
    err = rejected(data)
    assert err.problems == (WavProblem.TRUNCATED_AUDIO,)
    assert "0xFFFFFFFF" in str(err)


def test_a_fmt_chunk_too_short_is_refused_as_corrupt() -> None:
    err = rejected(riff(chunk(b"fmt ", b"\x01\x00\x01\x00"), chunk(b"data", b"\0" * 10)))
    assert err.problems == (WavProblem.CORRUPT_HEADER,)


def test_a_zero_sample_rate_is_refused_as_corrupt() -> None:
    err = rejected(riff(chunk(b"fmt ", fmt_body(rate=0)), chunk(b"data", b"\0" * 10)))
    assert err.problems == (WavProblem.CORRUPT_HEADER,)
    assert "0 Hz" in str(err)


def test_a_block_align_that_does_not_fit_the_sample_size_is_refused() -> None:
    body = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 24)  # 24-bit but 2 bytes per frame
    err = rejected(riff(chunk(b"fmt ", body), chunk(b"data", b"\0" * 10)))
    assert err.problems == (WavProblem.CORRUPT_HEADER,)
    assert "block align 2" in str(err)


# --- refused: a WAV, but not the telephony format -------------------------------


@pytest.mark.parametrize(
    ("tag", "bits", "name"),
    [(3, 32, "IEEE float (format 3)"), (6, 8, "A-law (format 6)"), (7, 8, "µ-law (format 7)")],
)
def test_non_pcm_encodings_are_refused_and_named(tag: int, bits: int, name: str) -> None:
    err = rejected(riff(chunk(b"fmt ", fmt_body(tag, bits=bits)), chunk(b"data", b"\0" * 800)))
    assert err.problems == (WavProblem.NOT_PCM,)
    assert f"the audio is encoded as {name}, not PCM" in str(err)
    assert EXPECTED in str(err)


def test_extensible_with_a_float_subformat_is_refused_as_not_pcm() -> None:
    err = rejected(riff(chunk(b"fmt ", extensible_fmt(3, bits=32)), chunk(b"data", b"\0" * 800)))
    assert err.problems == (WavProblem.NOT_PCM,)
    assert "WAVE_FORMAT_EXTENSIBLE (IEEE float)" in str(err)


def test_extensible_pcm_is_refused_because_asterisk_reads_only_format_1() -> None:
    data = riff(chunk(b"fmt ", extensible_fmt(1)), chunk(b"data", b"\0" * 800))
    info = inspect_wav(data, max_bytes=LIMIT)
    assert (info.format_tag, info.subformat_tag, info.effective_format) == (0xFFFE, 1, 1)
    err = rejected(data)
    assert err.problems == (WavProblem.NOT_PCM,)
    assert "WAVE_FORMAT_EXTENSIBLE (PCM inside)" in str(err)
    assert "plain PCM header" in str(err)


def test_stereo_44k_is_refused_naming_both_problems() -> None:
    err = rejected(make_wav(rate=44100, channels=2))
    assert set(err.problems) == {WavProblem.WRONG_RATE, WavProblem.WRONG_CHANNELS}
    assert str(err).startswith(
        "wrong sample rate and channels: expected WAV PCM, 8000 Hz, 16-bit, mono; "
        "got PCM, 44100 Hz, 16-bit, stereo"
    )


def test_stereo_is_refused() -> None:
    err = rejected(make_wav(channels=2))
    assert err.problems == (WavProblem.WRONG_CHANNELS,)
    assert "wrong channels" in str(err)
    assert "got PCM, 8000 Hz, 16-bit, stereo" in str(err)


def test_16_khz_is_refused_and_the_message_mentions_wav16() -> None:
    err = rejected(make_wav(rate=16000))
    assert err.problems == (WavProblem.WRONG_RATE,)
    assert ".wav16" in str(err)
    assert "resample to 8000 Hz" in str(err)


def test_8_bit_is_refused() -> None:
    err = rejected(make_wav(width=1))
    assert err.problems == (WavProblem.WRONG_BITS,)
    assert "wrong bit depth" in str(err)
    assert "got PCM, 8000 Hz, 8-bit, mono" in str(err)


def test_a_wav_with_no_samples_is_refused() -> None:
    err = rejected(make_wav(frames=0))
    assert err.problems == (WavProblem.NO_AUDIO,)
    assert "0 samples" in str(err)


def test_a_single_byte_of_audio_is_not_a_sample() -> None:
    err = rejected(riff(chunk(b"fmt ", fmt_body()), chunk(b"data", b"\x01")))
    assert err.problems == (WavProblem.NO_AUDIO,)


def test_wav_rejected_is_an_invalid_input() -> None:
    assert isinstance(rejected(b""), InvalidInput)


# --- properties ---------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=200))
def test_random_bytes_raise_nothing_but_wav_rejected(data: bytes) -> None:
    try:
        require_telephony_wav(data, max_bytes=150)
    except WavRejected:
        pass


@settings(max_examples=300)
@given(
    st.binary(min_size=0, max_size=120),
    st.integers(min_value=0, max_value=200),
)
def test_mangled_valid_headers_raise_nothing_but_wav_rejected(noise: bytes, cut: int) -> None:
    base = bytearray(make_wav(frames=40))
    base[:cut] = noise[:cut] + bytes(base[len(noise[:cut]) : cut])
    try:
        require_telephony_wav(bytes(base), max_bytes=LIMIT)
    except WavRejected:
        pass


@given(
    frames=st.integers(min_value=1, max_value=20000),
    lists=st.lists(st.binary(max_size=9), max_size=3),
)
def test_any_generated_telephony_wav_is_accepted_with_the_right_duration(
    frames: int, lists: list[bytes]
) -> None:
    samples = b"\x7f\x00" * frames
    extra = [chunk(b"LIST", body) for body in lists]
    data = riff(chunk(b"fmt ", fmt_body()), *extra, chunk(b"data", samples))
    info = require_telephony_wav(data, max_bytes=LIMIT)
    assert info.duration_ms == frames * 1000 // 8000
    assert canonical_wav(data, info)[44:] == samples


@given(frames=st.integers(min_value=1, max_value=20000))
def test_wave_module_files_are_accepted_with_the_right_duration(frames: int) -> None:
    info = require_telephony_wav(make_wav(frames=frames), max_bytes=LIMIT)
    assert info.duration_ms == frames * 1000 // 8000
