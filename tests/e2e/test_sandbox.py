"""The Asterisk sandbox itself: it starts, routes carrier calls, and stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.asterisk import AsteriskSandbox
from support.sipp import Sipp

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


def test_carrier_call_without_engine_gets_503(asterisk: AsteriskSandbox, tmp_path: Path) -> None:
    """With no Stasis app connected, Stasis() fails and the dialplan's Hangup(34) answers 503."""
    result = Sipp(
        "caller_expect_code.xml",
        CARRIER_IP,
        5070,
        tmp_path,
        remote="127.0.0.1:5060",
        service="+4930123456",
        keys={"caller": "4915112345678"},
        variables={"expected": "503"},
        timeout_s=15,
    ).run()
    assert result.ok, result.describe()
    assert result.final_response() == 503


def test_down_leaves_no_mounts_and_no_process(asterisk: AsteriskSandbox) -> None:
    """``down`` stops Asterisk and unmounts everything; ``up`` brings it back."""
    control.down(asterisk.layout)
    try:
        assert mounts.mounts_under(asterisk.layout.root) == []
        assert process.asterisk_pids(asterisk.layout) == []
        assert process.ari_info(asterisk.config) is None
    finally:
        # Restore it for the tests (and fixtures) that come after this one.
        control.up(asterisk.layout, asterisk.config, asterisk.media_dir)
    assert process.ari_info(asterisk.config) is not None
