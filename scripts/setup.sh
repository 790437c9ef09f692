#!/usr/bin/env bash
# Installs everything callcontrol needs on Debian 12 (as root), idempotently:
# system packages (SIPp, PostgreSQL, debootstrap, Kamailio), a virtualenv with the
# project, and the cached Asterisk 22 chroot. Safe to run again: each step is
# skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkgs=()
for pkg in debootstrap sip-tester postgresql python3-venv ca-certificates poppler-utils fonts-dejavu-core \
    kamailio kamailio-postgres-modules; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_pkgs+=("$pkg")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}"
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.callcontrol-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing the project into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi

# The Asterisk chroot is cached (~/.cache/callcontrol/asterisk-root); built once.
.venv/bin/callcontrol sandbox build
