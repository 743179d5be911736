"""What a campaign does next, as pure functions of its definition, its contacts and the time.

Nothing here reads a clock, opens SQLite or starts a thread: the time (``wall_unix``, ``now``,
seconds since the epoch) is an argument, so the tests set it by hand and the switchboard's
loop asks without waiting.

- :func:`in_window` and :func:`next_window_start`: the campaign's calling window (days, hours
  and holidays in its time zone, by the same hours check as the flows' ``hours`` nodes).
- :class:`Hopper`: the next contacts of a campaign in memory, the one due first on top.
- :func:`after_attempt`: what the retry rules make of an attempt's outcome, with the reason in
  words (every dial decision can be audited afterwards).
- :class:`Pacer`: how many contacts to dial now, inbound first.
"""

from __future__ import annotations

import datetime as dt
import heapq
import math
import zoneinfo
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from ivr.engine.session import hours_state
from ivr.outbound.campaigns import Campaign

SEARCH_DAYS = 400
"""How far :func:`next_window_start` looks ahead (a window closed longer is no window)."""
ANSWERED = "answered"
ABANDONED = "abandoned"
"""Answered with no agent free: the person heard a message; not tried again that day."""
ATTEMPT_OUTCOMES = (ANSWERED, "busy", "no_answer", "failed", "callback", ABANDONED)


# -- the window ----------------------------------------------------------------------------------

def in_window(campaign: Campaign, wall_unix: float) -> bool:
    """Whether the campaign may dial at *wall_unix*: a day and hour of its window, not a
    holiday, in its time zone."""
    when = dt.datetime.fromtimestamp(wall_unix, dt.UTC)
    return hours_state(campaign.window.hours, when, None) == "open"


def next_window_start(campaign: Campaign, wall_unix: float) -> float | None:
    """The first instant from *wall_unix* on at which the campaign may dial (*wall_unix*
    itself while the window is open), or None when it never opens within
    :data:`SEARCH_DAYS` days."""
    window = campaign.window
    zone = zoneinfo.ZoneInfo(window.timezone)
    day = dt.datetime.fromtimestamp(wall_unix, zone).date()
    for offset in range(SEARCH_DAYS):
        date = day + dt.timedelta(days=offset)
        if date.weekday() not in window.days:
            continue
        midnight = dt.datetime.combine(date, dt.time())
        for start, end in window.intervals:
            opens = _first_instant(midnight + dt.timedelta(minutes=start), zone)
            closes = _first_instant(midnight + dt.timedelta(minutes=end), zone)
            if closes <= wall_unix:
                continue
            candidate = max(wall_unix, opens)
            if in_window(campaign, candidate):  # not a holiday, and not a wall time DST skips
                return candidate
    return None


def _first_instant(wall: dt.datetime, zone: zoneinfo.ZoneInfo) -> float:
    """The first instant whose wall time in *zone* is *wall* or later: *wall* itself (its
    first occurrence when the clocks go back), or the end of the gap a change to summer
    time makes (02:30 on that day in Europe/Rome is 03:00 summer time)."""
    first = wall.replace(tzinfo=zone).timestamp()
    if dt.datetime.fromtimestamp(first, zone).replace(tzinfo=None) == wall:
        return first
    other = wall.replace(tzinfo=zone, fold=1).timestamp()
    low, high = int(min(first, other)), math.ceil(max(first, other))
    while low < high:  # wall times are monotonic across a gap; transitions fall on seconds
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle + 1
    return float(low)


def _next_day_window(campaign: Campaign, wall_unix: float) -> float | None:
    """The first opening of the window on a later local day than *wall_unix*'s."""
    zone = zoneinfo.ZoneInfo(campaign.window.timezone)
    today = dt.datetime.fromtimestamp(wall_unix, zone).date()
    tomorrow = dt.datetime.combine(today + dt.timedelta(days=1), dt.time(), tzinfo=zone)
    return next_window_start(campaign, tomorrow.timestamp())


# -- contacts and the hopper ---------------------------------------------------------------------

