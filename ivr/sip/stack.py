"""The only module that speaks pjsua2.

One thread (the one that calls :meth:`SipStack.start`) owns the endpoint and every pjsua2
object: it polls with :meth:`SipStack.poll`, which returns the events that happened, and calls
the methods below. Callbacks only record events; nothing is done inside them, so no driver code
runs re-entrantly inside pjsua2.

Legs are named by short strings ("L1", "L2", ...) so that nothing outside this module holds a
pjsua2 object.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import os
import re
import select
import threading
import time
import wave
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pjsua2 as pj

from ivr.logs import Summarizer, escape
from ivr.sip import policy
from ivr.sip.build import build_info, build_patches
from ivr.sip.events import (
    CallConfirmed,
    CallRecordingEnded,
    CallRefused,
    DigitReceived,
    IncomingCall,
    LegAnswered,
    LegEnded,
    PlaybackEnded,
    RecordingEnded,
    SipEvent,
    TransferRequested,
)
from ivr.sip.pjlog import DECOR, LOG_FILE_RECORDS, PjsipLog

log = logging.getLogger("ivr.sip")

PLAYOUT_MARGIN = 0.06
"""Seconds after a prompt's length before its end is reported (the bridge's buffering)."""

SOUND_LEVEL = 8
"""Level of the caller's voice at or above which a recording hears sound.

The level is ``AudioMedia.getTxLevel()`` of the caller's leg: in pjsua2, 'tx' is what the call
sends into the conference bridge (the caller's voice) and 'rx' what it receives from it (what
the caller hears). pjproject 2.12.1 reports it on a 0-100 scale: the mu-law code of the mean
absolute amplitude of the last 20 ms frame (0-255) times 100/255. 8 is a mean amplitude of about
200/32768 (-44 dBFS): above the hiss of a phone line (-60 to -50 dBFS reads 1-5), below quiet
speech (espeak-ng speech over G.711 reads 11-34, a 1 kHz beep at -10 dBFS 34)."""
_LEVEL_EVERY = 0.02
"""Seconds between two reads of a recorded leg's level (one media frame)."""

_USER = re.compile(r"sips?:([^@;>]*)@")
_ADDRESS = re.compile(r"sips?:([^;>?]*)", re.IGNORECASE)
_PLAYLIST_MAX = 64
"""Files pjsua2 takes in one playlist (it drops the rest silently)."""

SESSION_EXPIRES = 300
"""Seconds of the SIP session timer (RFC 4028) offered and accepted: see :meth:`SipStack.start`."""
SESSION_MIN_SE = 90
"""The shortest session interval accepted (RFC 4028's recommended minimum)."""

REFUSAL_REASONS = {403: "Forbidden", 486: "Busy Here", 503: "Service Unavailable"}

Admission = (tuple[str | None, int] | tuple[str | None, int, int]
             | tuple[str | None, int, int, tuple[str, ...]])
"""What the admission function answers for a source address.

``(trunk, status)``: the trunk the source belongs to (None: not a trunk, refused with 403) and
the status to answer (200: admit; 486, 503...: refuse). ``(trunk, status, lines)`` adds the
trunk's line count: with ``lines > 0`` the stack refuses with 486 once that many of the trunk's
incoming legs are in progress, counted at once inside the INVITE callback (see
:meth:`SipStack.lines_in_use`), so that a burst of INVITEs in one poll cannot pass the cap.
``(trunk, status, lines, media_networks)`` adds the networks (CIDR) where the trunk's media
may be besides its own sources: an INVITE whose SDP puts media anywhere else is refused (488).

The stack also asks it whether the source of any other request is a trunk's (``trunk`` not
None): see :mod:`ivr.sip.policy`. It must be cheap and must not change state.
"""

REFUSED_INVITE_REASONS = {400: "Bad Request", 488: "Not Acceptable Here"}


def user_part(uri: str) -> str:
    """'"Anna" <sip:+3902123@gw;user=phone>' -> '+3902123'; '' if there is none."""
    match = _USER.search(uri)
    user = match.group(1) if match else ""
    return "" if user.lower() in ("anonymous", "unknown", "restricted") else user


@dataclass(frozen=True)
class SipSettings:
    host: str
    port: int
    user: str = "ivr"
    rtp_port: int = 20000
    rtp_port_range: int = 1000
    max_calls: int = 128
    log_level: int = 1
    session_expires: int = SESSION_EXPIRES
    """Session timer interval in seconds, at least 90 (0: no session timers)."""
    refuse_strangers: bool = False
    """Answer 403 to requests from sources that are not trunks' (default: no answer at all)."""


def stack_version() -> str:
    """The pjsua2 build in use: version, source and call limit where the build recorded them."""
    info = build_info()
    if info is None:
        return "pjsua2 (build info missing)"
    patches = ", ".join(build_patches()) or "none"
    return (f"pjproject {info.PJ_VERSION} from {info.SOURCE}, max {info.MAX_CALLS} calls, "
            f"patches: {patches}")


REQUEST_POLICY_PATCH = "0001-request-policy-hook.patch"
LOG_RECORDS_PATCH = "0002-log-file-records.patch"
TRANSFER_PATCH = "0003-transfer-taken-by-application.patch"
_REPLACES = re.compile(r"[?&]replaces=([A-Za-z0-9%._~+!*'()@:=;-]{1,512})(?:[&>]|$)",
                       re.IGNORECASE)
_ESCAPED_CONTROL = re.compile(r"%(?:[01][0-9a-f]|7f)", re.IGNORECASE)


class _Endpoint(pj.Endpoint):  # type: ignore[misc]
    """The endpoint, with our build's request policy hook (see :mod:`ivr.sip.policy`)."""

    def __init__(self, stack: SipStack):
        super().__init__()
        self.stack = stack

    def onRequestPolicy(self, prm: pj.OnRequestPolicyParam) -> None:
        try:
            self.stack._on_request_policy(prm)
        except Exception:  # never into pjsip: log it, drop the request
            log.exception("request policy failed; request dropped")
            prm.statusCode = policy.DROP


class _Account(pj.Account):  # type: ignore[misc]
    def __init__(self, stack: SipStack):
        super().__init__()
        self.stack = stack

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        self.stack._on_incoming(self, prm)


