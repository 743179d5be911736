"""Recording of bridged calls: started when a caller is put through to an agent of a queue with
``record: true``, joined into one stereo file by a worker when it ends, suspended while the
disk is nearly full.

The SIP layer records the two legs into mono parts and ends the recording itself when either
leg ends (it reports :class:`~ivr.sip.events.CallRecordingEnded`); the core then hands the
parts to the worker (:class:`~ivr.driver.messages.JoinRecording`), which answers with
:class:`~ivr.recording.RecordingDone`. Each talk of a call with an agent of a recording queue
is recorded (after an escalation or a transfer to a queue, the next agent's too): the worker
adds each talk after the earlier ones in the call's one file.
"""

import logging

from ivr.driver import messages as m
from ivr.driver.base import CoreBase
from ivr.driver.state import CallerCall, Leg
from ivr.recording import (
    NOT_STARTED,
    RecordingDisk,
    RecordingDone,
    call_recording_path,
    part_paths,
)
from ivr.sip import events as sip

log = logging.getLogger("ivr.driver")


class Recordings(CoreBase):
    """Transitions of call recordings; state in :attr:`call_recordings` and
    :attr:`recordings_suspended` (see :class:`CoreBase`)."""

    def _start_call_recording(self, call: CallerCall, leg: Leg) -> None:
        """The caller was just put through to *leg*'s agent: record if the queue says so."""
        queue = call.record.queue
        if queue not in self.config.recorded_queues or leg.sip is None:
            return
        if call.call_id in self.call_recordings:
            return  # the last talk's recording has not ended yet (its agent leg ends it)
        if self.recordings_suspended:
            log.warning("call %s: not recorded, the disk under %s is nearly full",
                        call.call_id, self.config.recordings)
            self._emit(m.CountRecording("skipped_low_disk"))
            return
        first = call.record.recording_path is None
        path = call.record.recording_path or \
            str(call_recording_path(self.config.recordings, call.call_id))
        self.call_recordings[call.call_id] = (path, first)
        call.record.recording_path = path
        log.info("call %s: recording the talk with agent %s", call.call_id, leg.agent)
        self._emit(m.RecordCall(call.call_id, (call.leg, leg.sip), part_paths(path, leg.ref),
                                path))

    def _recording_message(self, msg: "sip.CallRecordingEnded | RecordingDone | RecordingDisk",
                           now: float) -> None:
        if isinstance(msg, sip.CallRecordingEnded):
            entry = self.call_recordings.pop(msg.key, None)
            if entry is None:
                return
            if msg.reason == "low_disk":
                self._emit(m.CountRecording("stopped_low_disk"))
            self._emit(m.JoinRecording(msg.key, msg.parts, entry[0]))
        elif isinstance(msg, RecordingDone) and msg.error == NOT_STARTED:
            self._emit(m.CountRecording("not_started"))
            _, first = self.call_recordings.pop(msg.call_id, ("", False))
            call = self.calls.get(msg.call_id)
            if first and call is not None and call.record.recording_path == msg.path:
                call.record.recording_path = None  # nothing will be at that path
                self._save(call.record)
        elif isinstance(msg, RecordingDone):
            self._emit(m.CountRecording("failed" if msg.error else "saved"))
        else:
            self._recording_disk(msg)

    def _recording_disk(self, msg: RecordingDisk) -> None:
        self.recordings_suspended = msg.low
        self._emit(m.RecordingsSuspended(msg.low))
        if not msg.low:
            log.info("call recording resumes: %.0f MB free under %s", msg.free_mb,
                     self.config.recordings)
            return
        log.error("call recording suspended: %.0f MB free under %s, under the %d MB floor "
                  "(recording_min_free_mb); %d recording(s) stopped, calls go on",
                  msg.free_mb, self.config.recordings, self.config.recording_min_free_mb,
                  len(self.call_recordings))
        for call_id in sorted(self.call_recordings):
            self._emit(m.StopCallRecording(call_id, "low_disk"))

    def _recording_problems(self) -> list[str]:
        out = []
        for call_id, (path, _) in self.call_recordings.items():
            call = self.calls.get(call_id)
            if call is not None and call.record.recording_path != path:
                out.append(f"call {call_id} is recorded into {path}, its record links "
                           f"{call.record.recording_path}")
        return out
