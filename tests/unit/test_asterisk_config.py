"""The Asterisk configuration rendered from settings: golden files for a
production (non-loopback) address plan, and what must never be in it.

Regenerate the golden files after a deliberate change with
``CALLCONTROL_UPDATE_GOLDEN=1 pytest tests/unit/test_asterisk_config.py`` and
read the diff.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from callcontrol.sandbox.config import SandboxConfig, rendered_files
from callcontrol.sandbox.layout import project_dir
from callcontrol.settings import Settings
from provisioning.asterisk_config import (
    AsteriskConfigError,
    AsteriskPlan,
    ProjectSources,
    render_asterisk_config,
)
from provisioning.settings import AsteriskSettings

GOLDEN = Path(__file__).parents[1] / "data" / "asterisk-config" / "production"


def production_settings(**asterisk: object) -> Settings:
    return Settings(
        ari={"url": "http://10.20.0.5:8088", "password": "ari-pw", "app": "cc-prod"},  # type: ignore[arg-type]
        ami={"enabled": True, "host": "10.20.0.5", "password": "ami-pw"},  # type: ignore[arg-type]
        provisioning={"realm": "voice.example.net"},  # type: ignore[arg-type]
        asterisk=AsteriskSettings(
            **{
                "sip_bind": "10.20.0.5:5060",
                "external_address": "198.51.100.7",
                "media_address": "10.20.0.5",
                "carrier_match": ("203.0.113.10", "203.0.113.64/26"),
                "pstn_contact": "sip:192.0.2.50:5060",
                "ami_permit": ("10.20.0.0/255.255.255.0",),
                **asterisk,
            }  # type: ignore[arg-type]
        ),
    )


def render(settings: Settings) -> dict[str, str]:
    return render_asterisk_config(
        AsteriskPlan.from_settings(settings), ProjectSources.read(project_dir())
    )


def test_a_production_plan_renders_exactly_the_golden_files() -> None:
    files = render(production_settings())
    if os.environ.get("CALLCONTROL_UPDATE_GOLDEN"):
        GOLDEN.mkdir(parents=True, exist_ok=True)
        for old in GOLDEN.glob("*.conf"):
            old.unlink()
        for name, text in files.items():
            (GOLDEN / name).write_text(text, encoding="utf-8")
    golden = {p.name: p.read_text(encoding="utf-8") for p in GOLDEN.glob("*.conf")}
    assert sorted(files) == sorted(golden)
    for name, text in files.items():
        assert text == golden[name], f"{name} differs from {GOLDEN / name}"


def test_a_production_render_has_nothing_of_the_test_plan() -> None:
    files = render(production_settings())
    everything = "\n".join(files.values())
    assert not re.search(r"127\.0\.0\.\d", everything)
    assert "{{" not in everything
    assert "bench" not in everything and "extensions_bench.conf" not in files
    assert (
        "Stasis(cc-prod,inbound,${EXTEN},${PJSIP_HEADER(read,X-CallControl-Hops)})"
        in files["extensions_callcontrol.conf"]
    )
    assert "match = 203.0.113.64/26" in files["pjsip.conf"]
    assert "bind = 10.20.0.5:5060" in files["pjsip.conf"]
    assert "external_media_address = 198.51.100.7" in files["pjsip.conf"]
    assert "contact = sip:192.0.2.50:5060" in files["pjsip.conf"]
    assert "default_realm = voice.example.net" in files["pjsip.conf"]


def test_without_ami_there_is_no_manager_conf_and_without_pstn_no_pstn_trunk() -> None:
    settings = production_settings(pstn_contact=None)
    files = render(
        settings.model_copy(update={"ami": settings.ami.model_copy(update={"enabled": False})})
    )
    assert "manager.conf" not in files
    assert "callcontrol-pstn" not in files["pjsip.conf"]


def test_a_plan_without_a_carrier_is_refused_naming_the_setting() -> None:
    with pytest.raises(AsteriskConfigError, match="CALLCONTROL_ASTERISK__CARRIER_MATCH"):
        render(Settings())


def test_a_carrier_that_is_not_an_address_is_refused() -> None:
    with pytest.raises(AsteriskConfigError, match=r"carrier\.example"):
        render(production_settings(carrier_match=("carrier.example",)))


def test_the_sandbox_renders_the_loopback_test_plan_with_the_bench_endpoints() -> None:
    files = rendered_files(SandboxConfig(ari_app="callcontrol-test-1"))
    assert "match = 127.0.0.2" in files["pjsip.conf"]
    assert "[callcontrol-bench-carrier]" in files["pjsip.conf"]
    assert "#include extensions_bench.conf" in files["extensions.conf"]
    assert "Stasis(callcontrol-test-1,inbound" in files["extensions_callcontrol.conf"]
    assert "manager.conf" in files
    assert all("{{" not in text for text in files.values())


def test_the_packaged_sources_are_the_source_trees_files() -> None:
    """``asterisk-config render`` reads the package's copies (links in a checkout,
    files in a wheel): they must be the very files of dialplan/ and asterisk-conf/."""
    assert ProjectSources.packaged() == ProjectSources.read(project_dir())
