"""A headless baresip user agent driven over ctrl_tcp, as an independent SIP client in tests.

baresip (Debian ``baresip-core`` 1.0.0) runs as a child process with its own config directory.
Its ctrl_tcp module speaks netstring-framed JSON: we send ``{"command", "params", "token"}``
and read back responses (``{"response": true, "ok", "data", "token"}``) and events
(``{"event": true, "type": "CALL_ESTABLISHED", "class", "accountaor", "peeruri", "id",
"param"}``). A reader thread sorts the two.

Example::

    with Baresip(tmp / "a", free_port(), free_port(), user="agent",
                 answermode="auto", record=True) as agent, \\
         Baresip(tmp / "b", free_port(), free_port(),
                 audio_source_wav=make_tone_wav(tmp / "t.wav", CALLER_TONE_HZ, 60)) as caller:
        caller.dial(agent.uri)
        agent.wait_event("CALL_ESTABLISHED")
        agent.listen([CALLER_TONE_HZ])
        agent.wait_heard(CALLER_TONE_HZ, 2.0)   # the caller's audio arrives
        caller.send_digit("5")
        agent.wait_event("CALL_DTMF_START")["param"]  # "5"
        caller.hangup()
        agent.wait_event("CALL_CLOSED")
    heard = agent.wait_recordings(1)[0].received
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from tests.support.audio import TELEPHONY_RATE, ToneFollower, ToneTrack, make_silence_wav

AnswerMode = Literal["manual", "auto"]

LOCALHOST = "127.0.0.1"

# Where distributions install baresip's modules; baresip itself defaults to "." without a
# module_path line, so the config must name one.
MODULE_PATH_CANDIDATES = (
    "/usr/lib/baresip/modules",
    "/usr/local/lib/baresip/modules",
    "/usr/lib64/baresip/modules",
)

# Event types baresip 1.0.0 sends over ctrl_tcp (ua.c uevent names), for reference:
# CALL_INCOMING (manual answer only), CALL_RINGING (outgoing, 180 received), CALL_PROGRESS,
# CALL_ESTABLISHED, CALL_CLOSED (param: reason), CALL_DTMF_START (param: digit),
# CALL_DTMF_END, CALL_RTPESTAB, CALL_RTCP, CALL_LOCAL_SDP, CALL_REMOTE_SDP, AUDIO_ERROR
# (e.g. "0,end of file" from aufile), SHUTDOWN, EXIT; REGISTER_OK and REGISTER_FAIL too, but the
# first REGISTER goes out before ctrl_tcp is connected (see Baresip.wait_registration).

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# sndfile 1.0.0 names its files dump-YYYY-MM-DD-HH-MM-SS-{enc,dec}.wav in snd_path.
_DUMP = re.compile(r"^dump-(?P<stamp>\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d)-(?P<dir>enc|dec)\.wav$")


class BaresipError(RuntimeError):
    """baresip refused a command or could not be started."""


@dataclass(frozen=True)
class Recording:
    """The two WAV files sndfile writes for one call (mono 16-bit PCM at the codec's rate)."""

    stamp: str
    """Local time the call's audio started, ``YYYY-MM-DD-HH-MM-SS`` (sndfile's name)."""
    received: Path
    """``...-dec.wav``: what this UA heard, decoded from the peer's RTP."""
    sent: Path
    """``...-enc.wav``: what this UA sent, before encoding."""

    def is_complete(self) -> bool:
        """True once sndfile has closed both files (their RIFF headers carry the sizes)."""
        return all(_wav_header_final(p) for p in (self.received, self.sent))


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP now (SIP listens on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind((LOCALHOST, 0))
            port = int(tcp.getsockname()[1])
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                    udp.bind((LOCALHOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP+UDP port on 127.0.0.1")


def free_rtp_range(width: int = 20) -> tuple[int, int]:
    """A block of `width` UDP ports, all free now, in 20000-29999.

    That region is below Linux's ephemeral range (32768+) and below the blocks
    tests/e2e.py hands to pjsua2 processes (30000+), so collisions are unlikely.
    """
    rng = random.Random()
    for _ in range(200):
        low = rng.randrange(20000, 30000 - width, 2)
        if all(_udp_free(p) for p in range(low, low + width)):
            return low, low + width - 1
    raise RuntimeError("no free RTP port block in 20000-29999")


def find_module_path() -> Path:
    """The first of MODULE_PATH_CANDIDATES holding ctrl_tcp.so."""
    for candidate in MODULE_PATH_CANDIDATES:
        if (Path(candidate) / "ctrl_tcp.so").is_file():
            return Path(candidate)
    raise BaresipError(f"baresip modules (ctrl_tcp.so) not found in {MODULE_PATH_CANDIDATES}")


def _udp_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((LOCALHOST, port))
        except OSError:
            return False
    return True


def _wav_header_final(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(12)
        size = path.stat().st_size
    except FileNotFoundError:
        return False
    return (len(head) == 12 and head[:4] == b"RIFF"
            and int.from_bytes(head[4:8], "little") == size - 8)


def _netstring(payload: bytes) -> bytes:
    return str(len(payload)).encode() + b":" + payload + b","


class Baresip:
    """One headless baresip UA on 127.0.0.1 with its own config dir, ports and log.

    `workdir` receives ``config``, ``accounts``, ``baresip.log`` and (with ``record=True``)
    the per-call recordings. `audio_source_wav` must be mono 16-bit PCM at 8 kHz (the PCMU
    rate; aufile refuses others) and must outlast the call: at its end baresip hangs up.
    Without it the UA sends digital silence for up to `silence_s` seconds.

    With `register_via` (a registrar's ``host:port``) the account is ``sip:USER@REGISTRAR``,
    registered every `regint` seconds with digest `password` (see :meth:`wait_registration`);
    calls to :attr:`aor` reach it through the registrar.
    """

    def __init__(
        self,
        workdir: str | Path,
        sip_port: int,
        ctrl_port: int,
        user: str = "caller",
        answermode: AnswerMode = "manual",
        audio_source_wav: str | Path | None = None,
        record: bool = False,
        rtp_ports: tuple[int, int] | None = None,
        silence_s: float = 300.0,
        binary: str = "baresip",
        module_path: str | Path | None = None,
        startup_timeout: float = 5.0,
        register_via: str | None = None,
        password: str | None = None,
        regint: int = 60,
    ) -> None:
        if answermode not in ("manual", "auto"):
            raise ValueError(f"answermode must be 'manual' or 'auto', not {answermode!r}")
        self.workdir = Path(workdir)
        self.sip_port = sip_port
        self.ctrl_port = ctrl_port
        self.user = user
        self.answermode: AnswerMode = answermode
        self.record = record
        self.rtp_ports = rtp_ports if rtp_ports is not None else free_rtp_range()
        self.silence_s = silence_s
        self.binary = binary
        self.module_path = Path(module_path) if module_path is not None else None
        self.startup_timeout = startup_timeout
        self.register_via = register_via
        self.password = password
        self.regint = regint
        if password is not None and register_via is None:
            raise ValueError("a password is only used with register_via (the registrar)")
        self.audio_source_wav = (Path(audio_source_wav).resolve()
                                 if audio_source_wav is not None else None)
        if self.audio_source_wav is not None:
            _check_source_wav(self.audio_source_wav)

        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._consumed: set[int] = set()
        self._responses: dict[str, dict[str, Any]] = {}
        self._next_token = 1
        self._send_lock = threading.Lock()
        self._reader_error: str | None = None
        self._verified = False  # the ctrl connection reaches our own UA
        self.heard: ToneFollower | None = None
        """What this UA hears in its current call, once :meth:`listen` was called."""

    # -- addresses and files ---------------------------------------------------------------

    @property
    def uri(self) -> str:
        """The SIP URI that reaches this UA, e.g. ``sip:caller@127.0.0.1:5062``."""
        return f"sip:{self.user}@{LOCALHOST}:{self.sip_port}"

    @property
    def aor(self) -> str:
        """The account's address of record: :attr:`uri`, or ``sip:USER@REGISTRAR`` when the UA
        registers (``register_via``); calls to it then go through the registrar."""
        if self.register_via is not None:
            return f"sip:{self.user}@{self.register_via}"
        return self.uri

    @property
    def log_path(self) -> Path:
        return self.workdir / "baresip.log"

    def log_text(self) -> str:
        """Everything baresip printed so far (colour codes removed)."""
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def recordings(self) -> list[Recording]:
        """The calls sndfile has recorded so far, oldest first.

        sndfile names files by the second, so two calls starting within the same second on
        one UA share (and overwrite) one pair of files.
        """
        pairs: dict[str, dict[str, Path]] = {}
        for path in self.workdir.iterdir():
            m = _DUMP.match(path.name)
            if m:
                pairs.setdefault(m["stamp"], {})[m["dir"]] = path
        return [Recording(stamp, files["dec"], files["enc"])
                for stamp, files in sorted(pairs.items())
                if "dec" in files and "enc" in files]

    def wait_recordings(self, count: int = 1, timeout: float = 5.0) -> list[Recording]:
        """At least `count` recordings, all closed by sndfile (it closes them as the call ends)."""
        if not self.record:
            raise BaresipError("this UA was created with record=False")
        end = time.monotonic() + timeout
        while True:
            found = self.recordings()
            if len(found) >= count and all(r.is_complete() for r in found):
                return found
            if time.monotonic() >= end:
                names = sorted(p.name for p in self.workdir.iterdir())
                raise AssertionError(
                    f"{self.user}: expected {count} complete recording(s) within {timeout}s, "
                    f"have {names}\n--- baresip log tail ---\n{self.log_tail()}")
            time.sleep(0.05)

    def listen(self, tones: Sequence[float] = (), timeout: float = 5.0) -> ToneFollower:
        """Follow what this UA hears in its current call, as sndfile writes it.

        Waits (up to `timeout`) for the newest call's ``-dec.wav`` to appear; the follower,
        also kept as :attr:`heard`, finds `tones` in it. Call it once the call is
        established; :meth:`wait_heard` then waits on what arrives.
        """
        if not self.record:
            raise BaresipError("this UA was created with record=False")
        end = time.monotonic() + timeout
        while True:
            found = sorted(p for p in self.workdir.iterdir()
                           if (m := _DUMP.match(p.name)) and m["dir"] == "dec")
            if found:
                self.heard = ToneFollower(found[-1], tones)
                return self.heard
            if time.monotonic() >= end:
                raise AssertionError(f"{self.user}: no recording started within {timeout}s\n"
                                     f"--- baresip log tail ---\n{self.log_tail()}")
            time.sleep(0.02)

    def wait_heard(self, tone: float | None, seconds: float,
                   timeout: float = 20.0) -> ToneTrack:
        """Wait until this UA has heard `tone` (None: any sound) for `seconds` in all since
        :meth:`listen`; returns the tones found so far. The call's audio is the event: no
        guess at how long a prompt or a bridge takes."""
        heard = self.heard
        if heard is None:
            raise BaresipError(f"{self.user}: call listen() first")
        end = time.monotonic() + timeout
        while True:
            track = heard.poll()
            got = heard.audible_s if tone is None else track.seconds(tone)
            if got >= seconds - 1e-9:
                return track
            if time.monotonic() >= end or self.returncode is not None:
                what = "sound" if tone is None else f"the {tone:g} Hz tone"
                raise AssertionError(
                    f"{self.user}: heard {what} for {got:.1f} s of {seconds:g} s within "
                    f"{timeout}s ({heard.seconds_so_far:.1f} s recorded)\n{track.timeline()}\n"
                    f"--- baresip log tail ---\n{self.log_tail()}")
            time.sleep(0.05)

    # -- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> Baresip:
        """Write the config, start baresip and connect to its ctrl_tcp port."""
        if self._proc is not None:
            raise BaresipError("already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        source = self.audio_source_wav
        if source is None:
            source = make_silence_wav(self.workdir / "silence.wav", self.silence_s)
        module_path = self.module_path or find_module_path()
        (self.workdir / "config").write_text(self._config_text(source, module_path))
        (self.workdir / "accounts").write_text(self._account_line() + "\n")
        with self.log_path.open("wb") as log:
            # No stdio/cons module is loaded, so nothing reads stdin; /dev/null makes sure.
            self._proc = subprocess.Popen(
                [self.binary, "-f", str(self.workdir)], cwd=self.workdir,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._connect()
        except BaseException:
            self.close()
            raise
        return self

    def _connect(self) -> None:
        end = time.monotonic() + self.startup_timeout
        assert self._proc is not None
        while True:
            if self._proc.poll() is not None:
                raise BaresipError(
                    f"{self.user}: baresip exited with {self._proc.returncode} at startup\n"
                    f"--- baresip log tail ---\n{self.log_tail()}")
            try:
                sock = socket.create_connection((LOCALHOST, self.ctrl_port), timeout=0.5)
                break
            except OSError:
                if time.monotonic() >= end:
                    raise BaresipError(
                        f"{self.user}: ctrl_tcp port {self.ctrl_port} not open after "
                        f"{self.startup_timeout}s\n--- baresip log tail ---\n"
                        f"{self.log_tail()}") from None
                time.sleep(0.02)
        sock.settimeout(None)
        self._sock = sock
        self._reader = threading.Thread(target=self._read_loop, name=f"baresip-{self.user}",
                                        daemon=True)
        self._reader.start()
        # Something else may hold the ctrl port (baresip then just logs that ctrl_tcp failed
        # and runs on): make sure the UA answering is ours, with our account loaded.
        try:
            info = self.command("reginfo", timeout=max(1.0, end - time.monotonic()))
        except AssertionError:
            info = {}
        if self.aor not in str(info.get("data", "")):
            raise BaresipError(
                f"{self.user}: the UA on ctrl port {self.ctrl_port} is not {self.aor} "
                f"(reginfo: {info.get('data')!r})\n--- baresip log tail ---\n{self.log_tail()}")
        self._verified = True

    def close(self, timeout: float = 5.0) -> None:
        """Quit baresip (``quit``, then SIGTERM, then SIGKILL); safe to call twice."""
        proc = self._proc
        if proc is not None and proc.poll() is None and self._sock is not None and self._verified:
            with contextlib.suppress(OSError):
                self._send("quit", "", "quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._reader is not None:
            self._reader.join(timeout=2.0)
        self._sock = None
        self._reader = None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    # -- commands -------------------------------------------------------------------------

    def command(self, name: str, params: str = "", timeout: float = 5.0,
                check: bool = True) -> dict[str, Any]:
        """Run a baresip command (as listed by ``help``) and return its response dict.

        With `check`, a response with ``"ok": false`` raises BaresipError.
        """
        with self._cond:
            token = str(self._next_token)
            self._next_token += 1
        self._send(name, params, token)
        end = time.monotonic() + timeout
        with self._cond:
            while token not in self._responses:
                left = end - time.monotonic()
                if left <= 0 or self._reader_error is not None:
                    raise AssertionError(
                        f"{self.user}: no response to {name!r} {params!r} within {timeout}s"
                        f"{' (' + self._reader_error + ')' if self._reader_error else ''}\n"
                        f"--- baresip log tail ---\n{self.log_tail()}")
                self._cond.wait(left)
            response = self._responses.pop(token)
        if check and not response.get("ok", False):
            raise BaresipError(f"{self.user}: {name} {params!r} failed: {response}")
        return response

    def dial(self, uri: str) -> dict[str, Any]:
        """Start an outgoing call; follow with wait_event("CALL_ESTABLISHED")."""
        return self.command("dial", uri)

    def accept(self) -> dict[str, Any]:
        """Answer the current incoming call (answermode manual)."""
        return self.command("accept")

    def hangup(self) -> dict[str, Any]:
        """Hang up the current call (or reject a ringing one)."""
        return self.command("hangup")

    def send_digit(self, digit: str) -> dict[str, Any]:
        """Send one DTMF digit as an RFC 2833 telephone-event (``sndcode``).

        baresip 1.0.0 has no DTMF mode setting: sndcode always sends RTP events. Send digits
        one call at a time; the receiving baresip reports CALL_DTMF_START with the digit.
        """
        if len(digit) != 1 or digit not in "0123456789*#ABCDabcd":
            raise ValueError(f"not a DTMF digit: {digit!r}")
        return self.command("sndcode", digit)

    def registration(self) -> str:
        """The account's registration state as ``reginfo`` shows it: ``OK``, ``ERR`` or another
        word (e.g. ``zzz``) before the registrar has answered; "" without ``register_via``."""
        if self.register_via is None:
            return ""
        data = _ANSI.sub("", str(self.command("reginfo")["data"]))
        for line in data.splitlines():
            fields = line.replace(">", " ").split()
            if fields and fields[0] == self.aor and len(fields) > 1:
                return fields[1]
        return ""

    def wait_registration(self, timeout: float = 10.0) -> str:
        """The registrar's final answer: ``OK``, or the failure as baresip logged it (e.g.
        ``403 Forbidden``).

        baresip registers as it starts, before the ctrl_tcp connection exists, so its
        REGISTER_OK / REGISTER_FAIL events are missed; this polls ``reginfo`` instead.
        """
        if self.register_via is None:
            raise BaresipError(f"{self.user}: this UA does not register (no register_via)")
        end = time.monotonic() + timeout
        failed = re.compile(rf"reg: {re.escape(self.aor)}: (\d{{3}} [^(\n]*)")
        while True:
            state = self.registration()
            if state == "OK":
                return state
            if state == "ERR":
                found = failed.findall(self.log_text())
                return found[-1].strip() if found else state
            if time.monotonic() >= end:
                raise AssertionError(f"{self.user}: no answer to REGISTER within {timeout}s "
                                     f"(state {state!r})\n--- baresip log tail ---\n"
                                     f"{self.log_tail()}")
            time.sleep(0.05)

    # -- events ---------------------------------------------------------------------------

    def wait_event(self, type_name: str, timeout: float = 10.0) -> dict[str, Any]:
        """The oldest event of `type_name` not yet returned by wait_event, waiting for it.

        Events that arrived before the call count, so waiting after the fact is safe; each
        event is returned once, so a second wait for CALL_CLOSED waits for a second call.
        """
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, event in enumerate(self._events):
                    if i not in self._consumed and event.get("type") == type_name:
                        self._consumed.add(i)
                        return event
                left = end - time.monotonic()
                if left <= 0:
                    seen = [e.get("type") for e in self._events]
                    raise AssertionError(
                        f"{self.user}: no {type_name} event within {timeout}s; events seen: "
                        f"{seen}\n--- baresip log tail ---\n{self.log_tail()}")
                self._cond.wait(left)

    def events_seen(self, type_name: str | None = None) -> list[dict[str, Any]]:
        """Every event received so far (optionally only of one type), oldest first."""
        with self._cond:
            return [dict(e) for e in self._events
                    if type_name is None or e.get("type") == type_name]

    # -- plumbing -------------------------------------------------------------------------

    def _send(self, name: str, params: str, token: str) -> None:
        if self._sock is None:
            raise BaresipError(f"{self.user}: not started")
        payload = json.dumps({"command": name, "params": params, "token": token}).encode()
        with self._send_lock:
            self._sock.sendall(_netstring(payload))

    def _read_loop(self) -> None:
        assert self._sock is not None
        sock = self._sock
        buf = b""
        error = "baresip closed the ctrl_tcp connection"
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
                while True:
                    colon = buf.find(b":")
                    if colon < 0:
                        break
                    length = int(buf[:colon])
                    end = colon + 1 + length
                    if len(buf) < end + 1:
                        break
                    if buf[end : end + 1] != b",":
                        raise ValueError(f"bad netstring framing: {buf[:80]!r}")
                    self._dispatch(json.loads(buf[colon + 1 : end]))
                    buf = buf[end + 1 :]
        except (OSError, ValueError) as exc:
            error = f"ctrl_tcp reader stopped: {exc}"
        with self._cond:
            self._reader_error = error
            self._cond.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        with self._cond:
            if message.get("event"):
                self._events.append(message)
            elif message.get("response"):
                self._responses[str(message.get("token"))] = message
            self._cond.notify_all()

    def _account_line(self) -> str:
        if self.register_via is None:
            return f"<{self.uri}>;regint=0;answermode={self.answermode};audio_codecs=PCMU"
        # Registers with the AOR's host (the registrar) every `regint` seconds; baresip reports
        # REGISTER_OK or REGISTER_FAIL (param: the status line, e.g. "403 Forbidden").
        auth = f";auth_user={self.user};auth_pass={self.password}" if self.password else ""
        return (f"<{self.aor}>{auth};regint={self.regint};answermode={self.answermode};"
                "audio_codecs=PCMU")

    def _config_text(self, source: Path, module_path: Path) -> str:
        low, high = self.rtp_ports
        record = "module\t\t\tsndfile.so\n" if self.record else ""
        # aubridge is only a sink here: its player never meets a source of the same name,
        # so received audio goes nowhere (sndfile taps it before the player).
        return f"""\
# Written by tests/support/baresip.py for one test UA.
poll_method\t\tepoll
sip_listen\t\t{LOCALHOST}:{self.sip_port}
net_interface\t\t{LOCALHOST}
call_local_timeout\t120
call_max_calls\t\t4
audio_player\t\taubridge,play_{self.user}_{self.sip_port}
audio_alert\t\taubridge,alert_{self.user}_{self.sip_port}
audio_source\t\taufile,{source}
rtp_ports\t\t{low}-{high}
rtcp_mux\t\tno
jitter_buffer_delay\t5-10
module_path\t\t{module_path}
module\t\t\tg711.so
{record}module\t\t\taufile.so
module\t\t\taubridge.so
module_tmp\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t{LOCALHOST}:{self.ctrl_port}
snd_path\t\t{self.workdir.resolve()}
ringback_disabled\tyes
statmode_default\toff
"""


def _check_source_wav(path: Path) -> None:
    # aufile refuses other formats only when the call starts, deep in the log; fail here.
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
    except (OSError, wave.Error) as exc:
        raise ValueError(f"audio_source_wav {path}: not a readable WAV file ({exc})") from exc
    if (rate, channels, width) != (TELEPHONY_RATE, 1, 2):
        raise ValueError(
            f"audio_source_wav {path}: need {TELEPHONY_RATE} Hz mono 16-bit PCM, got "
            f"{rate} Hz, {channels} channel(s), {width * 8}-bit "
            "(tests.support.audio.to_telephony_wav converts)")
