"""An installed wheel renders the Asterisk configuration: no source tree needed.

The wheel is built from this checkout (``pip wheel . --no-deps``) and unpacked
(a pure-Python wheel is installed by unpacking it) into a folder outside the
checkout, which comes first on ``PYTHONPATH``; the command runs from another
folder, so ``dialplan/`` and ``asterisk-conf/`` cannot be found by path. The
dependencies come from the test's own environment.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from callcontrol.sandbox.layout import project_dir
from callcontrol.settings import load_settings
from provisioning.asterisk_config import AsteriskPlan, ProjectSources, render_asterisk_config

ENV = {
    "CALLCONTROL_ASTERISK__CARRIER_MATCH": '["203.0.113.10"]',
    "CALLCONTROL_ARI__APP": "cc-wheel",
}


def test_a_wheel_installed_outside_the_checkout_renders_the_dialplan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = project_dir()
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "-q", "-w", str(tmp_path)],  # noqa: E501
        capture_output=True, text=True, timeout=55, cwd=tmp_path,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = tmp_path.glob("callcontrol-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    linked = site / "provisioning" / "asterisk_sources" / "extensions_callcontrol.conf"
    assert linked.is_file() and not linked.is_symlink()  # the content, not the link
    out, cwd = tmp_path / "out", tmp_path / "elsewhere"
    cwd.mkdir()
    out.mkdir()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")}
    script = (
        "import sys, callcontrol, provisioning.asterisk_config as c; "
        "print(callcontrol.__file__); print(c.__file__); "
        "from callcontrol.cli import main; sys.argv = ['callcontrol', *sys.argv[1:]]; main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, "asterisk-config", "render", "--out", str(out)],
        env=clean | ENV | {"PYTHONPATH": str(site)}, cwd=cwd, capture_output=True, text=True,
        timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    imported = result.stdout.splitlines()[:2]
    assert all(path.startswith(str(site)) for path in imported), imported
    # Exactly what the checkout renders from its own dialplan/ and asterisk-conf/.
    for name in [k for k in os.environ if k.startswith("CALLCONTROL_")]:
        monkeypatch.delenv(name)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    expected = render_asterisk_config(
        AsteriskPlan.from_settings(settings), ProjectSources.read(project)
    )
    written = {path.name: path.read_text() for path in out.iterdir()}
    assert written == expected
    assert "Stasis(cc-wheel,inbound," in written["extensions_callcontrol.conf"]
