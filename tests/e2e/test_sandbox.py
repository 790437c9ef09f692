"""The Asterisk sandbox itself: it starts, routes carrier calls, and stops cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.engine import EngineProcess
from support.sipp import Sipp, SippResult

from callcontrol.sandbox import control, mounts, process

pytestmark = pytest.mark.e2e

CARRIER_IP = "127.0.0.2"


def test_ari_answers_with_asterisk_22(asterisk: AsteriskSandbox) -> None:
    info = process.ari_info(asterisk.config)
    assert info is not None, asterisk.log_tail()
    assert str(info["system"]["version"]).startswith("22."), info["system"]


@pytest.mark.parametrize(
    "module",
    [
        "chan_pjsip.so",
        "res_ari_channels.so",
        "res_stasis_recording.so",
        "bridge_softmix.so",
        "res_pjsip_header_funcs.so",
        "app_stasis.so",
        "format_wav.so",
    ],
)
def test_module_the_engine_needs_is_running(asterisk: AsteriskSandbox, module: str) -> None:
    listing = asterisk.cli(f"module show like {module.removesuffix('.so')}")
    assert module in listing and "Running" in listing, listing


def test_carrier_call_without_engine_gets_503(
    asterisk: AsteriskSandbox, engine: EngineProcess, tmp_path: Path
) -> None:
    """With no Stasis app connected, Stasis() fails and the dialplan's Hangup(34) answers 503;
    once the engine is back, the same DID is handled by it again (404: unknown number)."""
    engine.stop()
    try:
        result = _call_expecting(tmp_path / "down", 503)
        assert result.ok, result.describe()
        assert result.final_response() == 503
    finally:
        engine.start()
    result = _call_expecting(tmp_path / "up", 404)
    assert result.ok, result.describe()


def _call_expecting(workdir: Path, code: int) -> SippResult:
    workdir.mkdir()
    return Sipp(
        "caller_expect_code.xml",
        CARRIER_IP,
        5070,
        workdir,
        remote="127.0.0.1:5060",
        service="+4930000001",
        keys={"caller": "4915112345678"},
        variables={"expected": str(code)},
        timeout_s=15,
    ).run()


def test_down_leaves_no_mounts_and_no_process(
    asterisk: AsteriskSandbox, engine: EngineProcess
) -> None:
    """``down`` stops Asterisk and unmounts everything; ``up`` brings it back, and the
    engine reconnects to the new Asterisk by itself."""
    control.down(asterisk.layout)
    try:
        assert mounts.mounts_under(asterisk.layout.root) == []
        assert process.asterisk_pids(asterisk.layout) == []
        assert process.ari_info(asterisk.config) is None
    finally:
        # Restore it for the tests (and fixtures) that come after this one.
        control.up(asterisk.layout, asterisk.config, asterisk.media_dir)
    assert process.ari_info(asterisk.config) is not None
    deadline = time.monotonic() + 15
    while not engine.health().get("ari_connected"):
        assert time.monotonic() < deadline, "the engine did not reconnect to ARI"
        time.sleep(0.1)
