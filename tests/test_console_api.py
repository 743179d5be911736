"""The console's JSON API over real HTTP: a real server, a real store file with call records,
queue events and tickets, real accounts and API tokens. Answers are checked against the
OpenAPI description (ivr/console/openapi.yaml) with jsonschema, and the description against the
routes the app really has."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from ivr.config import load_config
from ivr.console.pages.api import SPEC_PATH
from ivr.driver.core import Core
from ivr.driver.messages import AgentCommand, CallNote, Supervise
from ivr.flow import load_flow
from ivr.store import CallRecord, CallStore, QueueEventRow
from ivr.tickets import Ticket, TicketEntry
from tests.consolekit import Browser, Kit, start_console
from tests.driver_bench import Bench, files_for

T0 = 1_790_000_000.0
USERS = (("anna", "agent", "anna"), ("bruno", "agent", "bruno"), ("sara", "supervisor", ""),
         ("root", "admin", ""), ("tina", "team_leader", ""))
SPEC = yaml.safe_load(SPEC_PATH.read_text())
REGISTRY = Registry().with_resource(
    "urn:centralino-api", Resource.from_contents(SPEC, default_specification=DRAFT202012))


def check(schema: str, data: Any) -> None:
    """*data* is valid for the description's components/schemas/*schema*."""
    validator = Draft202012Validator(
        {"$ref": f"urn:centralino-api#/components/schemas/{schema}"}, registry=REGISTRY)
    errors = sorted(validator.iter_errors(data), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def check_response(path: str, method: str, status: int, data: Any) -> None:
    """*data* is valid for the response schema the description gives *path*, *method*,
    *status*."""
    def escape(part: str) -> str:
        return part.replace("~", "~0").replace("/", "~1")

    pointer = f"/paths/{escape(path)}/{method}/responses/{status}"
    answer = SPEC["paths"][path][method]["responses"][str(status)]
    if "$ref" in answer:
        pointer = answer["$ref"][1:]
    validator = Draft202012Validator(
        {"$ref": f"urn:centralino-api#{pointer}/content/application~1json/schema"},
        registry=REGISTRY)
    errors = sorted(validator.iter_errors(data), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def seed(kit: Kit) -> None:
    """Three calls (anna's, bruno's, one abandoned), anna's queue events, three tickets."""
    store = CallStore(kit.console.store_path)
    try:
        store.save(CallRecord(
            "c1", T0, caller="+390211", called="100", trunk="main", flow="main",
            answered_at=T0, queued_at=T0 + 5, connected_at=T0 + 20, ended_at=T0 + 80,
            ivr_path="menu[1] > support", queue="support", agent="anna", wait_seconds=15.0,
            talk_seconds=60.0, outcome="answered", end_reason="caller hung up", ticket="1001",
            ticket_seq=1, disposition="solved", recording_path="calls/c1.wav",
            note="[10:00 anna] wants a refund"))
        store.save(CallRecord(
            "c2", T0 + 100, caller="+390222", called="100", queue="sales", agent="bruno",
            answered_at=T0 + 100, connected_at=T0 + 110, ended_at=T0 + 130,
            outcome="answered", ticket="1002", ticket_seq=2))
        store.save(CallRecord("c3", T0 + 200, caller="+390211", called="100", queue="support",
                              queued_at=T0 + 205, ended_at=T0 + 230, outcome="abandoned"))
        store.add_events([
            QueueEventRow(T0 + 5, "enter", "support", "c1", "", {"level": 1}),
            QueueEventRow(T0 + 20, "connect", "support", "c1", "anna", {}),
            QueueEventRow(T0 + 110, "connect", "sales", "c2", "bruno", {})])
        store.save_ticket(Ticket(
            "1001", "+390211", "resolved", 1, "support", "anna", T0 + 20, T0 + 80, T0 + 80,
            (TicketEntry(T0 + 20, "call", "c1", "support", "anna", 1),
             TicketEntry(T0 + 80, "disposition", "c1", "support", "anna", 1, "solved")), 1))
        # anna took its first call, bruno has it now
        store.save_ticket(Ticket(
            "1002", "+390222", "escalated", 2, "sales", "bruno", T0 + 50, T0 + 110, None,
            (TicketEntry(T0 + 50, "call", "c0", "sales", "anna", 1),
             TicketEntry(T0 + 60, "escalate", "c0", "sales", "", 2),
             TicketEntry(T0 + 110, "call", "c2", "sales", "bruno", 2)), 2))
        store.save_ticket(Ticket(
            "1003", "+390233", "open", 1, "sales", "bruno", T0 + 300, T0 + 300, None,
            (TicketEntry(T0 + 300, "call", "c9", "sales", "bruno", 1),), 1))
    finally:
        store.close()


def agent_view(name: str, state: str, call_id: str | None = None) -> dict[str, Any]:
    return {"name": name, "state": state, "since": T0, "pause_reason": "", "queues": ["support"]
            if name == "anna" else ["sales"], "team": "", "call_id": call_id, "offered": False,
            "wrapup_until": None, "answered": 1, "talk_seconds": 60.0, "notice": None,
            "last_call_id": None}


def call_view(call_id: str, agent: str, queue: str, phase: str = "connected") -> dict[str, Any]:
    return {"call_id": call_id, "caller": "+3902999", "called": "100", "trunk": "main",
            "phase": phase, "started": T0, "queue": queue, "queued_at": T0 + 1, "wait": 4.0,
            "level": 1, "path": ["menu", queue], "keys": "1", "variables": {"account": "77"},
            "agent": agent, "ticket": "", "script": "", "recorded": False, "supervisors": [],
            "notes": []}


LIVE = {
    "agents": {"anna": agent_view("anna", "on_call", "L1"),
               "bruno": agent_view("bruno", "wrap_up", "L2")},
    "calls": {"L1": call_view("L1", "anna", "support"),
              "L3": call_view("L3", "", "sales", "queued")},
    "ended": {"L2": call_view("L2", "bruno", "sales", "ended")},
    "queues": {"support": {"waiting": 0, "longest_wait": 0.0, "agents": {"on_call": 1}},
               "sales": {"waiting": 1, "longest_wait": 12.5, "agents": {"wrap_up": 1}}},
    "supervisions": [{"supervisor": "sara", "agent": "anna", "call_id": "L1", "mode": "listen",
                      "phase": "joined"}],
    "notices": {"anna": {"seq": 3, "text": "paused", "ok": True},
                "api anna@127.0.0.1": {"seq": 5, "text": "note added", "ok": True},
                "api bruno@127.0.0.1": {"seq": 6, "text": "note added", "ok": True},
                "console sara@127.0.0.1": {"seq": 4, "text": "listening", "ok": True}},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    kit = start_console(tmp_path_factory.mktemp("api"), users=USERS)
    seed(kit)
    yield kit
    kit.stop()


@pytest.fixture
def kit(server):
    """The module's server (the records only read), with the live view as published and
    nothing posted yet."""
    server.posted.clear()
    server.publish(LIVE)
    return server


def as_user(kit: Kit, name: str) -> Browser:
    browser = Browser(kit.url)
    assert browser.login(name).status == 200
    return browser


class Token:
    def __init__(self, kit: Kit, name: str):
        self.base = kit.url
        self.token = kit.console.accounts.new_token(name, "crm", time.time())

    def __call__(self, method: str, path: str, body: Any = None) -> Any:
        return Browser(self.base).request(
            method, path, json_body=body, headers={"Authorization": f"Bearer {self.token}"})


def ids(answer: Any) -> list[str]:
    assert answer.status == 200, answer.body
    return [c["call_id"] for c in answer.json()["calls"]]


# -- call records ------------------------------------------------------------------------------
def test_calls_newest_first_with_the_fields_a_crm_needs(kit):
    api = Token(kit, "root")
    answer = api("GET", "/api/calls")
    assert answer.headers["Content-Type"].startswith("application/json")
    check_response("/api/calls", "get", 200, answer.json())
    assert ids(answer) == ["c3", "c2", "c1"]
    c1 = answer.json()["calls"][2]
    assert {k: c1[k] for k in (
        "caller", "queue", "agent", "outcome", "disposition", "ticket", "note", "notes",
        "recording", "voicemail", "wait_seconds", "talk_seconds", "ivr_path")} == {
        "caller": "+390211", "queue": "support", "agent": "anna", "outcome": "answered",
        "disposition": "solved", "ticket": "1001", "note": "[10:00 anna] wants a refund",
        "notes": ["[10:00 anna] wants a refund"], "recording": True, "voicemail": False,
        "wait_seconds": 15.0, "talk_seconds": 60.0, "ivr_path": "menu[1] > support"}
    assert "recording_path" not in c1  # whether there is one, not where the box keeps it
    assert answer.json()["calls"][0]["recording"] is False


def test_calls_filters(kit):
    api = Token(kit, "sara")
    assert ids(api("GET", "/api/calls?queue=support")) == ["c3", "c1"]
    assert ids(api("GET", "/api/calls?agent=bruno")) == ["c2"]
    assert ids(api("GET", "/api/calls?caller=%2B390211")) == ["c3", "c1"]
    assert ids(api("GET", f"/api/calls?since={T0 + 100}")) == ["c3", "c2"]
    assert ids(api("GET", f"/api/calls?until={T0 + 100}")) == ["c1"]
    assert ids(api("GET", f"/api/calls?since={T0}&until={T0 + 150}&queue=sales")) == ["c2"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0 + 150))
    assert ids(api("GET", f"/api/calls?since={iso}")) == ["c3"]


def test_calls_pages_follow_next_without_gaps_or_repeats(kit):
    api = Token(kit, "root")
    seen: list[str] = []
    url = "/api/calls?limit=1"
    while True:
        answer = api("GET", url)
        seen += ids(answer)
        following = answer.json()["next"]
        if following is None:
            break
        url = f"/api/calls?limit=1&before={following}"
    assert seen == ["c3", "c2", "c1"]
    two = api("GET", "/api/calls?limit=2").json()
    assert [c["call_id"] for c in two["calls"]] == ["c3", "c2"]
    assert two["next"] == "c2"
    assert api("GET", "/api/calls?limit=3").json()["next"] is None


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=ten", "since=yesterday",
                                   "until=nan", "before=nosuchcall"])
