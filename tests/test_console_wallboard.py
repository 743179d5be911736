"""The supervisor's wallboard: access, tiles from the loop's view, today's figures from the store,
tile colours, listen/whisper/barge and state changes posted to the loop and audited, the live
stream, TV mode, and the figures' data-metric names against a real /metrics text."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ivr.config import load_config
from ivr.console.pages import wallboard
from ivr.driver.messages import AgentCommand, Supervise
from ivr.metrics import Metrics, Snapshot
from ivr.store import CallRecord, CallStore, QueueEventRow
from tests.consolekit import PASSWORD, Browser, Kit, start_console

ROOT = Path(__file__).resolve().parent.parent
YAML = f"""\
sip: {{listen: 127.0.0.1:5080}}
trunks: {{gw: {{sources: [127.0.0.1]}}}}
flow: {ROOT / "flows" / "demo.yaml"}
agents:
  anna: {{uri: "sip:anna@127.0.0.1:5070"}}
  marco: {{uri: "sip:marco@127.0.0.1:5071"}}
  luca: {{uri: "sip:luca@127.0.0.1:5072"}}
queues:
  support: {{agents: [anna, marco]}}
  sales: {{agents: [luca]}}
supervisors:
  laura: {{uri: "sip:laura@127.0.0.1:5074", queues: [support]}}
