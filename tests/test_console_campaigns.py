"""The campaigns page (/campaigns) and the agent desk's preview contact: a real console server, a
real store filled through the contact book (import_csv, record_attempt, set_disposition), real
campaign files and real accounts; the loop's view is published by hand and the commands the
pages send are read from the inbox."""

from __future__ import annotations

import csv
import http.client
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ivr.cli import main as ivr_main
from ivr.config import load_config
from ivr.console.i18n import MESSAGES
from ivr.console.pages.campaigns import CACHE
from ivr.console.web import SESSION_COOKIE
from ivr.driver.messages import PreviewDial
from ivr.outbound.contacts import ContactBook, import_csv
from ivr.outbound.dnc import DncList
from ivr.store import CallRecord, CallStore
from tests.consolekit import Browser, Kit, start_console

ROOT = Path(__file__).resolve().parent.parent
YAML = f"""\
sip: {{listen: 127.0.0.1:5080}}
trunks: {{gw: {{sources: [127.0.0.1], lines: 8}}}}
flow: {ROOT / "flows" / "demo.yaml"}
agents:
  anna: {{uri: "sip:anna@127.0.0.1:5070"}}
  marco: {{uri: "sip:marco@127.0.0.1:5072"}}
queues:
  sales: {{agents: [anna, marco]}}
dispositions:
  "1": {{label: sale}}
  "2": {{label: call back later}}
  "8": {{label: do not call}}
dial_out:
  - {{pattern: "^\\\\+39[0-9]{{6,11}}$", uri: "sip:{{number}}@127.0.0.1:5099", campaigns: true}}
campaigns: campaigns
"""
PREVIEW = """\
queue: sales
mode: preview
trunk: gw
max_lines: 2
caller_id: "+390612345678"
window: {timezone: Europe/Rome, days: [mon-fri, sat], hours: "09:00-13:00,14:00-19:00"}
retries:
  busy: {times: 2, after: 90s}
  no_answer: {times: 4, after: 2h}
final_dispositions: ["1"]
dnc_disposition: "8"
script: "Hello {name}, about {product}"
"""
PROGRESSIVE = """\
description: Spring offer
queue: sales
mode: progressive
trunk: gw
max_lines: 4
reserve_inbound: 2
window: {timezone: Europe/Rome, hours: "10:00-18:00", holidays: {country: IT}}
dial_ratio: 1.5
"""
LIST = """\
number,name,product
3470000001,Anna Bianchi,router
3470000002,Bruno Verdi,modem
3470000003,Carla Neri,fibre
3470000004,Dario Russo,router
3470000005,Elena Gallo,modem
"""
USERS = (("anna", "agent", "anna"), ("marco", "agent", "marco"), ("tl", "team_leader", ""),
         ("sup", "supervisor", ""), ("root", "admin", ""))


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kit]:
    tmp = tmp_path_factory.mktemp("campaigns")
    (tmp / "campaigns").mkdir()
    (tmp / "campaigns" / "renewals.yaml").write_text(PREVIEW)
    (tmp / "campaigns" / "spring.yaml").write_text(PROGRESSIVE)
    (tmp / "ivr.yaml").write_text(YAML)
    config = load_config(tmp / "ivr.yaml")
    k = start_console(tmp, config, users=USERS, lang="en")
    _fill(k.console.store_path, tmp)
    yield k
    k.stop()


@pytest.fixture
def clean(kit: Kit) -> Kit:
    kit.posted.clear()
    kit.server._runner.app[CACHE].seconds = 0.0  # every request reads the store afresh
    kit.publish({})
    return kit


