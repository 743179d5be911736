"""A GSM/LTE modem on a serial port: the AT dialogue that sends an SMS in text mode.

:class:`Modem` speaks to one port opened through pyserial's URL handlers (``/dev/ttyUSB2``,
``rfc2217://host:port``, ``loop://``, ``spy://``). It is used from one thread only (the
modem's sender, :mod:`ivr.sms`), never from the driver's loop: every call may wait up to its
timeout for the modem's answer.

The dialogue at open: ``AT`` (is anybody there), ``ATE0`` (no echo), ``AT+CMEE=1`` (numeric
``+CME ERROR`` codes), ``AT+CPIN?`` and, if the SIM asks, ``AT+CPIN="…"`` (the PIN is never
logged), ``AT+CMGF=1`` (text mode), then ``AT+CREG?``/``AT+CEREG?`` until the modem is
registered on a network (home or roaming) or *register_timeout* passes. A text goes out with
``AT+CMGS="<number>"``, the modem's ``>`` prompt, the text and Ctrl-Z; the modem answers
``+CMGS: <ref>`` and ``OK``, or ``+CMS ERROR: <code>``.

Errors: :class:`AtError` is an answer the modem gave (``ERROR``, ``+CME ERROR``, ``+CMS
ERROR``): the modem is there, the command failed. :class:`ModemTimeout` is no answer in time.
:class:`ModemGone` is a port that failed (unplugged): close it and open again later.
"""

from __future__ import annotations

import logging
import re
import termios
import time
from dataclasses import dataclass
from typing import TextIO

import serial

log = logging.getLogger("hw.modem")

CTRL_Z = b"\x1a"
ESC = b"\x1b"
COMMAND_TIMEOUT = 5.0
"""Seconds an ordinary AT command may take before the modem counts as not answering."""
SEND_TIMEOUT = 60.0
"""Seconds +CMGS may take: the network acknowledges the text before the modem answers."""
REGISTER_TIMEOUT = 60.0
"""Seconds the modem may take to register on a network after it opened."""
MAX_TEXT = 160
"""Characters of one SMS in the GSM alphabet: longer texts are cut (no concatenated SMS)."""

_FINAL_ERROR = re.compile(r"^(ERROR|\+CM[ES] ERROR:\s*(.*)|NO CARRIER)$")
_REGISTERED = {"1": "home", "5": "roaming"}


class ModemError(Exception):
    """Anything that kept a command from succeeding."""


class AtError(ModemError):
    """The modem answered with an error; *code* is the +CMS/+CME code, if it gave one."""

    def __init__(self, command: str, answer: str) -> None:
        self.answer = answer
        match = _FINAL_ERROR.match(answer)
        self.code = match.group(2) if match and match.group(2) else ""
        super().__init__(f"{command}: {answer}")


class ModemTimeout(ModemError):
    """The modem did not answer in time."""


class ModemGone(ModemError):
    """The port failed (unplugged, closed by the other end)."""


@dataclass(frozen=True)
class ModemInfo:
    """What the dialogue at open learned."""

    registration: str
    """``home`` or ``roaming``."""


def at_quote(text: str) -> str:
    """A number for ``AT+CMGS="…"``: only the characters a phone number has."""
    return re.sub(r"[^0-9+*#]", "", text)


def sms_text(text: str) -> bytes:
    """The text as the modem takes it in text mode: one line, no Ctrl-Z or Esc, at most
    :data:`MAX_TEXT` characters; characters outside Latin-1 become ``?``."""
    clean = " ".join(text.replace("\x1a", " ").replace("\x1b", " ").split())[:MAX_TEXT]
    return clean.encode("latin-1", errors="replace")


