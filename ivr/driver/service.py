"""The running switchboard: one loop thread, one inbox, workers around it.

:class:`Loop` is the loop: :meth:`Loop.step` polls the SIP stack (whose callbacks post its
events), takes every message in the inbox, feeds each to the core with the time, and has the
executor carry out the effects. Everything else (lookups, prompt rendering, reloads, the
store's writer and agent-command poller, the registrations poller, gateway monitors, signal
handlers) runs on its own thread and only posts to the inbox.

:func:`run` wires it all for ``ivr run``.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import signal
import socket
import threading
import time
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.config import Config
from ivr.driver import messages as m
from ivr.driver.core import Core
from ivr.driver.executor import Executor, Sip
from ivr.driver.filler import HopperFiller
from ivr.flow import DocumentError, Flow
from ivr.metrics import Metrics, Snapshot
from ivr.outbound.campaigns import Campaign
from ivr.tickets import TicketBook
from ivr.watch import FilesState, FileWatcher, files_state, flow_files

log = logging.getLogger("ivr.driver")

EXIT_UNWRITTEN = 3
"""Exit status of a stop that could not write every record to the store (they are in the
fallback file, which the next start imports)."""
PUBLISH_EVERY = 1.0
"""Seconds between two snapshots of the state when no scrape asks for one."""
VIEW_MIN_EVERY = 0.05
"""Seconds at least between two console views (a burst of messages makes one)."""
VIEW_MAX_EVERY = 1.0
"""Seconds at most between two console views (waits and times keep moving)."""
STATUS_EVERY = 1.0
"""Seconds between two looks at the STATUS line sent to systemd (sent only when it changed)."""


class Inbox:
    """The one queue into the loop: any thread may post; only the loop takes."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[m.Message] = queue.SimpleQueue()

    def post(self, message: m.Message) -> None:
        self._q.put(message)

    def empty(self) -> bool:
        return self._q.empty()

    def take(self) -> list[m.Message]:
        out: list[m.Message] = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out