def _fill(path: Path, tmp: Path) -> None:
    """renewals: 5 contacts; #1 answered and sold, #2 busy then answered with a call back,
    #3 abandoned, #4 no answer, then put on the do-not-call list and skipped; #5 untouched.
    spring: 1 contact, never dialled."""
    (tmp / "list.csv").write_text(LIST)
    (tmp / "spring.csv").write_text("number,name\n3479999999,Zeno\n")
    now = time.time()
    with ContactBook(path) as book:
        assert import_csv(book, "renewals", tmp / "list.csv", now=now - 3600).added == 5
        assert import_csv(book, "spring", tmp / "spring.csv", now=now - 3600).added == 1
        ids = {c.name.split()[0]: c.id for c in book.contacts("renewals")}
        book.record_attempt(ids["Anna"], "answered", "o1", "answered", None, "done", now - 3000,
                            dnc_checked=True, disposition="1")
        book.set_disposition(ids["Anna"], "1", now - 2990)
        book.record_attempt(ids["Bruno"], "busy", "o2", "busy; retry 1 of 2 (retries.busy)",
                            now - 2900, "pending", now - 2950, dnc_checked=True)
        book.record_attempt(ids["Bruno"], "answered", "o3", "answered with disposition 2",
                            now + 3600, "pending", now - 2800, dnc_checked=True,
                            disposition="2")
        book.record_attempt(ids["Carla"], "abandoned", "o4", "answered with no agent free",
                            now + 86400, "pending", now - 2700, dnc_checked=True)
        book.record_attempt(ids["Dario"], "no_answer", "o5", "no answer; retry 1 of 4",
                            now - 100, "pending", now - 2600, dnc_checked=True)
        book.add_dnc("3470000004", "internal", "asked by mail", now - 200)
        assert [c.name for c in book.due("renewals", now, 10)] == ["Elena Gallo"]
    store = CallStore(path)  # the dialler's calls out put through to agents, and one call in
    for call_id, agent, talk in (("o1", "anna", 187.0), ("o3", "anna", 63.0),
                                 ("o6", "marco", 30.0)):
        store.save(CallRecord(call_id, now - 3000, caller="+390612345678", agent=agent,
                              outcome="completed", talk_seconds=talk, direction="out",
                              campaign="renewals", contact_id=ids["Anna"]))
    store.save(CallRecord("in1", now - 100, caller="+390211111", queue="sales", agent="anna",
                          outcome="completed", talk_seconds=500.0))
    assert store.close() == 0


def signed_in(kit: Kit, name: str) -> Browser:
    b = Browser(kit.url)
    b.login(name)
    b.get("/agent" if name in ("anna", "marco") else "/campaigns")
    assert b.csrf
    return b


def contact_id(kit: Kit, campaign: str, name: str) -> int:
    with ContactBook(kit.console.store_path) as book:
        return next(c.id for c in book.contacts(campaign) if c.name == name)


def live_campaigns() -> dict[str, Any]:
    return {"renewals": {"mode": "preview", "window_open": True, "paused_reason": "",
                         "dialling": 0, "connected": 1, "attempts_today": 5,
                         "connects_today": 2, "abandoned_today": 1, "hopper": 3},
            "spring": {"mode": "progressive", "window_open": False,
                       "paused_reason": "outside the calling window", "dialling": 0,
                       "connected": 0, "attempts_today": 0, "connects_today": 0,
                       "abandoned_today": 0, "hopper": 0}}


# -- the campaign page ---------------------------------------------------------------------------
def test_roles(clean: Kit) -> None:
    kit = clean
    anonymous = Browser(kit.url, follow=False).get("/campaigns")
    assert anonymous.status == 303
    assert anonymous.headers["Location"].startswith("/login?next=/campaigns")

    anna = signed_in(kit, "anna")
    for path in ("/campaigns", "/campaigns/figures", "/campaigns/renewals.csv"):
        assert anna.get(path).status == 403, path
    assert anna.api("POST", "/campaigns/dnc", {"number": "3471111111"}).status == 403
    assert 'href="/campaigns"' not in anna.get("/agent").body

    tl = signed_in(kit, "tl")
    page = tl.get("/campaigns")
    assert page.status == 200
    assert 'href="/campaigns"' in page.body  # in the nav
    assert 'id="dnc-form"' not in page.body  # supervisors and above only
    assert tl.get("/campaigns/figures").status == 200
    assert tl.get("/campaigns/renewals.csv").status == 200
    assert tl.api("POST", "/campaigns/dnc", {"number": "3471111111"}).status == 403

    for name in ("sup", "root"):
        page = signed_in(kit, name).get("/campaigns")
        assert page.status == 200
        assert 'id="dnc-form"' in page.body
    with DncList(kit.console.store_path) as dnc:
        assert not dnc.is_dnc("3471111111")