class _Leg(pj.Call):  # type: ignore[misc]
    def __init__(self, stack: SipStack, account: _Account, leg: str,
                 call_id: int = pj.PJSUA_INVALID_ID):
        super().__init__(account, call_id)
        self.stack = stack
        self.leg = leg
        self.outgoing = call_id == pj.PJSUA_INVALID_ID
        self.audio: pj.AudioMedia | None = None
        self.answered = False
        self.ended = False
        self.trunk = ""
        """The trunk whose line this incoming leg holds until it ends ('' for none)."""
        self.refusals_logged: set[str] = set()
        self.redirected: tuple[int, str] | None = None
        """The 3xx answer we did not follow (pjsip then ends the leg as 487)."""

    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        info = self.getInfo()
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.answered:
            self.answered = True
            # outgoing: the far end answered; incoming: the ACK of our 200 OK arrived
            self.stack._events.append(LegAnswered(self.leg) if self.outgoing
                                      else CallConfirmed(self.leg))
        elif info.state == pj.PJSIP_INV_STATE_DISCONNECTED and not self.ended:
            self.ended = True
            self.audio = None
            self.stack._free_line(self)
            status, reason = self.redirected or (info.lastStatusCode, info.lastReason)
            self.stack._events.append(LegEnded(self.leg, status, reason))
            self.stack._ended.append(self.leg)

    # -- SIP policy: requests inside a call that the far end may not make ------------------
    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        # pjsua's default accepts every REFER (202) and dials the Refer-To target itself,
        # at our expense: a caller could have us call any number. Refused unless the stack's
        # take_transfer (or, below, allow_transfer) says otherwise. 403 comes first: should
        # anything below raise, SWIG prints the error and pjsua still reads 403.
        prm.statusCode = 403
        target = str(prm.dstUri)
        why = self.stack._take_transfer(self, target)
        if not why:
            # our build's flag: pjsua answers 202 and a final NOTIFY 200 and dials nothing;
            # the driver moves the caller (TransferRequested)
            prm.opt.flag = prm.opt.flag | pj.PJSUA_CALL_TRANSFER_TAKEN
            prm.statusCode = 202
            return
        child = self.stack._transfer_leg(self, target)
        if child is None:
            self.stack._refused_request(self, "refer", target, "403", why)
            return
        # Never accept without newCall. pjsua places the transfer call with this Call as its
        # user data, and pjsua2 (Call::lookup) then switches this object's id between the two
        # calls: the transfer call's end (a 404) ended and freed this leg while pjsua still held
        # it for the caller's call, and the caller's BYE then called into the freed object
        # (the REFER -> 404 -> BYE segfault). The child is owned in _legs like any leg.
        prm.newCall = child
        prm.statusCode = 202

    def onCallReplaceRequest(self, prm: pj.OnCallReplaceRequestParam) -> None:
        # an INVITE with Replaces would take this call over from someone else's dialog
        prm.statusCode = 403
        prm.reason = "Forbidden"
        source = str(prm.rdata.srcAddress)
        self.stack._refused_request(self, "replaces", f"sip:{source}", "403")

    def onCallRedirected(self, prm: pj.OnCallRedirectedParam) -> int:
        # a 3xx from a phone we dial must never make us call where it points (it could be
        # a premium number); the leg ends with the 3xx, like a phone that does not answer
        status, reason = 300, "Redirection"
        try:
            if prm.e.type == pj.PJSIP_EVENT_TSX_STATE:
                tsx = prm.e.body.tsxState.tsx
                status, reason = int(tsx.statusCode), str(tsx.statusText)
        except Exception as exc:  # noqa: BLE001 - an event without its transaction: keep the generic 3xx
            log.debug("redirect of %s: %s", self.leg, _describe(exc))
        if 300 <= status < 400:
            self.redirected = (status, reason)
        self.stack._refused_request(self, "redirect", prm.targetUri,
                                    f"{status} {reason}, not followed")
        return int(pj.PJSIP_REDIRECT_STOP)

    def onCallSdpCreated(self, prm: pj.OnCallSdpCreatedParam) -> None:
        # pjmedia names itself in every SDP it writes ("s=pjmedia"): no product name goes out
        sdp = str(prm.sdp.wholeSdp)
        if "\ns=pjmedia\r" in sdp:
            prm.sdp.wholeSdp = sdp.replace("\ns=pjmedia\r", "\ns=-\r", 1)

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        info = self.getInfo()
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and \
                    media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.audio = self.getAudioMedia(media.index)
                self.stack._media_ready(self.leg)
                return

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        method = "info" if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc2833"
        self.stack._events.append(DigitReceived(self.leg, str(prm.digit), method))


@dataclass
class _Player:
    """A prompt playing on a leg, and when it ends.

    pjsua2 reports the end of a file with ``onEof2`` on the media clock thread. A Python
    override there runs Python code on that thread while the loop thread runs too, which
    crashed the interpreter now and then (segfault in libpython). So no Python code ever
    runs on the media thread: the end of a prompt is known from the file's length, on the
    loop thread, and the player itself is a plain pjsua2 object.
    """

    media: pj.AudioMediaPlayer | None
    """None only for a moment, while a prompt played file by file starts."""
    leg: str
    token: int
    ends_at: float | None
    """Monotonic time the file has played out; None for a loop."""
    then: list[str] = field(default_factory=list)
    """Files still to play after this one (only when they could not form one playlist)."""
    loop_paths: tuple[str, ...] = ()
    """The whole prompt again after *then*, for a loop played file by file."""


class _Recording:
    """A voicemail in progress on one leg: an optional beep, then the leg's audio into a WAV.

    Silence rule: the recording stops when nothing at or above :data:`SOUND_LEVEL` was heard
    for ``silence_seconds``, counted from the start of the recording or from the last sound,
    whichever is later. A caller who says nothing is therefore cut off after
    ``silence_seconds`` too, and a message ends that long after its last word.
    """

    def __init__(self, leg: str, token: int, path: str, max_seconds: float,
                 silence_seconds: float):
        self.leg = leg
        self.token = token
        self.path = path
        self.max_seconds = max_seconds
        self.silence_seconds = silence_seconds
        self.recorder: pj.AudioMediaRecorder | None = None
        self.beeping = False
        self.started = 0.0
        self.last_sound = 0.0
        self.next_level = 0.0
        self.peak = 0


@dataclass
class _CallRecording:
    """A bridged call being recorded: one mono recorder per leg, fed by what that leg sends."""

    key: str
    legs: tuple[str, str]
    parts: tuple[str, str]
    recorders: list[tuple[str, pj.AudioMediaRecorder]]
    started: float


@dataclass(frozen=True)
class _WavInfo:
    seconds: float
    layout: tuple[int, int, int]
    """(sample rate, channels, bytes per sample): files in one playlist must all match."""