def test_bad_parameters_are_400_with_a_json_error(kit, query):
    answer = Token(kit, "root")("GET", f"/api/calls?{query}")
    assert answer.status == 400
    check_response("/api/calls", "get", 400, answer.json())
    assert answer.json()["error"]


def test_one_call_with_its_queue_events(kit):
    api = Token(kit, "tina")
    answer = api("GET", "/api/calls/c1")
    assert answer.status == 200
    data = answer.json()
    check_response("/api/calls/{call_id}", "get", 200, data)
    assert data["call_id"] == "c1"
    assert [(e["kind"], e["agent"], e["detail"]) for e in data["events"]] == [
        ("enter", "", {"level": 1}), ("connect", "anna", {})]
    missing = api("GET", "/api/calls/nosuch")
    assert missing.status == 404
    assert "nosuch" in missing.json()["error"]


def test_an_agent_sees_only_their_own_calls(kit):
    anna = as_user(kit, "anna")
    assert ids(anna.get("/api/calls")) == ["c1"]
    assert ids(anna.get("/api/calls?agent=bruno")) == []
    assert ids(anna.get("/api/calls?queue=sales")) == []
    assert anna.get("/api/calls/c1").status == 200
    refused = anna.get("/api/calls/c2")
    assert refused.status == 403
    assert refused.json() == {"error": "this call is not yours"}
    assert anna.get("/api/calls/c3").status == 403  # nobody's call is not theirs either
    token = Token(kit, "bruno")  # a token acts as its user
    assert ids(token("GET", "/api/calls")) == ["c2"]
    assert token("GET", "/api/calls/c1").status == 403


