"""The executor switch of the rendered Asterisk configuration: ``calls.executor=agi``
renders the FastAGI dialplan under the contract's context names; test beds
(bench mode) with the ARI executor carry both, apart."""

from __future__ import annotations

import re

from callcontrol.agi.astdb import CONTEXT as ASTDB_CONTEXT
from callcontrol.agi.astdb import SCRIPT as ASTDB_SCRIPT
from callcontrol.agi.plans import PLAN_MARK, REPORT_FIELDS
from callcontrol.agi.reports import dialplan_report_path
from callcontrol.domain.contract import INBOUND_CONTEXT, OUTBOUND_CONTEXT
from callcontrol.sandbox.config import SandboxConfig, rendered_files
from callcontrol.sandbox.layout import project_dir
from callcontrol.settings import Settings
from provisioning.asterisk_config import (
    BENCH_AGI_APP_SUFFIX,
    BENCH_AGI_CARRIER_ENDPOINT,
    BENCH_AGI_OUTBOUND_PREFIX,
    AsteriskPlan,
    ProjectSources,
    render_asterisk_config,
)
from provisioning.settings import AsteriskSettings


def render(**settings: object) -> dict[str, str]:
    base = Settings(
        asterisk=AsteriskSettings(carrier_match=("203.0.113.10",)),
        **settings,  # type: ignore[arg-type]
    )
    return render_asterisk_config(
        AsteriskPlan.from_settings(base), ProjectSources.read(project_dir())
    )


def test_the_agi_executor_renders_the_fastagi_dialplan_in_the_same_contexts() -> None:
    files = render(calls={"executor": "agi"}, agi={"host": "10.20.0.5", "port": 4599})
    dialplan = files["extensions_callcontrol.conf"]
    assert f"[{INBOUND_CONTEXT}]" in dialplan and f"[{OUTBOUND_CONTEXT}]" in dialplan
    assert "Stasis(" not in dialplan
    assert "AGI(agi://10.20.0.5:4599/${CC_DIRECTION}" in dialplan
    requests = re.findall(r"^[^;\n].*\bAGI\(", dialplan.split(f"[{ASTDB_CONTEXT}]")[0], re.M)
    assert len(requests) == 1, "one request per call: its end is a report line"
    path = dialplan_report_path("/var/log/asterisk")  # the file the engine's reader looks for
    report = re.search(rf"Set\(FILE\({re.escape(path)},,,al,u\)=(.*)\)$", dialplan, re.M)
    written = {"CC_PLAN": PLAN_MARK + "${CC_PLAN}", "CC_NOW": "${STRFTIME(,,%s.%3q)}"}
    expected = ",".join(written.get(name, f"${{{name}}}") for name in REPORT_FIELDS)
    assert report[1] == expected, "the engine's fields"
    assert not re.search(r"\{\{[A-Z0-9_]+\}\}", "".join(files.values()))
    assert files["pjsip.conf"] == render()["pjsip.conf"], "pjsip.conf does not depend on it"
    assert "extensions_callcontrol_agi.conf" not in files


def test_the_engine_writes_astdb_through_a_dialplan_context_that_asks_it() -> None:
    dialplan = render(calls={"executor": "agi"}, agi={"host": "10.20.0.5", "port": 4599})[
        "extensions_callcontrol.conf"
    ]
    section = dialplan.split(f"[{ASTDB_CONTEXT}]\n", 1)[1].split("\n[", 1)[0]
    assert f"AGI(agi://10.20.0.5:4599/{ASTDB_SCRIPT},${{EXTEN}})" in section
    assert "exten => done,1,Hangup()" in section, "the originate's other half"
    assert "Answer(" not in section, "never answered: it runs no call"


def test_the_engine_unreachable_is_503_and_never_41() -> None:
    dialplan = render(calls={"executor": "agi"})["extensions_callcontrol.conf"]
    assert "Hangup(34)" in dialplan and "Hangup(41)" not in dialplan


def test_the_default_executor_is_ari_and_renders_no_agi() -> None:
    files = render()
    assert "Stasis(" in files["extensions_callcontrol.conf"]
    assert "AGI(" not in "".join(files.values())


def test_the_modules_the_fastagi_dialplan_needs_are_loaded() -> None:
    modules = render(calls={"executor": "agi"})["modules.conf"]
    for module in (
        "res_agi",
        "res_speech",
        "app_stack",
        "app_record",
        "func_logic",
        "func_env",
        "func_dialplan",
    ):
        assert re.search(rf"^(load|require) = {module}\.so$", modules, re.M), module


def test_a_test_bed_carries_both_executors_on_their_own_carriers() -> None:
    files = rendered_files(SandboxConfig())
    assert "Stasis(" in files["extensions_callcontrol.conf"]
    agi = files["extensions_callcontrol_agi.conf"]
    assert "[callcontrol-agi-inbound]" in agi and f"[{INBOUND_CONTEXT}]" not in agi
    assert "#include extensions_callcontrol_agi.conf" in files["extensions.conf"]
    assert f"[{BENCH_AGI_CARRIER_ENDPOINT}]" in files["pjsip.conf"]
    assert "match = 127.0.0.8" in files["pjsip.conf"]


def test_both_executors_admit_calls_through_the_one_admission_context() -> None:
    for executor in ("ari", "agi"):
        files = render(calls={"executor": executor}, ari={"app": "cc-prod"})
        assert "#include extensions_callcontrol_admission.conf" in files["extensions.conf"]
        assert "[callcontrol-admission]" in files["extensions_callcontrol_admission.conf"]
        dialplan = files["extensions_callcontrol.conf"]
        # Every call context asks first, under the app's variables.
        assert dialplan.count("Gosub(callcontrol-admission,s,1(cc_prod))") == 2, executor


def test_a_test_bed_counts_and_sheds_fastagi_calls_under_the_fastagi_engines_app() -> None:
    config = SandboxConfig(ari_app="bed")
    files = rendered_files(config)
    assert "Gosub(callcontrol-admission,s,1(bed))" in files["extensions_callcontrol.conf"]
    agi = files["extensions_callcontrol_agi.conf"]
    assert BENCH_AGI_APP_SUFFIX == "-agi"
    assert agi.count("Gosub(callcontrol-admission,s,1(bed_agi))") == 2
    # and a SIP account's *99<number> reaches the FastAGI outbound dialplan
    assert f"exten => _{BENCH_AGI_OUTBOUND_PREFIX}.,1,Goto(callcontrol-agi-outbound," in agi


def test_an_unreachable_engine_is_asked_again_as_often_as_the_setting_says() -> None:
    for executor in ("ari", "agi"):
        for retries in (0, 2):
            dialplan = render(calls={"executor": executor, "engine_retries": retries})[
                "extensions_callcontrol.conf"
            ]
            assert f"GotoIf($[0${{CC_TRIED}} >= {retries}]?gone)" in dialplan, executor
            assert "Wait(1)" in dialplan and "(gone),Hangup(34)" in dialplan
