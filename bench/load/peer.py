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
- **The frame clock.** The null sound device's clock ticks every 20 ms; at a tick the bridge
  takes each call's frame and gives each call its frame, and the stream sends then (a queued
  RFC 4733 key goes out at the first tick after ``sendDtmf``). The peer numbers and times the
  ticks as they happen (:class:`FrameClock`), so a key's first packet and the frame a prompt
  is first heard in are timed to the tick actually used, to about a millisecond.

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
    """The peer's 20 ms frame ticks, numbered and timed on the monotonic clock.

    At each tick of the null sound device's clock the bridge takes one frame from every call
    (what the caller hears in that frame) and gives one to every call (a queued RFC 4733 key
    goes out then). A looping silent player sent to the null device moves one frame per tick:
    :meth:`observe`, called every loop turn (about every millisecond), reads its position, so
    a move is a tick between the previous read and this one. Tick *n* (``count`` after it) is
    timed at the middle of that bracket; when the loop missed ticks (a stall of the peer), the
    ticks it missed are timed back from the read, 20 ms apart, and counted in ``missed``.
    """

    def __init__(self, endpoint: Endpoint, workdir: Path, seconds: int = 60):
        path = workdir / f"clock-{os.getpid()}.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(8000)
            out.writeframes(bytes(2 * 8000 * seconds))
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(str(path), 0)
        self.player.startTransmit(endpoint.sink())
        self.wrap = 8000 * seconds
        self.count = 0
        self.times: list[float] = []
        """times[n]: when tick n happened (n = count after it)."""
        self._step = 0
        self.restart()

    def restart(self) -> None:
        """Start counting (again) from now: the peer did not watch the clock until now."""
        self.count = 0
        self.times = [time.monotonic()]
        self.missed = 0
        self.longest_tick = (0.0, 0.0)
        """The longest interval between two ticks seen one by one (20 ms for a steady clock),
        and when it ended."""
        self._pos = self.player.getPos()
        self._read_at = self.times[0]

    def observe(self, now: float) -> bool:
        """One loop turn: True if the clock ticked since the previous read."""
        pos = self.player.getPos()
        moved = (pos - self._pos) % self.wrap
        if moved == 0:
            self._read_at = now
            return False
        if not self._step:
            self._step = moved  # samples (or bytes) per frame, whatever the unit
        # The player's position can step back and forth by odd amounts when it refills its
        # buffer from the file; those are one tick each. Whole frames at once: missed ticks.
        frames = moved // self._step if moved % self._step == 0 and moved <= 50 * self._step \
            else 1
        if frames == 1:
            at = (self._read_at + now) / 2
            if len(self.times) > 1:  # the interval from the restart is not a tick's
                self.longest_tick = max(self.longest_tick, (at - self.times[-1], at))
            self.times.append(at)
        else:
            self.missed += frames - 1
            self.times.extend(now - (frames - 1 - i) * FRAME_S for i in range(frames))
        self.count += frames
        self._pos = pos
        self._read_at = now
        return True

    def time_of(self, tick: int) -> float | None:
        """When tick *tick* happened, if it has."""
        return self.times[tick] if 0 <= tick < len(self.times) else None


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