# -- tickets -----------------------------------------------------------------------------------
def tickets(answer: Any) -> list[str]:
    assert answer.status == 200, answer.body
    check_response("/api/tickets", "get", 200, answer.json())
    return [t["number"] for t in answer.json()["tickets"]]


def test_tickets_filters_pages_and_history(kit):
    api = Token(kit, "sara")
    assert tickets(api("GET", "/api/tickets")) == ["1003", "1002", "1001"]
    assert tickets(api("GET", "/api/tickets?status=open")) == ["1003"]
    assert tickets(api("GET", "/api/tickets?caller=%2B390211")) == ["1001"]
    page = api("GET", "/api/tickets?limit=2").json()
    assert page["next"] == "1002"
    assert tickets(api("GET", "/api/tickets?limit=2&before=1002")) == ["1001"]
    assert api("GET", "/api/tickets?status=lost").status == 400
    one = api("GET", "/api/tickets/1002")
    assert one.status == 200
    check_response("/api/tickets/{number}", "get", 200, one.json())
    assert [(h["kind"], h["agent"]) for h in one.json()["history"]] == [
        ("call", "anna"), ("escalate", ""), ("call", "bruno")]
    assert one.json()["status"] == "escalated"
    assert one.json()["level"] == 2
    assert api("GET", "/api/tickets/9999").status == 404