def test_definitions_and_figures_on_the_page(clean: Kit) -> None:
    kit = clean
    page = signed_in(kit, "tl").get("/campaigns")
    body = page.body
    assert page.status == 200
    assert 'data-campaign="renewals"' in body
    assert 'data-campaign="spring"' in body
    assert "<script>" not in body
    assert "style=" not in body
    assert 'src="/static/campaigns.js"' in body
    assert ">campaigns." not in body
    assert ">outbound." not in body
    renewals = body[body.index('data-campaign="renewals"'):body.index('data-campaign="spring"')]
    spring = body[body.index('data-campaign="spring"'):]
    # the definition, from the campaign file
    assert 'data-def="mode">preview<' in renewals
    assert 'data-def="queue">sales<' in renewals
    assert "mon-sat 09:00-13:00,14:00-19:00 (Europe/Rome)" in renewals
    assert 'data-def="caller_id">+390612345678<' in renewals
    assert "busy: 2 more after 90s" in renewals
    assert "no answer: 4 more after 2h" in renewals
    assert "failed: 1 more after 30m" in renewals  # a default
    assert "1 · sale" in renewals
    assert 'data-def="dnc_disposition">8 · do not call<' in renewals
    assert 'data-def="mode">progressive<' in spring
    assert "mon-fri 10:00-18:00 (Europe/Rome) · holidays: IT" in spring
    assert "the trunk&#39;s own" in spring
    assert "at most 4 of 8, 2 kept for inbound" in spring
    assert "1.5 (abandoned calls at most 3% of answered)" in spring
    assert "Spring offer" in spring
    # the store's counts and the KPIs
    for anchor in ('data-state-count="pending">3<', 'data-state-count="done">1<',
                   'data-state-count="dnc">1<', 'data-figure="total">5<',
                   'data-figure="due_now">1<',  # Elena; Bruno and Carla later
                   'data-outcome-count="answered">2<', 'data-outcome-count="busy">1<',
                   'data-outcome-count="abandoned">1<', 'data-outcome-count="no_answer">1<',
                   'data-outcome-count="dnc_skipped">1<', 'data-kpi="dials">5<',
                   'data-kpi="answered">3<', 'data-kpi="contact_rate">60.0%<',
                   'data-kpi="abandon_rate">33.3%<', 'data-kpi="reached">2<',
                   'data-disposition="1"><td>1 · sale</td><td class="num">1</td>'
                   '<td class="num">50.0%<',
                   'data-disposition="2"><td>2 · call back later</td>',
                   'data-agent="anna"><td>anna</td><td class="num">2</td>'
                   '<td class="num">4:10<'):
        assert anchor in renewals, anchor
    assert 'data-figure="total">1<' in spring
    assert 'data-kpi="contact_rate">-<' in spring  # never dialled: no rate
    assert 'href="/campaigns/renewals.csv"' in renewals
    # not run by the switchboard (no view yet)
    assert 'class="muted campaign-not-running">' in renewals


