"""What a finished call leaves behind: its CDR (and charges), then its voicemail.

The executor hands every ``Finish`` here (with the call's ``SaveVoicemail``,
if it had one); nothing goes back up to the runner. The rules it keeps:

- the CDR is stored first (the ledger charges it exactly once), so the
  voicemail mail can point at a call that exists;
- voicemail delivery runs as a supervised job and never holds up the call;
  the recording is deleted from Asterisk only after it was delivered;
- an outbound call has no number, so no voicemail.
"""

from __future__ import annotations

import structlog

from callcontrol.ari.errors import AriNotFound
from callcontrol.domain import call_events as ev
from callcontrol.engine.ports import AriPort, CallLedger, VoicemailBox
from callcontrol.engine.supervisor import TaskSupervisor

log = structlog.get_logger(__name__)


class CallOutbox:
    def __init__(
        self,
        *,
        ari: AriPort,
        ledger: CallLedger,
        voicemail: VoicemailBox,
        jobs: TaskSupervisor,
    ) -> None:
        self._ari = ari
        self._ledger = ledger
        self._voicemail = voicemail
        self._jobs = jobs

    async def finish(self, record: ev.CallRecord, voicemail: ev.SaveVoicemail | None) -> None:
        log.info(
            "call_finished",
            call_id=record.call_id,
            disposition=record.disposition.value,
            cause=record.cause,
            reason=record.reject_reason,
            talk_ms=record.talk_ms,
        )
        await self._ledger.record_call(record)
        if voicemail is not None and record.number_id is not None:
            self._jobs.spawn(
                self._deliver(record, record.number_id, voicemail),
                name=f"voicemail-{record.call_id}",
            )

    async def _deliver(
        self, record: ev.CallRecord, number_id: int, command: ev.SaveVoicemail
    ) -> None:
        try:
            audio = await self._ari.get_stored_recording_file(command.recording_name)
        except AriNotFound:
            # Asterisk kept nothing (the caller hung up as the recording began).
            log.warning("voicemail_recording_missing", recording=command.recording_name)
            return
        await self._voicemail.deliver(
            call_id=record.call_id,
            number_id=number_id,
            account_id=record.account_id,
            did=record.did,
            caller=record.caller,
            duration_s=command.duration_s,
            audio=audio,
        )
        await self._ari.delete_stored_recording(command.recording_name)
