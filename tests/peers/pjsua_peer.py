"""A scripted SIP peer on our pjsua2 build, run as its own process by the end-to-end tests.

    caller: places N calls, sends digits (RFC 2833 or SIP INFO), plays a file, records what it
            hears, asks the far end to transfer the call (REFER, ``--refer URI``), hangs up
            after a while or when the far end does.
    agent:  answers incoming calls after a delay (or refuses them), plays a file, records,
            hangs up after a talk time.

Either can register with a registrar first (``--register HOST:PORT --password PW``, digest
authentication), as an agent's phone does with the edge (Kamailio).

Every happening is printed as one JSON line on stdout with a wall-clock time ``t``, so the test
can measure, e.g., the time from a caller's digit to the agent's INVITE.
"""

from __future__ import annotations

import argparse
import gc
import json
import signal
import sys
import time

import pjsua2 as pj

T0 = time.time()


def emit(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


class Peer:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 64
        cfg.logConfig.level = 1
        cfg.logConfig.consoleLevel = 1
        cfg.medConfig.clockRate = 8000
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.sndAutoCloseTime = -1
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        self.ep.libInit(cfg)
        tc = pj.TransportConfig()
        tc.port = args.port
        tc.boundAddress = args.ip
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        for codec in self.ep.codecEnum2():
            self.ep.codecSetPriority(codec.codecId, 0)
        self.ep.codecSetPriority("PCMU/8000/1", 255)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{args.user}@{args.ip}:{args.port}"
        acfg.regConfig.registerOnAdd = False
        if args.register:
            # Registers with REGISTRAR (host:port) as sip:USER@REGISTRAR; events "registered"
            # (code 200) or "register_failed" (code, reason) follow "ready".
            acfg.idUri = f"sip:{args.user}@{args.register}"
            acfg.regConfig.registrarUri = f"sip:{args.register}"
            acfg.regConfig.registerOnAdd = True
            acfg.regConfig.timeoutSec = args.regint
            acfg.regConfig.retryIntervalSec = 0
            acfg.sipConfig.authCreds.append(
                pj.AuthCredInfo("digest", "*", args.user, 0, args.password or ""))
        acfg.natConfig.iceEnabled = False
        acfg.mediaConfig.transportConfig.port = args.rtp_port
        acfg.mediaConfig.transportConfig.portRange = 200
        acfg.mediaConfig.transportConfig.boundAddress = args.ip
        self.account = Account(self)
        self.account.create(acfg, True)
        self.calls: dict[int, Call] = {}
        self.done: list[Call] = []
        self.players: list[pj.AudioMediaPlayer] = []
        self.recorders: list[pj.AudioMediaRecorder] = []
        emit("ready", port=args.port)

    def shutdown(self) -> None:
        self.ep.hangupAllCalls()
        for _ in range(30):
            self.ep.libHandleEvents(20)
        for rec in self.recorders:
            del rec
        self.recorders.clear()
        self.players.clear()
        self.calls.clear()
        self.done.clear()
        gc.collect()
        self.account.shutdown()
        self.ep.libDestroy()


class Account(pj.Account):
    def __init__(self, peer: Peer):
        super().__init__()
        self.peer = peer

    def onRegState(self, prm):
        if prm.code // 100 == 2 and prm.expiration > 0:
            emit("registered", code=prm.code, expires=prm.expiration)
        elif prm.code // 100 == 2:
            emit("unregistered", code=prm.code)
        else:
            emit("register_failed", code=prm.code, reason=prm.reason)

    def onIncomingCall(self, prm):
        call = Call(self.peer, self, prm.callId)
        call.index = len(self.peer.calls)
        self.peer.calls[prm.callId] = call
        pai = next((line.split(":", 1)[1].strip() for line in prm.rdata.wholeMsg.splitlines()
                    if line.lower().startswith("p-asserted-identity:")), "")
        emit("incoming", call=prm.callId, src=str(prm.rdata.srcAddress), pai=pai)
        if self.peer.args.reject:
            op = pj.CallOpParam()
            op.statusCode = self.peer.args.reject
            call.hangup(op)
            return
        op = pj.CallOpParam()
        op.statusCode = 180
        call.answer(op)
        call.answer_at = time.time() + self.peer.args.answer_after


class Call(pj.Call):
    def __init__(self, peer: Peer, account: Account, call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
        self.peer = peer
        self.index = 0
        self.answer_at: float | None = None
        self.confirmed_at: float | None = None
        self.hangup_at: float | None = None
        self.refer_at: float | None = None
        self.refers_sent = 0
        self.digits: list[tuple[float, str]] = []
        self.ended = False
        self.audio = None

    def onCallState(self, prm):
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.time()
            emit("confirmed", call=self.index)
            args = self.peer.args
            if args.mode == "agent" and args.talk > 0:
                self.hangup_at = self.confirmed_at + args.talk
            if args.mode == "caller" or args.digits:
                at = self.confirmed_at + args.first_digit_after
                for i, d in enumerate(args.digits):
                    self.digits.append((at + i * args.digit_gap, d))
                if args.hold > 0 and args.mode == "caller":
                    last = self.digits[-1][0] if self.digits else self.confirmed_at
                    self.hangup_at = last + args.hold
            if args.refer:
                self.refer_at = self.confirmed_at + args.refer_after
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            self.ended = True
            emit("disconnected", call=self.index, code=info.lastStatusCode,
                 reason=info.lastReason)
            self.peer.done.append(self)

    def onCallMediaState(self, prm):
        info = self.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE \
                    and self.audio is None:
                self.audio = self.getAudioMedia(media.index)
                args = self.peer.args
                if args.play:
                    player = pj.AudioMediaPlayer()
                    player.createPlayer(args.play, pj.PJMEDIA_FILE_NO_LOOP if args.play_once
                                        else 0)
                    player.startTransmit(self.audio)
                    self.peer.players.append(player)
                if args.record_dir:
                    rec = pj.AudioMediaRecorder()
                    rec.createRecorder(f"{args.record_dir}/{args.user}-{self.index}.wav")
                    self.audio.startTransmit(rec)
                    self.peer.recorders.append(rec)
                    emit("recording", call=self.index,
                         path=f"{args.record_dir}/{args.user}-{self.index}.wav")

    def onDtmfDigit(self, prm):
        emit("dtmf", call=self.index, digit=prm.digit)

    def onCallTransferStatus(self, prm):
        # the answer to our REFER (e.g. 403), then the NOTIFYs of an accepted one
        emit("transfer_status", call=self.index, code=prm.statusCode, reason=prm.reason,
             final=bool(prm.finalNotify))


def main() -> int:  # noqa: C901 - the whole scripted peer: its options, then one event loop
    # Peer.stop() ends a peer with SIGINT. A process started from a background job inherits
    # SIGINT ignored, and Python then installs no handler: the peer would run its whole
    # --duration and be killed without its BYE. Take SIGINT back whatever we inherited.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("caller", "agent"))
    parser.add_argument("--user", default="peer")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ip", default="127.0.0.1", help="loopback address to bind")
    parser.add_argument("--rtp-port", type=int, default=40000)
    parser.add_argument("--target", help="caller: URI to call")
    parser.add_argument("--calls", type=int, default=1)
    parser.add_argument("--call-gap", type=float, default=0.2)
    parser.add_argument("--digits", type=lambda s: [d for d in s.split(",") if d], default=[])
    parser.add_argument("--dtmf", choices=("rfc2833", "info"), default="rfc2833")
    parser.add_argument("--first-digit-after", type=float, default=1.0)
    parser.add_argument("--digit-gap", type=float, default=1.0)
    parser.add_argument("--hold", type=float, default=0.0,
                        help="caller: hang up this long after the last digit (0: wait)")
    parser.add_argument("--answer-after", type=float, default=0.5)
    parser.add_argument("--talk", type=float, default=0.0,
                        help="agent: hang up this long after answering (0: wait)")
    parser.add_argument("--reject", type=int, default=0, help="agent: refuse calls with this")
    parser.add_argument("--play")
    parser.add_argument("--play-once", action="store_true",
                        help="play the --play file once, then send silence (default: loop it)")
    parser.add_argument("--register", metavar="REGISTRAR",
                        help="register as sip:USER@REGISTRAR (host:port) with digest auth")
    parser.add_argument("--password", help="with --register: the digest password")
    parser.add_argument("--regint", type=int, default=60,
                        help="with --register: registration interval in seconds")
    parser.add_argument("--refer", metavar="URI",
                        help="send REFER (a blind transfer to URI) in each answered call")
    parser.add_argument("--refer-after", type=float, default=1.0,
                        help="with --refer: seconds after the call is answered")
    parser.add_argument("--refer-times", type=int, default=1,
                        help="with --refer: REFERs per call, 0.3 s apart")
    parser.add_argument("--record-dir")
    parser.add_argument("--duration", type=float, default=60.0)
    args = parser.parse_args()

    peer = Peer(args)
    end = time.time() + args.duration
    next_call = time.time()
    placed = 0
    method = pj.PJSUA_DTMF_METHOD_SIP_INFO if args.dtmf == "info" else \
        pj.PJSUA_DTMF_METHOD_RFC2833
    outgoing: list[Call] = []
    try:
        while time.time() < end:
            peer.ep.libHandleEvents(5)
            now = time.time()
            if args.mode == "caller" and placed < args.calls and now >= next_call:
                call = Call(peer, peer.account)
                call.index = placed
                call.makeCall(args.target, pj.CallOpParam(True))
                outgoing.append(call)
                emit("dialing", call=placed)
                placed += 1
                next_call = now + args.call_gap
            calls = outgoing if args.mode == "caller" else list(peer.calls.values())
            for call in calls:
                if call.ended:
                    continue
                if call.answer_at is not None and now >= call.answer_at:
                    call.answer_at = None
                    op = pj.CallOpParam()
                    op.statusCode = 200
                    call.answer(op)
                    emit("answered", call=call.index)
                while call.digits and now >= call.digits[0][0]:
                    _, digit = call.digits.pop(0)
                    prm = pj.CallSendDtmfParam()
                    prm.digits = digit
                    prm.method = method
                    emit("digit_sent", call=call.index, digit=digit)
                    call.sendDtmf(prm)
                if call.refer_at is not None and now >= call.refer_at:
                    call.refers_sent += 1
                    call.refer_at = now + 0.3 if call.refers_sent < args.refer_times else None
                    emit("refer_sent", call=call.index, target=args.refer)
                    call.xfer(args.refer, pj.CallOpParam(True))
                if call.hangup_at is not None and now >= call.hangup_at:
                    call.hangup_at = None
                    emit("hanging_up", call=call.index)
                    call.hangup(pj.CallOpParam())
            if args.mode == "caller" and placed == args.calls and all(c.ended for c in outgoing):
                break
    except KeyboardInterrupt:  # Peer.stop(): SIGINT hangs up (in shutdown) and ends cleanly
        stopped = "SIGINT"
    else:
        stopped = ""
    finally:
        outgoing.clear()
        peer.shutdown()
    if stopped:
        emit("exit", signal=stopped)
    else:
        emit("exit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