class SipStack:
    """A SIP user agent for the switchboard: answers trunks' calls and dials agents.

    ``accept_source(ip)`` decides who may call in (see :data:`Admission`); any other source
    gets 403 Forbidden. The SIP policy is decided here, not by pjsua's defaults: a REFER or an
    INVITE with Replaces inside a call is refused with 403, a 3xx answer to a call we place is
    never followed; each is counted in :attr:`refused_requests`. An INVITE with a
    Content-Length larger than its body or absurd gets 400, one whose SDP puts media outside
    the trunk 488 (:func:`ivr.sip.policy.check_invite`). Every other request outside a call is
    decided by :func:`ivr.sip.policy.decide` (our pjproject build's hook) and counted in
    :attr:`request_decisions`; refusals and unparseable datagrams are logged once per source
    and summarised once a minute (:attr:`summarizer`, counted in :attr:`traffic`). pjsip's own
    log goes through Python logging (:mod:`ivr.sip.pjlog`).

    >>> sip = SipStack(SipSettings("127.0.0.1", 5080), lambda ip: ("gw", 200, 30))
    >>> sip.start()                                              # doctest: +SKIP
    >>> events = sip.poll(10)                                    # doctest: +SKIP
    """

    def __init__(self, settings: SipSettings, accept_source: Callable[[str], Admission]):
        self.settings = settings
        self.accept_source = accept_source
        self.refused_requests: Counter[str] = Counter()
        """Requests refused by policy inside calls, by kind: 'refer', 'replaces', 'redirect'
        (a 3xx); and INVITEs refused for their framing or media: 'bad content-length',
        'truncated body', 'media address'."""
        self.request_decisions: Counter[tuple[str, str]] = Counter()
        """Every request outside calls, by (kind, reason) of :class:`ivr.sip.policy.Decision`,
        e.g. ('options', 'answered'), ('message', 'stranger'), ('info', 'not dtmf')."""
        self.traffic: Counter[str] = Counter()
        """Refused and unparseable traffic by summary reason ('unparseable SIP',
        'refused message (403)', 'refused options (no answer)'...); read by any thread."""
        self._traffic_lock = threading.Lock()
        self.summarizer = Summarizer(log, on_count=self._count_traffic)
        """Refusals and garbage logged once per source, then once a minute."""
        self.request_policy = False
        """Whether this pjsua2 build decides requests outside calls (our patch); if not,
        pjsua's defaults answer them."""
        self._pjlog: PjsipLog | None = None
        self._sip_wait: select.poll | None = None
        """Waits for the SIP socket without holding the GIL (see :meth:`poll`)."""
        self._lines: Counter[str] = Counter()
        self._ep: pj.Endpoint | None = None
        self._account: _Account | None = None
        self._legs: dict[str, _Leg] = {}
        self._players: dict[str, _Player] = {}
        self._pending_play: dict[str, tuple[tuple[str, ...], int, bool]] = {}
        self._bridges: dict[str, str] = {}
        self._links: set[tuple[str, str]] = set()
        """One-way audio connections (source leg, destination leg) made by :meth:`connect`,
        apart from the two-way bridges; those waiting for a leg's media included."""
        self._events: list[SipEvent] = []
        self._ended: list[str] = []
        self._wav_info: dict[str, _WavInfo] = {}
        self._recordings: dict[str, _Recording] = {}
        self._call_recordings: dict[str, _CallRecording] = {}
        self._next_leg = 0
        self.clock: Callable[[], float] = time.monotonic
        self.take_transfer: Callable[[str, str], str] = lambda leg, target: "not allowed"
        """Asked inside the callback of a REFER on *leg* to the Refer-To URI *target*: '' to
        take the transfer (the stack answers 202 and a final NOTIFY 200, dials nothing, and
        reports :class:`~ivr.sip.events.TransferRequested` for the driver to move the caller),
        else why it is refused (403). It must be cheap and must not change state. Needs our
        build's flag (:data:`TRANSFER_PATCH`); without it every REFER is refused."""
        self.transfers_taken = False
        """Whether this pjsua2 build can take a transfer without dialling (our patch)."""
        self.allow_transfer: Callable[[str, str], bool] = lambda leg, target: False
        """Whether pjsua may place the transfer (REFER) of *leg* to the Refer-To URI *target*
        itself, as written (its callback cannot change the URI). Default: never (403). The
        switchboard never allows it (it moves callers itself, see :attr:`take_transfer`)."""
        self._unplaced: list[_Leg] = []
        """Transfer legs handed to pjsua in this poll: swept if it could not place them."""

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        patches = build_patches()
        self.request_policy = REQUEST_POLICY_PATCH in patches and \
            hasattr(pj, "OnRequestPolicyParam")
        if not self.request_policy:
            log.warning("this pjsua2 build has no request policy hook (%s): OPTIONS, MESSAGE, "
                        "SUBSCRIBE... are answered by pjsua's defaults; run `make sipstack`",
                        REQUEST_POLICY_PATCH)
        self.transfers_taken = TRANSFER_PATCH in patches and \
            hasattr(pj, "PJSUA_CALL_TRANSFER_TAKEN")
        if not self.transfers_taken:
            log.warning("this pjsua2 build cannot take transfers (%s): agents' REFERs are "
                        "refused; run `make sipstack`", TRANSFER_PATCH)
        ep = _Endpoint(self) if self.request_policy else pj.Endpoint()
        ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0  # so requests (and onRequestPolicy) come on our thread
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = s.max_calls
        cfg.uaConfig.userAgent = ""  # no product name or version in anything we send
        cfg.logConfig.level = s.log_level
        cfg.logConfig.consoleLevel = s.log_level
        if LOG_RECORDS_PATCH in patches:
            self._pjlog = PjsipLog(summarizer=self.summarizer)
            cfg.logConfig.filename = self._pjlog.open()
            cfg.logConfig.fileFlags = LOG_FILE_RECORDS
            cfg.logConfig.decor = DECOR
            cfg.logConfig.consoleLevel = 0
        cfg.medConfig.clockRate = 8000  # G.711 everywhere: an 8 kHz bridge never resamples
        cfg.medConfig.sndClockRate = 8000
        cfg.medConfig.noVad = True
        cfg.medConfig.ecTailLen = 0
        cfg.medConfig.sndAutoCloseTime = -1  # keep the bridge clock running when idle
        cfg.medConfig.maxMediaPorts = max(254, s.max_calls * 3)
        try:
            ep.libInit(cfg)
        finally:
            if self._pjlog is not None:
                self._pjlog.opened()
        if self.request_policy and hasattr(ep, "setAllowedMethods"):
            # pjsip's modules each named their methods (REFER, MESSAGE, SUBSCRIBE...)
            ep.setAllowedMethods(pj.StringVector(policy.ALLOW.split(", ")))
        self.summarizer.start()
        tcfg = pj.TransportConfig()
        tcfg.port = s.port
        tcfg.boundAddress = s.host
        try:
            ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        except pj.Error as exc:  # the port was taken after the start's check
            ep.libDestroy()
            if self._pjlog is not None:
                self._pjlog.close()
                self._pjlog = None
            self.summarizer.stop()
            from ivr.preflight import listen_error

            raise listen_error(OSError(errno.EADDRINUSE, _describe(exc)), s.host, s.port,
                               "SIP", "udp") from None
        ep.libStart()
        self._sip_wait = _readable_waiter(s.port)
        ep.audDevManager().setNullDev()
        for codec in ep.codecEnum2():
            ep.codecSetPriority(codec.codecId, 0)
        ep.codecSetPriority("PCMU/8000/1", 255)
        ep.codecSetPriority("PCMA/8000/1", 254)
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{s.user}@{s.host}:{s.port}"
        acfg.regConfig.registerOnAdd = False
        acfg.natConfig.iceEnabled = False
        acfg.mediaConfig.transportConfig.port = s.rtp_port
        acfg.mediaConfig.transportConfig.portRange = s.rtp_port_range
        acfg.mediaConfig.transportConfig.boundAddress = s.host
        # Session timers (RFC 4028) wherever the far end supports them: if this process dies
        # mid-call, no BYE is ever sent; a gateway that runs the timer ends the orphaned call
        # (and frees its line) within one interval instead of holding it for hours. We offer
        # 5 minutes on the calls we place; on calls we receive, pjsip takes the interval the
        # caller's INVITE asks for (refusing less than 90 s) and adds none if it asks none.
        if s.session_expires > 0:
            acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_OPTIONAL
            acfg.callConfig.timerMinSESec = SESSION_MIN_SE  # pjsip's floor too
            acfg.callConfig.timerSessExpiresSec = max(SESSION_MIN_SE, s.session_expires)
        else:
            acfg.callConfig.timerUse = pj.PJSUA_SIP_TIMER_INACTIVE
        account = _Account(self)
        account.create(acfg, True)
        self._ep, self._account = ep, account
        log.info("SIP listening on udp %s:%d, RTP ports %d-%d", s.host, s.port, s.rtp_port,
                 s.rtp_port + s.rtp_port_range)

    def shutdown(self) -> None:
        """Hang up everything and release the stack; safe to call twice."""
        ep = self._ep
        if ep is None:
            return
        ep.hangupAllCalls()
        for _ in range(50):
            ep.libHandleEvents(20)
            if not any(not leg.ended for leg in self._legs.values()):
                break
        for rec in list(self._recordings.values()):
            self._close_recording(rec, "hangup")
        self._recordings.clear()
        for call_rec in list(self._call_recordings.values()):
            self._close_call_recording(call_rec, "hangup")
        self._players.clear()
        self._pending_play.clear()
        self._legs.clear()
        self._unplaced.clear()
        self._events.clear()
        gc.collect()
        if self._account is not None:
            self._account.shutdown()
            self._account = None
        gc.collect()
        self._sip_wait = None
        ep.libDestroy()
        self._ep = None
        if self._pjlog is not None:
            self._pjlog.close()  # libDestroy closed pjsip's end: the reader drains and ends
            self._pjlog = None
        self.summarizer.stop()
        log.info("SIP stack stopped")

    # -- polling ---------------------------------------------------------------------------
    def poll(self, timeout_ms: int) -> list[SipEvent]:
        """Run the stack for up to *timeout_ms* and return what happened, in order."""
        assert self._ep is not None, "start() first"
        self._run_pjsua(self._ep, timeout_ms)
        if self._unplaced:
            self._sweep_unplaced()
        now = time.monotonic()
        done = [p for p in self._players.values() if p.ends_at is not None and p.ends_at <= now]
        for player in done:
            leg, token = player.leg, player.token
            if self._players.get(leg) is player and (player.then or player.loop_paths):
                self._next_file(player)
            elif self._players.get(leg) is player:
                self._release_player(leg)
                rec = self._recordings.get(leg)
                if rec is not None and rec.beeping:
                    self._begin_recording(rec)  # the beep is over: the message starts now
                else:
                    self._events.append(PlaybackEnded(leg, token))
        if self._recordings:
            self._watch_recordings()
            ended = [leg for leg in self._ended if leg in self._recordings]
            if ended:
                self._events = self._with_hangup_recordings(self._events, ended)
        if self._call_recordings and self._ended:
            for call_rec in [r for r in self._call_recordings.values()
                             if set(r.legs) & set(self._ended)]:
                self._events.append(self._close_call_recording(call_rec, "hangup"))
        for leg in self._ended:
            self._players.pop(leg, None)
            self._pending_play.pop(leg, None)
            self._bridges.pop(leg, None)
            self._links = {link for link in self._links if leg not in link}
            self._legs.pop(leg, None)
        self._ended.clear()
        events, self._events = self._events, []
        return events

    def _run_pjsua(self, ep: pj.Endpoint, timeout_ms: int) -> None:
        """Let pjsua handle what happened, waiting up to *timeout_ms* for SIP traffic."""
        if timeout_ms > 0 and self._sip_wait is not None:
            # pjsua2's binding keeps the GIL inside libHandleEvents, so a wait there stalls
            # every other thread of the process (renderer, store writer, /metrics) for as long.
            # The wait is ours instead, on the SIP socket with the GIL released; pjsua then only
            # handles what is there.
            ep.libHandleEvents(0)
            if not self._events:
                self._sip_wait.poll(timeout_ms)
        else:
            ep.libHandleEvents(timeout_ms)
        if timeout_ms > 0:
            # What the media thread reports (a caller's key, RFC 4733) waits in pjsua2's job
            # queue, which libHandleEvents runs before it waits, not after: without this a key
            # that came during the wait was handled only after the next turn's wait too.
            ep.libHandleEvents(0)

    # -- incoming --------------------------------------------------------------------------
    def _new_leg_id(self) -> str:
        self._next_leg += 1
        return f"L{self._next_leg}"

    def _on_request_policy(self, prm: pj.OnRequestPolicyParam) -> None:
        """Our build's hook: every request outside a call except INVITE/ACK/BYE/CANCEL/PRACK/
        UPDATE, before pjsua sees it. Runs inside :meth:`poll`, on the loop thread."""
        source = _host(str(prm.srcAddress))
        method = str(prm.method)
        known = self.accept_source(source)[0] is not None
        decision = policy.decide(method, known=known, in_dialog=bool(prm.inDialog),
                                 content_type=str(prm.contentType),
                                 refuse_strangers=self.settings.refuse_strangers)
        prm.statusCode = decision.status
        for name, value in decision.headers:
            header = pj.SipHeader()
            header.hName, header.hValue = name, value
            prm.headers.append(header)
        with self._traffic_lock:
            self.request_decisions[decision.kind, decision.reason] += 1
        if decision.refused:
            answer = "no answer" if decision.status == policy.DROP else str(decision.status)
            self.summarizer.report(f"refused {decision.kind} ({answer})", source,
                                   f"{escape(method, 20)}: {decision.reason}")

    def _count_traffic(self, reason: str) -> None:
        with self._traffic_lock:
            self.traffic[reason] += 1

    def traffic_counts(self) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        """Copies of :attr:`traffic` and :attr:`request_decisions`, safe from any thread
        (e.g. a metrics collector at scrape time)."""
        with self._traffic_lock:
            return dict(self.traffic), dict(self.request_decisions)

    def _on_incoming(self, account: _Account, prm: pj.OnIncomingCallParam) -> None:
        source = _host(str(prm.rdata.srcAddress))
        leg_id = self._new_leg_id()
        leg = _Leg(self, account, leg_id, prm.callId)
        info = leg.getInfo()
        caller, called = user_part(info.remoteUri), user_part(info.localUri)
        admission = self.accept_source(source)
        trunk, status = admission[0], admission[1]
        lines = admission[2] if len(admission) > 2 else 0
        media_networks: tuple[str, ...] = admission[3] if len(admission) > 3 else ()
        if trunk is not None and status < 300 and lines > 0 and self._lines[trunk] >= lines:
            status = 486  # counted here, so INVITEs that arrive in one poll cannot pass the cap
        check = policy.InviteCheck()
        if trunk is not None and status < 300:
            check = policy.check_invite(
                str(prm.rdata.wholeMsg), media_networks=media_networks,
                trunk_source=lambda ip: ip == source or self.accept_source(ip)[0] == trunk)
            status = check.status or status
        if trunk is None or status >= 300:
            status = status if trunk is not None else 403
            reason = REFUSAL_REASONS.get(status, "Refused") if not check.status else \
                f"{REFUSED_INVITE_REASONS.get(status, 'Refused')}: {check.reason}"
            if check.status:
                self.refused_requests[check.reason] += 1
                self.summarizer.report(f"refused INVITE ({status})", source,
                                       f"{check.reason}: {check.detail}")
            else:
                log.warning("refused call from %s to %s: %s", source, escape(called, 40) or "?",
                            "source is not a configured trunk" if trunk is None else
                            f"trunk {trunk} has no free line" if status == 486 else
                            f"{status} {reason}")
            op = pj.CallOpParam()
            op.statusCode = status
            leg.ended = True
            self._legs[leg_id] = leg  # keep it referenced until pjsua2 is done with it
            leg.hangup(op)
            self._ended.append(leg_id)
            self._events.append(CallRefused(source, caller, called, op.statusCode, reason,
                                            trunk or ""))
            return
        self._legs[leg_id] = leg
        leg.trunk = trunk
        self._lines[trunk] += 1
        self._events.append(IncomingCall(leg_id, source, trunk, caller, called))

    def _take_transfer(self, parent: _Leg, target: str) -> str:
        """'' when the transfer of *parent* to *target* is ours to carry out (reported as
        TransferRequested), else why it is refused."""
        if parent.ended:
            return "the call is ending"
        try:
            why = self.take_transfer(parent.leg, target)
        except Exception:  # never into pjsip: the REFER is refused
            log.exception("transfer policy failed; REFER refused")
            return "transfer policy failed"
        if why:
            return why
        if not self.transfers_taken:
            return f"this pjsua2 build cannot take transfers ({TRANSFER_PATCH})"
        replaces = replaces_of(target)
        log.info("leg %s: %s transfer to %s taken", parent.leg,
                 "attended" if replaces else "blind", printable_target(target))
        self._events.append(TransferRequested(parent.leg, target, replaces))
        return ""

    def _transfer_leg(self, parent: _Leg, target: str) -> _Leg | None:
        """The leg pjsua is to place a transfer of *parent* on, or None to refuse it."""
        if parent.ended or self._account is None or not self.allow_transfer(parent.leg, target):
            return None
        leg = _Leg(self, self._account, self._new_leg_id())
        self._legs[leg.leg] = leg  # owned until pjsua reports its end, like any leg
        self._unplaced.append(leg)
        log.info("leg %s: transfer to %s placed on leg %s", parent.leg,
                 printable_target(target), leg.leg)
        return leg

    def _sweep_unplaced(self) -> None:
        """End the transfer legs pjsua could not place (a bad URI, no free call slot).

        pjsua places the call inside the same poll, right after the REFER callback, and
        pjsua2 gives the leg its call id there (media set-up calls back into it); a leg still
        without an id has no call and would never hear of one.
        """
        for leg in self._unplaced:
            if not leg.ended and leg.getId() == pj.PJSUA_INVALID_ID:
                leg.ended = True
                self._events.append(LegEnded(leg.leg, 500, "transfer not placed"))
                self._ended.append(leg.leg)
        self._unplaced.clear()

    def lines_in_use(self, trunk: str) -> int:
        """Incoming legs of *trunk* admitted and not ended yet (including unanswered ones)."""
        return self._lines[trunk]

    def _free_line(self, leg: _Leg) -> None:
        if leg.trunk:
            self._lines[leg.trunk] -= 1
            if self._lines[leg.trunk] <= 0:
                del self._lines[leg.trunk]
            leg.trunk = ""

    def _refused_request(self, leg: _Leg, kind: str, target: str, answer: str,
                         why: str = "") -> None:
        """Count a request refused by policy and log it, once per leg and kind."""
        self.refused_requests[kind] += 1
        if kind == "refer":
            self._count_traffic("refused refer (403)")
        if kind in leg.refusals_logged:
            return
        leg.refusals_logged.add(kind)
        what = {"refer": "REFER", "replaces": "INVITE with Replaces",
                "redirect": "redirect"}.get(kind, kind)
        log.warning("leg %s: refused %s to %s (%s)%s", leg.leg, what, printable_target(target),
                    answer, f": {why}" if why else "")

    # -- commands --------------------------------------------------------------------------
    def answer(self, leg_id: str) -> None:
        leg = self._legs.get(leg_id)
        if leg is None or leg.ended:
            return
        op = pj.CallOpParam()
        op.statusCode = 200
        try:
            leg.answer(op)
        except Exception as exc:  # noqa: BLE001 - pjsua2 raises its own Error type
            # the far end gave up (CANCEL) or pjsua ended the INVITE session in the same poll:
            # pjsua reports the leg's end, the core hears LegEnded as for any hang-up
            log.warning("leg %s: cannot answer: %s", leg_id, _describe(exc))
            self.hangup(leg_id)

    def dial(self, uri: str, caller_id: str = "") -> str | None:
        """Call *uri* (an agent, a campaign's contact); returns the leg, or None if the call
        could not be started. *caller_id*: the number to present, sent as
        ``P-Asserted-Identity: <tel:NUMBER>`` (RFC 3325) for the gateway to put on the line."""
        assert self._account is not None
        leg_id = self._new_leg_id()
        leg = _Leg(self, self._account, leg_id)
        op = pj.CallOpParam(True)
        if caller_id:
            header = pj.SipHeader()
            header.hName = "P-Asserted-Identity"
            header.hValue = f"<tel:{caller_id}>"
            op.txOption.headers.append(header)
        try:
            leg.makeCall(uri, op)
        except Exception as exc:  # noqa: BLE001 - pjsua2 raises its own Error type
            log.error("cannot call %s: %s", uri, _describe(exc))
            return None
        self._legs[leg_id] = leg
        return leg_id

    def hangup(self, leg_id: str, status: int = 0) -> None:
        leg = self._legs.get(leg_id)
        if leg is None or leg.ended:
            return
        self._release_player(leg_id)
        op = pj.CallOpParam()
        if status:
            op.statusCode = status
        try:
            leg.hangup(op)
        except Exception as exc:  # noqa: BLE001 - a pjsua2 call on a leg that may be gone
            log.debug("hangup of %s: %s", leg_id, _describe(exc))

    def play(self, leg_id: str, path: str | Sequence[str], token: int,
             loop: bool = False) -> None:
        """Play a WAV file, or several back to back as one prompt, replacing what was playing.

        Several files (e.g. pre-rendered words: "you are number", "three", "in the queue")
        play as one pjsua2 playlist, without a gap between them; files of different sample
        rates cannot, and then play one after the other. ``PlaybackEnded(leg, token)`` is
        reported when all have played (never for a loop).
        """
        leg = self._legs.get(leg_id)
        if leg is None or leg.ended:
            return
        self._release_player(leg_id)
        paths = (path,) if isinstance(path, str) else tuple(path)
        if leg.audio is None:
            self._pending_play[leg_id] = (paths, token, loop)
            return
        if not paths:
            self._events.append(PlaybackEnded(leg_id, token))
            return
        player = None
        if len(paths) == 1 or self._playlist_fits(paths):
            player = self._start_player(leg, paths, token, loop)
        if player is None and len(paths) > 1:
            log.debug("prompt on %s played file by file: %s", leg_id, ", ".join(paths))
            player = _Player(None, leg_id, token, None, list(paths), paths if loop else ())
            self._players[leg_id] = player
            self._next_file(player)
            return
        if player is None:
            self._events.append(PlaybackEnded(leg_id, token))
            return
        self._players[leg_id] = player

    def _playlist_fits(self, paths: Sequence[str]) -> bool:
        """Whether the files can form one pjsua2 playlist: readable, one layout, few enough."""
        infos = [self._wav(p) for p in paths]
        return len(paths) <= _PLAYLIST_MAX and all(i is not None for i in infos) \
            and len({i.layout for i in infos if i is not None}) == 1

    def _start_player(self, leg: _Leg, paths: Sequence[str], token: int,
                      loop: bool) -> _Player | None:
        """One pjsua2 player (a playlist for several files) transmitting to *leg*, or None."""
        assert leg.audio is not None
        options = 0 if loop else pj.PJMEDIA_FILE_NO_LOOP
        media = pj.AudioMediaPlayer()
        try:
            if len(paths) == 1:
                media.createPlayer(paths[0], options)
            else:
                media.createPlaylist(pj.StringVector(list(paths)), f"prompt-{leg.leg}", options)
            media.startTransmit(leg.audio)
        except Exception as exc:  # noqa: BLE001 - a pjsua2 call on a leg that may be gone
            log.error("cannot play %s on %s: %s", ", ".join(paths), leg.leg, _describe(exc))
            return None
        ends_at = None
        if not loop:
            seconds = sum(info.seconds for info in map(self._wav, paths) if info is not None)
            # plus one bridge frame or two, so the last audio has left before the next prompt
            ends_at = time.monotonic() + seconds + PLAYOUT_MARGIN
        return _Player(media, leg.leg, token, ends_at)

    def _wav(self, path: str) -> _WavInfo | None:
        """The file's length and layout, read once per path (None if it cannot be read)."""
        info = self._wav_info.get(path)
        if info is None:
            info = _read_wav_info(path)
            if info is not None:
                self._wav_info[path] = info
        return info

    def start_recording(self, leg_id: str, path: str, token: int, max_seconds: float,
                        silence_seconds: float, beep: str | None = None) -> None:
        """Record what the leg's caller says into the WAV file *path* (8 kHz, 16-bit mono).

        With *beep* (a WAV file), that is played first and the recording starts when it ends.
        It stops after *max_seconds*, after *silence_seconds* without sound (see
        :class:`_Recording`), on :meth:`stop_recording` or when the leg ends; then
        ``RecordingEnded(leg, token, path, seconds, reason)`` is reported.
        """
        leg = self._legs.get(leg_id)
        if leg is None or leg.ended or leg.audio is None or leg_id in self._recordings:
            self._events.append(RecordingEnded(leg_id, token, "", 0.0, "error"))
            return
        rec = _Recording(leg_id, token, path, max_seconds, silence_seconds)
        self._recordings[leg_id] = rec
        if beep:
            self.stop_playback(leg_id)
            rec.beeping = True
            self.play(leg_id, beep, token)
            if leg_id in self._players:
                return
            rec.beeping = False  # the beep could not play (logged): record without it
            self._events = [e for e in self._events
                            if not (isinstance(e, PlaybackEnded) and e.leg == leg_id)]
        self._begin_recording(rec)

    def stop_recording(self, leg_id: str, reason: str = "key") -> None:
        """End the leg's recording now (e.g. a key was pressed); RecordingEnded follows."""
        rec = self._recordings.pop(leg_id, None)
        if rec is not None:
            self._events.append(self._close_recording(rec, reason))

    def record_call(self, key: str, legs: tuple[str, str], parts: tuple[str, str]) -> bool:
        """Record a bridged call: what each of *legs* sends into the mono WAV file of *parts*
        at the same index (8 kHz, 16-bit), started in the same media frame so the two stay
        aligned. It ends on :meth:`stop_call_recording` or when either leg ends; then
        ``CallRecordingEnded(key, parts, seconds, reason)`` is reported. False (logged) if it
        cannot start; nothing is reported then."""
        if key in self._call_recordings:
            return False
        recorders: list[tuple[str, pj.AudioMediaRecorder]] = []
        sources = []
        try:
            for leg_id, path in zip(legs, parts, strict=True):
                leg = self._legs.get(leg_id)
                if leg is None or leg.ended or leg.audio is None:
                    raise RuntimeError(f"leg {leg_id} has no audio")
                os.makedirs(os.path.dirname(path) or ".", mode=0o750, exist_ok=True)
                recorder = pj.AudioMediaRecorder()
                recorder.createRecorder(path)
                recorders.append((leg_id, recorder))
                sources.append(leg.audio)
            for audio, (_, recorder) in zip(sources, recorders, strict=True):
                audio.startTransmit(recorder)
        except Exception as exc:  # noqa: BLE001 - a pjsua2 call on a leg that may be gone
            log.error("cannot record call %s: %s", key, _describe(exc))
            self._close_call_recording(_CallRecording(key, legs, parts, recorders, 0.0), "error")
            return False
        self._call_recordings[key] = _CallRecording(key, legs, parts, recorders, self.clock())
        return True

    def stop_call_recording(self, key: str, reason: str) -> None:
        """End a call's recording now (e.g. the disk is nearly full); CallRecordingEnded
        follows."""
        call_rec = self._call_recordings.get(key)
        if call_rec is not None:
            self._events.append(self._close_call_recording(call_rec, reason))

    def _close_call_recording(self, call_rec: _CallRecording,
                              reason: str) -> CallRecordingEnded:
        """Detach and release both recorders (which closes the files)."""
        self._call_recordings.pop(call_rec.key, None)
        for leg_id, recorder in call_rec.recorders:
            leg = self._legs.get(leg_id)
            if leg is not None and leg.audio is not None:
                try:
                    leg.audio.stopTransmit(recorder)
                except Exception as exc:  # noqa: BLE001 - the leg may be gone
                    log.debug("stopTransmit to the recorder of %s: %s", leg_id,
                              _describe(exc))
        call_rec.recorders.clear()  # the last references: pjsua2 closes the files here
        seconds = self.clock() - call_rec.started if call_rec.started else 0.0
        return CallRecordingEnded(call_rec.key, call_rec.parts, round(seconds, 3), reason)

    def stop_playback(self, leg_id: str) -> None:
        self._pending_play.pop(leg_id, None)
        self._release_player(leg_id)

    def bridge(self, a: str, b: str) -> bool:
        """Connect two legs' audio both ways (stopping what either was playing)."""
        leg_a, leg_b = self._legs.get(a), self._legs.get(b)
        if not leg_a or not leg_b or leg_a.audio is None or leg_b.audio is None:
            return False
        self.stop_playback(a)
        self.stop_playback(b)
        try:
            leg_a.audio.startTransmit(leg_b.audio)
            leg_b.audio.startTransmit(leg_a.audio)
        except Exception as exc:  # noqa: BLE001 - a leg's media went away in this poll
            log.warning("cannot connect %s and %s: %s", a, b, _describe(exc))
            for src, dst in ((leg_a, leg_b), (leg_b, leg_a)):
                with contextlib.suppress(Exception):
                    if src.audio is not None and dst.audio is not None:
                        src.audio.stopTransmit(dst.audio)
            return False
        self._bridges[a], self._bridges[b] = b, a
        return True

    def connect(self, src: str, dst: str) -> None:
        """Send *src*'s audio to *dst* too, one way (a supervisor listening, whispering):
        nothing either plays stops, no bridge changes. A leg whose media is not up yet is
        connected when it is."""
        if src == dst or src not in self._legs or dst not in self._legs:
            return
        self._links.add((src, dst))
        self._transmit(src, dst, start=True)

    def disconnect(self, src: str, dst: str) -> None:
        """Undo :meth:`connect`. A two-way bridge between the legs is left as it is."""
        if (src, dst) not in self._links:
            return
        self._links.discard((src, dst))
        if self._bridges.get(src) != dst:
            self._transmit(src, dst, start=False)

    def _transmit(self, src: str, dst: str, *, start: bool) -> None:
        leg_a, leg_b = self._legs.get(src), self._legs.get(dst)
        if not leg_a or not leg_b or leg_a.audio is None or leg_b.audio is None:
            return
        try:
            if start:
                leg_a.audio.startTransmit(leg_b.audio)
            else:
                leg_a.audio.stopTransmit(leg_b.audio)
        except Exception as exc:  # noqa: BLE001 - a leg's media went away in this poll
            log.warning("cannot %s audio %s -> %s: %s", "connect" if start else "disconnect",
                        src, dst, _describe(exc))

    # -- internals -------------------------------------------------------------------------
    def _with_hangup_recordings(self, events: list[SipEvent], legs: list[str]) -> list[SipEvent]:
        """*events* with a RecordingEnded ('hangup') just before the LegEnded of each leg."""
        out: list[SipEvent] = []
        for event in events:
            if isinstance(event, LegEnded) and event.leg in legs \
                    and event.leg in self._recordings:
                out.append(self._close_recording(self._recordings[event.leg], "hangup"))
            out.append(event)
        for leg in legs:  # a LegEnded reported by an earlier poll (should not happen)
            if leg in self._recordings:
                out.append(self._close_recording(self._recordings[leg], "hangup"))
        return out

    def _begin_recording(self, rec: _Recording) -> None:
        rec.beeping = False
        leg = self._legs.get(rec.leg)
        recorder = pj.AudioMediaRecorder()
        try:
            if leg is None or leg.ended or leg.audio is None:
                raise RuntimeError("the call has ended")
            os.makedirs(os.path.dirname(rec.path) or ".", mode=0o750, exist_ok=True)
            recorder.createRecorder(rec.path)
            leg.audio.startTransmit(recorder)
        except Exception as exc:  # noqa: BLE001 - a pjsua2 call on a leg that may be gone
            log.error("cannot record %s into %s: %s", rec.leg, rec.path, _describe(exc))
            self._recordings.pop(rec.leg, None)
            self._events.append(RecordingEnded(rec.leg, rec.token, "", 0.0, "error"))
            return
        rec.recorder = recorder
        rec.started = rec.last_sound = rec.next_level = self.clock()

    def _watch_recordings(self) -> None:
        """Stop recordings that reached their length or their silence (called every poll)."""
        now = self.clock()
        for rec in list(self._recordings.values()):
            if rec.recorder is None:
                continue  # still beeping
            leg = self._legs.get(rec.leg)
            if leg is None or leg.ended or leg.audio is None:
                continue  # the poll's end-of-leg handling reports it as 'hangup'
            reason = None
            if now - rec.started >= rec.max_seconds:
                reason = "max_length"
            elif now >= rec.next_level:
                rec.next_level = now + _LEVEL_EVERY
                try:
                    level = int(leg.audio.getTxLevel())  # what the caller sends: see SOUND_LEVEL
                except Exception:  # noqa: BLE001 - the media went away between two checks
                    level = 0
                rec.peak = max(rec.peak, level)
                if level >= SOUND_LEVEL:
                    rec.last_sound = now
                elif now - rec.last_sound >= rec.silence_seconds:
                    reason = "silence"
            if reason is not None:
                self.stop_recording(rec.leg, reason)

    def _close_recording(self, rec: _Recording, reason: str) -> RecordingEnded:
        """Detach and release the recorder (which closes the WAV file) and describe the result."""
        self._recordings.pop(rec.leg, None)
        if rec.beeping:
            self._release_player(rec.leg)
        recorder, rec.recorder = rec.recorder, None
        if recorder is None:
            return RecordingEnded(rec.leg, rec.token, "", 0.0, reason)
        leg = self._legs.get(rec.leg)
        if leg is not None and leg.audio is not None:
            try:
                leg.audio.stopTransmit(recorder)
            except Exception as exc:  # noqa: BLE001 - a pjsua2 call on a leg that may be gone
                log.debug("stopTransmit to the recorder of %s: %s", rec.leg, _describe(exc))
        elapsed = self.clock() - rec.started
        del recorder  # the last reference: pjsua2 closes the file and writes its header here
        seconds = _wav_seconds(rec.path)
        log.debug("recording of %s ended (%s): %.1f s in the file, %.1f s elapsed, peak "
                  "level %d", rec.leg, reason, seconds, elapsed, rec.peak)
        return RecordingEnded(rec.leg, rec.token, rec.path, seconds, reason)

    def _next_file(self, player: _Player) -> None:
        """Go on with a prompt played file by file: its next file that plays, or from the start
        (a loop); PlaybackEnded when none is left (a file that cannot play is skipped)."""
        rest = player.then or list(player.loop_paths)
        self._release_player(player.leg)
        leg = self._legs.get(player.leg)
        if leg is None or leg.ended or leg.audio is None:
            return
        while rest:
            nxt = self._start_player(leg, rest[:1], player.token, loop=False)
            rest = rest[1:]
            if nxt is not None:
                nxt.then, nxt.loop_paths = rest, player.loop_paths
                self._players[player.leg] = nxt
                return
        if not player.loop_paths:
            self._events.append(PlaybackEnded(player.leg, player.token))

    def _media_ready(self, leg_id: str) -> None:
        for src, dst in [link for link in self._links if leg_id in link]:
            self._transmit(src, dst, start=True)
        pending = self._pending_play.pop(leg_id, None)
        if pending is not None:
            paths, token, loop = pending
            self.play(leg_id, paths, token, loop)

    def _release_player(self, leg_id: str) -> None:
        player = self._players.pop(leg_id, None)
        if player is None:
            return
        leg = self._legs.get(leg_id)
        if player.media is not None and leg is not None and leg.audio is not None:
            try:
                player.media.stopTransmit(leg.audio)
            except Exception as exc:  # noqa: BLE001 - a pjsua2 call on a leg that may be gone
                log.debug("stopTransmit on %s: %s", leg_id, _describe(exc))
        # the player is freed here, on the owning thread, when this last reference goes


