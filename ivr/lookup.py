"""HTTP lookups (a flow's ``lookup`` node) on a small pool of worker threads.

The loop thread submits a request and goes on; a worker does the GET with :mod:`urllib.request`
and puts the outcome into an inbox (a thread-safe queue) that the loop drains on its next turn.
Nothing here touches a call, the SIP stack or the store.

    >>> lookups = Lookups()
    >>> lookups.submit("call-1", 1, "http://127.0.0.1:8088/customers?number=3331234567", 2.0)
    >>> lookups.drain()            # later, on the loop thread
    [LookupResult(key='call-1', request_id=1, data={...}, error='', seconds=0.012)]

URLs are logged by :func:`redact_url` only: query values (the caller's number) and any user or
password in the address never reach a log.
"""

from __future__ import annotations

import http.client
import json
import logging
import queue
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ivr import __version__

log = logging.getLogger("ivr.lookup")

MAX_BYTES = 1024 * 1024
"""Largest answer accepted; a CRM that sends more is answered with an error."""
WORKERS = 4
_CHUNK = 64 * 1024
_LONG_DIGITS = re.compile(r"\d{5,}")


@dataclass(frozen=True)
class LookupResult:
    key: str
    """Whom it is for (the call id)."""
    request_id: int
    data: Any
    """The decoded JSON answer; None on error."""
    error: str = ""
    """What went wrong: 'timeout after 2 s', 'HTTP 500', 'bad JSON: ...', ..."""
    seconds: float = 0.0


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


def fetch_json(url: str, timeout: float, max_bytes: int = MAX_BYTES) -> Any:
    """GET *url* and decode its JSON answer, all within *timeout* seconds.

    Raises :class:`LookupFailed` with a short reason: 'timeout after N s', 'HTTP 500',
    'answer larger than 1 MB', 'bad JSON: ...', 'cannot connect: ...'.
    """
    if not url.lower().startswith(("http://", "https://")):
        raise LookupFailed("only http:// and https:// addresses are looked up")
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, headers={
        "Accept": "application/json", "User-Agent": f"Centralino/{__version__}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = bytearray()
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                _set_timeout(response, left)
                chunk = response.read1(_CHUNK)  # what one receive gives: a trickle cannot stall
                if not chunk:
                    break
                body += chunk
                if len(body) > max_bytes:
                    raise LookupFailed(f"answer larger than {_size(max_bytes)}")
    except urllib.error.HTTPError as exc:
        raise LookupFailed(f"HTTP {exc.code}") from None
    except TimeoutError:
        raise LookupFailed(f"timeout after {timeout:g} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise LookupFailed(f"timeout after {timeout:g} s") from None
        raise LookupFailed(f"cannot connect: {_reason(exc.reason)}") from None
    except OSError as exc:  # reset connections
        raise LookupFailed(f"connection failed: {_reason(exc)}") from None
    except (http.client.HTTPException, ValueError) as exc:  # a broken answer or address
        # the type only: some of these messages quote the URL, caller's number and all
        raise LookupFailed(f"failed: {type(exc).__name__}") from None
    if time.monotonic() > deadline:
        raise LookupFailed(f"timeout after {timeout:g} s")
    try:
        data = json.loads(bytes(body).decode("utf-8"))
    except UnicodeDecodeError:
        raise LookupFailed("bad JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise LookupFailed(f"bad JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") \
            from None
    if data is None:
        raise LookupFailed("the answer is JSON null")
    return data


def _set_timeout(response: Any, seconds: float) -> None:
    """Shorten the socket timeout of a response to what is left of the whole lookup's."""
    sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
    if isinstance(sock, socket.socket):
        sock.settimeout(max(0.01, seconds))


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _size(n: int) -> str:
    return f"{n // (1024 * 1024)} MB" if n % (1024 * 1024) == 0 else f"{n} bytes"


class Lookups:
    """A pool of :data:`WORKERS` threads doing lookups, and the inbox of their results.

    The pool is created on the first lookup (a flow without one starts no thread) and shut
    down by :meth:`shutdown`; requests still running then are abandoned, not waited for.
    """

    def __init__(self, workers: int = WORKERS, max_bytes: int = MAX_BYTES):
        self.workers = workers
        self.max_bytes = max_bytes
        self.inbox: queue.SimpleQueue[LookupResult] = queue.SimpleQueue()
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def submit(self, key: str, request_id: int, url: str, timeout: float) -> None:
        if self._closed:
            self.inbox.put(LookupResult(key, request_id, None, "switchboard stopping"))
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="lookup")
        self._pool.submit(self._work, key, request_id, url, timeout)

    def _work(self, key: str, request_id: int, url: str, timeout: float) -> None:
        started = time.monotonic()
        try:
            data, error = fetch_json(url, timeout, self.max_bytes), ""
        except LookupFailed as exc:
            data, error = None, str(exc)
        except Exception as exc:  # noqa: BLE001 - a worker must always answer the loop
            # the type only: some messages (http.client's) quote the URL, caller's number and all
            data, error = None, f"failed: {type(exc).__name__}"
        self.inbox.put(LookupResult(key, request_id, data, error,
                                    round(time.monotonic() - started, 3)))

    def drain(self) -> list[LookupResult]:
        out = []
        while True:
            try:
                out.append(self.inbox.get_nowait())
            except queue.Empty:
                return out

    def shutdown(self) -> None:
        self._closed = True
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