def test_figures_json_and_its_cache(clean: Kit) -> None:
    kit = clean
    tl = signed_in(kit, "tl")
    data = tl.get("/campaigns/figures").json()["campaigns"]
    renewals = data["renewals"]
    assert renewals["states"] == {"pending": 3, "done": 1, "dnc": 1, "failed": 0,
                                  "invalid": 0}
    assert renewals["outcomes"] == {"answered": 2, "busy": 1, "abandoned": 1,
                                    "no_answer": 1, "dnc_skipped": 1}
    assert renewals["dispositions"] == {"1": 1, "2": 1}
    kpis = renewals["kpis"]
    assert (kpis["dials"], kpis["answered"], kpis["reached"]) == (5, 3, 2)
    assert kpis["contact_rate"] == pytest.approx(0.6)
    assert kpis["abandon_rate"] == pytest.approx(1 / 3)
    assert kpis["conversions"] == {"1": 0.5, "2": 0.5}
    assert renewals["agents"] == {"anna": {"calls": 2, "talk": 250.0},
                                  "marco": {"calls": 1, "talk": 30.0}}
    assert data["spring"]["total"] == 1
    assert data["spring"]["agents"] == {}

    elena = contact_id(kit, "renewals", "Elena Gallo")
    cache = kit.server._runner.app[CACHE]
    cache.seconds = 3600.0
    tl.get("/campaigns/figures")  # cached from now on
    with ContactBook(kit.console.store_path) as book:
        book.record_attempt(elena, "failed", None, "failed; no retry", None, "failed",
                            time.time())
    try:
        assert tl.get("/campaigns/figures").json()["campaigns"]["renewals"]["outcomes"].get(
            "failed") is None  # a few seconds old at most
        cache.seconds = 0.0
        fresh = tl.get("/campaigns/figures").json()["campaigns"]["renewals"]
        assert fresh["outcomes"]["failed"] == 1
        assert fresh["states"]["failed"] == 1
        assert fresh["kpis"]["dials"] == 6
    finally:
        with ContactBook(kit.console.store_path) as book:  # as it was for the other tests
            book.db.execute("DELETE FROM outbound_attempts WHERE contact_id = ?", (elena,))
            book.db.execute("UPDATE outbound_contacts SET state = 'pending', attempts = 0, "
                            "last_outcome = NULL, next_at = created WHERE id = ?", (elena,))


class Events:
    """An open Server-Sent Events stream: :meth:`next` is the next data object (deadline)."""

    def __init__(self, kit: Kit, browser: Browser, path: str):
        cookie = next(c.value for c in browser.jar if c.name == SESSION_COOKIE)
        url = urlsplit(kit.url)
        self.conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
        self.conn.request("GET", path, headers={"Cookie": f"{SESSION_COOKIE}={cookie}",
                                                "Accept": "text/event-stream"})
        self.res = self.conn.getresponse()
        self.status = self.res.status

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


def test_live_figures_from_the_view(clean: Kit) -> None:
    kit = clean
    kit.publish({"campaigns": live_campaigns()})
    tl = signed_in(kit, "tl")
    page = tl.get("/campaigns").body
    renewals = page[page.index('data-campaign="renewals"'):page.index('data-campaign="spring"')]
    spring = page[page.index('data-campaign="spring"'):]
    for field, shown in (("window_open", "open"), ("paused_reason", "no"), ("connected", "1"),
                         ("attempts_today", "5"), ("connects_today", "2"),
                         ("abandoned_today", "1"), ("hopper", "3"), ("dialling", "0")):
        assert f'data-live="{field}">{shown}<' in renewals, field
    assert 'data-live="window_open">closed<' in spring
    assert 'data-live="paused_reason">outside the calling window<' in spring
    assert 'class="muted campaign-not-running" hidden>' in renewals

    agent = Events(kit, signed_in(kit, "anna"), "/campaigns/live")
    assert agent.status == 403
    agent.close()
    events = Events(kit, tl, "/campaigns/live")
    try:
        assert events.status == 200
        first = events.next()
        assert first["campaigns"]["renewals"]["hopper"] == 3
        assert first["campaigns"]["spring"]["paused_reason"] == "outside the calling window"
        changed = live_campaigns()
        changed["renewals"].update(dialling=2, attempts_today=7, paused_reason="1 inbound "
                                   "caller(s) waiting for the campaign's agents")
        kit.publish({"campaigns": changed})
        second = events.next()
        assert second["campaigns"]["renewals"]["dialling"] == 2
        assert second["campaigns"]["renewals"]["attempts_today"] == 7
        assert second["campaigns"]["renewals"]["paused_reason"].startswith("1 inbound")
    finally:
        events.close()


