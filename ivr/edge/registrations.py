"""Who is registered: Kamailio's contacts read over JSON-RPC (``ul.dump``), and a poller
that reports the registered agents when they change.

The switchboard offers a call to an agent who registers with the edge only while one of the
agent's phones is registered. :class:`RegistrationsPoller` reads ``ul.dump`` on its own daemon
thread and posts each new set of names through a callback (the driver passes its inbox's
``put``), so the loop never waits on HTTP::

    poller = RegistrationsPoller(settings.rpc_url, 2.0, inbox.put)
    poller.start()
    ...
    poller.stop()  # at most the HTTP timeout; nothing is posted after it returns
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


class RegistrationsError(RuntimeError):
    """Kamailio's JSON-RPC could not be reached or gave an answer we cannot read."""


@dataclass(frozen=True)
class Contact:
    """One registered phone of an agent."""

    address: str
    """The Contact URI calls are sent to, e.g. ``sip:anna@192.0.2.31:5060``."""
    expires: int | None
    """Seconds left; None for a permanent contact."""
    user_agent: str = ""


class Registrations:
    """Reads the registered contacts from Kamailio's JSON-RPC (``ul.dump``) over HTTP."""

    def __init__(self, timeout: float = 2.0, table: str = "location"):
        self.timeout = timeout
        self.table = table

    def fetch(self, url: str) -> dict[str, list[Contact]]:
        """Agent name -> live contacts (expired ones left out); agents with none are absent.

        Raises :class:`RegistrationsError` when Kamailio does not answer in ``timeout``
        seconds or answers with an error or an unexpected shape.
        """
        return parse_ul_dump(self.call(url, "ul.dump"), self.table)

    def call(self, url: str, method: str, params: Sequence[object] = ()) -> object:
        """One JSON-RPC call; the ``result`` member of the answer."""
        body: dict[str, object] = {"jsonrpc": "2.0", "method": method}
        if params:
            body["params"] = list(params)
        body["id"] = 1
        request = urllib.request.Request(
            url, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                raw = resp.read(16 * 1024 * 1024)
        except urllib.error.HTTPError as exc:
            detail = exc.read(200).decode(errors="replace").strip()
            raise RegistrationsError(f"{method} at {url}: HTTP {exc.code} {exc.reason}"
                                     f"{': ' + detail if detail else ''}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RegistrationsError(f"cannot reach Kamailio's JSON-RPC at {url}: "
                                     f"{reason}") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise RegistrationsError(f"{method} at {url}: the answer is not JSON: "
                                     f"{raw[:120]!r}") from None
        if not isinstance(answer, dict):
            raise RegistrationsError(f"{method} at {url}: unexpected answer {answer!r:.120}")
        if "error" in answer:
            error = answer["error"]
            if isinstance(error, dict):
                error = f"{error.get('code')} {error.get('message')}"
            raise RegistrationsError(f"{method} at {url} failed: {error}")
        if "result" not in answer:
            raise RegistrationsError(f"{method} at {url}: no result in {answer!r:.120}")
        return answer["result"]


def parse_ul_dump(result: object, table: str = "location") -> dict[str, list[Contact]]:
    """The contacts in a Kamailio 5.6 ``ul.dump`` result, by AoR (the agent's name).

    The shape (one object per domain, AoR and contact, each wrapped in a one-key object)::

        {"Domains": [{"Domain": {"Domain": "location", "Size": 1024, "AoRs": [
            {"Info": {"AoR": "anna", "HashID": 1834268440, "Contacts": [
                {"Contact": {"Address": "sip:anna@127.0.0.1:40231", "Expires": 60, ...}}]}}],
          "Stats": {"Records": 1, "Max-Slots": 1}}}]}

    ``Expires`` is the seconds left, or ``"permanent"``, ``"expired"`` or ``"deleted"``.
    """
    try:
        domains = _member(result, "Domains", list)
        out: dict[str, list[Contact]] = {}
        for entry in domains:
            domain = _member(entry, "Domain", dict)
            if domain.get("Domain") != table:
                continue
            for aor_entry in domain.get("AoRs") or []:
                info = _member(aor_entry, "Info", dict)
                aor = _member(info, "AoR", str)
                contacts = []
                for contact_entry in info.get("Contacts") or []:
                    contact = _member(contact_entry, "Contact", dict)
                    expires = contact.get("Expires")
                    if expires == "permanent":
                        left: int | None = None
                    elif isinstance(expires, int) and not isinstance(expires, bool):
                        if expires <= 0:
                            continue
                        left = expires
                    else:  # "expired", "deleted"
                        continue
                    contacts.append(Contact(_member(contact, "Address", str), left,
                                            str(contact.get("User-Agent", ""))))
                if contacts:
                    out.setdefault(aor.partition("@")[0], []).extend(contacts)
        return out
    except (TypeError, KeyError) as exc:
        raise RegistrationsError(f"unexpected ul.dump answer ({exc}): {result!r:.200}") from None


def _member(obj: object, key: str, kind: type) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise KeyError(f"no '{key}'")
    value = obj[key]
    if not isinstance(value, kind):
        raise TypeError(f"'{key}' is {type(value).__name__}, not {kind.__name__}")
    return value


class RegistrationsPoller:
    """Polls the registrations and reports the set of registered agents when it changes.

    :meth:`check` does one poll: it calls ``on_change`` (with the names of the agents that
    have at least one live contact) the first time and whenever that set differs from the last
    one reported. While Kamailio cannot be read, nobody counts as registered (a call through
    a Kamailio that is down cannot reach a phone anyway); the outage is logged once.
    :meth:`start` runs :meth:`check` every ``interval`` seconds on a daemon thread, and
    :meth:`stop` ends it without waiting for a request in flight longer than the HTTP timeout.
    """

    def __init__(self, url: str, interval: float,
                 on_change: Callable[[frozenset[str]], None],
                 client: Registrations | None = None):
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.url = url
        self.interval = interval
        self.on_change = on_change
        self.client = client or Registrations(timeout=min(2.0, interval))
        self.registered: frozenset[str] | None = None
        """The last set reported; None before the first poll."""
        self.failing = False
        """True while the last poll could not read the registrations."""
        # Held while a set is compared and reported: stop() takes it, so that once stop()
        # returns no report is under way and none starts (reentrant: on_change may call stop).
        self._reporting = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stopped: threading.Event | None = None

    def check(self) -> frozenset[str]:
        """One poll; returns the registered agents (empty while Kamailio cannot be read)."""
        names = self._read()
        with self._reporting:
            self._report(names)
        return names

    def _read(self) -> frozenset[str]:
        try:
            registrations = self.client.fetch(self.url)
        except RegistrationsError as exc:
            if not self.failing:
                log.warning("agents' registrations unavailable (%s): no agent counts as "
                            "registered until they are", exc)
            self.failing = True
            return frozenset()
        if self.failing:
            log.info("agents' registrations available again")
        self.failing = False
        return frozenset(name for name, contacts in registrations.items() if contacts)

    def _report(self, names: frozenset[str]) -> None:
        if names != self.registered:
            self.registered = names
            self.on_change(names)

    def start(self) -> None:
        """Poll every ``interval`` seconds on a daemon thread, the first poll at once."""
        if self._thread is not None:
            raise RuntimeError("the poller is already running")
        # Each thread has its own stop flag: a thread stopped while its request was in flight
        # ends on its own even if the poller has been started again meanwhile.
        stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(stopped,),
                                        name="registrations", daemon=True)
        self._stopped = stopped
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop polling, waiting at most *timeout* seconds (default: the HTTP timeout).

        Once it returns ``on_change`` is not called again (unless a call of it was already
        blocked for longer than *timeout*). A request still in flight is not waited for: the
        thread, a daemon, ends when the request does, and reports nothing.
        """
        thread, stopped = self._thread, self._stopped
        if thread is None or stopped is None:
            return
        self._thread = self._stopped = None
        limit = self.client.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        if self._reporting.acquire(timeout=limit):
            try:
                stopped.set()
            finally:
                self._reporting.release()
        else:  # on_change is blocked: no later report starts, this one is beyond our reach
            stopped.set()
        if thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, stopped: threading.Event) -> None:
        while not stopped.is_set():
            try:
                names = self._read()
                with self._reporting:
                    if stopped.is_set():
                        return
                    self._report(names)
            except Exception:  # a failing on_change (or client) must not end the polling
                log.exception("registrations: a poll failed")
            stopped.wait(self.interval)
