"""HTTP lookups (a flow's ``lookup`` node) on a small pool of worker threads.

The loop thread submits a request and goes on; a worker does the GET and hands the outcome to
*post* (the driver's inbox ``put``), or, without one, to an internal queue that the loop drains on
its next turn. Nothing here touches a call, the SIP stack or the store.

    >>> results = queue.SimpleQueue()
    >>> lookups = Lookups(post=results.put)
    >>> lookups.submit("call-1", 1, "http://127.0.0.1:8088/customers?number=3331234567", 2.0)
    >>> results.get()              # the driver finds it in its inbox
    LookupResult(key='call-1', request_id=1, data={...}, error='', seconds=0.012)
    >>> lookups.cancel("call-1")   # the caller hung up: what is still queued for it is dropped
    0

A lookup's timeout is one deadline for all of it, counted from :meth:`Lookups.submit` (the time
it waited for a worker included, as the call's own timer counts it): connecting, the TLS
handshake, sending, the status line, the headers and the body. Every socket operation is given
only what is left of it, so a CRM that trickles its answer a byte at a time is cut off on time
and cannot keep the workers from other calls' lookups.

Worker threads are daemon threads: a request still running never holds up the exit of
``ivr run``.

URLs are logged by :func:`redact_url` only: query values (the caller's number) and any user or
password in the address never reach a log.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import logging
import queue
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ivr import __version__

log = logging.getLogger("ivr.lookup")

MAX_BYTES = 1024 * 1024
"""Largest answer accepted; a CRM that sends more is answered with an error."""
WORKERS = 4
MAX_REDIRECTS = 5
"""Redirects followed within one lookup (and its one deadline)."""
STOPPING = "switchboard stopping"
"""The error of a lookup submitted after :meth:`Lookups.shutdown`, or still queued then."""
_CHUNK = 64 * 1024
"""Most bytes asked of the socket by one read."""
_LONG_DIGITS = re.compile(r"\d{5,}")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class LookupResult:
    key: str
    """Whom it is for (the call id)."""
    request_id: int
    """The number the session gave the lookup."""
    data: Any
    """The decoded JSON answer; None on error."""
    error: str = ""
    """What went wrong: 'timeout after 2 s', 'HTTP 500', 'bad JSON: ...', ..."""
    seconds: float = 0.0
    """From submit to answer: what the call waited, time queued for a worker included."""


class LookupFailed(Exception):
    """A lookup that gave no usable answer; the message says why, without the URL."""


def redact_url(url: str) -> str:
    """*url* fit for a log: no user or password, query values and long digit runs in the path
    (numbers of callers) replaced by ``***``, no fragment.

    >>> redact_url("https://u:pw@crm.example/c/3331234567?number=333&key=abc#x")
    'https://crm.example/c/***?number=***&key=***'
    """
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{host}:{parts.port}" if parts.port else host
    except ValueError:
        return "(an address that cannot be parsed)"
    path = _LONG_DIGITS.sub("***", parts.path)
    query = "&".join(f"{name}=***" if sep else name for name, sep, _ in
                     (item.partition("=") for item in parts.query.split("&") if item))
    return urllib.parse.urlunsplit((parts.scheme, netloc, path, query, ""))


@functools.cache
def _default_context() -> ssl.SSLContext:
    """The system's CAs, hostname checked; loaded once (it takes milliseconds)."""
    return ssl.create_default_context()


def fetch_json(url: str, timeout: float, max_bytes: int = MAX_BYTES, *,
               deadline: float | None = None, context: ssl.SSLContext | None = None) -> Any:
    """GET *url* and decode its JSON answer, all within *timeout* seconds.

    *deadline* (a :func:`time.monotonic` time) ends the lookup earlier than ``now + timeout``
    when it started before this call (it waited in a queue); *timeout* still names it in the
    error. *context* checks https servers (default: the system's CAs). Redirects are followed,
    at most :data:`MAX_REDIRECTS`, within the same deadline.

    Raises :class:`LookupFailed` with a short reason: 'timeout after N s', 'HTTP 500',
    'answer larger than 1 MB', 'bad JSON: ...', 'cannot connect: ...'.
    """
    if not url.lower().startswith(("http://", "https://")):
        raise LookupFailed("only http:// and https:// addresses are looked up")
    if deadline is None:
        deadline = time.monotonic() + timeout
    status, body = _follow(url, timeout, deadline, max_bytes, context)
    if not 200 <= status < 300:
        raise LookupFailed(f"HTTP {status}")
    if time.monotonic() > deadline:
        raise LookupFailed(f"timeout after {timeout:g} s")
    return _decode_json(body)