"""
USERS = (("anna", "agent", "anna"), ("boss", "admin", ""), ("sam", "supervisor", ""))


class Node:
    def __init__(self, tag: str, attrs: dict[str, str], parent: Node | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node] = []
        self.text = ""

    def all(self) -> Iterator[Node]:
        yield self
        for c in self.children:
            yield from c.all()

    def find(self, **attrs: str) -> list[Node]:
        want = {k.replace("_", "-"): v for k, v in attrs.items()}
        return [n for n in self.all()
                if all(n.attrs.get(k) == v or (v == "*" and k in n.attrs)
                       for k, v in want.items())]

    def one(self, **attrs: str) -> Node:
        found = self.find(**attrs)
        assert len(found) == 1, (attrs, len(found))
        return found[0]

    def full_text(self) -> str:
        return self.text + "".join(c.full_text() for c in self.children)


class Page(HTMLParser):
    VOID = frozenset({"meta", "link", "input", "br", "img", "hr"})

    def __init__(self, body: str):
        super().__init__()
        self.root = Node("root", {}, None)
        self.cur = self.root
        self.feed(body)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_endtag(self, tag: str) -> None:
        node: Node | None = self.cur
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.cur = node.parent

    def handle_data(self, data: str) -> None:
        self.cur.text += data


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    path = tmp_path / "ivr.yaml"
    path.write_text(YAML)
    config = load_config(path)
    k = start_console(tmp_path, config, users=USERS)
    k.console.accounts.add_user("sara", PASSWORD, "supervisor", supervisor="laura")
    k.console.accounts.add_user("root", PASSWORD, "admin", supervisor="laura")
    yield k
    k.stop()


def view(now: float, *, waiting: int = 1, longest: float = 12.0) -> dict[str, Any]:
    return {
        "at": now,
        "agents": {
            "anna": {"name": "anna", "state": "on_call", "since": now - 65, "pause_reason": "",
                     "queues": ["support"], "team": "", "call_id": "c1", "offered": False,
                     "wrapup_until": None, "answered": 3, "talk_seconds": 300.0,
                     "notice": None},
            "marco": {"name": "marco", "state": "paused", "since": now - 10,
                      "pause_reason": "lunch", "queues": ["support"], "team": "",
                      "call_id": None, "offered": False, "wrapup_until": None, "answered": 0,
                      "talk_seconds": 0.0, "notice": None},
            "luca": {"name": "luca", "state": "available", "since": now - 5,
                     "pause_reason": "", "queues": ["sales"], "team": "", "call_id": None,
                     "offered": False, "wrapup_until": None, "answered": 0,
                     "talk_seconds": 0.0, "notice": None},
        },
        "calls": {
            "c1": {"call_id": "c1", "caller": "+390611111", "called": "100", "trunk": "gw",
                   "phase": "connected", "started": now - 90, "queue": "support",
                   "queued_at": now - 80, "wait": 15.0, "level": 1,
                   "path": ["welcome", "menu", "support"], "keys": "1", "variables": {},
                   "agent": "anna", "ticket": None, "script": "", "recorded": False,
                   "supervisors": [], "notes": []},
            "c2": {"call_id": "c2", "caller": "+390622222", "called": "100", "trunk": "gw",
                   "phase": "queued", "started": now - 20, "queue": "support",
                   "queued_at": now - longest, "wait": longest, "level": 1,
                   "path": ["welcome", "menu", "support"], "keys": "1", "variables": {},
                   "agent": None, "ticket": None, "script": "", "recorded": False,
                   "supervisors": [], "notes": []},
            "c3": {"call_id": "c3", "caller": "+390633333", "called": "200", "trunk": "gw",
                   "phase": "ivr", "started": now - 3, "queue": None, "queued_at": None,
                   "wait": 0.0, "level": 1, "path": ["welcome"], "keys": "",
                   "variables": {}, "agent": None, "ticket": None, "script": "",
                   "recorded": False, "supervisors": [], "notes": []},
        },
        "queues": {"support": {"waiting": waiting, "longest_wait": longest,
                               "agents": {"on_call": 1, "paused": 1}},
                   "sales": {"waiting": 0, "longest_wait": 0.0, "agents": {"available": 1}}},
        "supervisions": [],
    }


def signed_in(kit: Kit, name: str) -> Browser:
    b = Browser(kit.url)
    b.login(name)
    return b


def agent_row(page: Node, name: str) -> Node:
    [row] = [n for n in page.find(data_agent=name) if n.tag == "tr"]
    return row


def figure(page: Node, queue: str, name: str) -> Node:
    return page.one(data_queue=queue).one(data_figure=name)


# -- access ------------------------------------------------------------------------------------
def test_anonymous_goes_to_login_agent_is_refused_supervisor_and_admin_see_it(kit: Kit) -> None:
    anonymous = Browser(kit.url, follow=False).get("/wallboard")
    assert anonymous.status == 303
    assert anonymous.headers["Location"].startswith("/login")
    live = Browser(kit.url, follow=False).get("/wallboard/live",
                                              headers={"Accept": "text/event-stream"})
    assert live.status == 401
    agent = signed_in(kit, "anna")
    assert agent.get("/wallboard").status == 403
    assert agent.api("POST", "/wallboard/agent-state",
                     {"agent": "anna", "command": "logout"}).status == 403
    assert agent.api("POST", "/wallboard/supervise",
                     {"agent": "anna", "mode": "listen"}).status == 403
    assert kit.posted == []
    for name in ("sam", "boss"):
        assert signed_in(kit, name).get("/wallboard").status == 200


# -- tiles and rows from the view ----------------------------------------------------------------
def test_tiles_agents_and_calls_come_from_the_view(kit: Kit) -> None:
    now = time.time()
    kit.publish(view(now, waiting=2, longest=12.0))
    page = Page(signed_in(kit, "boss").get("/wallboard").body).root
    assert figure(page, "support", "waiting").attrs["data-value"] == "2"
    assert figure(page, "support", "waiting").attrs["data-metric"] == \
        'ivr_queue_callers_waiting{queue="support"}'
    longest = figure(page, "support", "longest_wait")
    assert float(longest.attrs["data-value"]) == 12.0
    assert longest.full_text().strip() == "0:12"
    assert figure(page, "sales", "waiting").attrs["data-value"] == "0"
    calls = page.one(data_figure="calls_in_progress")
    assert calls.attrs["data-value"] == "3"
    assert calls.attrs["data-metric"] == "ivr_calls_in_progress"
    states = {n.attrs["data-agents-state"]: n.attrs["data-value"]
              for n in page.find(data_agents_state="*")}
    assert states["on_call"] == "1"
    assert states["paused"] == "1"
    assert states["available"] == "1"
    assert states["ringing"] == "0"
    anna = agent_row(page, "anna")
    assert anna.tag == "tr"
    assert anna.one(data_field="state").attrs["data-value"] == "on_call"
    assert "welcome \u203a menu \u203a support" in anna.one(data_field="path").full_text()
    assert float(anna.one(data_field="caller_wait").attrs["data-value"]) == 15.0
    assert 64 <= float(anna.one(data_field="in_state").attrs["data-value"]) <= 66
    buttons = {b.attrs["data-action"]: b for b in page.find(data_action="*")
               if b.attrs.get("data-agent") == "anna"}
    assert set(buttons) == {"listen", "whisper", "barge"}
    assert all("disabled" not in b.attrs for b in buttons.values())
    marco_listen = [b for b in page.find(data_action="listen")
                    if b.attrs["data-agent"] == "marco"]
    assert "disabled" in marco_listen[0].attrs
    assert "lunch" in agent_row(page, "marco").one(data_field="state").full_text()
    rows = {n.attrs["data-call"]: n for n in page.find(data_call="*")}
    assert set(rows) == {"c1", "c2", "c3"}
    assert rows["c2"].one(data_field="caller").full_text() == "+390622222"
    assert rows["c2"].one(data_field="phase").attrs["data-value"] == "queued"
    assert rows["c1"].one(data_field="agent").full_text() == "anna"


def test_a_supervisor_tied_to_an_entry_sees_its_queues_only(kit: Kit) -> None:
    kit.publish(view(time.time()))
    page = Page(signed_in(kit, "sara").get("/wallboard").body).root
    assert [n.attrs["data-queue"] for n in page.find(data_queue="*")] == ["support"]
    assert {n.attrs["data-agent"] for n in page.find(data_agent="*") if n.tag == "tr"} == \
        {"anna", "marco"}
    assert {n.attrs["data-call"] for n in page.find(data_call="*")} == {"c1", "c2"}
    # filtered counts are not the switchboard's: no metric name on them
    assert "data-metric" not in page.one(data_figure="calls_in_progress").attrs
    assert page.one(data_figure="calls_in_progress").attrs["data-value"] == "2"
    # an admin with the same tie still sees every queue
    page = Page(signed_in(kit, "root").get("/wallboard").body).root
    assert {n.attrs["data-queue"] for n in page.find(data_queue="*")} == {"support", "sales"}


# -- today's figures from the store --------------------------------------------------------------
def _answered(store: CallStore, call_id: str, queue: str, at: float, wait: float,
              agent: str = "anna", talk: float = 60.0) -> None:
    rec = CallRecord(call_id, at, caller="+39061", trunk="gw", queue=queue, queued_at=at,
                     connected_at=at + wait, agent=agent)
    rec.finish(at + wait + talk, "completed")
    store.save(rec)
    store.add_events([QueueEventRow(at, "enter", queue, call_id, "", {}),
                      QueueEventRow(at + wait, "connect", queue, call_id, agent,
                                    {"wait": wait}),
                      QueueEventRow(at + wait + talk, "complete", queue, call_id, agent,
                                    {"talk": talk})])


def _abandoned(store: CallStore, call_id: str, queue: str, at: float, wait: float) -> None:
    rec = CallRecord(call_id, at, caller="+39062", trunk="gw", queue=queue, queued_at=at)
    rec.finish(at + wait, "abandoned_queue")
    store.save(rec)
    store.add_events([QueueEventRow(at, "enter", queue, call_id, "", {}),
                      QueueEventRow(at + wait, "abandon", queue, call_id, "", {"wait": wait})])


def write_calls(path: Path, now: float) -> float:
    """Support: in the last hour 3 answered (waits 5, 10, 40 s), 1 abandoned after 30 s, one
    of them escalated; 2 h ago one more answered (5 s). Sales: nothing. Returns when the
    old call started."""
    store = CallStore(path)
    base = now - 1800
    _answered(store, "a1", "support", base, 5)
    _answered(store, "a2", "support", base + 60, 10, talk=120.0)
    _answered(store, "a3", "support", base + 120, 40, agent="marco")
    _abandoned(store, "b1", "support", base + 180, 30)
    store.add_events([QueueEventRow(base + 200, "escalate", "support", "a3", "marco",
                                    {"kind": "agent", "to_level": 2})])
    old = now - 2 * 3600
    _answered(store, "o1", "support", old, 5)
    assert store.wait_idle(10)
    assert store.close() == 0
    return old


def test_today_and_last_hour_figures_come_from_the_store(kit: Kit) -> None:
    now = time.time()
    old = write_calls(kit.console.store_path, now)
    old_today = old >= wallboard.midnight(now)
    recent_today = now - 1800 >= wallboard.midnight(now)
    kit.publish(view(now, waiting=0, longest=0.0))
    page = Page(signed_in(kit, "boss").get("/wallboard").body).root
    value = {f: figure(page, "support", f).attrs["data-value"]
             for f in ("sl_hour", "sl2_hour", "sl_today", "sl2_today", "answered",
                       "abandoned", "escalated")}
    assert float(value["sl_hour"]) == pytest.approx(2 / 3)
    assert float(value["sl2_hour"]) == pytest.approx(2 / 4)
    answered = (3 if recent_today else 0) + (1 if old_today else 0)
    assert int(value["answered"]) == answered
    if recent_today:
        assert int(value["abandoned"]) == 1
        assert int(value["escalated"]) == 1
        assert float(value["sl_today"]) == pytest.approx((answered - 1) / answered)
    assert figure(page, "support", "sl_hour").full_text().strip() == "67%"
    assert figure(page, "sales", "sl_hour").attrs["data-value"] == ""
    assert figure(page, "sales", "answered").attrs["data-value"] == "0"
    # per agent, today: answered and AHT (talk, no wrap-up recorded)
    anna = agent_row(page, "anna")
    if recent_today:
        assert anna.one(data_field="answered").attrs["data-value"] == \
            str(2 + (1 if old_today else 0))
        aht = float(anna.one(data_field="aht").attrs["data-value"])
        assert aht == pytest.approx((60 + 120 + (60 if old_today else 0)) /
                                    (2 + (1 if old_today else 0)))


def test_read_stats_counts_what_the_report_counts(tmp_path: Path) -> None:
    import sqlite3

    now = time.time()
    path = tmp_path / "calls.db"
    write_calls(path, now)
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    stats = wallboard.read_stats(db, now, 20.0)
    db.close()
    support = stats["queues"]["support"]
    assert support["sl_hour"] == pytest.approx(2 / 3)
    assert support["sl2_hour"] == pytest.approx(0.5)
    # marco's call was 30 min ago: yesterday's when the test runs just after midnight, and
    # then he has no row today at all
    assert stats["agents"].get("marco", {}).get("answered", 0) == (
        1 if now - 1800 >= wallboard.midnight(now) else 0)


# -- colours -----------------------------------------------------------------------------------
def test_tile_levels() -> None:
    level = wallboard.tile_level
    assert level({"waiting": 0, "longest_wait": 0.0}, {}, 20) == "ok"
    assert level({"waiting": 1, "longest_wait": 5.0}, {}, 20) == "warn"
    assert level({"waiting": 1, "longest_wait": 25.0}, {}, 20) == "bad"
    assert level({"waiting": 0, "longest_wait": 0.0}, {"sl_hour": 0.9}, 20) == "ok"
    assert level({"waiting": 0, "longest_wait": 0.0}, {"sl_hour": 0.7}, 20) == "warn"
    assert level({"waiting": 0, "longest_wait": 0.0}, {"sl_hour": 0.5}, 20) == "bad"
    assert level({"waiting": 0, "longest_wait": 0.0}, {"sl_hour": None}, 20) == "ok"


def _classes(page: Node, queue: str) -> set[str]:
    return set(page.one(data_queue=queue).attrs["class"].split())


def test_tiles_are_coloured_by_the_thresholds(kit: Kit) -> None:
    browser = signed_in(kit, "boss")
    now = time.time()
    kit.publish(view(now, waiting=1, longest=5.0))
    page = Page(browser.get("/wallboard").body).root
    assert "warn" in _classes(page, "support")
    assert "bad" not in _classes(page, "support")
    assert not {"warn", "bad"} & _classes(page, "sales")
    kit.publish(view(now, waiting=1, longest=25.0))  # past the 20 s threshold
    page = Page(browser.get("/wallboard").body).root
    assert "bad" in _classes(page, "support")


# -- commands --------------------------------------------------------------------------------
def test_supervise_posts_with_the_users_supervisor_tie_and_is_audited(kit: Kit) -> None:
    kit.publish(view(time.time()))
    sara = signed_in(kit, "sara")
    sara.get("/wallboard")
    answer = sara.api("POST", "/wallboard/supervise", {"agent": "anna", "mode": "whisper"})
    assert answer.status == 200, answer.body
    assert answer.json()["ok"] is True
    [msg] = kit.posted
    assert isinstance(msg, Supervise)
    assert (msg.supervisor, msg.agent, msg.mode) == ("laura", "anna", "whisper")
    assert msg.source == "console sara@127.0.0.1"
    [entry] = kit.console.accounts.audit_log(user="sara", limit=1)
    assert entry["action"] == "supervise"
    assert entry["target"] == "anna"
    assert entry["detail"]["mode"] == "whisper"
    assert entry["detail"]["supervisor"] == "laura"


def test_supervise_is_refused_without_a_tie_off_call_or_outside_the_queues(kit: Kit) -> None:
    kit.publish(view(time.time()))
    sam = signed_in(kit, "sam")
    sam.get("/wallboard")
    refused = sam.api("POST", "/wallboard/supervise", {"agent": "anna", "mode": "listen"})
    assert refused.status == 409
    assert "supervisor" in refused.json()["error"]
    sara = signed_in(kit, "sara")
    sara.get("/wallboard")
    off = sara.api("POST", "/wallboard/supervise", {"agent": "marco", "mode": "barge"})
    assert off.status == 409
    assert "marco" in off.json()["error"]
    assert sara.api("POST", "/wallboard/supervise",
                    {"agent": "anna", "mode": "shout"}).status == 400
    assert sara.api("POST", "/wallboard/supervise",
                    {"agent": "luca", "mode": "listen"}).status == 403
    # ringing for a call, or in wrap-up after one: not on a call either
    v = view(time.time())
    v["agents"]["marco"].update(state="ringing", call_id="c2", offered=True)
    kit.publish(v)
    assert sara.api("POST", "/wallboard/supervise",
                    {"agent": "marco", "mode": "listen"}).status == 409
    v = view(time.time())
    v["agents"]["anna"].update(state="wrap_up", call_id="c9")
    kit.publish(v)
    assert sara.api("POST", "/wallboard/supervise",
                    {"agent": "anna", "mode": "listen"}).status == 409
    no_csrf = Browser(kit.url)
    no_csrf.login("sara")
    no_csrf.csrf = ""
    assert no_csrf.api("POST", "/wallboard/supervise",
                       {"agent": "anna", "mode": "listen"}).status == 403
    assert kit.posted == []
    assert not [e for e in kit.console.accounts.audit_log() if e["action"] == "supervise"]


def test_agent_state_posts_agent_commands_and_is_audited(kit: Kit) -> None:
    kit.publish(view(time.time()))
    boss = signed_in(kit, "boss")
    boss.get("/wallboard")
    assert boss.api("POST", "/wallboard/agent-state",
                    {"agent": "marco", "command": "unpause"}).status == 200
    assert boss.api("POST", "/wallboard/agent-state",
                    {"agent": "luca", "command": "pause", "reason": "meeting"}).status == 200
    assert kit.posted == [AgentCommand("marco", "unpause", "", "console boss@127.0.0.1"),
                          AgentCommand("luca", "pause", "meeting", "console boss@127.0.0.1")]
    entries = [e for e in kit.console.accounts.audit_log(user="boss")
               if e["action"] == "agent_state"]
    assert [(e["target"], e["detail"]["command"]) for e in reversed(entries)] == \
        [("marco", "unpause"), ("luca", "pause")]
    assert boss.api("POST", "/wallboard/agent-state",
                    {"agent": "ghost", "command": "login"}).status == 404
    assert boss.api("POST", "/wallboard/agent-state",
                    {"agent": "anna", "command": "dance"}).status == 400
    sara = signed_in(kit, "sara")
    sara.get("/wallboard")
    assert sara.api("POST", "/wallboard/agent-state",
                    {"agent": "luca", "command": "logout"}).status == 403
    assert len(kit.posted) == 2


# -- the live stream -----------------------------------------------------------------------------
class Stream:
    """An SSE connection read on a thread: its data messages, decoded, in a list."""

    def __init__(self, browser: Browser, path: str):
        req = urllib.request.Request(browser.base + path,
                                     headers={"Accept": "text/event-stream"})
        self.res = browser.opener.open(req, timeout=10)
        assert self.res.headers["Content-Type"].startswith("text/event-stream")
        self.messages: list[dict[str, Any]] = []
        self.arrived = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for raw in self.res:
                line = raw.decode().rstrip("\n")
                if line.startswith("data: "):
                    with self.arrived:
                        self.messages.append(json.loads(line[6:]))
                        self.arrived.notify_all()
        except (OSError, ValueError, AttributeError):
            pass  # closed by close() (http.client's reader is gone then: AttributeError)

    def wait_for(self, test: Any, timeout: float = 10.0) -> dict[str, Any]:
        with self.arrived:
            assert self.arrived.wait_for(
                lambda: any(test(m) for m in self.messages), timeout), self.messages[-1:]
            return next(m for m in self.messages if test(m))

    def close(self) -> None:
        self.res.close()


def test_the_live_stream_sends_view_changes_and_todays_figures(
        kit: Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wallboard, "STATS_EVERY", 0.2)
    now = time.time()
    kit.publish(view(now, waiting=1, longest=5.0))
    stream = Stream(signed_in(kit, "sara"), "/wallboard/live")
    try:
        first = stream.wait_for(lambda m: m["queues"]["support"]["waiting"] == 1)
        assert set(first["queues"]) == {"support"}
        assert first["queues"]["support"]["level"] == "warn"
        assert [a["name"] for a in first["agents"]] == ["anna", "marco"]
        kit.publish(view(now + 1, waiting=3, longest=30.0))
        later = stream.wait_for(lambda m: m["queues"]["support"]["waiting"] == 3)
        assert later["queues"]["support"]["level"] == "bad"
        assert later["queues"]["support"]["longest_wait"] == 30.0
        # figures written to the store reach the open stream with the next read
        write_calls(kit.console.store_path, time.time())
        stats = stream.wait_for(lambda m: m["queues"]["support"]["sl_hour"] is not None)
        assert stats["queues"]["support"]["sl_hour"] == pytest.approx(2 / 3)
        assert stats["queues"]["support"]["waiting"] == 3
    finally:
        stream.close()
    board = wallboard.board_of(kit.console)
    deadline = time.monotonic() + 5
    while board.watchers and time.monotonic() < deadline:
        time.sleep(0.05)
    assert board.watchers == 0


def test_many_open_wallboards_share_one_read(kit: Kit, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    monkeypatch.setattr(wallboard, "STATS_EVERY", 0.5)
    kit.publish(view(time.time()))
    browser = signed_in(kit, "boss")
    streams = [Stream(browser, "/wallboard/live") for _ in range(6)]
    try:
        for s in streams:
            s.wait_for(lambda m: True)
        board = wallboard.board_of(kit.console)
        start, began = board.version, time.monotonic()
        deadline = began + 10
        while board.version < start + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        elapsed = time.monotonic() - began
        # 6 streams, yet one read per period (not six)
        assert board.version - start <= elapsed / (0.5 * 0.9) + 1
        assert board.watchers == 6
    finally:
        for s in streams:
            s.close()


# -- TV mode -------------------------------------------------------------------------------------
def test_tv_mode_renders_big_tiles_without_buttons(kit: Kit) -> None:
    kit.publish(view(time.time()))
    body = signed_in(kit, "boss").get("/wallboard?tv=1").body
    page = Page(body).root
    [body_node] = [n for n in page.all() if n.tag == "body"]
    assert "tv" in body_node.attrs["class"].split()
    assert page.one(data_queue="support")
    assert not page.find(data_action="listen")
    assert agent_row(page, "anna").tag == "tr"
    normal = Page(signed_in(kit, "boss").get("/wallboard").body).root
    [normal_body] = [n for n in normal.all() if n.tag == "body"]
    assert "tv" not in normal_body.attrs["class"].split()
    assert normal.find(data_action="listen")
    assert "<script>" not in body
    assert "style=" not in body
    assert "onclick" not in body


# -- the figures against /metrics ---------------------------------------------------------------
def test_data_metric_names_and_values_match_the_metrics_text(kit: Kit, tmp_path: Path
                                                             ) -> None:
    now = time.time()
    v = view(now, waiting=2, longest=12.0)
    metrics = Metrics(CollectorRegistry(), process=False)
    # the switchboard's service level window: 2 of 3 answered within 20 s, 1 abandoned
    for wait in (5.0, 10.0, 40.0):
        metrics.queue_event("connect", "support", now - 600, {"wait": wait})
    metrics.queue_event("abandon", "support", now - 500, {"wait": 30.0})
    metrics.publish(Snapshot(
        calls_in_progress=len(v["calls"]),
        callers_waiting={q: d["waiting"] for q, d in v["queues"].items()},
        agents_by_state={"on_call": 1, "paused": 1, "available": 1},
        longest_wait={q: d["longest_wait"] for q, d in v["queues"].items()},
        queue_agents={(q, s): n for q, d in v["queues"].items()
                      for s, n in d["agents"].items()}))
    with_metrics = start_console(tmp_path / "with-metrics", kit.console.config,
                                 users=(("boss", "admin", ""),), metrics=metrics)
    try:
        with_metrics.publish(v)
        body = signed_in(with_metrics, "boss").get("/wallboard").body
    finally:
        with_metrics.stop()
    samples = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            samples[name] = float(number)
    page = Page(body).root
    tagged = page.find(data_metric="*")
    assert len(tagged) >= 12
    for node in tagged:
        name = node.attrs["data-metric"]
        shown = float(node.attrs["data-value"])
        assert name in samples, name
        assert samples[name] == pytest.approx(shown), name
    names = {n.attrs["data-metric"] for n in tagged}
    assert 'ivr_queue_service_level_ratio{definition="sl",queue="support"}' in names
    assert 'ivr_queue_service_level_ratio{definition="sl2",queue="support"}' in names
    assert 'ivr_queue_agents{queue="support",state="on_call"}' in names
    assert 'ivr_agents{state="on_call"}' in names
    assert float(figure(page, "support", "sl_window").attrs["data-value"]) == \
        pytest.approx(2 / 3)
    # a state no agent is in has no sample in /metrics: shown, but without a metric name
    ringing = page.one(data_agents_state="ringing")
    assert ringing.attrs["data-value"] == "0"
    assert "data-metric" not in ringing.attrs
    # without the metrics (kit), no window line figures claim a metric
    plain = Page(signed_in(kit, "boss").get("/wallboard").body).root
    assert "data-metric" not in figure(plain, "support", "sl_window").attrs


# -- in a real browser ---------------------------------------------------------------------------
def test_in_a_browser_the_page_updates_in_place_and_the_buttons_answer(
        kit: Kit, tmp_path: Path) -> None:
    from tests.browser import Tab, chromium, page_metrics, require_browser

    require_browser()
    now = time.time()
    kit.publish(view(now, waiting=1, longest=5.0))
    with chromium() as browser:
        tab = Tab.open(browser, kit.url)
        tab.login("sara", PASSWORD)
        tab.page.goto("/wallboard")
        page = tab.page
        page.wait_for_selector('[data-queue="support"] [data-figure="waiting"][data-value="1"]')
        # mark the nodes: an update must keep them
        page.evaluate("""() => {
            document.querySelector('[data-queue="support"]').marked = 1;
            document.querySelector('tr[data-agent="anna"]').marked = 1; }""")
        v = view(now + 1, waiting=4, longest=31.0)
        v["agents"]["marco"].update(state="available", pause_reason="", since=now)
        del v["calls"]["c2"]
        kit.publish(v)
        page.wait_for_selector('[data-queue="support"] [data-figure="waiting"][data-value="4"]')
        page.wait_for_selector('tr[data-agent="marco"] '
                               '[data-field="state"][data-value="available"]')
        assert page.evaluate("""() =>
            document.querySelector('[data-queue="support"]').marked === 1 &&
            document.querySelector('tr[data-agent="anna"]').marked === 1""")
        assert "bad" in (page.get_attribute('[data-queue="support"]', "class") or "")
        assert page.locator('tr[data-call="c2"]').count() == 0
        assert page.locator('tr[data-agent="anna"]').count() == 1
        # the live figures carry numbers /metrics would show (filtered: the queue's only)
        shown = page_metrics(page)
        assert shown['ivr_queue_callers_waiting{queue="support"}'] == 4
        assert shown['ivr_queue_longest_wait_seconds{queue="support"}'] == 31
        page.click('button[data-action="listen"][data-agent="anna"]')
        page.wait_for_selector('#supervise-result[data-ok="1"]')
        assert "anna" in page.inner_text("#supervise-result")
        # the switchboard's answer to laura's command, from the view
        v = view(now + 2, waiting=4, longest=31.0)
        v["notices"] = {"laura": {"seq": 7, "text": "listen of anna: your phone rings",
                                  "ok": True},
                        "anna": {"seq": 8, "text": "not for the wallboard", "ok": True}}
        kit.publish(v)
        page.wait_for_function("() => document.querySelector('#supervise-result')"
                               ".textContent.includes('your phone rings')")
        supervise_sent: Any = kit.posted[-1]
        assert isinstance(supervise_sent, Supervise)
        page.click('button[data-action="barge"][data-agent="marco"]', force=True)
        assert page.is_disabled('button[data-action="barge"][data-agent="marco"]')
        page.click('button[data-command="logout"][data-agent="marco"]')
        page.wait_for_function("() => document.querySelector('#supervise-result')"
                               ".textContent.includes('marco')")
        assert kit.posted[-1] == AgentCommand("marco", "logout", "", "console sara@127.0.0.1")
        tab.shot("wallboard", tmp_path, full_page=True)
        tv = Tab.open(browser, kit.url, viewport={"width": 1920, "height": 1080})
        tv.login("boss", PASSWORD)
        tv.page.goto("/wallboard?tv=1")
        tv.page.wait_for_selector('[data-queue="sales"]')
        assert not tv.page.is_visible("header.top")
        tv.shot("wallboard-tv", tmp_path)
        errors = tab.errors + tv.errors
        tab.close()
        tv.close()
    assert not errors


# -- the loop's own view and snapshot --------------------------------------------------------------
CORE_FLOW = """\
flow: wb
languages: [en]
start: support
nodes:
  support: {type: queue, queue: support}