def test_an_agent_sees_only_the_tickets_they_worked_on(kit):
    anna = as_user(kit, "anna")
    assert tickets(anna.get("/api/tickets")) == ["1002", "1001"]  # 1002: she took its 1st call
    assert anna.get("/api/tickets/1002").status == 200
    refused = anna.get("/api/tickets/1003")
    assert refused.status == 403
    assert refused.json()["error"]
    bruno = Token(kit, "bruno")
    assert tickets(bruno("GET", "/api/tickets")) == ["1003", "1002"]
    assert bruno("GET", "/api/tickets/1001").status == 403


# -- notes on live calls -----------------------------------------------------------------------
def test_a_crm_notes_a_live_call_and_it_is_audited(kit):
    api = Token(kit, "root")
    answer = api("POST", "/api/calls/L1/notes", {"text": "VIP customer\nrenewal due"})
    assert answer.status == 202
    check_response("/api/calls/{call_id}/notes", "post", 202, answer.json())
    assert len(kit.posted) == 1
    note = kit.posted[0]
    assert isinstance(note, CallNote)
    assert (note.call_id, note.text, note.author) == ("L1", "VIP customer\nrenewal due", "root")
    assert note.source == answer.json()["notice"]
    assert note.source.startswith("api root@")
    entry = kit.console.accounts.audit_log(user="root")[0]
    assert (entry["action"], entry["target"], entry["detail"]) == (
        "call.note", "L1", {"text": "VIP customer\nrenewal due"})
    # a call in its agent's wrap-up may still be noted
    assert api("POST", "/api/calls/L2/notes", {"text": "called back"}).status == 202
    assert [p.call_id for p in kit.posted] == ["L1", "L2"]


def test_a_note_needs_a_live_call_and_a_text_of_at_most_2000(kit):
    api = Token(kit, "sara")
    gone = api("POST", "/api/calls/c1/notes", {"text": "too late"})
    assert gone.status == 404
    assert "not in progress" in gone.json()["error"]
    assert api("POST", "/api/calls/L1/notes", {"text": "x" * 2001}).status == 400
    assert api("POST", "/api/calls/L1/notes", {"text": "   "}).status == 400
    assert api("POST", "/api/calls/L1/notes", {"text": 12}).status == 400
    assert api("POST", "/api/calls/L1/notes", ["text"]).status == 400
    huge = api("POST", "/api/calls/L1/notes", {"text": "x" * 70_000})
    assert huge.status == 413
    assert huge.json()["error"] == "the body is too large"
    assert kit.posted == []
    assert api("POST", "/api/calls/L1/notes", {"text": "x" * 2000}).status == 202


def test_agents_note_only_their_own_call(kit):
    anna = as_user(kit, "anna")
    assert anna.api("POST", "/api/calls/L1/notes", {"text": "mine"}).status == 202
    assert anna.api("POST", "/api/calls/L2/notes", {"text": "bruno's"}).status == 403
    assert anna.api("POST", "/api/calls/L3/notes", {"text": "queued"}).status == 403
    assert Token(kit, "tina")("POST", "/api/calls/L1/notes", {"text": "tl"}).status == 403
    assert [(p.call_id, p.author) for p in kit.posted] == [("L1", "anna")]
    assert kit.posted[0].source.startswith("console anna@")


# -- agents' state -----------------------------------------------------------------------------
def test_agent_state_by_a_supervisor_or_the_agent_itself(kit):
    sara = Token(kit, "sara")
    answer = sara("POST", "/api/agents/bruno/state", {"command": "pause", "reason": "meeting"})
    assert answer.status == 202
    check_response("/api/agents/{name}/state", "post", 202, answer.json())
    anna = as_user(kit, "anna")
    assert anna.api("POST", "/api/agents/anna/state", {"command": "unpause"}).status == 202
    assert anna.api("POST", "/api/agents/bruno/state", {"command": "logout"}).status == 403
    assert Token(kit, "tina")("POST", "/api/agents/anna/state",
                              {"command": "login"}).status == 403
    assert [(c.agent, c.command, c.reason) for c in kit.posted] == [
        ("bruno", "pause", "meeting"), ("anna", "unpause", "")]
    assert all(isinstance(c, AgentCommand) for c in kit.posted)
    assert kit.posted[0].source.startswith("api sara@")
    entry = kit.console.accounts.audit_log(user="sara")[0]
    assert (entry["action"], entry["target"], entry["detail"]) == (
        "agent.pause", "bruno", {"reason": "meeting"})


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/agents/anna/state", {"command": "dance"}, 400),
    ("/api/agents/anna/state", {}, 400),
    ("/api/agents/anna/state", {"command": "pause", "reason": "r" * 101}, 400),
    ("/api/agents/nobody/state", {"command": "login"}, 404),
])
def test_agent_state_refusals(kit, path, body, status):
    answer = Token(kit, "root")("POST", path, body)
    assert answer.status == status
    assert answer.json()["error"]
    assert kit.posted == []