def test_export_csv_is_ivr_campaign_exports(clean: Kit, tmp_path: Path) -> None:
    kit = clean
    tl = signed_in(kit, "tl")
    answer = tl.get("/campaigns/renewals.csv")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert 'filename="campaign-renewals-' in answer.headers["Content-Disposition"]
    out = tmp_path / "cli.csv"
    assert ivr_main(["campaign", "export", "renewals", "--store",
                     str(kit.console.store_path), "--out", str(out)]) == 0
    assert answer.body == out.read_bytes().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(answer.body)))
    assert [r["name"] for r in rows] == ["Anna Bianchi", "Bruno Verdi", "Carla Neri",
                                         "Dario Russo", "Elena Gallo"]
    assert rows[0]["disposition"] == "1"
    assert rows[0]["state"] == "done"
    assert rows[3]["state"] == "dnc"
    assert rows[3]["last_outcome"] == "dnc_skipped"
    assert rows[1]["product"] == "modem"
    assert tl.get("/campaigns/nosuch.csv").status == 404
    assert tl.get("/campaigns/..%2Fx.csv").status == 404
    empty = tl.get("/campaigns/spring.csv")
    assert empty.status == 200
    assert "Zeno" in empty.body


def test_a_supervisor_adds_a_number_to_the_dnc_list(clean: Kit) -> None:
    kit = clean
    sup = signed_in(kit, "sup")
    elena = "+393470000005"
    answer = sup.api("POST", "/campaigns/dnc", {"number": "347 000 0005",
                                                "note": "  asked   on the phone "})
    assert answer.status == 200, answer.body
    data = answer.json()
    assert (data["number"], data["added"], data["source"]) == (elena, True, "internal")
    assert elena in data["text"]
    with DncList(kit.console.store_path) as dnc:
        assert dnc.entry(elena)[1:] == ("internal", pytest.approx(time.time(), abs=60),
                                        "asked on the phone")
    audit = next(e for e in kit.console.accounts.audit_log(user="sup")
                 if e["action"] == "campaigns.dnc_add")
    assert audit["target"] == elena
    assert audit["detail"]["note"] == "asked on the phone"
    assert audit["detail"]["added"] is True
    # the dialler's next look at the list skips her
    with ContactBook(kit.console.store_path) as book:
        assert book.due("renewals", time.time(), 10) == []
    again = sup.api("POST", "/campaigns/dnc", {"number": "+393470000005"})
    assert again.status == 200
    assert again.json()["added"] is False
    assert "already" in again.json()["text"]

    for bad in ({"number": "112"}, {"number": "abc"}, {"number": ""},
                {"number": "3471234000", "note": "x" * 201}):
        refused = sup.api("POST", "/campaigns/dnc", bad)
        assert refused.status == 400, (bad, refused.body)
        assert refused.json()["error"]
    bare = sup.request("POST", "/campaigns/dnc", json_body={"number": "3471234001"})
    assert bare.status == 403  # no CSRF token
    assert sup.post("/campaigns/dnc", {"number": "3471234002"}).status == 403
    form = sup.post("/campaigns/dnc", {"number": "3471234003", "csrf": sup.csrf})
    assert form.status == 200
    with DncList(kit.console.store_path) as dnc:
        assert not dnc.is_dnc("3471234000")
        assert not dnc.is_dnc("3471234001")
        assert not dnc.is_dnc("3471234002")
        assert dnc.is_dnc("3471234003")
        dnc.remove(elena)  # as it was for the other tests
        dnc.remove("3471234003")