"""


def test_the_loops_view_and_metrics_snapshot_show_the_same_figures(tmp_path: Path) -> None:
    import itertools

    from ivr.driver.core import Core
    from ivr.flow import load_flow
    from ivr.metrics import Metrics
    from routing.acd import AGENT_STATES
    from tests.driver_bench import Bench, files_for

    assert set(wallboard.STATES) == set(AGENT_STATES)
    (tmp_path / "ivr.yaml").write_text(
        "sip: {listen: 127.0.0.1:5999}\ntrunks: {gw: {sources: [192.0.2.1], lines: 20}}\n"
        "agents:\n  anna: {uri: \"sip:anna@192.0.2.10\"}\n"
        "  marco: {uri: \"sip:marco@192.0.2.11\"}\n  luca: {uri: \"sip:luca@192.0.2.12\"}\n"
        "queues:\n  support: {agents: [anna, marco]}\n  sales: {agents: [luca]}\n"
        "supervisors:\n  laura: {uri: \"sip:laura@192.0.2.20\", queues: [support]}\n"
        "flow: flow.yaml\nstore: calls.db\n")
    (tmp_path / "flow.yaml").write_text(CORE_FLOW)
    config = load_config(tmp_path / "ivr.yaml")
    flow = load_flow(tmp_path / "flow.yaml", known_queues=config.queues)
    ids = itertools.count(1)
    bench = Bench(Core(config, flow, files_for=files_for, music_on_hold="moh.wav", now=0.0,
                       wall_offset=time.time(), new_id=lambda: f"c{next(ids)}"))
    for i in range(3):
        bench.incoming(caller=f"06555000{i}")
    bench.tick(1.0)
    ringing = bench.ringing()
    assert "anna" in ringing, ringing
    bench.answer(ringing["anna"])
    bench.tick(6.0)
    view = bench.core.console_view(bench.now)
    metrics = Metrics(CollectorRegistry(), process=False)
    metrics.publish(bench.core.snapshot(bench.now))
    samples = {}
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, _, number = line.rpartition(" ")
            samples[name] = float(number)
    k = start_console(tmp_path / "console", config, users=(("boss", "admin", ""),),
                      metrics=metrics)
    try:
        k.console.accounts.add_user("sara", PASSWORD, "supervisor", supervisor="laura")
        k.console.hub.publish(view)
        boss = signed_in(k, "boss")
        page = Page(boss.get("/wallboard").body).root
        tagged = page.find(data_metric="*")
        assert len(tagged) >= 8
        for node in tagged:
            name = node.attrs["data-metric"]
            assert name in samples, name
            assert samples[name] == pytest.approx(float(node.attrs["data-value"])), name
        assert figure(page, "support", "waiting").attrs["data-value"] == "2"
        assert agent_row(page, "anna").one(data_field="state").attrs["data-value"] == "on_call"
        anna_listen = [b for b in page.find(data_action="listen")
                       if b.attrs["data-agent"] == "anna"]
        assert "disabled" not in anna_listen[0].attrs
        sara = signed_in(k, "sara")
        sara.get("/wallboard")
        assert sara.api("POST", "/wallboard/supervise",
                        {"agent": "anna", "mode": "listen"}).status == 200
        assert sara.api("POST", "/wallboard/supervise",
                        {"agent": "marco", "mode": "listen"}).status == 409
        sent: Any = k.posted[-1]
        assert sent == Supervise("laura", "anna", "listen", "console sara@127.0.0.1")
        # what was posted is what the loop takes: it calls laura's phone
        effects = bench.send(sent)
        assert any("laura" in str(fx) for fx in effects), effects
    finally:
        k.stop()


def test_every_word_is_in_italian_and_english(kit: Kit) -> None:
    from ivr.console.i18n import MESSAGES

    english = {k for k in MESSAGES["en"] if k.startswith("wb.")}
    italian = {k for k in MESSAGES["it"] if k.startswith("wb.")}
    assert english == italian
    assert len(english) > 40
    kit.publish(view(time.time()))
    browser = signed_in(kit, "boss")
    for lang in ("it", "en"):
        browser.post("/lang", {"csrf": browser.csrf, "lang": lang, "back": "/wallboard"})
        page = Page(browser.get("/wallboard").body).root
        text = page.full_text()
        assert "wb." not in text
        assert ("Cruscotto" if lang == "it" else "Wallboard") in text