def _follow(url: str, timeout: float, deadline: float, max_bytes: int,
            context: ssl.SSLContext | None) -> tuple[int, bytes]:
    """GET *url*, following redirects: (status, body), or :class:`LookupFailed` on an error
    of the connection or of the answer's form."""
    try:
        for _ in range(MAX_REDIRECTS + 1):
            status, location, body = _get(url, deadline, max_bytes, context)
            if status in _REDIRECTS and location:
                url = urllib.parse.urljoin(url, location)
                if not url.lower().startswith(("http://", "https://")):
                    break
                continue
            break
    except TimeoutError:
        raise LookupFailed(f"timeout after {timeout:g} s") from None
    except _ConnectFailed as exc:
        raise LookupFailed(f"cannot connect: {_reason(exc.reason)}") from None
    except OSError as exc:  # reset connections
        raise LookupFailed(f"connection failed: {_reason(exc)}") from None
    except (http.client.HTTPException, ValueError) as exc:  # a broken answer or address
        # the type only: some of these messages quote the URL, caller's number and all
        raise LookupFailed(f"failed: {type(exc).__name__}") from None
    return status, body


def _decode_json(body: bytes) -> Any:
    try:
        data = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise LookupFailed("bad JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise LookupFailed(f"bad JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    if data is None:
        raise LookupFailed("the answer is JSON null")
    return data


class _ConnectFailed(Exception):
    """No connection (name, refusal, TLS handshake): *reason* is the error behind it."""

    def __init__(self, reason: OSError):
        super().__init__(reason)
        self.reason = reason


def _get(url: str, deadline: float, max_bytes: int,
         context: ssl.SSLContext | None) -> tuple[int, str, bytes]:
    """One GET: (status, Location header, body); the body only of a 2xx answer."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port  # a bad port raises ValueError
    if not host:
        raise ValueError("no host")
    https = parts.scheme.lower() == "https"
    sock = _connect(host, port or (443 if https else 80), deadline,
                    (context or _default_context()) if https else None)
    try:
        connection: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host, port) if https
            else http.client.HTTPConnection(host, port))
        connection.sock = sock  # connected above, within the deadline: http.client only sends
        sock.settimeout(_left(deadline))  # sendall's timeout is for all of it
        connection.request("GET", urllib.parse.urlunsplit(("", "", parts.path or "/",
                                                            parts.query, "")),
                           headers={"Accept": "application/json", "Connection": "close",
                                    "User-Agent": f"Centralino/{__version__}"})
        response = http.client.HTTPResponse(_DeadlineSocket(sock, deadline),  # type: ignore[arg-type]
                                             method="GET")
        response.begin()
        if not 200 <= response.status < 300:
            return response.status, response.getheader("Location") or "", b""
        if response.length is not None and response.length > max_bytes:
            raise LookupFailed(f"answer larger than {_size(max_bytes)}")
        body = bytearray()
        while True:
            chunk = response.read1(_CHUNK)  # one socket read at most, chunked or not
            if not chunk:
                return response.status, "", bytes(body)
            body += chunk
            if len(body) > max_bytes:
                raise LookupFailed(f"answer larger than {_size(max_bytes)}")
    finally:
        sock.close()


def _connect(host: str, port: int, deadline: float,
             context: ssl.SSLContext | None) -> socket.socket:
    """A connected socket (TLS set up with *context* when given) to *host*, by *deadline*.

    Name resolution is the one step the deadline cannot cut: the resolver keeps its own
    timeouts (an address given by number resolves at once).
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise _ConnectFailed(exc) from None
    failure: OSError = OSError("no address")
    for family, kind, proto, _, address in addresses:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(_left(deadline))
            sock.connect(address)
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            failure = exc
            continue
        if context is None:
            return sock
        try:
            sock.settimeout(_left(deadline))  # the handshake as a whole gets what is left
            return context.wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            sock.close()
            raise
        except OSError as exc:  # ssl.SSLError included: a certificate not trusted, ...
            sock.close()
            raise _ConnectFailed(exc) from None
    raise _ConnectFailed(failure)


def _left(deadline: float) -> float:
    """What is left until *deadline*, for a socket timeout; TimeoutError when nothing is."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    return left


class _DeadlineReader(io.RawIOBase):
    """A socket's receiving side where every read is given only what is left of the deadline,
    so that no read, and no series of them (a header line trickled a byte at a time), ends
    after it."""

    def __init__(self, sock: socket.socket, deadline: float):
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self._sock.settimeout(_left(self._deadline))
        with memoryview(buffer) as view, view.cast("B") as octets:
            return self._sock.recv_into(octets[:_CHUNK])


class _DeadlineSocket:
    """What :class:`http.client.HTTPResponse` needs of a socket: a file to read it through."""

    def __init__(self, sock: socket.socket, deadline: float):
        self._sock = sock
        self._deadline = deadline

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._deadline))


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n % (1024 * 1024) == 0 else f"{n} bytes"


class _Job:
    """One submitted lookup; *state* changes under :attr:`Lookups._lock` only."""

    __slots__ = ("key", "request_id", "state", "submitted", "timeout", "url")

    def __init__(self, key: str, request_id: int, url: str, timeout: float, submitted: float):
        self.key = key
        self.request_id = request_id
        self.url = url
        self.timeout = timeout
        self.submitted = submitted
        self.state = "queued"
        """queued -> running, or queued -> dropped (cancelled, or switchboard stopping)."""


class Lookups:
    """A pool of *workers* daemon threads doing lookups, and where their results go.

    Every submitted lookup gets exactly one :class:`LookupResult` unless :meth:`cancel` drops
    it first. Results go to *post* (called on a worker thread, or on the caller's when the pool
    is stopping) or, without one, to :attr:`inbox` for :meth:`drain`.

        >>> results = queue.SimpleQueue()
        >>> lookups = Lookups(post=results.put, workers=2)
        >>> lookups.submit("call-7", 1, "http://127.0.0.1:8088/c?number=3331234567", 1.5)
        >>> lookups.shutdown()     # returns at once; a running lookup ends by its deadline

    The threads start with the first lookup (a flow without one starts none).
    """

    def __init__(self, post: Callable[[LookupResult], None] | None = None,
                 workers: int = WORKERS, max_bytes: int = MAX_BYTES,
                 ssl_context: ssl.SSLContext | None = None):
        if workers < 1:
            raise ValueError("a lookup pool needs at least one worker")
        self.workers = workers
        self.max_bytes = max_bytes
        self.ssl_context = ssl_context
        self.inbox: queue.SimpleQueue[LookupResult] = queue.SimpleQueue()
        self._post = post if post is not None else self.inbox.put
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._queued: dict[str, list[_Job]] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, key: str, request_id: int, url: str, timeout: float) -> None:
        """Queue a GET of *url* for call *key*; its answer comes within *timeout* s from now."""
        job = _Job(key, request_id, url, timeout, time.monotonic())
        with self._lock:
            if not self._closed:
                self._queued.setdefault(key, []).append(job)
                if not self._threads:
                    self._start()
                self._jobs.put(job)
                return
        self._answer(LookupResult(key, request_id, None, STOPPING))

    def cancel(self, key: str) -> int:
        """Drop the lookups of call *key* not started yet; returns how many. A running one
        still ends by its deadline and its result is still given (the driver ignores it)."""
        with self._lock:
            jobs = self._queued.pop(key, [])
            for job in jobs:
                job.state = "dropped"
        return len(jobs)

    def shutdown(self) -> None:
        """Take no more lookups and return at once: those still queued are answered
        'switchboard stopping'; those running end by their deadline, abandoned by an exiting
        process (the threads are daemons)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            dropped = [job for jobs in self._queued.values() for job in jobs]
            self._queued.clear()
            for job in dropped:
                job.state = "dropped"
            for _ in self._threads:
                self._jobs.put(None)  # each idle worker ends on one
        for job in dropped:
            self._answer(LookupResult(job.key, job.request_id, None, STOPPING,
                                      round(time.monotonic() - job.submitted, 3)))

    def drain(self) -> list[LookupResult]:
        """The results waiting in :attr:`inbox` (always none when a *post* was given)."""
        out = []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out

    def _start(self) -> None:
        for n in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"lookup-{n + 1}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                if job.state != "queued":
                    continue
                job.state = "running"
                waiting = self._queued.get(job.key, [])
                waiting.remove(job)
                if not waiting:
                    self._queued.pop(job.key, None)
            self._answer(self._fetch(job))

    def _fetch(self, job: _Job) -> LookupResult:
        try:
            data, error = fetch_json(job.url, job.timeout, self.max_bytes,
                                     deadline=job.submitted + job.timeout,
                                     context=self.ssl_context), ""
        except LookupFailed as exc:
            data, error = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a worker must always answer the loop
            # the type only: some messages (http.client's) quote the URL, caller's number and all
            data, error = None, f"failed: {type(exc).__name__}"
        return LookupResult(job.key, job.request_id, data, error,
                            round(time.monotonic() - job.submitted, 3))

    def _answer(self, result: LookupResult) -> None:
        try:
            self._post(result)
        except Exception:  # a broken post must not take the worker with it
            log.exception("lookup %d of call %s: its result could not be posted",
                          result.request_id, result.key)
