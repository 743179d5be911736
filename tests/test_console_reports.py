"""The reports page: a real console over a store filled with call records; its table, CSV and
charts must agree with ivr.report.compute over the same window."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import re
from datetime import date, datetime
from pathlib import Path

import pytest

from ivr.config import Team, load_config
from ivr.console.pages.reports import parse_query
from ivr.report import compute, format_csv, read_rows
from ivr.store import CallRecord, CallStore, QueueEventRow
from tests.consolekit import Browser, start_console

ROOT = Path(__file__).resolve().parent.parent
DAY = date(2026, 11, 2)
T0 = datetime(2026, 11, 2, 8, 0).timestamp()  # local time, as reports read it
WINDOW = "from=2026-11-02&to=2026-11-02"
USERS = (("anna", "agent", "anna"), ("tina", "team_leader", ""), ("sara", "supervisor", ""),
         ("root", "admin", ""))


def fill(store_path: Path) -> None:
    """2 Nov 2026: at 08:xx 6 calls answered (4 within 20 s), at 09:xx 2 answered late and
    2 abandoned in queue, 3 callers who left in the IVR (2 at 'menu', 1 at 'welcome'), and a
    call on 3 Nov (outside the window)."""
    store = CallStore(store_path)
    events = []

    def queued(i: int, start: float, wait: float, agent: str | None, outcome: str,
               disposition: str | None = None) -> None:
        rec = CallRecord(f"c{i}", started_at=start, caller=f"33300000{i:02d}", queue="support",
                         queued_at=start + 10, flow="demo", flow_version="v1",
                         ivr_path="welcome > menu[1] > support_q", disposition=disposition,
                         ticket=f"T{i}" if disposition else None,
                         ticket_seq=1 if disposition else None)
        if agent is not None:
            rec.agent = agent
            rec.connected_at = start + 10 + wait
            rec.finish(rec.connected_at + 120, outcome)
            events.append(QueueEventRow(rec.connected_at, "connect", "support", rec.call_id,
                                        agent, {}))
        else:
            rec.finish(start + 10 + wait, outcome)
        store.save(rec)

    for i, wait in enumerate([5, 10, 15, 19, 30, 45]):
        queued(i, T0 + i * 300, wait, "anna" if i % 2 else "marco", "completed",
               "1" if i < 3 else "2")
    queued(6, T0 + 3600, 40, "anna", "completed")
    queued(7, T0 + 3900, 50, "marco", "completed")
    queued(8, T0 + 4200, 12, None, "abandoned_queue")
    queued(9, T0 + 4500, 35, None, "abandoned_queue")
    for i, path in ((10, "welcome > menu[9!]"), (11, "welcome > menu[~~]"), (12, "welcome")):
        rec = CallRecord(f"c{i}", started_at=T0 + 5000 + i, caller="", flow="demo",
                         ivr_path=path)
        rec.finish(T0 + 5030 + i, "abandoned_ivr")
        store.save(rec)
    rec = CallRecord("later", started_at=T0 + 86400, caller="3330000000", queue="support",
                     queued_at=T0 + 86410, flow="demo", ivr_path="welcome")
    rec.finish(T0 + 86420, "abandoned_queue")
    store.save(rec)
    store.add_events(events)
    assert store.close() == 0


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """One console for the module: the tests only read (accounts take a while to make)."""
    tmp_path = tmp_path_factory.mktemp("reports")
    config = load_config(ROOT / "ivr.yaml")
    config = dataclasses.replace(config, teams={"front": Team("front", "tina", ("anna",))})
    kit = start_console(tmp_path, config, users=USERS)
    fill(kit.console.store_path)
    yield kit
    kit.stop()


def expected(kit, by: str):
    start = datetime(2026, 11, 2).timestamp()
    end = datetime(2026, 11, 3).timestamp()
    calls, events = read_rows(kit.console.store_path, start, end, 7.0)
    return compute(calls, events, start=start, end=end, by=by, threshold=20.0, fcr_days=7.0,
                   resolving={"1", "4"}, teams={"anna": "front"} if by == "team" else None)


def table_rows(body: str) -> list[list[str]]:
    found = re.search(r'<table class="grid report" id="report-table">(.*?)</table>', body, re.S)
    assert found, body
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip()
             for c in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
            for tr in re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.S) if "<td" in tr]


def svg(body: str, kind: str) -> str:
    found = re.search(rf'<svg class="chart [^"]*\b{kind}\b.*?</svg>', body, re.S)
    assert found, f"no {kind} chart"
    return found.group(0)


def bars(chart: str, cls: str = "bar") -> dict[str, float]:
    return {html.unescape(m.group(2)): float(m.group(3)) for m in re.finditer(
        rf'<rect class="{cls}( [^"]*)?"[^>]*data-label="([^"]*)" data-value="([^"]*)"', chart)}


def test_roles(kit):
    anon = Browser(kit.url, follow=False)
    assert anon.get("/reports").status == 303
    assert anon.get("/reports.csv").status == 303
    agent = Browser(kit.url)
    agent.login("anna")
    assert agent.get("/reports").status == 403
    assert agent.get(f"/reports.csv?{WINDOW}").status == 403
    for name in ("tina", "sara", "root"):
        b = Browser(kit.url)
        b.login(name)
        assert b.get(f"/reports?{WINDOW}").status == 200, name


def test_table_by_queue_matches_compute(kit):
    b = Browser(kit.url)
    b.login("tina")
    page = b.get(f"/reports?{WINDOW}&by=queue")
    assert page.status == 200
    rows = table_rows(page.body)
    want = expected(kit, "queue")
    assert [r[0] for r in rows] == ["support", "totale"]  # Italian: the default language
    for got, row in zip(rows, want, strict=True):
        assert got[1:4] == [str(row.offered), str(row.answered), str(row.abandoned)]
        assert got[4] == f"{row.sl:.1%}"
    assert want[0].offered == 10
    assert want[0].answered == 8
    assert want[0].abandoned == 2
    assert rows[0][4] == "50.0%"  # 4 of 8 answered within 20 s
    # disposition columns of ivr.yaml: resolved 3, callback 3
    assert "resolved" in page.body
    assert rows[0][12:14] == ["3", "3"]


@pytest.mark.parametrize("by", ["agent", "team", "day", "hour"])
def test_other_groupings_match_compute(kit, by):
    b = Browser(kit.url)
    b.login("tina")
    rows = table_rows(b.get(f"/reports?{WINDOW}&by={by}").body)
    want = expected(kit, by)
    assert len(rows) == len(want)
    for got, row in zip(rows[:-1], want[:-1], strict=True):
        assert got[0] == (row.group if row.group != "(no team)" else "(nessuna squadra)")
    answered = 1 if by in ("agent", "team") else 2
    assert [r[answered] for r in rows] == [str(r.answered) for r in want]


def test_by_disposition(kit):
    b = Browser(kit.url)
    b.login("tina")
    page = b.get(f"/reports?{WINDOW}&by=disposition")
    rows = table_rows(page.body)
    assert rows[0][:4] == ["1", "resolved", "sì", "3"]
    assert rows[1][:4] == ["2", "callback", "no", "3"]
    assert bars(svg(page.body, "dispositions"))["resolved"] == 3
    answer = b.get(f"/reports.csv?{WINDOW}&by=disposition")
    lines = list(csv.reader(io.StringIO(answer.body)))
    assert lines[0] == ["disposition", "label", "resolves", "answered"]
    assert lines[1] == ["1", "resolved", "yes", "3"]


def test_csv_is_ivr_report_csv(kit):
    b = Browser(kit.url)
    b.login("tina")
    answer = b.get(f"/reports.csv?{WINDOW}&by=agent")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in answer.headers["Content-Disposition"]
    config = kit.console.config
    labels = {code: d.label for code, d in sorted(config.dispositions.items())}
    assert answer.body == format_csv(expected(kit, "agent"), "agent", labels)
    lines = list(csv.reader(io.StringIO(answer.body)))
    assert lines[0][:3] == ["agent", "answered", "aht"]
    assert [line[0] for line in lines[1:]] == ["anna", "marco", "total"]
    assert b.get("/reports.csv?from=2026-11-05&to=2026-11-01").status == 400


def test_charts(kit):
    b = Browser(kit.url)
    b.login("tina")
    page = b.get(f"/reports?{WINDOW}").body
    sl = svg(page, "sl")
    hours = bars(sl)
    assert len(hours) == 24
    assert hours["08"] == pytest.approx(4 / 6, abs=0.001)  # 4 of 6 within 20 s
    assert hours["09"] == 0.0
    assert hours["10"] == 0.0
    assert re.search(r'<line class="target"[^>]*data-value="0.8"', sl)
    assert 'class="bar bad"' in sl  # 08 is under the target
    outcomes = bars(svg(page, "outcomes"))
    assert outcomes == {"completata": 8, "abbandonata in coda": 2,
                        "uscita nel risponditore": 3}
    funnel = svg(page, "funnel")
    reached = bars(funnel)
    assert list(reached) == ["welcome", "menu", "support_q"]
    assert reached == {"welcome": 13, "menu": 12, "support_q": 10}
    assert bars(funnel, "part") == {"welcome": 1, "menu": 2}
    assert "style=" not in page
    assert "<script>" not in page


def test_empty_window_and_bad_dates(kit):
    b = Browser(kit.url)
    b.login("tina")
    page = b.get("/reports?from=2020-01-01&to=2020-01-02")
    assert page.status == 200
    assert "Nessuna chiamata" in page.body
    bad = b.get("/reports?from=yesterday&to=2020-01-02")
    assert bad.status == 400
    assert "2026-11-02" in bad.body


def test_presets():
    today = date(2026, 11, 18)
    assert parse_query({"preset": "today"}, today).window.first == today
    y = parse_query({"preset": "yesterday"}, today).window
    assert (y.first, y.last) == (date(2026, 11, 17), date(2026, 11, 17))
    w = parse_query({"preset": "7d", "by": "agent"}, today)
    assert (w.window.first, w.window.last, w.by) == (date(2026, 11, 12), today, "agent")
    m = parse_query({"preset": "month"}, today).window
    assert (m.first, m.last) == (date(2026, 11, 1), today)
    assert parse_query({"from": "2026-01-01", "to": "2027-06-01"}, today).error
    assert parse_query({"by": "nonsense"}, today).by == "queue"


def test_every_word_in_both_languages(kit):
    from ivr.console.i18n import MESSAGES

    for prefix in ("reports.", "outcome.", "flows."):
        en = {k for k in MESSAGES["en"] if k.startswith(prefix)}
        it = {k for k in MESSAGES["it"] if k.startswith(prefix)}
        assert en == it, en ^ it
    b = Browser(kit.url)
    b.login("tina")
    b.get("/reports")
    b.post("/lang", {"csrf": b.csrf, "lang": "en", "back": "/reports"})
    for by in ("queue", "agent", "disposition"):
        page = b.get(f"/reports?{WINDOW}&by={by}").body
        assert "Service level by hour of the day" in page
        texts = re.findall(r">([^<]+)<", page) + re.findall(r'(?:alt|aria-label)="([^"]*)"', page)
        assert not [x for x in texts if re.search(r"\b(reports|outcome)\.[a-z_]", x)]
