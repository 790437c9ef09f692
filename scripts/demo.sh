#!/usr/bin/env bash
# Command 1 of the README: set up, start the local Asterisk sandbox, create the
# demo data on the embedded SQLite database, and run the engine in the
# foreground. Ctrl-C stops the engine; `scripts/demo.sh down` stops Asterisk.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "down" ]; then
  exec .venv/bin/callcontrol sandbox down
fi
bash scripts/setup.sh
export CALLCONTROL_MEDIA__ASTERISK_ROOT=/srv/callcontrol/media
# A lab on loopback: the demo far end is 127.0.0.3 (Asterisk's own ports stay refused).
export CALLCONTROL_FORWARDING__ALLOWED_NETWORKS='["127.0.0.0/8"]'
mkdir -p var/media
.venv/bin/callcontrol sandbox up --media var/media
.venv/bin/callcontrol db upgrade
.venv/bin/callcontrol demo seed
cat <<'MSG'

Asterisk 22 runs in the sandbox (SIP on udp 127.0.0.1:5060, ARI on :8088).
The engine starts below. In another terminal:

  # a far end that answers the forwarded call (the demo number's destination)
  sipp -sf sipp-scenarios/far_answer.xml -set answer_ms 100 -i 127.0.0.3 -p 5080 -m 1
  # the caller, from the carrier's address, calling the demo DID
  sipp -sf sipp-scenarios/caller_answered.xml -key caller 4915112345678 -s 4930123456 -i 127.0.0.2 -p 5070 -m 1 -d 2000 127.0.0.1:5060

Without the far end the call goes to voicemail after the ring timeout.
Health: curl http://127.0.0.1:8080/health   Stop Asterisk: bash scripts/demo.sh down

MSG
exec .venv/bin/callcontrol serve
