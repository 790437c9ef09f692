#!/usr/bin/env bash
# Command 2 of the README (and what CI runs): set up, then the whole suite on
# the embedded SQLite database, then everything that touches the database
# again on a real PostgreSQL (started by the test fixtures). Real Asterisk and
# SIPp are started by the fixtures; if they cannot start, the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

run_pytest() {
  local rc=0
  .venv/bin/python -m pytest "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests for: $*" >&2
    return 1
  fi
  return "$rc"
}

echo "== static checks"
.venv/bin/ruff check callcontrol provisioning tests bench
.venv/bin/mypy callcontrol provisioning

echo "== all tests on SQLite"
CALLCONTROL_TEST_DB=sqlite run_pytest -q tests "$@"

echo "== database and end-to-end tests on PostgreSQL"
CALLCONTROL_TEST_DB=postgresql run_pytest -q -m "db or e2e" tests "$@"
