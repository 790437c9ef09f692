"""Every known failure of a ``callcontrol`` command is one line on stderr and exit 2.

The commands run as a person runs them (a subprocess of the installed entry
point); no secret given in the settings ever appears in what they print.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SECRET = "s3cr3t-pw"
DB_COMMANDS = [
    ["serve"],
    ["token", "create", "--operator"],
    ["token", "create", "--account", "99"],
    ["billing", "run"],
    ["sip-account", "create", "--account", "9", "--login", "alice01"],
    ["provision", "sync"],
]


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CALLCONTROL_")} | {
        # Never the shared Asterisk's default app, and nothing that could reach it.
        "CALLCONTROL_ARI__APP": f"callcontrol-test-cli-{os.getpid()}",
        "CALLCONTROL_ARI__URL": "http://127.0.0.1:9",
        "CALLCONTROL_ARI__PASSWORD": SECRET,
        "CALLCONTROL_HTTP__PORT": "0",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_one_line_failure(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("callcontrol: ")
    for part in expected:
        assert part in lines[0]
    assert SECRET not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"postgresql://u:{SECRET}@127.0.0.1:1/x", "postgresql+asyncpg://"),
        ("sqlite:///x.db", "sqlite+aiosqlite:///PATH"),
        ("mysql+aiomysql://u@127.0.0.1/x", "unsupported database 'mysql'"),
        ("nodriver://a", "unsupported database 'nodriver'"),
        ("not a url", "is not a database URL"),
        (f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:1/x", "cannot connect to the database"),
        ("sqlite+aiosqlite:////nonexistent-dir-cc/a.db", "mkdir -p /nonexistent-dir-cc"),
    ],
)
@pytest.mark.parametrize(
    "command", [["db", "upgrade"], ["token", "create", "--operator"]], ids=" ".join
)
def test_a_bad_database_url_is_one_line_naming_the_fix(
    tmp_path: Path, url: str, expected: str, command: list[str]
) -> None:
    result = run_cli(command, {"CALLCONTROL_DATABASE__URL": url}, tmp_path)
    assert_one_line_failure(result, expected)


@pytest.mark.parametrize("command", DB_COMMANDS, ids=" ".join)
def test_every_database_command_says_when_the_database_is_unreachable(
    tmp_path: Path, command: list[str]
) -> None:
    url = f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:1/x"
    result = run_cli(command, {"CALLCONTROL_DATABASE__URL": url}, tmp_path)
    assert_one_line_failure(result, "cannot connect to the database", "u:***@127.0.0.1:1")


def test_a_sqlite_folder_that_does_not_exist_is_not_created(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    url = f"sqlite+aiosqlite:///{missing}/a.db"
    result = run_cli(["db", "upgrade"], {"CALLCONTROL_DATABASE__URL": url}, tmp_path)
    assert_one_line_failure(result, str(missing))
    assert not missing.exists()


@pytest.mark.parametrize("command", DB_COMMANDS, ids=" ".join)
def test_an_unmigrated_database_is_refused_with_the_command_to_run(
    tmp_path: Path, command: list[str]
) -> None:
    (tmp_path / "empty.db").touch()
    url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    result = run_cli(command, {"CALLCONTROL_DATABASE__URL": url}, tmp_path)
    assert_one_line_failure(result, "run callcontrol db upgrade")


def test_db_upgrade_prints_the_url_with_the_password_masked(
    tmp_path: Path, empty_db_url: str
) -> None:
    """On PostgreSQL (trust auth ignores the password) the URL carries one; it is masked."""
    url = empty_db_url
    if url.startswith("postgresql"):
        url = url.replace("@", f":{SECRET}@", 1)  # postgresql+asyncpg://USER@HOST...
    result = run_cli(["db", "upgrade"], {"CALLCONTROL_DATABASE__URL": url}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("database at revision head (")
    assert SECRET not in result.stdout + result.stderr
    if url.startswith("postgresql"):
        assert ":***@" in result.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["token", "create", "--account", "99"],
        ["sip-account", "create", "--account", "99", "--login", "alice01"],
    ],
    ids=" ".join,
)
def test_a_missing_account_is_one_line(tmp_path: Path, command: list[str]) -> None:
    env = {"CALLCONTROL_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'a.db'}"}
    assert run_cli(["db", "upgrade"], env, tmp_path).returncode == 0
    assert_one_line_failure(run_cli(command, env, tmp_path), "account 99 does not exist")


def test_a_bad_secret_setting_is_named_but_not_shown(tmp_path: Path) -> None:
    result = run_cli(
        ["db", "upgrade"],
        {"CALLCONTROL_SMTP__PASSWORD": "", "CALLCONTROL_SMTP__PORT": "x"},
        tmp_path,
    )
    assert_one_line_failure(result, "CALLCONTROL_SMTP__PORT")
    bad_url = run_cli(["db", "upgrade"], {"CALLCONTROL_ARI__URL": f"ftp://u:{SECRET}@h"}, tmp_path)
    assert_one_line_failure(bad_url, "CALLCONTROL_ARI__URL='***'")


def test_version_is_printed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "callcontrol.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.startswith("callcontrol 0.")
