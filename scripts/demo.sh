#!/usr/bin/env bash
# Command 1 of the README: set up, start the local Asterisk sandbox, create the
# demo data on the embedded SQLite database, a SIP account the sandbox's
# Asterisk knows (provisioning writes the sandbox's pjsip_callcontrol.conf and
# reloads over AMI), a mail sink for voicemail, and run the engine in the
# foreground. Ctrl-C stops the engine and the mail sink; `scripts/demo.sh down`
# stops Asterisk.
#
# The sandbox's addresses are fixed, so the demo holds the same machine-wide
# lock as the tests (/tmp/callcontrol-asterisk.lock) for as long as it runs,
# and refuses to start while tests, a benchmark or another demo hold it.
set -euo pipefail
cd "$(dirname "$0")/.."
LOCK=/tmp/callcontrol-asterisk.lock
exec 9>>"$LOCK"
if ! flock -n 9; then
  echo "demo: another user of the Asterisk sandbox (tests, a benchmark, a demo) holds $LOCK; try again when it is done" >&2
  exit 2
fi
export CALLCONTROL_ASTERISK_LOCK_HELD=1   # sandbox up/down: this script holds the lock
if [ "${1:-}" = "down" ]; then
  exec .venv/bin/callcontrol sandbox down
fi
bash scripts/setup.sh
SANDBOX_ROOT="${CALLCONTROL_SANDBOX_ROOT:-$HOME/.cache/callcontrol/asterisk-root}"
export CALLCONTROL_MEDIA__ASTERISK_ROOT=/srv/callcontrol/media
# A lab on loopback: the demo far end is 127.0.0.3 (Asterisk's own ports stay refused).
export CALLCONTROL_FORWARDING__ALLOWED_NETWORKS='["127.0.0.0/8"]'
export CALLCONTROL_AMI__ENABLED=true
export CALLCONTROL_PROVISIONING__FILE_PATH="$SANDBOX_ROOT/etc/asterisk/pjsip_callcontrol.conf"
export CALLCONTROL_SMTP__HOST=127.0.0.1 CALLCONTROL_SMTP__PORT=8025
mkdir -p var/media var/mail/cur var/mail/new var/mail/tmp   # var/mail: a Maildir
.venv/bin/callcontrol sandbox up --media var/media
.venv/bin/callcontrol db upgrade
.venv/bin/callcontrol demo seed
.venv/bin/callcontrol provision sync >/dev/null
ACCOUNT_ID=$(.venv/bin/python -c 'import asyncio; from callcontrol.demo import demo_account_id; from callcontrol.settings import load_settings; print(asyncio.run(demo_account_id(load_settings())))')
CREDENTIALS=$(.venv/bin/callcontrol sip-account create --account "$ACCOUNT_ID" --login demo-phone 2>/dev/null \
  || .venv/bin/callcontrol sip-account reset --login demo-phone)
PASSWORD=$(printf '%s\n' "$CREDENTIALS" | sed -n 's/^password: *//p')

.venv/bin/python -m aiosmtpd -n -l 127.0.0.1:8025 -c aiosmtpd.handlers.Mailbox var/mail &
SMTP_PID=$!
trap 'kill "$SMTP_PID" 2>/dev/null || true' EXIT

cat <<MSG

Asterisk 22 runs in the sandbox (SIP on udp 127.0.0.1:5060, ARI on :8088).
The engine starts below. In another terminal:

  # a forwarded call: a far end that answers (the demo number's destination) ...
  sipp -sf sipp-scenarios/far_answer.xml -set answer_ms 100 -i 127.0.0.3 -p 5080 -m 1
  # ... and the caller, from the carrier's address, calling the demo DID
  sipp -sf sipp-scenarios/caller_answered.xml -key caller 4915112345678 -s 4930123456 -i 127.0.0.2 -p 5070 -m 1 -d 2000 127.0.0.1:5060

  # voicemail: the far end is busy; the caller stays silent until the voicemail ends it
  sipp -sf sipp-scenarios/far_busy.xml -i 127.0.0.3 -p 5080 -m 1
  sipp -sf sipp-scenarios/caller_answered_wait_bye.xml -key caller 4915112345678 -s 4930123456 -i 127.0.0.2 -p 5070 -m 1 -recv_timeout 30000 127.0.0.1:5060
  # the mail (with the recording as a WAV attachment) lands in var/mail/new/

  # a SIP phone (account demo-phone, password $PASSWORD) registers ...
  sipp -sf sipp-scenarios/phone_register.xml -s demo-phone -au demo-phone -ap $PASSWORD -i 127.0.0.10 -p 5090 -m 1 127.0.0.1:5060
  # ... and calls out to a German number through the PSTN carrier (answered by SIPp on 127.0.0.5)
  sipp -sf sipp-scenarios/far_answer.xml -set answer_ms 100 -i 127.0.0.5 -p 5060 -m 1
  sipp -sf sipp-scenarios/phone_call.xml -key login demo-phone -au demo-phone -ap $PASSWORD -s 004930555123 -i 127.0.0.10 -p 5091 -d 1000 -m 1 127.0.0.1:5060

Health: curl http://127.0.0.1:8080/health   Check: .venv/bin/callcontrol doctor
Stop Asterisk: bash scripts/demo.sh down

MSG
.venv/bin/callcontrol serve