@dataclass(frozen=True)
class Contact:
    """A contact of a campaign's list, as the planner sees it."""

    id: int
    number: str
    """E.164, as the list's import wrote it."""
    name: str = ""
    vars: Mapping[str, str] = field(default_factory=dict)
    """The list's other columns, for the script and flows."""
    attempts: int = 0
    next_at: float = 0.0
    """Not dialled before this (seconds since the epoch)."""
    last_outcome: str = ""
    tries: Mapping[str, int] = field(default_factory=dict)
    """Attempts so far that ended in each outcome (busy: 2...), for the retry limits."""


class Hopper:
    """The next contacts of one campaign, the one due first on top (by ``next_at``, then
    ``id``): a heap, so :meth:`take` and :meth:`put` cost O(log n).

    A contact taken is out of the hopper while it is dialled; :func:`after_attempt` says
    whether to :meth:`put` it back. :meth:`put` of a contact already in it replaces it;
    :meth:`remove` takes out every contact of a number (added to the do-not-call list
    mid-campaign). Replaced and removed entries leave the heap lazily, and the heap is rebuilt
    when they outnumber the live ones.
    """

    def __init__(self, contacts: Iterable[Contact] = ()):
        self._heap: list[tuple[float, int, int, Contact]] = []
        self._live: dict[int, tuple[int, str]] = {}
        """Contact id -> (the sequence number of its live heap entry, its number)."""
        self._by_number: dict[str, set[int]] = {}
        self._seq = 0
        for contact in contacts:
            self._heap.append(self._enter(contact))
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, contact_id: object) -> bool:
        return contact_id in self._live

    def _enter(self, contact: Contact) -> tuple[float, int, int, Contact]:
        """Mark *contact* live (replacing the entry of its id) and make its heap entry."""
        self._leave(contact.id)
        self._seq += 1
        self._live[contact.id] = (self._seq, contact.number)
        self._by_number.setdefault(contact.number, set()).add(contact.id)
        return contact.next_at, contact.id, self._seq, contact

    def _leave(self, contact_id: int) -> None:
        live = self._live.pop(contact_id, None)
        if live is None:
            return
        ids = self._by_number.get(live[1])
        if ids is not None:
            ids.discard(contact_id)
            if not ids:
                del self._by_number[live[1]]

    def _is_live(self, entry: tuple[float, int, int, Contact]) -> bool:
        live = self._live.get(entry[1])
        return live is not None and live[0] == entry[2]

    def put(self, contact: Contact) -> None:
        """Add *contact*, or replace the one with its id."""
        heapq.heappush(self._heap, self._enter(contact))
        self._compact()

    def _top(self) -> tuple[float, int, int, Contact] | None:
        """The live entry on top, dropping dead ones."""
        heap = self._heap
        while heap:
            entry = heap[0]
            if self._is_live(entry):
                return entry
            heapq.heappop(heap)
        return None

    def take(self, now: float) -> Contact | None:
        """The contact due first (``next_at <= now``), out of the hopper; None if none is."""
        top = self._top()
        if top is None or top[0] > now:
            return None
        heapq.heappop(self._heap)
        self._leave(top[1])
        return top[3]

    def next_due(self) -> float | None:
        """When the first contact is due (None: the hopper is empty)."""
        top = self._top()
        return None if top is None else top[0]

    def remove(self, number: str) -> int:
        """Take out every contact of *number*; how many there were."""
        ids = list(self._by_number.get(number, ()))
        for contact_id in ids:
            self._leave(contact_id)
        self._compact()
        return len(ids)

    def due_count(self, now: float) -> int:
        """Contacts due at *now*: a walk of the heap's entries due, never of the others."""
        heap, count, stack = self._heap, 0, [0] if self._heap else []
        while stack:
            i = stack.pop()
            if heap[i][0] > now:
                continue  # nor is anything under it
            if self._is_live(heap[i]):
                count += 1
            stack.extend(j for j in (2 * i + 1, 2 * i + 2) if j < len(heap))
        return count

    def _compact(self) -> None:
        if len(self._heap) > 64 and len(self._heap) > 2 * len(self._live):
            self._heap = [e for e in self._heap if self._is_live(e)]
            heapq.heapify(self._heap)


