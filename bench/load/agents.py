"""The agents of the load bench: one process answering for every agent URI.

    python -m bench.load.agents PLAN.json

One endpoint on one UDP port takes any user (``sip:agent7@127.0.0.1:PORT`` reaches it as well
as ``agent1``): it stamps each INVITE as it takes it (``time.monotonic()``, polled every
millisecond), answers 200 OK at once, plays a steady tone (``tone``, quieter than the menu
and the music on hold, so that the caller knows its agent's audio by its level) and hangs up
after ``talk`` seconds. The bench matches each INVITE to the key 1 that caused it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pjsua2 as pj

from bench.load.peer import Endpoint, emit, take_signals


class Call(pj.Call):
    def __init__(self, agents: Agents, call_id: int):
        super().__init__(agents.account, call_id)
        self.agents = agents
        self.hangup_at: float | None = None
        self.done = False
        self.row: dict[str, Any] = {}

    def onCallState(self, prm: Any) -> None:
        info = self.getInfo()
        now = time.monotonic()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and "confirmed" not in self.row:
            self.row["confirmed"] = now
            self.hangup_at = now + self.agents.talk
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.done:
            self.done = True
            self.row["ended"] = now
            self.row["code"] = info.lastStatusCode

    def onCallMediaState(self, prm: Any) -> None:
        info = self.getInfo()  # held: the media list points into it
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.agents.tone.startTransmit(self.getAudioMedia(media.index))
                return


class Account(pj.Account):
    def __init__(self, agents: Agents):
        super().__init__()
        self.agents = agents

    def onIncomingCall(self, prm: Any) -> None:
        now = time.monotonic()
        call = Call(self.agents, prm.callId)
        info = call.getInfo()
        call.row = {"invite": now, "to": info.localUri, "from": info.remoteUri}
        self.agents.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


class Agents:
    def __init__(self, plan: dict[str, Any]):
        self.plan = plan
        self.talk = float(plan["talk"])
        self.endpoint = Endpoint(plan["sip_port"])
        self.account = Account(self)
        self.account.create(self.endpoint.account_config(
            "agents", plan["sip_port"], plan["rtp_port"]), True)
        self.calls: list[Call] = []
        self.tone = pj.AudioMediaPlayer()
        self.tone.createPlayer(plan["tone"], 0)

    def run(self) -> None:
        end = float(self.plan["end"])
        while time.monotonic() < end:
            self.endpoint.poll()
            now = time.monotonic()
            for call in self.calls:
                if call.hangup_at is not None and now >= call.hangup_at and not call.done:
                    call.hangup_at = None
                    call.hangup(pj.CallOpParam())

    def close(self) -> None:
        self.endpoint.shutdown([self.calls])
        del self.tone
        self.account.shutdown()
        self.endpoint.ep.libDestroy()


def main() -> int:
    take_signals()
    plan = json.loads(Path(sys.argv[1]).read_text())
    agents = Agents(plan)
    try:
        emit("ready", name="agents")
        plan["end"] += float(sys.stdin.readline())
        agents.run()
        rows = [c.row for c in agents.calls]
    except KeyboardInterrupt:
        emit("error", name="agents", message="interrupted")
        return 130
    finally:
        agents.close()
    emit("result", name="agents", invites=rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
