"""The agent's desk (/agent): a real console server, a real store and real accounts; the loop's
view is published by hand and the commands the page sends are read from the inbox."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ivr.config import load_config
from ivr.console.i18n import MESSAGES
from ivr.console.web import SESSION_COOKIE
from ivr.driver.messages import AgentCommand, ConsoleTransfer, ConsoleWrapUp
from ivr.store import CallRecord, CallStore
from ivr.tickets import Ticket, TicketEntry
from tests.consolekit import Browser, Kit, start_console

ROOT = Path(__file__).resolve().parent.parent
YAML = f"""\
sip: {{listen: 127.0.0.1:5080}}
trunks: {{gw: {{sources: [127.0.0.1]}}}}
flow: {ROOT / "flows" / "demo.yaml"}
agents:
  anna: {{uri: "sip:anna@127.0.0.1:5070"}}
  marco: {{uri: "sip:marco@127.0.0.1:5072"}}
  luca: {{uri: "sip:luca@127.0.0.1:5076"}}
queues:
  support: {{agents: [anna, marco], script: "Support - {{caller}}"}}
  sales: {{agents: [marco, luca]}}
extensions:
  "201": {{uri: "sip:reception@127.0.0.1:5090"}}
dial_out:
  - {{pattern: "^0[1-9][0-9]{{5,9}}$", uri: "sip:{{number}}@127.0.0.1:5099", agent_transfers: true}}
  - {{pattern: "^3[0-9]{{8,9}}$", uri: "sip:{{number}}@127.0.0.1:5099", callbacks: true}}
dispositions:
  "1": {{label: resolved, resolves: true}}
  "2": {{label: callback}}
