"""What the bench's pjsua2 peers share: the endpoint, the frame clock, and their output.

Measurement choices, and why:

- **One thread polls everything.** Media shares the SIP ioqueue (``hasIoqueue = False``,
  ``threadCnt = 0``) and the peer's loop polls it every millisecond or two. The stack we
  measure has a media worker that can sleep half a second when epoll reports a socket it has
  no read pending on (a call being set up or torn down): a peer with that worker would stall
  its own reception and put its own holes into the audio it reports. Polled from one thread,
  the same flaw costs the peer at most one poll timeout.
- **No packet loss concealment, a one-frame jitter buffer.** A missing packet is then silence
  at the peer's next frame tick, not a made-up continuation of the tone, and what the caller
  "hears" is what arrived, one frame late at most.
- **What a caller hears, per frame**: the conference bridge's level of the last frame it took
  from the call (``AudioMedia.getRxLevel``), read by the loop every couple of milliseconds.
  pjsua2 2.12.1 has no audio port written in Python (``AudioMediaPort`` came later), and a
  recorder per call would mean files and a clock to line up afterwards; stream statistics
  (jitter, loss) smooth a stall away. The level is exact to a frame and costs a call per
  frame.
- **The frame clock.** The null sound device's clock ticks every 20 ms from a fixed start;
  at a tick the bridge takes each call's frame and gives each call its frame, and the stream
  sends then (a queued RFC 4733 key goes out at the first tick after ``sendDtmf``). The peer
  learns the tick phase once from a player's position (:class:`FrameClock`), so a key's first
  packet and the frame a prompt is first heard in are known to the tick.

Each peer prints JSON lines on stdout: progress while it runs, then one ``result``.
"""

from __future__ import annotations

import gc
import json
import math
import os
import signal
import struct
import time
import wave
from pathlib import Path
from typing import Any

import pjsua2 as pj

FRAME_S = 0.020
"""One G.711 frame at 8 kHz: 160 samples, 20 ms."""

POLL_MS = 1
"""libHandleEvents timeout: the longest the peer can be blind to a packet."""


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": time.monotonic(), **fields}), flush=True)


class Endpoint:
    """A pjsua2 endpoint for one peer process: one thread, UDP on *port*, G.711 only."""

    def __init__(self, port: int, log_level: int = 0):
        self.ep = pj.Endpoint()
        self.ep.libCreate()
        cfg = pj.EpConfig()
        cfg.uaConfig.threadCnt = 0
        cfg.uaConfig.mainThreadOnly = True
        cfg.uaConfig.maxCalls = 256
        cfg.logConfig.level = log_level
        cfg.logConfig.consoleLevel = log_level
        med = cfg.medConfig
        med.hasIoqueue = False  # media on the SIP ioqueue, polled by our loop only
        med.threadCnt = 0
        med.clockRate = 8000
        med.sndClockRate = 8000
        med.sndAutoCloseTime = -1  # the bridge keeps ticking with nothing connected
        med.noVad = True  # send every frame, as a gateway does
        med.ecTailLen = 0
        med.jbInit = 20  # one frame of jitter buffer, fixed
        med.jbMinPre = 20
        med.jbMaxPre = 20
        med.jbMax = 200
        self.ep.libInit(cfg)
        tc = pj.TransportConfig()
        tc.port = port
        tc.boundAddress = "127.0.0.1"
        self.ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tc)
        self.ep.libStart()
        self.ep.audDevManager().setNullDev()
        for codec in self.ep.codecEnum2():
            self.ep.codecSetPriority(codec.codecId, 0)
        self.ep.codecSetPriority("PCMU/8000/1", 255)
        param = self.ep.codecGetParam("PCMU/8000/1")
        param.setting.plc = False
        self.ep.codecSetParam("PCMU/8000/1", param)

    def account_config(self, user: str, port: int, rtp_port: int) -> pj.AccountConfig:
        acfg = pj.AccountConfig()
        acfg.idUri = f"sip:{user}@127.0.0.1:{port}"
        acfg.regConfig.registerOnAdd = False
        acfg.natConfig.iceEnabled = False
        acfg.mediaConfig.transportConfig.port = rtp_port
        acfg.mediaConfig.transportConfig.portRange = 1000
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        return acfg

    def sink(self) -> pj.AudioMedia:
        """The null playback device: a call connected to it has its frames taken every tick."""
        return self.ep.audDevManager().getPlaybackDevMedia()

    def poll(self, ms: int = POLL_MS) -> None:
        self.ep.libHandleEvents(ms)

    def shutdown(self, keep: list[Any]) -> None:
        """Hang up, let the BYEs go, drop every pjsua2 object in *keep*, destroy."""
        self.ep.hangupAllCalls()
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            self.ep.libHandleEvents(10)
        for holder in keep:
            holder.clear()
        gc.collect()