def test_a_store_without_contact_lists(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "renewals.yaml").write_text(PREVIEW)
    (tmp_path / "ivr.yaml").write_text(YAML)
    k = start_console(tmp_path, load_config(tmp_path / "ivr.yaml"),
                      users=(("tl", "team_leader", ""),), lang="en")
    try:
        tl = signed_in(k, "tl")
        page = tl.get("/campaigns")
        assert page.status == 200
        assert 'data-campaign="renewals"' in page.body
        assert 'data-figure="total">0<' in page.body
        assert tl.get("/campaigns/figures").json() == {"campaigns": {}}
        assert tl.get("/campaigns/renewals.csv").body.startswith("number,name,state,")
    finally:
        k.stop()


def test_campaign_files_with_problems_are_shown(tmp_path: Path) -> None:
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "bad.yaml").write_text(PREVIEW.replace("trunk: gw", "trunk: gx"))
    (tmp_path / "ivr.yaml").write_text(YAML)
    k = start_console(tmp_path, load_config(tmp_path / "ivr.yaml"),
                      users=(("tl", "team_leader", ""),), lang="en")
    try:
        page = signed_in(k, "tl").get("/campaigns")
        assert page.status == 200
        assert 'id="campaign-problems"' in page.body
        assert "unknown trunk" in page.body
        assert "gx" in page.body
    finally:
        k.stop()


def test_the_page_speaks_italian(clean: Kit) -> None:
    clean.publish({"campaigns": live_campaigns()})
    b = signed_in(clean, "sup")
    b.post("/lang", {"csrf": b.csrf, "lang": "it", "back": "/campaigns"})
    page = b.get("/campaigns").body
    for words in ("Campagne", "anteprima", "Fascia di chiamata", "Tasso di contatto",
                  "Aggiungi all&#39;elenco", "occupato: altri 2 dopo 90s", "aperta"):
        assert words in page, words


def test_every_word_in_both_languages() -> None:
    import ivr.console.pages.agent
    import ivr.console.pages.campaigns  # noqa: F401 - add their words

    for prefix in ("campaigns.", "outbound.", "nav.", "agent.preview", "agent.err.preview",
                   "agent.err.no_preview"):
        english = {k for k in MESSAGES["en"] if k.startswith(prefix)}
        italian = {k for k in MESSAGES["it"] if k.startswith(prefix)}
        assert english == italian, prefix
        assert english, prefix


# -- the agent desk's preview contact --------------------------------------------------------------
def preview_view(kit: Kit, anna_state: str = "available", *, call: str | None = None,
                 contact: str = "Bruno Verdi") -> dict[str, Any]:
    now = time.time()
    cid = contact_id(kit, "renewals", contact)

    def agent(name: str, preview: dict[str, Any] | None, state: str) -> dict[str, Any]:
        return {"name": name, "state": state, "since": now - 10, "pause_reason": "",
                "queues": ["sales"], "team": None, "call_id": call if name == "anna" else None,
                "offered": False, "wrapup_until": None, "answered": 0, "talk_seconds": 0.0,
                "notice": None, "last_call_id": None, "preview": preview}

    first = contact.partition(" ")[0]
    offer = {"campaign": "renewals", "contact_id": cid, "number": "+39347000000" +
             {"Bruno": "2", "Carla": "3"}[first], "name": contact,
             "vars": {"product": "modem" if first == "Bruno" else "fibre"},
             "script": f"Hello {contact}, about {'modem' if first == 'Bruno' else 'fibre'}"}
    return {"agents": {"anna": agent("anna", offer, anna_state),
                       "marco": agent("marco", None, "available")},
            "campaigns": live_campaigns()}