"""
ANNA_CALLER = "+390211111"
MARCO_CALLER = "+390299999"


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    tmp = tmp_path_factory.mktemp("agent")
    (tmp / "ivr.yaml").write_text(YAML)
    config = load_config(tmp / "ivr.yaml")
    k = start_console(tmp, config, users=(("anna", "agent", "anna"), ("marco", "agent", "marco"),
                                          ("sup", "supervisor", ""), ("boss", "admin", "luca")),
                      lang="en")
    _fill_store(k.console.store_path)
    yield k
    k.stop()


@pytest.fixture
def kit_clean(kit: Kit) -> Kit:
    kit.posted.clear()
    return kit


def _fill_store(path: Path) -> None:
    now = time.time()
    t = time.localtime(now)
    midnight = time.mktime((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0, 0, 0, -1))
    today = max(now - 60, midnight + 1)  # "today" even a minute after midnight
    store = CallStore(path)
    for i in range(12):  # 12 earlier calls from anna's caller: the desk shows the last 10
        rec = CallRecord(f"old{i:02d}", now - 3600 * (i + 1) - 86400, caller=ANNA_CALLER,
                         queue="support", agent="marco", outcome="answered",
                         disposition="2", note=f"note {i}")
        store.save(rec)
    store.save(CallRecord("other1", now - 500, caller=MARCO_CALLER, queue="sales",
                          agent="marco", outcome="answered", note="marco's own"))
    store.save(CallRecord("today1", today, caller="+390255555", queue="support",
                          agent="anna", outcome="answered", disposition="1",
                          note="printer fixed", talk_seconds=42.0))
    store.save(CallRecord("c1", today + 30, caller=ANNA_CALLER, queue="support", agent="anna"))
    store.save_ticket(Ticket("7", ANNA_CALLER, "open", 2, "support", "marco", now - 90000,
                             now - 3600, None,
                             (TicketEntry(now - 90000, "call", "old11", "support", "marco", 1),
                              TicketEntry(now - 3600, "escalate", "old00", "support", "marco",
                                          2, note="needs level 2")), 2))
    store.save_ticket(Ticket("8", MARCO_CALLER, "open", 1, "sales", "marco", now - 500,
                             now - 500, None, (), 1))
    assert store.close() == 0


def view(anna: str = "on_call", marco: str = "on_call", *, offered: bool = False,
         notice: dict[str, Any] | None = None, anna_call: str | None = "c1",
         hung_up: bool = False) -> dict[str, Any]:
    """The loop's view (ivr/driver/console.py); *hung_up*: anna's caller hung up, their call
    is among the ended ones (her wrap-up)."""
    now = time.time()

    def agent(name: str, state: str, call: str | None, queues: list[str]) -> dict[str, Any]:
        return {"name": name, "state": state, "since": now - 65, "pause_reason":
                "lunch" if state == "paused" else "", "queues": queues, "team": None,
                "call_id": call if state in ("ringing", "on_call", "wrap_up") else None,
                "offered": offered and name == "anna", "wrapup_until": None, "answered": 3,
                "talk_seconds": 120.0, "notice": notice if name == "anna" else None}

    def call(cid: str, caller: str, queue: str, who: str) -> dict[str, Any]:
        return {"call_id": cid, "caller": caller, "called": "0200", "trunk": "gw",
                "phase": "connected", "started": now - 30, "queue": queue,
                "queued_at": now - 20, "wait": 12.0, "level": 1,
                "path": ["welcome", "menu", "support"], "keys": "2",
                "variables": {"account": "A-1234", "caller": caller, "call_id": cid,
                              "language": "it", "ticket_status": ""}, "agent": who, "ticket": "",
                "script": f"Support - {caller}", "recorded": False,
                "supervisors": ["laura"], "notes": []}

    calls = {"c1": call("c1", ANNA_CALLER, "support", "anna"),
             "c2": call("c2", MARCO_CALLER, "sales", "marco")}
    ended = {"c1": dict(calls.pop("c1"), phase="ended")} if hung_up else {}
    return {"agents": {"anna": agent("anna", anna, anna_call, ["support"]),
                       "marco": agent("marco", marco, "c2", ["support", "sales"])},
            "calls": calls, "ended": ended,
            "queues": {"support": {"waiting": 4, "longest_wait": 33.0, "agents": {}},
                       "sales": {"waiting": 1, "longest_wait": 5.0, "agents": {}}},
            "supervisions": []}


def signed_in(kit: Kit, name: str) -> Browser:
    b = Browser(kit.url)
    b.login(name)
    page = b.get("/agent") if name in ("anna", "marco", "boss") else b.get("/")
    assert b.csrf, page.body
    return b


# -- the page ------------------------------------------------------------------------------------
def test_page_for_the_agent_and_an_admin_with_an_agent_only(kit_clean: Kit) -> None:
    kit = kit_clean
    kit.publish(view(anna="on_call"))
    page = signed_in(kit, "anna").get("/agent")
    assert page.status == 200
    assert 'id="agent-state"' in page.body
    assert 'data-state="on_call"' in page.body
    assert 'data-call-id="c1"' in page.body
    assert ANNA_CALLER in page.body
    assert MARCO_CALLER not in page.body
    for anchor in ('id="pause-reason"', 'id="btn-login"', 'id="btn-logout"', 'id="btn-pause"',
                   'id="btn-unpause"', 'id="wrapup-form"', 'name="disposition"',
                   'name="note"', 'name="ticket"', 'id="wrapup-save"', 'id="notice"',
                   'id="transfer-target"', 'id="btn-transfer"', 'id="my-calls"',
                   'value="lunch"', '<option value="1">1 · resolved', 'value="201"',
                   'value="escalate"', 'src="/static/agent.js"'):
        assert anchor in page.body, anchor
    assert "<script>" not in page.body
    assert "style=" not in page.body
    assert ">agent." not in page.body  # every word is translated

    boss = signed_in(kit, "boss").get("/agent")  # an admin tied to the agent luca
    assert boss.status == 200
    assert "luca" in boss.body
    assert ANNA_CALLER not in boss.body

    sup = signed_in(kit, "sup")
    assert sup.get("/agent").status == 403
    assert sup.get("/agent/context?call_id=c1").status == 403
    assert sup.api("POST", "/agent/state", {"command": "login"}).status == 403

    anonymous = Browser(kit.url, follow=False).get("/agent")
    assert anonymous.status == 303
    assert anonymous.headers["Location"].startswith("/login?next=/agent")
    assert kit.posted == []


def test_the_page_speaks_italian(kit_clean: Kit) -> None:
    kit_clean.publish(view(anna="paused"))
    b = signed_in(kit_clean, "anna")
    b.post("/lang", {"csrf": b.csrf, "lang": "it", "back": "/agent"})
    page = b.get("/agent")
    assert "in pausa" in page.body
    assert "pranzo" in page.body
    assert "Le mie chiamate di oggi" in page.body


def test_every_word_of_the_desk_in_both_languages() -> None:
    import ivr.console.pages.agent  # noqa: F401 - adds its words

    english = {k for k in MESSAGES["en"] if k.startswith("agent.")}
    italian = {k for k in MESSAGES["it"] if k.startswith("agent.")}
    assert english == italian
    assert len(english) > 60


# -- state ---------------------------------------------------------------------------------------
def test_state_buttons_send_the_accounts_own_agent(kit_clean: Kit) -> None:
    kit = kit_clean
    anna = signed_in(kit, "anna")
    kit.publish(view(anna="logged_out"))
    ok = anna.api("POST", "/agent/state", {"command": "login", "agent": "marco"})
    assert ok.status == 200, ok.body
    assert len(kit.posted) == 1
    cmd = kit.posted[0]
    assert isinstance(cmd, AgentCommand)
    assert (cmd.agent, cmd.command, cmd.reason) == ("anna", "login", "")
    assert cmd.source.startswith("console anna@127.0.0.1")

    refused = anna.api("POST", "/agent/state", {"command": "pause", "reason": "lunch"})
    assert refused.status == 409
    assert "available" in refused.json()["error"]
    assert anna.api("POST", "/agent/state", {"command": "unpause"}).status == 409
    assert anna.api("POST", "/agent/state", {"command": "logout"}).status == 409
    assert len(kit.posted) == 1

    kit.publish(view(anna="available"))
    assert anna.api("POST", "/agent/state", {"command": "pause", "reason": "nap"}).status == 400
    assert anna.api("POST", "/agent/state", {"command": "reboot"}).status == 400
    ok = anna.api("POST", "/agent/state", {"command": "pause", "reason": "lunch",
                                           "agent": "marco"})
    assert ok.status == 200
    assert kit.posted[-1] == AgentCommand("anna", "pause", "lunch", kit.posted[-1].source)
    assert anna.api("POST", "/agent/state", {"command": "login"}).status == 409

    kit.publish(view(anna="paused"))
    assert anna.api("POST", "/agent/state", {"command": "unpause"}).status == 200
    assert anna.api("POST", "/agent/state", {"command": "logout"}).status == 200
    kit.publish(view(anna="on_call"))
    assert anna.api("POST", "/agent/state", {"command": "logout"}).status == 409
    assert [(c.agent, c.command) for c in kit.posted] == [
        ("anna", "login"), ("anna", "pause"), ("anna", "unpause"), ("anna", "logout")]

    audit = kit.console.accounts.audit_log(user="anna")
    actions = [(e["action"], e["target"]) for e in audit if e["action"].startswith("agent.")]
    assert actions[:4] == [("agent.logout", "anna"), ("agent.unpause", "anna"),
                           ("agent.pause", "anna"), ("agent.login", "anna")]
    assert next(e for e in audit if e["action"] == "agent.pause")["detail"] == \
        {"reason": "lunch"}


def test_a_form_post_without_csrf_is_refused(kit_clean: Kit) -> None:
    kit = kit_clean
    kit.publish(view(anna="logged_out"))
    anna = signed_in(kit, "anna")
    bare = anna.request("POST", "/agent/state", json_body={"command": "login"})
    assert bare.status == 403
    wrong = anna.request("POST", "/agent/wrapup", json_body={"call_id": "c1"},
                         headers={"X-CSRF-Token": "not-the-token"})
    assert wrong.status == 403
    form = anna.post("/agent/state", {"command": "login"})
    assert form.status == 403
    assert kit.posted == []
    assert anna.post("/agent/state", {"command": "login", "csrf": anna.csrf}).status == 200
    assert kit.posted == [AgentCommand("anna", "login", "", kit.posted[0].source)]


# -- wrap-up and transfer ------------------------------------------------------------------------
def test_wrapup_posts_the_fields_and_is_audited(kit_clean: Kit) -> None:
    kit = kit_clean
    anna = signed_in(kit, "anna")
    kit.publish(view(anna="wrap_up"))
    body = {"call_id": "c1", "disposition": "1", "note": "  reset the router  ",
            "ticket": "resolve", "agent": "marco"}
    ok = anna.api("POST", "/agent/wrapup", body)
    assert ok.status == 200, ok.body
    assert kit.posted == [ConsoleWrapUp("anna", "c1", "1", "reset the router", "resolve",
                                        kit.posted[0].source)]
    entry = next(e for e in kit.console.accounts.audit_log(user="anna")
                 if e["action"] == "agent.wrapup")
    assert entry["target"] == "c1"
    assert entry["detail"]["disposition"] == "1"
    assert entry["detail"]["ticket"] == "resolve"
    assert entry["detail"]["note"] == "reset the router"

    for bad, status in ((dict(body, call_id="c2"), 409), (dict(body, call_id=""), 409),
                        (dict(body, disposition="9"), 400), (dict(body, ticket="close"), 400),
                        (dict(body, note="x" * 2001), 400)):
        answer = anna.api("POST", "/agent/wrapup", bad)
        assert answer.status == status, (bad, answer.body)
        assert answer.json()["error"]
    kit.publish(view(anna="on_call"))  # during the call: saved, the call goes on
    assert anna.api("POST", "/agent/wrapup", dict(body, ticket="escalate")).status == 200
    kit.publish(view(anna="available", anna_call=None))
    assert anna.api("POST", "/agent/wrapup", body).status == 409
    assert [(m.call_id, m.ticket) for m in kit.posted] == [("c1", "resolve"), ("c1", "escalate")]


def test_transfer_posts_the_target(kit_clean: Kit) -> None:
    kit = kit_clean
    anna = signed_in(kit, "anna")
    kit.publish(view(anna="on_call"))
    for target in ("201", "sales", "0612345678"):
        answer = anna.api("POST", "/agent/transfer", {"target": target, "agent": "marco"})
        assert answer.status == 200, answer.body
    assert kit.posted == [ConsoleTransfer("anna", t, kit.posted[0].source)
                          for t in ("201", "sales", "0612345678")]
    assert anna.api("POST", "/agent/transfer", {"target": "sip:evil@x"}).status == 400
    assert anna.api("POST", "/agent/transfer", {"target": "3331234567"}).status == 400
    assert anna.api("POST", "/agent/transfer", {"target": "support2"}).status == 400
    assert anna.api("POST", "/agent/transfer", {"target": ""}).status == 400
    kit.publish(view(anna="wrap_up"))
    assert anna.api("POST", "/agent/transfer", {"target": "201"}).status == 409
    assert len(kit.posted) == 3
    audit = [e for e in kit.console.accounts.audit_log(user="anna")
             if e["action"] == "agent.transfer"]
    assert [e["detail"]["target"] for e in audit[:3]] == ["0612345678", "sales", "201"]
    assert audit[0]["target"] == "c1"


# -- the live stream -----------------------------------------------------------------------------
class Events:
    """An open Server-Sent Events stream: :meth:`next` is the next data object (deadline)."""

    def __init__(self, kit: Kit, browser: Browser, path: str):
        cookie = next(c.value for c in browser.jar if c.name == SESSION_COOKIE)
        url = urlsplit(kit.url)
        self.conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
        self.conn.request("GET", path, headers={"Cookie": f"{SESSION_COOKIE}={cookie}",
                                                "Accept": "text/event-stream"})
        self.res = self.conn.getresponse()
        assert self.res.status == 200
        assert self.res.headers["Content-Type"].startswith("text/event-stream")

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.res.readline().decode()
            if line.startswith("data: "):
                data: dict[str, Any] = json.loads(line[6:])
                return data
        raise AssertionError("no event before the deadline")

    def close(self) -> None:
        self.conn.close()


def test_live_stream_is_this_agents_slice_only(kit_clean: Kit) -> None:
    kit = kit_clean
    kit.publish(view(anna="ringing", offered=True))
    anna = Events(kit, signed_in(kit, "anna"), "/agent/live")
    marco = Events(kit, signed_in(kit, "marco"), "/agent/live")
    try:
        first = anna.next()
        text = json.dumps(first)
        assert first["agent"]["state"] == "ringing"
        assert first["agent"]["offered"] is True
        assert first["call"]["call_id"] == "c1"
        assert first["call"]["caller"] == ANNA_CALLER
        assert first["call"]["path"] == ["welcome", "menu", "support"]
        assert first["call"]["variables"] == {"account": "A-1234", "language": "it"}
        assert first["call"]["script"] == f"Support - {ANNA_CALLER}"
        assert first["queues"] == {"support": {"waiting": 4, "longest_wait": 33.0}}
        assert "c2" not in text
        assert MARCO_CALLER not in text
        assert "marco" not in text
        assert "laura" not in text  # who supervises the call is not the agent's to see

        other = marco.next()
        assert other["call"]["call_id"] == "c2"
        assert "c1" not in json.dumps(other)
        assert ANNA_CALLER not in json.dumps(other)

        notice = {"seq": 5, "text": "Saved: resolved", "ok": True}
        kit.publish(view(anna="wrap_up", notice=notice))
        second = anna.next()
        assert second["agent"]["state"] == "wrap_up"
        assert second["agent"]["notice"] == notice
        assert "c2" not in json.dumps(second)

        kit.publish(view(anna="wrap_up", hung_up=True))  # her call is among the ended ones
        third = anna.next()
        assert third["call"]["call_id"] == "c1"
        assert third["call"]["phase"] == "ended"
        assert third["call"]["caller"] == ANNA_CALLER
    finally:
        anna.close()
        marco.close()


# -- the call's context and the calls today -------------------------------------------------------
def test_context_only_for_the_agents_own_call(kit_clean: Kit) -> None:
    kit = kit_clean
    kit.publish(view(anna="ringing", offered=True))
    anna = signed_in(kit, "anna")
    answer = anna.get("/agent/context?call_id=c1")
    assert answer.status == 200, answer.body
    data = answer.json()
    assert data["caller"] == ANNA_CALLER
    assert data["ticket"]["number"] == "7"
    assert data["ticket"]["level"] == 2
    assert [e["kind"] for e in data["ticket"]["history"]] == ["call", "escalate"]
    assert data["ticket"]["history"][1]["note"] == "needs level 2"
    ids = [c["call_id"] for c in data["history"]]
    assert ids == [f"old{i:02d}" for i in range(10)]  # newest first, this call not among them
    assert data["history"][0]["note"] == "note 0"
    assert data["history"][0]["disposition"] == "2"
    assert "other1" not in answer.body
    assert MARCO_CALLER not in answer.body

    assert anna.get("/agent/context?call_id=c2").status == 403  # marco's call
    assert anna.get("/agent/context?call_id=other1").status == 403  # an old call
    assert anna.get("/agent/context").status == 403
    kit.publish(view(anna="wrap_up", hung_up=True))  # the wrap-up's call still is hers
    after = anna.get("/agent/context?call_id=c1")
    assert after.status == 200
    assert after.json()["caller"] == ANNA_CALLER
    kit.publish(view(anna="available", anna_call=None))
    assert anna.get("/agent/context?call_id=c1").status == 403

    marco = signed_in(kit, "marco")
    kit.publish(view(anna="on_call"))
    assert marco.get("/agent/context?call_id=c1").status == 403
    mine = marco.get("/agent/context?call_id=c2").json()
    assert mine["ticket"]["number"] == "8"
    assert [c["call_id"] for c in mine["history"]] == ["other1"]


def test_my_calls_today(kit_clean: Kit) -> None:
    kit = kit_clean
    kit.publish(view(anna="available", anna_call=None))
    anna = signed_in(kit, "anna")
    calls = anna.get("/agent/calls").json()["calls"]
    assert [c["call_id"] for c in calls] == ["c1", "today1"]
    assert calls[1]["note"] == "printer fixed"
    assert calls[1]["disposition"] == "1"
    page = anna.get("/agent")
    assert 'data-call-id="today1"' in page.body
    assert "printer fixed" in page.body
    assert "other1" not in page.body
    assert "old00" not in page.body
    marco = signed_in(kit, "marco").get("/agent/calls").json()["calls"]
    assert "today1" not in str(marco)
    assert not any(c["call_id"].startswith("old")
                                                   for c in marco)