# -- after an attempt ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Decision:
    """What becomes of a contact after an attempt."""

    action: str
    """'retry' (put back, due at :attr:`at`), 'done' (a final disposition, or an automated
    call answered), 'dnc' (done, and the number goes on the do-not-call list) or 'failed'
    (the retry rules give up)."""
    reason: str
    """Why, in words, for the contact's history."""
    contact: Contact
    """The contact with this attempt counted (and ``next_at`` the retry's time)."""
    at: float | None = None


def after_attempt(campaign: Campaign, contact: Contact, outcome: str, now: float,
                  disposition: str = "") -> Decision:
    """Apply the campaign's retry rules to an attempt of *contact* that ended at *now*.

    *outcome*: 'answered' (with the agent's *disposition*, if any), 'busy', 'no_answer',
    'failed', 'callback' (asked to be called back) or 'abandoned' (answered with no agent
    free: tried again the next day the window opens, counted as no answer).
    """
    if outcome not in ATTEMPT_OUTCOMES:
        raise ValueError(f"unknown outcome '{outcome}'; one of {', '.join(ATTEMPT_OUTCOMES)}")
    counted = replace(contact, attempts=contact.attempts + 1, last_outcome=outcome)
    if disposition and disposition == campaign.dnc_disposition:
        return Decision("dnc", f"{outcome}, disposition {disposition}: do not call this "
                               "number again", counted)
    if outcome == ANSWERED:
        if disposition in campaign.final_dispositions:
            return Decision("done", f"answered, disposition {disposition} ends the contact",
                            counted)
        if campaign.mode == "automated" and not disposition:
            return Decision("done", "answered, the flow ran", counted)
        what = f"disposition {disposition}" if disposition else "no disposition"
        return _retry(campaign, counted, "callback", now,
                      f"answered with {what}, which does not end the contact")
    if outcome == ABANDONED:
        return _retry(campaign, counted, "no_answer", now,
                      "answered with no agent free (abandoned): not again today", next_day=True)
    return _retry(campaign, counted, outcome, now, outcome.replace("_", " "))


def _retry(campaign: Campaign, contact: Contact, rule: str, now: float, what: str,
           next_day: bool = False) -> Decision:
    tries = {**contact.tries, rule: contact.tries.get(rule, 0) + 1}
    contact = replace(contact, tries=tries)
    allowed = campaign.retry(rule)
    done = tries[rule] - 1
    if done >= allowed.times:
        return Decision("failed", f"{what}; retries.{rule} allows {allowed.times} more "
                                  f"attempt{'s' if allowed.times != 1 else ''}, all made",
                        contact)
    earliest = now + allowed.after
    tomorrow = _next_day_window(campaign, now) if next_day else earliest
    at = None if tomorrow is None else next_window_start(campaign, max(tomorrow, earliest))
    if at is None:
        return Decision("failed", f"{what}; the calling window never opens again", contact)
    moved = "" if at == earliest else " (the window's next opening)"
    when = dt.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(campaign.window.timezone))
    return Decision("retry", f"{what}; retry {done + 1} of {allowed.times} "
                             f"(retries.{rule}) at {when:%Y-%m-%d %H:%M %Z}{moved}",
                    replace(contact, next_at=at), at)


