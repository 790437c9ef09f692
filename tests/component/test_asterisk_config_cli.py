"""``callcontrol asterisk-config render`` as a person runs it: files written with
the secrets' files private, a missing carrier refused in one line (exit 2), and
``--check`` naming an Asterisk it cannot reach (exit 1)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.engine import free_port

CARRIER = {"CALLCONTROL_ASTERISK__CARRIER_MATCH": '["203.0.113.10"]'}


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")}
    return subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "asterisk-config", "render", *args],
        env=clean | {"CALLCONTROL_ARI__APP": "callcontrol-test-render"} | env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_render_writes_the_files_with_ari_and_manager_private(tmp_path: Path) -> None:
    env = CARRIER | {"CALLCONTROL_AMI__ENABLED": "true"}
    result = run(["--out", str(tmp_path)], env, tmp_path)
    assert result.returncode == 0, result.stderr
    written = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.glob("*.conf")}
    assert written["ari.conf"] == 0o640 and written["manager.conf"] == 0o640
    assert written["pjsip.conf"] == 0o644
    assert (
        "Stasis(callcontrol-test-render,inbound"
        in (tmp_path / "extensions_callcontrol.conf").read_text()
    )


def test_render_without_a_carrier_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run(["--out", str(tmp_path)], {}, tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "CALLCONTROL_ASTERISK__CARRIER_MATCH" in result.stderr
    assert not list(tmp_path.glob("*.conf"))


def test_check_names_an_asterisk_it_cannot_reach(tmp_path: Path) -> None:
    env = CARRIER | {"CALLCONTROL_ARI__URL": f"http://127.0.0.1:{free_port()}"}
    result = run(["--check"], env, tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stdout.startswith("differs: http.conf: no ARI at http://127.0.0.1:")