class Loop:
    """One turn of the switchboard is :meth:`step`; see the module doc.

    A turn with nothing to do costs nothing on the Python side: the core's next deadline is
    computed again only after the core handled something (deadlines change only then), the
    core is ticked only when a message came or a deadline is due, and the state snapshot for
    /metrics is made when a scrape asks for it (or once per :data:`PUBLISH_EVERY`), not after
    every message.
    """

    on_view: Callable[[dict[str, Any]], None] | None = None
    """Given :meth:`Core.console_view` (the web console's data) after turns that changed
    something, at most every :data:`VIEW_MIN_EVERY` and at least every
    :data:`VIEW_MAX_EVERY` seconds (waits keep moving). Called on the loop thread: it must
    only hand the view over (store a reference, wake a waiter), never wait."""

    def __init__(self, core: Core, executor: Executor, sip: Sip, inbox: Inbox,
                 metrics: Metrics, clock: Callable[[], float] = time.monotonic,
                 on_view: Callable[[dict[str, Any]], None] | None = None):
        self.on_view = on_view
        self._view_at = -math.inf
        self._view_stale = True
        self.core = core
        self.executor = executor
        self.sip = sip
        self.inbox = inbox
        self.metrics = metrics
        self.clock = clock
        self._published = -math.inf
        self._deadline: float | None = None
        self._deadline_stale = True
        self.turns = 0
        metrics.snapshots_on_demand()

    def step(self, max_wait_ms: int = 10) -> int:
        """One turn: SIP events and the inbox, due timers, the snapshot. Returns how many
        messages were handled. The SIP poll waits up to *max_wait_ms*, less when a deadline
        is nearer. pjsua2's binding keeps the GIL while it waits: every other thread of the
        process (renderer, store writer, /metrics) waits for it as long, so keep it short."""
        now = self.clock()
        if self._deadline_stale:
            self._deadline = self.core.next_deadline()
            self._deadline_stale = False
        deadline = self._deadline
        wait = max_wait_ms if deadline is None else \
            max(0, min(max_wait_ms, math.ceil((deadline - now) * 1000)))
        if not self.inbox.empty():
            wait = 0
        for event in self.sip.poll(wait):
            self.inbox.post(event)
        handled = 0
        for message in self.inbox.take():
            self.feed(message)
            handled += 1
        now = self.clock()
        if handled or (deadline is not None and deadline <= now):
            self.feed(m.Tick())
        asked = self.metrics.snapshot_asked()
        if asked or now - self._published >= PUBLISH_EVERY:
            if self.core.campaigns:  # the dialler pauses on a queue's service level
                levels = self.metrics.service_levels(time.time())
                self.feed(m.ServiceLevels(tuple((q, sl) for q, (sl, _) in levels.items())))
            self.metrics.publish(self.core.snapshot(now), answers=asked)
            self._published = now
        if self.on_view is not None:
            self._publish_view(now)
        self.turns += 1
        return handled

    def _publish_view(self, now: float) -> None:
        """The console's view, when something changed (not more often than
        :data:`VIEW_MIN_EVERY`) or when :data:`VIEW_MAX_EVERY` passed."""
        since = now - self._view_at
        if since < VIEW_MIN_EVERY or (not self._view_stale and since < VIEW_MAX_EVERY):
            return
        assert self.on_view is not None
        try:
            self.on_view(self.core.console_view(now))
        except Exception:
            log.exception("error publishing the console's view; the switchboard goes on")
            self.metrics.loop_errors.inc()
        self._view_at = now
        self._view_stale = False

    def feed(self, message: m.Message) -> None:
        """Hand *message* to the core and carry out its effects, and the answers those give."""
        self._deadline_stale = True
        self._view_stale = True
        pending: deque[m.Message] = deque([message])
        while pending:
            msg = pending.popleft()
            try:
                effects = self.core.handle(msg, self.clock())
            except Exception:
                log.exception("error handling %s; the switchboard goes on", type(msg).__name__)
                self.metrics.loop_errors.inc()
                continue
            pending.extend(self.executor.run(effects))

    def run_effects(self, effects: list[m.Effect]) -> None:
        self._deadline_stale = True
        for answer in self.executor.run(effects):
            self.feed(answer)


# -- workers --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReloadRequest:
    trigger: str
    """'SIGHUP' or 'file change'."""
    files: FilesState | None = None