def test_the_preview_panel_shows_the_contact_and_its_attempts(clean: Kit) -> None:
    kit = clean
    kit.publish(preview_view(kit))
    bruno = contact_id(kit, "renewals", "Bruno Verdi")
    anna = signed_in(kit, "anna")
    page = anna.get("/agent").body
    panel = page[page.index('id="preview-panel"'):page.index('id="wrapup-form"')]
    assert f'data-contact-id="{bruno}"' in panel
    assert 'id="preview-name" class="agent-caller">Bruno Verdi<' in panel
    assert 'id="preview-number">+393470000002<' in panel
    assert "<dt>product</dt><dd>modem</dd>" in panel
    assert "Hello Bruno Verdi, about modem" in panel
    assert 'id="btn-preview-call"' in panel
    assert "busy; retry 1 of 2 (retries.busy)" in panel  # the attempts, from the store
    assert "answered with disposition 2" in panel
    assert panel.index("answered with disposition 2") < panel.index("busy; retry 1")
    assert " hidden>" not in panel[:panel.index(">")]

    attempts = anna.get(f"/agent/preview?contact_id={bruno}")
    assert attempts.status == 200
    assert [a["outcome"] for a in attempts.json()["attempts"]] == ["answered", "busy"]
    assert [a["call_id"] for a in attempts.json()["attempts"]] == ["o3", "o2"]
    carla = contact_id(kit, "renewals", "Carla Neri")
    assert anna.get(f"/agent/preview?contact_id={carla}").status == 403  # not offered to her
    assert anna.get("/agent/preview").status == 403
    marco = signed_in(kit, "marco")
    assert marco.get(f"/agent/preview?contact_id={bruno}").status == 403  # anna's contact
    mine = marco.get("/agent").body
    assert "Bruno Verdi" not in mine
    assert 'id="preview-panel" data-contact-id=""' in mine

    events = Events(kit, anna, "/agent/live")
    try:
        assert events.next()["agent"]["preview"]["contact_id"] == bruno
    finally:
        events.close()

    b = signed_in(kit, "anna")
    b.post("/lang", {"csrf": b.csrf, "lang": "it", "back": "/agent"})
    italian = b.get("/agent").body
    assert "Prossimo contatto" in italian
    assert "Tentativi precedenti" in italian
    assert ">occupato<" in italian


def test_preview_call_posts_the_offered_contact_only(clean: Kit) -> None:
    kit = clean
    kit.publish(preview_view(kit))
    bruno = contact_id(kit, "renewals", "Bruno Verdi")
    carla = contact_id(kit, "renewals", "Carla Neri")
    anna = signed_in(kit, "anna")
    ok = anna.api("POST", "/agent/preview-call", {"contact_id": bruno, "campaign": "spring",
                                                  "agent": "marco"})
    assert ok.status == 200, ok.body
    assert kit.posted == [PreviewDial("anna", "renewals", bruno, kit.posted[0].source)]
    assert kit.posted[0].source.startswith("console anna@127.0.0.1")
    audit = next(e for e in kit.console.accounts.audit_log(user="anna")
                 if e["action"] == "agent.preview_call")
    assert audit["target"] == str(bruno)
    assert audit["detail"] == {"agent": "anna", "campaign": "renewals",
                               "number": "+393470000002"}

    for bad in ({"contact_id": carla}, {"contact_id": ""}, {"contact_id": "x"}, {}):
        refused = anna.api("POST", "/agent/preview-call", bad)
        assert refused.status == 409, (bad, refused.body)
        assert refused.json()["error"]
    marco = signed_in(kit, "marco")
    assert marco.api("POST", "/agent/preview-call", {"contact_id": bruno}).status == 409
    assert signed_in(kit, "tl").api("POST", "/agent/preview-call",
                                    {"contact_id": bruno}).status == 403
    bare = anna.request("POST", "/agent/preview-call", json_body={"contact_id": bruno})
    assert bare.status == 403  # no CSRF token

    kit.publish(preview_view(kit, "on_call", call="c9"))
    busy = anna.api("POST", "/agent/preview-call", {"contact_id": bruno})
    assert busy.status == 409
    assert "Finish the call" in busy.json()["error"]
    kit.publish(preview_view(kit, contact="Carla Neri"))  # the next contact is offered
    assert anna.api("POST", "/agent/preview-call", {"contact_id": bruno}).status == 409
    assert anna.api("POST", "/agent/preview-call", {"contact_id": carla}).status == 200
    kit.publish({"agents": {"anna": dict(preview_view(kit)["agents"]["anna"], preview=None)}})
    assert anna.api("POST", "/agent/preview-call", {"contact_id": carla}).status == 409
    assert [(m.campaign, m.contact_id) for m in kit.posted] == [("renewals", bruno),
                                                               ("renewals", carla)]