# -- live figures ------------------------------------------------------------------------------
def test_live_view_whole_for_supervisors_a_slice_for_agents(kit):
    whole = Token(kit, "sara")("GET", "/api/live")
    assert whole.status == 200
    check_response("/api/live", "get", 200, whole.json())
    assert set(whole.json()["calls"]) == {"L1", "L3"}
    assert whole.json()["supervisions"]
    anna = as_user(kit, "anna").get("/api/live").json()
    check("LiveView", anna)
    assert set(anna["agents"]) == {"anna"}
    assert set(anna["calls"]) == {"L1"}
    assert anna["ended"] == {}
    assert set(anna["queues"]) == {"support"}
    assert anna["supervisions"] == []
    assert set(anna["notices"]) == {"anna", "api anna@127.0.0.1"}
    bruno = Token(kit, "bruno")("GET", "/api/live").json()
    assert set(bruno["ended"]) == {"L2"}
    assert bruno["calls"] == {}
    assert Token(kit, "tina")("GET", "/api/live").status == 403


def test_queues_and_agents(kit):
    queues = Token(kit, "bruno")("GET", "/api/queues")
    check_response("/api/queues", "get", 200, queues.json())
    assert queues.json()["queues"]["sales"]["waiting"] == 1
    every = Token(kit, "tina")("GET", "/api/agents").json()
    check_response("/api/agents", "get", 200, every)
    assert every["agents"]["bruno"]["state"] == "wrap_up"
    assert set(every["agents"]) == {
        "anna", "bruno"}
    assert "notice" not in every["agents"]["anna"]
    own = as_user(kit, "anna").get("/api/agents").json()
    assert set(own["agents"]) == {"anna"}


def test_live_answers_follow_the_published_view(kit):
    api = Token(kit, "root")
    kit.publish({**LIVE, "queues": {"support": {"waiting": 4, "longest_wait": 33.0,
                                                "agents": {}}}})
    assert api("GET", "/api/queues").json()["queues"] == {
        "support": {"waiting": 4, "longest_wait": 33.0, "agents": {}}}


# -- the description ---------------------------------------------------------------------------
def api_routes(kit: Kit) -> set[tuple[str, str]]:
    app = kit.server._runner.app
    out = set()
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if path.startswith("/api/") and route.method != "HEAD":
            out.add((path, route.method.lower()))
    return out


def test_the_description_lists_every_api_route_and_no_other(kit):
    described = {(path, method) for path, item in SPEC["paths"].items() for method in item
                 if method in ("get", "post", "put", "patch", "delete")}
    assert described == api_routes(kit)
    assert SPEC["openapi"].startswith("3.1")
    assert set(SPEC["components"]["securitySchemes"]) == {"bearer", "session"}
    Draft202012Validator.check_schema({"$defs": SPEC["components"]["schemas"]})
    for name, schema in SPEC["components"]["schemas"].items():
        Draft202012Validator(schema, registry=REGISTRY)  # every $ref resolves
        check_refs(schema, name)


def check_refs(node: Any, where: str) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None:
            kind, name = ref.split("/")[-2:]
            assert name in SPEC["components"][kind], f"{where}: {ref}"
        for value in node.values():
            check_refs(value, where)
    elif isinstance(node, list):
        for value in node:
            check_refs(value, where)


def test_the_description_in_yaml_and_json_for_signed_in_users_only(kit):
    api = Token(kit, "anna")
    as_yaml = api("GET", "/api/openapi.yaml")
    as_json = api("GET", "/api/openapi.json")
    assert as_yaml.status == as_json.status == 200
    assert yaml.safe_load(as_yaml.body) == json.loads(as_json.body) == SPEC
    for path in ("/api/openapi.yaml", "/api/openapi.json"):
        anonymous = Browser(kit.url).get(path)
        assert anonymous.status == 401
        assert anonymous.json()["error"]