class Reloader:
    """Loads and checks the flows again, renders their prompts, then posts :class:`FlowReady`
    for each one that changed: all on its own thread, so a reload never stalls a call.

    ``flows`` maps each flow file (the key the core knows it by) to the version in service;
    ``load(path)`` reads and checks one file again. ``last`` tells how the last reload went
    and ``loaded_at`` when each flow in service was loaded (the console shows both);
    :meth:`reload_file` reloads one flow at once, for the console after it replaced the file.
    """

    @dataclass(frozen=True)
    class Outcome:
        """How a reload went: 'reloaded', 'unchanged' or 'failed', when (wall clock), what
        asked for it, and the problems of the flows it refused (those stay in service)."""

        result: str
        at: float
        trigger: str
        problems: tuple[str, ...] = ()

    def __init__(self, load: Callable[[str], Flow], prepare: Callable[[Flow], int],
                 post: Callable[[m.Message], None], metrics: Metrics, flows: dict[str, Flow],
                 watcher: FileWatcher | None = None):
        self.load = load
        self.prepare = prepare
        self.post = post
        self.metrics = metrics
        self.current = dict(flows)
        self.watcher = watcher
        self.last_files = files_state(self.files())
        self.requests: queue.SimpleQueue[ReloadRequest | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._work, name="reload", daemon=True)
        self.last: Reloader.Outcome | None = None
        self.loaded_at = {path: time.time() for path in flows}
        self._problems: list[str] = []
        self._lock = threading.RLock()  # the reload thread and the console's reload_file

    def files(self) -> tuple[str, ...]:
        """Every file the flows in service were read from (subflows and prompts included)."""
        return tuple(dict.fromkeys(f for flow in self.current.values()
                                   for f in flow_files(flow)))

    def start(self) -> None:
        self.thread.start()

    def request(self, request: ReloadRequest) -> None:
        self.requests.put(request)

    def stop(self) -> None:
        self.requests.put(None)

    def _work(self) -> None:
        while True:
            first = self.requests.get()
            if first is None:
                return
            pending = [first]
            while True:  # requests that came meanwhile are one reload
                try:
                    more = self.requests.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                pending.append(more)
            if all(r.files == self.last_files for r in pending):
                log.debug("flow file change already reloaded")
                continue
            self.last_files = files_state(self.files())
            triggers = ", ".join(dict.fromkeys(r.trigger for r in pending))
            self.reload(triggers)

    def reload(self, trigger: str) -> str:
        """'reloaded' (at least one flow), 'unchanged' or 'failed' (at least one refused, which
        stays in service as it was); every problem is logged."""
        with self._lock:
            self._problems = []
            results = [self._reload_one(path, trigger) for path in list(self.current)]
            self.last_files = files_state(self.files())
            if self.watcher is not None:
                self.watcher.watch(self.files())
            result = "failed" if "failed" in results else \
                "reloaded" if "reloaded" in results else "unchanged"
            self.last = Reloader.Outcome(result, time.time(), trigger, tuple(self._problems))
            return result

    def reload_file(self, path: str, trigger: str) -> Reloader.Outcome:
        """Reload the flow in service read from *path* (a key of ``current``; KeyError for
        any other) now, on the calling thread, and return how it went."""
        with self._lock:
            if path not in self.current:
                raise KeyError(path)
            self._problems = []
            result = self._reload_one(path, trigger)
            self.last_files = files_state(self.files())
            if self.watcher is not None:
                self.watcher.watch(self.files())
            self.last = Reloader.Outcome(result, time.time(), trigger, tuple(self._problems))
            return self.last

    def _reload_one(self, path: str, trigger: str) -> str:
        old = self.current[path]
        try:
            new = self.load(path)
            if new.name == old.name and new.version == old.version:
                log.debug("flow reload (%s): %s version %s is unchanged", trigger, old.name,
                          old.version)
                self.metrics.reload_done(ok=True)
                return "unchanged"
            started = time.monotonic()
            count = self.prepare(new)
        except DocumentError as exc:
            for problem in exc.problems:
                log.error("%s", problem)
            self._problems.extend(str(problem) for problem in exc.problems)
            n = len(exc.problems)
            log.error("flow reload (%s) refused, %d problem%s: flow %s version %s stays in "
                      "service", trigger, n, "" if n == 1 else "s", old.name, old.version)
            self.metrics.reload_done(ok=False)
            return "failed"
        except Exception as exc:  # noqa: BLE001 - a bad reload must never stop the switchboard
            log.error("flow reload (%s) failed: %s: %s", trigger, type(exc).__name__, exc)
            self._problems.append(f"{path}: {type(exc).__name__}: {exc}")
            log.error("flow reload (%s) refused: flow %s version %s stays in service", trigger,
                      old.name, old.version)
            self.metrics.reload_done(ok=False)
            return "failed"
        self.current[path] = new
        self.loaded_at[path] = time.time()
        self.post(m.FlowReady(new, trigger, count, round(time.monotonic() - started, 1), path))
        return "reloaded"


class Purger:
    """Applies retention on its own thread: a minute after start, then daily."""

    def __init__(self, config: Config):
        self.config = config
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._work, name="purge", daemon=True)

    def start(self) -> None:
        if self.config.retention_days:
            self.thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _work(self) -> None:
        from ivr.retention import purge_older_than

        wait = 60.0
        while not self._stop.wait(wait):
            wait = 86400.0
            try:
                purge_older_than(self.config.store, self.config.retention_days, time.time(),
                                 self.config.recordings)
            except Exception as exc:  # noqa: BLE001 - a failed purge must not stop calls
                log.error("retention purge failed: %s; it is tried again tomorrow", exc)