def _readable_waiter(port: int) -> select.poll | None:
    """A poll object on this process's UDP socket bound to *port* (pjsip's SIP transport),
    found through /proc; None where that cannot be done (then :meth:`SipStack.poll` waits
    inside pjsua as before)."""
    inodes: set[str] = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except (OSError, ValueError):
            continue
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            waiter = select.poll()
            waiter.register(int(fd), select.POLLIN)
            return waiter
    log.debug("SIP socket on port %d not found: the poll waits inside pjsua", port)
    return None


def _host(address: str) -> str:
    """'192.0.2.7:5060' -> '192.0.2.7'; '[2001:db8::1]:5060' -> '2001:db8::1'."""
    return address.rsplit(":", 1)[0].strip("[]") if ":" in address else address


def replaces_of(refer_to: str) -> str:
    """The ``Replaces`` header a Refer-To URI carries (an attended transfer), still URI-escaped,
    or '' (a blind transfer, or a value with characters no Replaces holds, control characters
    escaped included)::

        >>> replaces_of("<sip:201@pbx?Replaces=a%40b%3Bto-tag%3D1%3Bfrom-tag%3D2>")
        'a%40b%3Bto-tag%3D1%3Bfrom-tag%3D2'
    """
    match = _REPLACES.search(refer_to)
    if match is None or _ESCAPED_CONTROL.search(match.group(1)):
        return ""  # a CR, LF or NUL escaped in it could make more than one header of it
    return match.group(1)