def test_refusals_of_the_middleware_are_json_too(kit):
    anonymous = Browser(kit.url).get("/api/calls")
    assert anonymous.status == 401
    check_response("/api/calls", "get", 401, anonymous.json())
    assert anonymous.headers["Content-Security-Policy"]
    bad_token = Browser(kit.url).get("/api/calls", headers={"Authorization": "Bearer nope"})
    assert bad_token.status == 401
    assert bad_token.headers["WWW-Authenticate"] == "Bearer"
    anna = as_user(kit, "anna")
    no_csrf = anna.request("POST", "/api/calls/L1/notes", json_body={"text": "x"})
    assert no_csrf.status == 403
    assert "stale" in no_csrf.json()["error"]
    unknown = Token(kit, "root")("GET", "/api/nosuch")
    assert unknown.status == 404
    assert unknown.json()["error"]
    assert kit.posted == []


# -- the loop's own view against the description -----------------------------------------------
DRIVER_CONFIG = """
sip: {listen: 127.0.0.1:5999}
trunks:
  gw: {sources: [192.0.2.1], lines: 30}
agents:
  anna: {uri: "sip:anna@192.0.2.10"}
  bruno: {uri: "sip:bruno@192.0.2.11"}
queues:
  support: {agents: [anna], script: "Hello {caller}, account {account}"}
  sales: {agents: [bruno], wrap_up: 60}
supervisors:
  sara: {uri: "sip:sara@192.0.2.30", queues: [support]}
teams:
  front: {leader: Sara, members: [anna, bruno]}
flow: flow.yaml
store: calls.db
"""
DRIVER_FLOW = """
flow: api
languages: [en]
start: menu
nodes:
  menu:
    type: menu
    prompt: {say: "One for support, two for sales."}
    options: {"1": account, "2": sales}
    timeout: 5
    max_timeouts: 2
    max_invalid: 2
    on_failure: support
  account:
    type: collect
    prompt: {say: "Your customer number."}
    variable: account
    min_length: 4
    max_length: 8
    next: support
    on_failure: support
  support: {type: queue, queue: support}
  sales: {type: queue, queue: sales}
"""


def driver_view(tmp_path: Path) -> dict[str, Any]:
    """The view of a real core: anna on a call with a supervisor listening and a note, bruno
    in wrap-up after his, a caller waiting."""
    (tmp_path / "ivr.yaml").write_text(DRIVER_CONFIG)
    (tmp_path / "flow.yaml").write_text(DRIVER_FLOW)
    config = load_config(tmp_path / "ivr.yaml")
    flow = load_flow(tmp_path / "flow.yaml", known_queues=config.queues)
    ids = itertools.count(1)
    bench = Bench(Core(config, flow, files_for=files_for, music_on_hold="moh.wav", now=0.0,
                       wall_offset=T0, new_id=lambda: f"c{next(ids)}"))
    sales = bench.incoming(caller="3339999999")
    bench.key(sales, "2")
    bench.answer(bench.ringing()["bruno"])
    bench.tick(20)
    bench.end(sales)
    caller = bench.incoming(caller="3331234567")
    bench.key(caller, "1")
    bench.key(caller, "1234#")
    bench.answer(bench.ringing()["anna"])
    bench.send(Supervise("sara", "anna", "listen", "console sara@127.0.0.1"))
    sup = next(x.leg for x in bench.legs.values() if "sara" in x.uri and not x.ended)
    bench.answer(sup)
    bench.send(CallNote("c2", "from the CRM", "api root@127.0.0.1", "root"))
    waiting = bench.incoming(caller="3337777777")
    bench.key(waiting, "1")
    bench.key(waiting, "9876#")
    bench.tick(5)
    view: dict[str, Any] = bench.core.console_view(bench.now)
    return view


def test_the_loops_own_view_matches_the_description(kit, tmp_path):
    view = driver_view(tmp_path)
    assert view["supervisions"]
    assert view["ended"]
    assert view["queues"]["support"]["waiting"] == 1
    kit.publish(view)
    api = Token(kit, "sara")
    whole = api("GET", "/api/live").json()
    check_response("/api/live", "get", 200, whole)
    assert whole["calls"]["c2"]["notes"]
    assert whole["calls"]["c2"]["variables"]["account"] == "1234"
    check_response("/api/agents", "get", 200, api("GET", "/api/agents").json())
    check_response("/api/queues", "get", 200, api("GET", "/api/queues").json())
    anna = as_user(kit, "anna").get("/api/live").json()
    check("LiveView", anna)
    assert set(anna["calls"]) == {"c2"}
    bruno = Token(kit, "bruno")("GET", "/api/live").json()
    assert set(bruno["ended"]) == {"c1"}
    assert bruno["agents"]["bruno"]["state"] == "wrap_up"