def beep_file(cache_dir: Path) -> Path:
    """The beep before a voicemail message: 0.4 s of 1 kHz, made once into the prompt cache."""
    target = cache_dir / "beep-1.wav"
    if target.exists():
        return target
    rate, n = 8000, 3200
    frames = bytearray()
    for i in range(n):
        envelope = min(1.0, i / 80, (n - i) / 80)
        frames += int(0.3 * 32767 * envelope * math.sin(2 * math.pi * 1000 * i / rate)
                      ).to_bytes(2, "little", signed=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".tmp{os.getpid()}.wav")
    with wave.open(str(tmp), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    tmp.replace(target)
    return target


def prepare_prompts(prompts: Any, flows: list[Flow], cache: Path) -> threading.Thread:
    """Render the flows' prompts into the cache on a thread of its own, so that the switchboard
    is ready at once however many are missing (a new install, a changed flow: seconds of
    espeak-ng and sox). A call that needs a prompt not rendered yet has it rendered then, as
    free text is (the core asks the renderer when ``files_now`` has no answer)."""

    def work() -> None:
        started = time.monotonic()
        try:
            count = sum(prompts.prepare(flow) for flow in flows)
        except Exception as exc:  # noqa: BLE001 - calls render what they need themselves
            log.error("prompts not all rendered at start (%s: %s): calls render the ones they "
                      "play when they play them", type(exc).__name__, exc)
            return
        log.info("prompts ready: %d sequence(s) in %.1f s (cache %s)", count,
                 time.monotonic() - started, cache)

    thread = threading.Thread(target=work, name="prompt-prepare", daemon=True)
    thread.start()
    return thread


# -- systemd notification (Type=notify with watchdog) -----------------------------------------
def sd_notify(message: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(message.encode(), address)
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)


def _until_stopped(loop: Loop, drain_seconds: float, flags: dict[str, bool]) -> None:
    """Turn the loop until *flags* say stop, or say drain and the drain is over; pings the
    watchdog and keeps the STATUS line up to date."""
    core = loop.core
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    last_ping = 0.0
    status = StatusNotifier() if os.environ.get("NOTIFY_SOCKET") else None
    drain_end: float | None = None
    while not flags["stop"]:
        loop.step(10)
        now = time.monotonic()
        if watchdog_usec and now - last_ping > watchdog_usec / 2e6:
            sd_notify("WATCHDOG=1")
            last_ping = now
        if flags["drain"] and drain_end is None:
            drain_end = now + drain_seconds
            core.drain()
            sd_notify("STOPPING=1")
            log.info("SIGTERM: new calls get 503; %d call(s) in progress may go on for up to "
                     "%g s", len(core.calls), drain_seconds)
        if drain_end is not None and (core.drained() or now >= drain_end):
            log.info("drain over: %s", "every call ended" if core.drained() else
                     f"{len(core.calls)} call(s) still up after {drain_seconds:g} s")
            return
        if status is not None:
            status.update(core, now, drain_end)


def status_text(core: Core, draining: bool = False) -> str:
    """The line ``systemctl status`` shows: "12 calls, 3 of 5 agents free" (logged-out agents
    are not counted), "draining: ..." during a drain."""
    agents = [a.state for a in core.router.agents.values() if a.state != "logged_out"]
    free = sum(1 for state in agents if state == "available")
    calls = len(core.calls)
    text = f"{calls} call{'' if calls == 1 else 's'}, {free} of {len(agents)} agent" \
           f"{'' if len(agents) == 1 else 's'} free"
    return f"draining: {text}" if draining else text


class StatusNotifier:
    """Sends ``STATUS=`` to systemd when the text changes, at most once per
    :data:`STATUS_EVERY` seconds."""

    def __init__(self) -> None:
        self.sent = ""
        self._at = -math.inf

    def update(self, core: Core, now: float, drain_end: float | None = None) -> None:
        if now - self._at < STATUS_EVERY:
            return
        self._at = now
        text = status_text(core, drain_end is not None)
        if text != self.sent:
            sd_notify(f"STATUS={text}")
            self.sent = text


def run(config: Config, flows: dict[str, Flow], load_flow_file: Callable[[str], Flow]) -> int:
    """Run the switchboard until SIGINT or SIGTERM; returns the exit status. SIGTERM first
    drains the calls: new ones get 503, those in progress may go on up to ``drain_seconds``.

    ``flows`` holds every flow the routes name, by file (``str(path)``), the default flow
    (``config.flow``) among them; ``load_flow_file(path)`` reads and checks one again (a reload).

    Raises :class:`~ivr.errors.StartupError` (or the store's ``StoreError``) with a one-line
    message when it cannot start: ports are checked and taken before the store is touched.
    """
    from prometheus_client import CollectorRegistry

    from ivr.lookup import Lookups
    from ivr.preflight import check_startup
    from ivr.prompts import PromptLibrary, PromptRenderer, RenderDone, music_on_hold
    from ivr.recording import RecordingWorker
    from ivr.sip.stack import SipSettings, SipStack, stack_version
    from ivr.sms import SmsOutbox, start_sms
    from ivr.store import CallStore

    check_startup(config)
    campaigns = _load_campaigns(config, flows)
    inbox = Inbox()
    metrics = Metrics(CollectorRegistry(), sl_threshold=config.sl_threshold,
                      sl_window=config.sl_window)
    if config.metrics is not None:
        metrics.serve(config.metrics.host, config.metrics.port)
    holder: dict[str, Core] = {}

    def admit(address: str) -> tuple[str | None, int, int, tuple[str, ...]]:
        core = holder.get("core")
        return core.admit(address) if core is not None else (None, 503, 0, ())

    settings = SipSettings(config.sip_listen.host, config.sip_listen.port, config.sip_user,
                           config.rtp_port, config.rtp_port_range, config.max_calls,
                           config.sip_log_level,
                           refuse_strangers=config.sip_refuse_strangers)
    sip = SipStack(settings, admit)

    def take_transfer(leg: str, refer_to: str) -> str:
        core = holder.get("core")
        return core.transfer_refusal(leg, refer_to) if core is not None else "starting"

    sip.take_transfer = take_transfer
    metrics.watch_sip(sip.traffic_counts)
    sip.start()
    store = None
    filler: HopperFiller | None = None
    recorder: RecordingWorker | None = None
    texts: SmsOutbox | None = None
    try:
        store = CallStore.open_for_service(config.store)
        metrics.watch_store(store.pending_count, lambda: store.write_errors if store else 0)
        store.import_fallback()  # records a stop could not write, before closing leftovers
        store.recover(time.time())
        prompts = PromptLibrary(config.prompt_cache, config.voices, config.speech_rate)
        prepare_prompts(prompts, list(flows.values()), config.prompt_cache)
        moh = str(config.music_on_hold or music_on_hold(config.prompt_cache))
        beep = str(beep_file(config.prompt_cache))
        metrics.set_build(stack_version())
        flow = flows[str(config.flow)]
        metrics.flow_loaded(flow.name, flow.version, time.time())
        tickets = TicketBook()
        tickets.load(*store.open_tickets())  # read once: the loop answers from memory
        now = time.monotonic()
        core = Core(config, flow, flows=flows, files_for=prompts.files_now,
                    music_on_hold=moh, now=now,
                    wall_offset=time.time() - now, beep=beep, overrides=store.overrides(),
                    agent_states=store.agent_states(), tickets=tickets,
                    registering=config.edge.agents if config.edge is not None else (),
                    campaigns=campaigns)
        for name, state in sorted(core.overrides.items()):
            log.warning("hours override %s is set to %s (a set_override node with state auto "
                        "releases it)", name, state)
        holder["core"] = core
        lookups = Lookups(post=inbox.post)

        def rendered(done: RenderDone) -> None:
            inbox.post(m.PromptReady(done.key, done.play_id, done.files, done.error))

        renderer = PromptRenderer(prompts, post=rendered)
        if config.recorded_queues:
            recorder = RecordingWorker(config.recordings, config.recording_min_free_mb,
                                       inbox.post)
            recorder.start()
        executor = Executor(sip, store, metrics, lookups, renderer, time.time,
                            recorder=recorder)
        # the modem's own thread and the outbox's: texts to callers and alerts to supervisors
        texts = executor.texts = start_sms(config, metrics, store.pending_count,
                                           lambda name, up: inbox.post(m.DeviceState(name, up)))
        if campaigns:
            # the dialler's worker: the contact lists, the hoppers, the do-not-call list
            metrics.campaigns_defined(campaigns)
            filler = executor.dialler = HopperFiller(config.store, campaigns, inbox.post)
            filler.start()
            log.info("campaigns: %s", ", ".join(f"{c.name} ({c.mode})"
                                                for c in campaigns.values()))
        loop = Loop(core, executor, sip, inbox, metrics)
        code = _serve(config, flows, load_flow_file, loop, prompts, store, lookups, inbox,
                      metrics, stack_version())
    finally:
        sip.shutdown()
        if filler is not None:
            filler.stop()  # the last attempts are written first
        if recorder is not None:
            recorder.stop()  # the recordings of the last calls are joined first
        if texts is not None:
            texts.stop()  # texts still on their way in are written to the queue
        unwritten = store.close() if store is not None else 0
    if unwritten:
        log.error("stopped with %d record(s) not written to %s: they are kept in the fallback "
                  "file and imported at the next start", unwritten, config.store)
        return EXIT_UNWRITTEN
    log.info("stopped cleanly")
    return code


def _load_campaigns(config: Config, flows: dict[str, Flow]) -> dict[str, Campaign]:
    """The campaign files, checked, and the flows of automated ones added to *flows* (their
    prompts are made with the others'). Raises :class:`~ivr.errors.StartupError` after logging
    every problem, as a bad flow stops the start."""
    from ivr.errors import StartupError
    from ivr.flow import load_flow
    from ivr.outbound.campaigns import load_campaigns

    try:
        campaigns = load_campaigns(config)
        for campaign in campaigns.values():
            if campaign.flow is not None and str(campaign.flow) not in flows:
                flows[str(campaign.flow)] = load_flow(
                    campaign.flow, known_queues=config.queues,
                    transfer_allowed=lambda d: config.transfer_target(d) is not None)
    except DocumentError as exc:
        for problem in exc.problems:
            log.error("%s", problem)
        n = len(exc.problems)
        raise StartupError(f"the campaign files have {n} problem{'s' if n != 1 else ''} "
                           "(logged above); fix them or take 'campaigns' out of ivr.yaml") \
            from None
    return campaigns


def start_devices(config: Config, post: Callable[[m.Message], None],
                  snapshot: Callable[[], Snapshot]) -> list[Any]:
    """Start a thread per night switch and lamp of ``devices``: they post their news to the
    inbox; a lamp reads the last published snapshot, never the core itself."""
    from hw.devices import Lamp, LampInputs, NightSwitch

    def lamp_inputs() -> LampInputs | None:
        snap = snapshot()
        if config.agents and not snap.agents_by_state:
            return None  # the loop has not published yet (its snapshots count every agent)
        logged_in = sum(n for state, n in snap.agents_by_state.items() if state != "logged_out")
        return LampInputs(snap.callers_waiting, snap.longest_wait, logged_in,
                          tuple(sorted(t for t, up in snap.trunks.items() if not up)))

    def up(name: str, is_up: bool) -> None:
        post(m.DeviceState(name, is_up))

    devices: list[Any] = []
    for device in config.devices.values():
        if device.kind == "night_switch":
            devices.append(NightSwitch(device, lambda name, on: post(
                m.NightSwitchChanged(name, on)), on_up=up))
        elif device.kind == "lamp":
            devices.append(Lamp(device, lamp_inputs, on_up=up))
    for each in devices:
        each.start()
    return devices


def _start_watchers(config: Config, inbox: Inbox, metrics: Metrics) -> list[Any]:
    """Start the threads that watch the world and post what changes (gateways' OPTIONS, the
    edge's registrations, serial devices) and the retention purger; each has ``stop()``."""
    from hw.gateway import GatewayMonitor

    workers: list[Any] = []
    for trunk in (t for t in config.trunks if t.ping is not None):
        assert trunk.ping is not None
        monitor = GatewayMonitor([(trunk.name, trunk.ping.host, trunk.ping.port)],
                                 interval=trunk.ping_interval,
                                 timeout=min(5.0, trunk.ping_interval / 2),
                                 on_change=lambda name, up: inbox.post(
                                     m.TrunkReachability(name, up)))
        monitor.start()
        workers.append(monitor)
    if config.edge is not None:
        from ivr.edge import RegistrationsPoller

        poller = RegistrationsPoller(config.edge.rpc_url, 2.0,
                                     lambda names: inbox.post(m.Registrations(names)))
        poller.start()
        workers.append(poller)
    purger = Purger(config)
    purger.start()
    workers.append(purger)
    workers.extend(start_devices(config, inbox.post, metrics.snapshot))
    return workers


def _serve(config: Config, flows: dict[str, Flow], load_flow_file: Callable[[str], Flow],
           loop: Loop,
           prompts: Any, store: Any, lookups: Any, inbox: Inbox, metrics: Metrics,
           stack: str) -> int:
    flags = {"stop": False, "drain": False}

    def on_stop(signum: int, _frame: object) -> None:
        # SIGTERM (systemd's stop, an upgrade) drains the calls first; SIGINT, or a second
        # SIGTERM while draining, stops at once
        if signum == signal.SIGTERM and not flags["drain"] and config.drain_seconds > 0:
            flags["drain"] = True
        else:
            flags["stop"] = True

    files = tuple(dict.fromkeys(f for flow in flows.values() for f in flow_files(flow)))
    watcher = FileWatcher(files, lambda seen: reloader.request(ReloadRequest("file change",
                                                                             seen)))
    reloader = Reloader(load_flow_file, prompts.prepare, inbox.post, metrics, flows, watcher)

    def on_hup(signum: int, _frame: object) -> None:
        reloader.request(ReloadRequest("SIGHUP"))

    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    reloader.start()
    watcher.start()

    def agent_commands(commands: list[tuple[str, str, str]]) -> None:
        for agent, command, reason in commands:
            inbox.post(m.AgentCommand(agent, command, reason, "ivr agent"))

    store.start_command_poller(agent_commands)
    workers = _start_watchers(config, inbox, metrics)
    console = None
    if config.console is not None:
        # the web console: its server thread reads the views the loop publishes and posts
        # its commands to the inbox (ivr/console)
        from ivr.console.web import start as start_console

        console = start_console(config, inbox.post, metrics, reloader)
        loop.on_view = console.console.hub.publish
    metrics_url = f"http://{config.metrics}/metrics" if config.metrics else "off"
    flow = loop.core.flow
    others = len(flows) - 1
    log.info("Centralino ready: call %s | flow %s (version %s, %s)%s | metrics %s | "
             "console %s | %s", config.sip_uri, flow.name, flow.version, flow.source,
             f" and {others} more by called number" if others else "", metrics_url,
             console.url if console is not None else "off", stack)
    sd_notify("READY=1")
    core = loop.core
    try:
        _until_stopped(loop, config.drain_seconds, flags)
    finally:
        sd_notify("STOPPING=1")
        watcher.stop()
        reloader.stop()
        for worker in workers:
            worker.stop()
        if console is not None:
            loop.on_view = None
            console.stop()
        log.info("stopping: hanging up %d call(s)", len(core.calls))
        loop.run_effects(core.stop(time.monotonic()))
        end = time.monotonic() + 2.0
        while (core.calls or core.callbacks) and time.monotonic() < end:
            loop.step(20)
        loop.run_effects(core.abandon(time.monotonic()))
        lookups.shutdown()
    return 0