# -- in a browser --------------------------------------------------------------------------------
def test_in_a_browser_figures_update_the_preview_calls_and_a_number_is_listed(
        clean: Kit, tmp_path: Path) -> None:
    """Debian's Chromium under the console's CSP: the campaign page's live figures follow the
    view, the DNC form answers; the agent desk's preview panel appears with its contact and
    attempts, and its Call button sends PreviewDial."""
    from tests.browser import Tab, chromium, require_browser
    from tests.consolekit import PASSWORD

    require_browser()
    kit = clean
    kit.publish({"campaigns": live_campaigns()})
    bruno = contact_id(kit, "renewals", "Bruno Verdi")
    with chromium() as browser:
        sup = Tab.open(browser, kit.url)
        sup.login("sup", PASSWORD)
        page = sup.page
        page.goto("/campaigns")
        hopper = '[data-campaign="renewals"] [data-live="hopper"]'
        page.wait_for_function(f"() => document.querySelector('{hopper}').textContent === '3'")
        changed = live_campaigns()
        changed["renewals"].update(hopper=9, paused_reason="an inbound caller has waited 40s")
        kit.publish({"campaigns": changed})
        page.wait_for_function(f"() => document.querySelector('{hopper}').textContent === '9'")
        paused = page.text_content('[data-campaign="renewals"] [data-live="paused_reason"]')
        assert paused == "an inbound caller has waited 40s"
        page.fill("#dnc-number", "347 555 0101")
        page.fill("#dnc-note", "asked by letter")
        page.click("#btn-dnc-add")
        page.wait_for_selector("#dnc-result:not([hidden])")
        assert "+393475550101" in (page.text_content("#dnc-result") or "")
        page.fill("#dnc-number", "12")
        page.click("#btn-dnc-add")
        page.wait_for_selector("#dnc-result.bad")
        sup.shot("campaigns", tmp_path, full_page=True)
        assert sup.errors[0] == f"HTTP 400: {kit.url}/campaigns/dnc"  # the refused number
        assert all("/campaigns/dnc" in e and "400" in e for e in sup.errors)

        anna = Tab.open(browser, kit.url)
        anna.login("anna", PASSWORD)
        kit.publish({"agents": {"anna": dict(preview_view(kit)["agents"]["anna"],
                                             preview=None)}})
        desk = anna.page
        desk.goto("/agent")
        desk.wait_for_selector("#agent-state[data-state='available']")
        assert desk.is_hidden("#preview-panel")
        kit.publish(preview_view(kit))  # a contact is offered
        desk.wait_for_selector("#preview-panel:not([hidden])")
        assert desk.get_attribute("#preview-panel", "data-contact-id") == str(bruno)
        assert desk.text_content("#preview-name") == "Bruno Verdi"
        assert desk.text_content("#preview-number") == "+393470000002"
        assert desk.text_content("#preview-script") == "Hello Bruno Verdi, about modem"
        desk.wait_for_function(
            "() => document.querySelectorAll('#preview-attempts tr').length === 2")
        assert "busy" in (desk.text_content("#preview-attempts") or "")
        desk.click("#btn-preview-call")
        desk.wait_for_selector("#notice:not([hidden])")
        assert kit.posted == [PreviewDial("anna", "renewals", bruno, kit.posted[0].source)]
        anna.shot("agent-preview", tmp_path, full_page=True)
        assert anna.errors == []
    with DncList(kit.console.store_path) as dnc:
        assert dnc.is_dnc("+393475550101")
        dnc.remove("+393475550101")