class FrameClock:
    """The peer's 20 ms frame ticks on the monotonic clock, learned from a player's position.

    A looping silent player sent to the null device moves one frame per tick. The clock thread
    schedules tick k at start + k x 20 ms, sleeps whole milliseconds toward it (so a tick can
    come up to 1 ms early) and can wake late when the machine is busy, never by much early.
    So the schedule's phase is the earliest a tick is seen: :meth:`observe`, called every loop
    turn, reads the position and moves the phase earlier (in small steps) whenever a tick comes
    before it; a tick seen after its slot tells how late the clock thread was (:attr:`late`:
    the peer's own lateness, which a key's send time and a frame's time heard may carry).
    """

    def __init__(self, endpoint: Endpoint, workdir: Path):
        path = workdir / f"clock-{os.getpid()}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(bytes(2 * 8000))
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(str(path), 0)
        self.player.startTransmit(endpoint.sink())
        self.late = 0.0
        """The latest a tick was seen after its slot (s): an upper bound of the clock's
        own lateness, to the loop's turn."""
        self.phase = self._calibrate()
        self._pos = self.player.getPos()
        self._read_at = time.monotonic()

    def _calibrate(self, moves: int = 25, limit_s: float = 2.0) -> float:
        """Read the position back to back until it moved *moves* times; the phase is where
        the moves start on the 20 ms circle (after its widest empty arc)."""
        seen: list[float] = []
        last = self.player.getPos()
        before = time.monotonic()
        give_up = before + limit_s
        while len(seen) < moves and before < give_up:
            now = time.monotonic()
            pos = self.player.getPos()
            if pos != last:
                if now - before < 0.0005:  # a tight bracket only
                    seen.append(now % FRAME_S)
                last = pos
            before = now
        if not seen:
            raise RuntimeError("the null sound device's clock does not tick")
        seen.sort()
        arcs = [(seen[(i + 1) % len(seen)] - seen[i]) % FRAME_S for i in range(len(seen))]
        widest = max(range(len(seen)), key=lambda i: arcs[i]) if len(seen) > 1 else -1
        return seen[(widest + 1) % len(seen)]

    def observe(self, now: float) -> None:
        """One loop turn: a move of the position since the last turn is a tick in between."""
        pos = self.player.getPos()
        if pos != self._pos:
            offset = (now - self.phase) % FRAME_S  # after the last slot
            if offset > FRAME_S / 2 and now - self._read_at < 0.001:
                # seen before its slot: the phase is earlier (or the tick was over half a
                # frame late, which is rare). A step of 0.2 ms at most, so that such a tick
                # cannot move it by much.
                self.phase = (self.phase - min(0.0002, FRAME_S - offset)) % FRAME_S
            elif self._read_at > now - offset:
                # the tick was not there at the previous read: it came that late at least
                self.late = max(self.late, self._read_at - (now - offset))
            self._pos = pos
        self._read_at = now

    def tick_after(self, t: float) -> float:
        """The first slot at or after *t*: when a frame queued at *t* is sent."""
        k = math.ceil((t - self.phase) / FRAME_S - 1e-9)
        return self.phase + k * FRAME_S

    def tick_before(self, t: float) -> float:
        """The last slot at or before *t*: when the frame seen at *t* was taken."""
        k = math.floor((t - self.phase) / FRAME_S + 1e-9)
        return self.phase + k * FRAME_S


def write_tone(path: Path, freq: float, amplitude: int, seconds: float, rate: int = 8000) -> None:
    """A steady sine tone, mono 16-bit PCM WAV (a whole number of cycles per second of it)."""
    step = 2 * math.pi * freq / rate
    second = struct.pack(f"<{rate}h", *(int(amplitude * math.sin(step * i)) for i in range(rate)))
    whole, part = divmod(int(seconds * rate), rate)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(second * whole + second[:2 * part])


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def take_signals() -> None:
    """SIGINT and SIGTERM end the peer through its clean shutdown (hang up, destroy), even
    when it was started with SIGINT ignored (a background job)."""
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