class Modem:
    """One modem on one port (*url*, a pyserial URL). Open with :meth:`open`, which runs the
    dialogue above; :meth:`send` texts a number and returns the modem's message reference."""

    def __init__(self, url: str, *, pin: str | None = None, baudrate: int = 115200,
                 timeout: float = COMMAND_TIMEOUT, send_timeout: float = SEND_TIMEOUT,
                 register_timeout: float = REGISTER_TIMEOUT, poll: float = 1.0) -> None:
        self.url = url
        self._pin = pin
        self._baudrate = baudrate
        self._timeout = timeout
        self._send_timeout = send_timeout
        self._register_timeout = register_timeout
        self._poll = poll
        self._port: serial.SerialBase | None = None
        self._buffer = b""

    # -- port ----------------------------------------------------------------------------------
    def open(self) -> ModemInfo:
        """Open the port and bring the modem to text mode on a network."""
        try:
            self._port = serial.serial_for_url(self.url, baudrate=self._baudrate, timeout=0.05,
                                               write_timeout=self._timeout)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ModemGone(f"cannot open {self.url}: {exc}") from None
        try:
            return self.attach(self._port)
        except ModemError:
            self.close()
            raise

    def attach(self, port: serial.SerialBase) -> ModemInfo:
        """Run the dialogue on a port opened elsewhere (a device thread's); the port is the
        caller's to close."""
        self._port = port
        self._buffer = b""
        return self._setup()

    def detach(self) -> None:
        """Forget the port without closing it."""
        self._port = None

    def close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except (serial.SerialException, OSError):
                log.debug("modem %s: closing the port failed", self.url)

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def _setup(self) -> ModemInfo:
        self.command("AT")
        self.command("ATE0")
        self.command("AT+CMEE=1")
        self._unlock()
        self.command("AT+CMGF=1")
        return ModemInfo(self._wait_registered())

    def _unlock(self) -> None:
        answer = " ".join(self.command("AT+CPIN?"))
        if "READY" in answer:
            return
        if "SIM PIN" not in answer:
            raise AtError("AT+CPIN?", answer or "no SIM status")
        if not self._pin:
            raise AtError("AT+CPIN?", "the SIM asks for a PIN: set the modem's pin or pin_file")
        self.command(f'AT+CPIN="{self._pin}"', shown='AT+CPIN="****"')

    def _wait_registered(self) -> str:
        deadline = time.monotonic() + self._register_timeout
        while True:
            for query in ("AT+CREG?", "AT+CEREG?"):
                try:
                    lines = self.command(query)
                except AtError:
                    continue  # a 2G-only modem has no +CEREG
                for line in lines:
                    fields = line.split(":", 1)[-1].split(",")
                    if len(fields) >= 2 and fields[1].strip() in _REGISTERED:
                        return _REGISTERED[fields[1].strip()]
            if time.monotonic() >= deadline:
                raise ModemTimeout(f"modem {self.url}: not registered on a network after "
                                   f"{self._register_timeout:g} s")
            time.sleep(self._poll)

    # -- dialogue ------------------------------------------------------------------------------
    def command(self, command: str, *, timeout: float | None = None,
                shown: str | None = None) -> list[str]:
        """Send one AT command and return the lines it answered before ``OK``."""
        self._write(command.encode("ascii") + b"\r")
        return self._answer(shown or command, timeout or self._timeout)

    def send(self, number: str, text: str) -> int:
        """Text *number*; returns the message reference the modem gave."""
        command = f'AT+CMGS="{at_quote(number)}"'
        self._write(command.encode("ascii") + b"\r")
        self._wait_prompt(command)
        self._write(sms_text(text) + CTRL_Z)
        for line in self._answer(command, self._send_timeout):
            if line.startswith("+CMGS:"):
                return int(line.split(":", 1)[1].strip() or 0)
        return 0

    def _write(self, data: bytes) -> None:
        port = self._port
        if port is None:
            raise ModemGone(f"modem {self.url} is not open")
        try:
            port.write(data)
            port.flush()
        except serial.SerialTimeoutException:
            raise ModemTimeout(f"modem {self.url}: writing timed out") from None
        except (serial.SerialException, OSError, termios.error) as exc:
            # flush() drains with tcdrain, which raises termios.error on an unplugged port
            raise ModemGone(f"modem {self.url}: {exc}") from None

    def _read(self) -> bytes:
        port = self._port
        if port is None:
            raise ModemGone(f"modem {self.url} is not open")
        try:
            data: bytes = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError, TypeError) as exc:
            # pyserial raises SerialException "device reports readiness to read but returned
            # no data" when the other end went away
            raise ModemGone(f"modem {self.url}: {exc}") from None
        return data

    def _lines(self, deadline: float, what: str) -> str:
        """The next non-empty line, waiting up to *deadline*."""
        while True:
            while b"\n" in self._buffer or b"\r" in self._buffer:
                line, self._buffer = re.split(rb"\r\n|\r|\n", self._buffer, maxsplit=1)
                text = line.decode("latin-1").strip()
                if text:
                    return text
            if time.monotonic() >= deadline:
                raise ModemTimeout(f"modem {self.url}: no answer to {what}")
            self._buffer += self._read()

    def _answer(self, what: str, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        lines: list[str] = []
        while True:
            line = self._lines(deadline, what)
            if line == "OK":
                return lines
            if _FINAL_ERROR.match(line):
                raise AtError(what, line)
            if not line.startswith("AT"):  # an echo, if ATE0 has not been seen yet
                lines.append(line)

    def _wait_prompt(self, what: str) -> None:
        deadline = time.monotonic() + self._timeout
        while True:
            stripped = self._buffer.lstrip(b"\r\n")
            if stripped.startswith(b">"):
                self._buffer = stripped[1:].lstrip(b" ")
                return
            if b"\n" in stripped or b"\r" in stripped:
                line = self._lines(deadline, what)
                if _FINAL_ERROR.match(line):
                    raise AtError(what, line)
                continue
            if time.monotonic() >= deadline:
                self._cancel()
                raise ModemTimeout(f"modem {self.url}: no prompt after {what}")
            self._buffer += self._read()

    def _cancel(self) -> None:
        """Leave the text prompt without sending (Esc), ignoring any failure."""
        try:
            self._write(ESC)
        except ModemError:
            log.debug("modem %s: could not cancel the text prompt", self.url)


def exercise_modem(url: str, pin: str | None, out: TextIO, to: str = "", *,
                   modem: Modem | None = None) -> int:
    """``ivr hw test MODEM``: run the dialogue, show the network and the signal, and text *to*
    if given; 0 if all of it worked. The PIN is never shown."""
    modem = modem or Modem(url, pin=pin)
    try:
        info = modem.open()
        out.write(f"modem at {url}: registered ({info.registration})\n")
        for command, label in (("AT+COPS?", "operator"), ("AT+CSQ", "signal")):
            try:
                answer = " ".join(modem.command(command))
            except AtError as exc:
                answer = f"not known ({exc.answer})"
            out.write(f"  {label}: {_shown(command, answer)}\n")
        if not to:
            out.write("  add --to NUMBER to send a test SMS\n")
            return 0
        reference = modem.send(to, f"Centralino: test SMS from the modem at {url}")
        out.write(f"  test SMS to {at_quote(to)} sent (reference {reference})\n")
        return 0
    except ModemError as exc:
        out.write(f"modem at {url}: {exc}\n")
        return 1
    finally:
        modem.close()


def _shown(command: str, answer: str) -> str:
    """+CSQ: 17,99 -> '17/31 (about -79 dBm)'; other answers as they are."""
    if command == "AT+CSQ" and answer.startswith("+CSQ:"):
        rssi = answer.split(":", 1)[1].split(",")[0].strip()
        if rssi.isdigit() and int(rssi) <= 31:
            return f"{rssi}/31 (about {-113 + 2 * int(rssi)} dBm)"
        return "none (99: not known or not detectable)"
    return answer.split(":", 1)[-1].strip() if answer.startswith("+") else answer


__all__ = ["MAX_TEXT", "AtError", "Modem", "ModemError", "ModemGone", "ModemInfo",
           "ModemTimeout", "at_quote", "exercise_modem", "sms_text"]
