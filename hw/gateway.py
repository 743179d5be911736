"""SIP OPTIONS health checks for the gateways (trunks), with plain UDP sockets.

Independent of pjsua2: one UDP socket on an ephemeral port sends one OPTIONS
request to each gateway and waits for the answers. A SIP response (200, 403,
404, 405, 501, ...) proves the gateway is alive, except ``503 Service
Unavailable``: a gateway that says so takes no calls (its lines are down, it is
overloaded or shutting down), so it counts as unreachable like one that does not
answer within the timeout. This module reports device state only.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable

__all__ = ["UNAVAILABLE", "GatewayMonitor", "build_options", "parse_status", "serving"]

log = logging.getLogger(__name__)

USER_AGENT = "Centralino"
_MAX_DATAGRAM = 65535
_MAX_CSEQ = 2**31 - 1  # RFC 3261 8.1.1.5
UNAVAILABLE = 503
"""The status of a gateway that answers but takes no calls: counted as unreachable."""


def serving(code: int) -> bool:
    """Whether a gateway that answered OPTIONS with *code* takes calls (all but 503)."""
    return code != UNAVAILABLE


def _hostport(host: str, port: int) -> str:
    """host:port, with IPv6 literals in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def build_options(
    target_host: str,
    target_port: int,
    local_host: str,
    local_port: int,
    call_id: str,
    cseq: int,
    branch: str,
) -> bytes:
    """A complete SIP OPTIONS request (RFC 3261 11.1) as one UDP datagram.

    `branch` gets the RFC 3261 magic cookie prefix z9hG4bK if it lacks it.
    """
    for value in (target_host, local_host, call_id, branch):
        if not value or any(c in value for c in "\r\n \t"):
            raise ValueError("SIP header values must be non-empty and contain no whitespace")
    if not 1 <= cseq <= _MAX_CSEQ:
        raise ValueError(f"CSeq must be in 1..{_MAX_CSEQ}")
    if not branch.startswith("z9hG4bK"):
        branch = "z9hG4bK" + branch
    target = _hostport(target_host, target_port)
    local = _hostport(local_host, local_port)
    tag = uuid.uuid4().hex[:16]
    lines = [
        f"OPTIONS sip:{target} SIP/2.0",
        f"Via: SIP/2.0/UDP {local};rport;branch={branch}",
        "Max-Forwards: 70",
        f"From: <sip:centralino@{local}>;tag={tag}",
        f"To: <sip:{target}>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} OPTIONS",
        f"Contact: <sip:centralino@{local}>",
        "Accept: application/sdp",
        f"User-Agent: {USER_AGENT}",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def parse_status(datagram: bytes) -> tuple[int, str, str, int] | None:
    """(status code, reason, Call-ID, CSeq number) of a SIP response, else None.

    Never raises: garbage, truncated messages (no end of headers) and requests
    all give None.
    """
    try:
        return _parse_status(datagram)
    except Exception:  # noqa: BLE001 - the contract is "never raises on garbage"
        return None


def _parse_status(datagram: bytes) -> tuple[int, str, str, int] | None:
    if not isinstance(datagram, bytes | bytearray | memoryview):
        return None
    data = bytes(datagram)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None  # truncated: a SIP message always ends its headers with a blank line
    text = data[:end].decode("utf-8", errors="replace")
    lines = text.split("\r\n")
    status = _parse_status_line(lines[0])
    headers = _parse_dialog_headers(lines[1:])
    if status is None or headers is None:
        return None
    return (*status, *headers)


def _parse_status_line(line: str) -> tuple[int, str] | None:
    """``SIP/2.0 200 OK`` as (code, reason), or None if it is not a status line."""
    parts = line.split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0":
        return None
    code_s = parts[1]
    if len(code_s) != 3 or not code_s.isascii() or not code_s.isdigit():
        return None
    code = int(code_s)
    if not 100 <= code <= 699:
        return None
    reason = parts[2].strip() if len(parts) == 3 else ""
    return code, reason


def _parse_dialog_headers(lines: list[str]) -> tuple[str, int] | None:
    """Call-ID and CSeq number from the header lines, or None if either is missing or bad."""
    call_id: str | None = None
    cseq: int | None = None
    for line in lines:
        if not line or line[0] in " \t":
            continue  # folded continuation lines carry nothing we need
        name, sep, value = line.partition(":")
        if not sep:
            return None  # not a header line: malformed
        name = name.strip().lower()
        value = value.strip()
        if name in ("call-id", "i"):
            call_id = value
        elif name == "cseq":
            fields = value.split()
            if len(fields) != 2 or not fields[0].isascii() or not fields[0].isdigit():
                return None
            cseq = int(fields[0])
            if cseq > _MAX_CSEQ:
                return None
    if not call_id or cseq is None:
        return None
    return call_id, cseq


def _printable(text: str, limit: int = 64) -> str:
    """A peer-supplied string made safe for one log line."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _local_address_for(bind_host: str, host: str, port: int, fallback_port: int) -> str:
    """The local IP the kernel would use towards (host, port), for the Via/Contact."""
    if bind_host not in ("0.0.0.0", "::", ""):
        return bind_host
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port or fallback_port))  # UDP connect sends nothing
            return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"


class GatewayMonitor:
    """Periodic SIP OPTIONS reachability of a set of gateways.

    `on_change(name, reachable)` is called on every state change, including the
    first result for each gateway. It is called from the checking thread, never
    while an internal lock is held.
    """

    def __init__(
        self,
        gateways: Iterable[tuple[str, str, int]],
        interval: float = 30.0,
        timeout: float = 5.0,
        local_host: str = "0.0.0.0",
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self._gateways: list[tuple[str, str, int]] = []
        seen: set[str] = set()
        for name, host, port in gateways:
            if name in seen:
                raise ValueError(f"duplicate gateway name {name!r}")
            if not 1 <= int(port) <= 65535:
                raise ValueError(f"gateway {name!r}: port {port} out of range")
            seen.add(name)
            self._gateways.append((name, host, int(port)))
        if interval <= 0 or timeout <= 0:
            raise ValueError("interval and timeout must be positive")
        self.interval = float(interval)
        self.timeout = float(timeout)
        self.local_host = local_host
        self._clock = clock
        self._on_change = on_change
        self._state: dict[str, bool] = {}
        self._state_lock = threading.Lock()
        self._check_lock = threading.Lock()  # one check at a time (thread + manual calls)
        self._cseq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- state ------------------------------------------------------------------

    def state(self) -> dict[str, bool]:
        """A copy of the last known state; gateways never checked are absent."""
        with self._state_lock:
            return dict(self._state)

    # -- checking ---------------------------------------------------------------

    def check_all(self) -> dict[str, bool]:
        """Send one OPTIONS to every gateway, wait up to `timeout`, update state."""
        with self._check_lock:
            answers = self._probe()
            return self._apply(answers)

    def probe(self) -> dict[str, tuple[int, str]]:
        """One round of OPTIONS, state untouched: name -> (status, reason) of each gateway
        that answered within `timeout` (``ivr doctor`` shows the status itself)."""
        with self._check_lock:
            return self._probe()

    def _next_cseq(self) -> int:
        self._cseq = self._cseq % _MAX_CSEQ + 1
        return self._cseq

    def _probe(self) -> dict[str, tuple[int, str]]:
        """name -> (code, reason) for each gateway that answered in time."""
        answers: dict[str, tuple[int, str]] = {}
        if not self._gateways:
            return answers
        family = socket.AF_INET6 if ":" in self.local_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((self.local_host, 0))
            local_port = int(sock.getsockname()[1])
            pending: dict[str, tuple[str, int]] = {}  # Call-ID -> (name, CSeq)
            for name, host, port in self._gateways:
                call_id = f"{uuid.uuid4().hex}@centralino"
                cseq = self._next_cseq()
                local = _local_address_for(self.local_host, host, port, 5060)
                msg = build_options(
                    host, port, local, local_port, call_id, cseq, uuid.uuid4().hex
                )
                try:
                    sock.sendto(msg, (host, port))
                except OSError as exc:
                    log.debug("gateway %s: OPTIONS not sent: %s", name, exc)
                    continue
                pending[call_id] = (name, cseq)
            deadline = self._clock() + self.timeout
            while pending:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                sock.settimeout(remaining)
                try:
                    data, _addr = sock.recvfrom(_MAX_DATAGRAM)
                except TimeoutError:
                    break
                except OSError:
                    continue  # e.g. ICMP errors surfaced on some platforms
                parsed = parse_status(data)
                if parsed is None:
                    continue
                code, reason, call_id, cseq = parsed
                entry = pending.get(call_id)
                if entry is None or entry[1] != cseq:
                    continue
                del pending[call_id]
                answers[entry[0]] = (code, reason)
        return answers

    def _apply(self, answers: dict[str, tuple[int, str]]) -> dict[str, bool]:
        result = {name: name in answers and serving(answers[name][0])
                  for name, _h, _p in self._gateways}
        with self._state_lock:
            changed = [(n, up) for n, up in result.items() if self._state.get(n) is not up]
            self._state.update(result)
        for name, up in changed:
            host, port = next((h, p) for n, h, p in self._gateways if n == name)
            if name in answers:
                code, reason = answers[name]
                level = logging.INFO if up else logging.WARNING
                log.log(level, "gateway %s (%s) %s: SIP %d %s", name, _hostport(host, port),
                        "reachable" if up else "unavailable", code, _printable(reason))
            else:
                log.warning(
                    "gateway %s (%s) unreachable: no SIP response within %.1fs",
                    name, _hostport(host, port), self.timeout,
                )
            if self._on_change is not None:
                try:
                    self._on_change(name, up)
                except Exception:
                    log.exception("gateway %s: on_change callback failed", name)
        return result

    # -- background thread ------------------------------------------------------

    def start(self) -> None:
        """Check now and then every `interval` seconds in a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="gateway-monitor", daemon=True)
        self._thread.start()

    def stop(self, join_timeout: float | None = None) -> None:
        """Stop the thread; waits for a check in progress (at most `timeout`)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.timeout + 1.0 if join_timeout is None else join_timeout)
        self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check_all()
            except Exception:
                log.exception("gateway check failed")
            self._stop.wait(self.interval)