# -- pacing --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PacerState:
    """What the pacer looks at, as the switchboard sees it now."""

    free_agents: int = 0
    """Agents of the campaign's queue who are free and not needed by inbound."""
    inbound_waiting: int = 0
    """Inbound callers waiting for those agents (in queues they answer)."""
    service_level: float | None = None
    """The campaign queue's service level now, 0 to 1 (None: no calls to tell yet)."""
    service_level_target: float | None = None
    """The queue's target (pause_when.service_level_below wins when the campaign gives one)."""
    longest_wait: float = 0.0
    """Seconds the longest-waiting inbound caller has waited, in any queue."""
    lines_in_use: int = 0
    """Calls on the campaign's trunk now, inbound and outbound."""
    campaign_lines: int = 0
    """This campaign's calls on the trunk now (ringing or connected)."""
    ringing: int = 0
    """This campaign's calls dialled and not answered yet."""
    answered_today: int = 0
    abandoned_today: int = 0
    window_open: bool = True
    overdial_stopped: bool = False
    """An abandoned call today stopped over-dialling (the ratio is 1 for the rest of the
    day)."""


@dataclass(frozen=True)
class Pace:
    dials: int
    reason: str


class Pacer:
    """How many contacts a campaign dials now: :meth:`dials_now`, and :meth:`decide` with the
    reason. Inbound first: never more than ``max_lines`` nor into ``reserve_inbound``, nothing
    while an inbound caller waits for the campaign's agents, the service level is under its
    target or any caller has waited over ``pause_when.wait_over``."""

    @staticmethod
    def dials_now(campaign: Campaign, state: PacerState) -> int:
        return Pacer.decide(campaign, state).dials

    @staticmethod
    def decide(campaign: Campaign, state: PacerState) -> Pace:  # noqa: C901 - a rule an arm
        if not state.window_open:
            return Pace(0, "outside the calling window")
        if campaign.mode == "preview":
            return Pace(0, "preview: the agents start the calls")
        if state.inbound_waiting > 0 and (campaign.mode != "automated" or campaign.queue):
            return Pace(0, f"{state.inbound_waiting} inbound caller(s) waiting for the "
                           "campaign's agents")
        target = campaign.pause_when.service_level_below
        if target is None:
            target = state.service_level_target
        if target is not None and state.service_level is not None \
                and state.service_level < target:
            return Pace(0, f"service level {state.service_level:.0%} under {target:.0%}")
        wait_over = campaign.pause_when.wait_over
        if wait_over > 0 and state.longest_wait > wait_over:
            return Pace(0, f"an inbound caller has waited {state.longest_wait:.0f}s "
                           f"(over {wait_over:.0f}s)")
        lines = min(campaign.max_lines - state.campaign_lines,
                    campaign.trunk_lines - campaign.reserve_inbound - state.lines_in_use)
        if lines <= 0:
            return Pace(0, f"no line free: {state.campaign_lines} of max_lines "
                           f"{campaign.max_lines} in use, {state.lines_in_use} of "
                           f"{campaign.trunk_lines} on the trunk with "
                           f"{campaign.reserve_inbound} kept for inbound")
        if campaign.mode == "automated":
            return Pace(lines, f"automated: {lines} line(s) free")
        ratio, why = 1.0, "progressive: one call per free agent"
        if campaign.dial_ratio > 1:
            rate = state.abandoned_today / state.answered_today if state.answered_today \
                else (1.0 if state.abandoned_today else 0.0)
            if state.overdial_stopped:
                why = "ratio 1: an abandoned call stopped over-dialling today"
            elif rate >= campaign.abandon_cap:
                why = f"ratio 1: abandoned {rate:.1%} of answered today, cap " \
                      f"{campaign.abandon_cap:.1%}"
            else:
                ratio = campaign.dial_ratio
                why = f"ratio {ratio:g}: abandoned {rate:.1%} today, under the cap"
        want = math.floor(state.free_agents * ratio + 1e-9) - state.ringing
        if want <= 0:
            return Pace(0, f"{why}; {state.free_agents} free agent(s), {state.ringing} "
                           "call(s) ringing")
        dials = min(want, lines)
        return Pace(dials, f"{why}; {state.free_agents} free agent(s), {state.ringing} "
                           f"ringing, {lines} line(s) free")


__all__ = ["ABANDONED", "ANSWERED", "ATTEMPT_OUTCOMES", "Contact", "Decision", "Hopper",
           "Pace", "Pacer", "PacerState", "after_attempt", "in_window", "next_window_start"]