def printable_target(uri: str, limit: int = 80) -> str:
    """The user@host part of a URI from the network, safe for a log line.

    Control and other unprintable characters are escaped (a CR/LF could forge log lines), and
    the result is cut to *limit* characters.
    """
    match = _ADDRESS.search(uri)
    text = match.group(1) if match else uri
    safe = "".join(_escaped(c) for c in text[:limit + 1])
    return safe if len(safe) <= limit else safe[:limit - 3] + "..."


def _escaped(char: str) -> str:
    if char == "\\":
        return "\\\\"
    return char if char.isprintable() else ascii(char)[1:-1]  # '\r' -> '\\r'


def _read_wav_info(path: str) -> _WavInfo | None:
    try:
        with wave.open(path, "rb") as w:
            rate = w.getframerate()
            return _WavInfo(round(w.getnframes() / rate, 3),
                            (rate, w.getnchannels(), w.getsampwidth()))
    except (OSError, EOFError, ZeroDivisionError, wave.Error):
        return None


def _wav_seconds(path: str) -> float:
    try:
        with wave.open(path, "rb") as w:
            return round(w.getnframes() / w.getframerate(), 3)
    except (OSError, EOFError, wave.Error):
        return 0.0


def _describe(exc: BaseException) -> str:
    info = getattr(exc, "info", None)
    if callable(info):
        try:
            return str(info())
        except Exception:  # noqa: BLE001 - best effort for pjsua2's Error  # pragma: no cover
            pass
    return str(exc)
