"""Contact lists: CSV import with its refusals, due contacts, attempts, answers, dispositions."""

import json
import sqlite3
import time

import pytest

from ivr.outbound.contacts import DNC_SKIPPED, ContactBook, ListError, import_csv


@pytest.fixture
def book(tmp_path):
    with ContactBook(tmp_path / "calls.db") as b:
        yield b


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_import_every_refusal_reason(book, tmp_path):
    book.add_dnc("0699999999", "internal", "asked")
    listed = write(tmp_path / "first.csv", "number,name\n3470000001,Old\n")
    assert import_csv(book, "spring", listed, now=1.0).added == 1
    f = write(tmp_path / "list.csv",
              "number,name,city,appointment\n"          # line 1
              "347 123 4567,Anna Rossi,Roma,10:30\n"     # 2 ok
              ",Nobody,Roma,\n"                          # 3 empty
              "abc,Letters,Roma,\n"                      # 4 invalid
              "112,Emergency,Roma,\n"                    # 5 not E.164
              "+39 347 1234567,Anna again,Roma,\n"       # 6 duplicate in the file
              "3470000001,Old again,Roma,\n"             # 7 already in the campaign
              "06 9999 9999,Listed,Roma,\n"              # 8 on the DNC list
              "3471111111,Too,many,fields,here\n"        # 9 malformed
              "\n"                                       # 10 blank: skipped, not counted
              "0612345678,Bruno,Milano,\n")              # 11 ok
    report = import_csv(book, "spring", f, now=10.0)
    assert (report.read, report.added) == (9, 2)
    assert [(r.line, r.reason) for r in report.refused] == [
        (3, "empty"), (4, "invalid"), (5, "not_e164"), (6, "duplicate_in_file"),
        (7, "duplicate_in_campaign"), (8, "dnc"), (9, "malformed")]
    assert report.by_reason["dnc"] == 1
    contacts = list(book.contacts("spring"))
    assert [(c.number, c.name, dict(c.vars), c.state, c.next_at) for c in contacts] == [
        ("+393470000001", "Old", {}, "pending", 1.0),
        ("+393471234567", "Anna Rossi", {"city": "Roma", "appointment": "10:30"}, "pending",
         10.0),
        ("+390612345678", "Bruno", {"city": "Milano"}, "pending", 10.0)]
    text = report.summary(first=3)
    assert "9 rows read, 2 added, 7 refused" in text
    assert "first 3 refused rows:" in text
    assert "line 5: '112': not an E.164 number" in text
    assert "line 6" not in text


def test_reimport_refuses_duplicates_and_other_campaigns_are_apart(book, tmp_path):
    f = write(tmp_path / "l.csv", "number\n3471234567\n3471234568\n")
    assert import_csv(book, "a", f).added == 2
    again = import_csv(book, "a", f)
    assert again.added == 0
    assert again.by_reason == {"duplicate_in_campaign": 2}
    assert import_csv(book, "b", f).added == 2
    assert [c[:3] for c in book.campaigns()] == [("a", 2, 2), ("b", 2, 2)]


def test_column_options_semicolons_and_bom(book, tmp_path):
    f = tmp_path / "excel.csv"
    f.write_bytes("\ufeffTelefono;Cliente;Note\n347 123 4567;Anna;richiamare\n".encode())
    with pytest.raises(ListError, match=r"missing required column 'number'.*'Telefono'"):
        import_csv(book, "c", f)
    report = import_csv(book, "c", f, number_column="telefono", name_column="cliente")
    assert report.added == 1
    (contact,) = book.contacts("c")
    assert (contact.number, contact.name, dict(contact.vars)) == (
        "+393471234567", "Anna", {"Note": "richiamare"})


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty file"),
    ("name,city\nAnna,Roma\n", "missing required column 'number'"),
    ("number,name,number\n1,2,3\n", "column 'number' appears twice"),
    ("number,,city\n1,2,3\n", "column 2 of the header has no name"),
])
def test_whole_file_refused(book, tmp_path, text, message):
    with pytest.raises(ListError, match=message):
        import_csv(book, "c", write(tmp_path / "bad.csv", text))
    assert list(book.contacts("c")) == []


def test_campaign_names_and_unreadable_files(book, tmp_path):
    f = write(tmp_path / "l.csv", "number\n3471234567\n")
    with pytest.raises(ListError, match="not a campaign name"):
        import_csv(book, "no spaces", f)
    with pytest.raises(ListError, match="cannot read it"):
        import_csv(book, "c", tmp_path / "missing.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("number,name\n3471234567,Nicol\xf2\n".encode("latin-1"))
    with pytest.raises(ListError, match="cannot read it"):
        import_csv(book, "c", bad)


def test_import_1000_rows_quickly_with_progress(book, tmp_path):
    rows = "".join(f"34700{i:05d},Person {i},{i % 7}\n" for i in range(1000))
    f = write(tmp_path / "l.csv", "number,name,group\n" + rows)
    for i in range(0, 1000, 10):  # every tenth number is listed
        book.add_dnc(f"34700{i:05d}", "register:test")
    seen = []
    started = time.perf_counter()
    report = import_csv(book, "big", f, progress=seen.append)
    assert time.perf_counter() - started < 2.0
    assert (report.read, report.added, report.by_reason) == (1000, 900, {"dnc": 100})
    assert seen == []  # progress comes every 10,000 rows
    assert book.status("big", time.time()).states["pending"] == 900


def test_due_order_limit_and_dnc_added_after_the_import(book, tmp_path):
    f = write(tmp_path / "l.csv", "number\n3470000001\n3470000002\n3470000003\n3470000004\n")
    import_csv(book, "c", f, now=100.0)
    assert book.due("c", now=99.0, limit=10) == []
    first = book.due("c", now=100.0, limit=2)
    assert [c.number for c in first] == ["+393470000001", "+393470000002"]
    # a later add, in any spelling, is honoured by is_dnc and by due()
    assert not book.is_dnc("+393470000002")
    assert book.add_dnc("347 000 0002", "ivr", "pressed 9") is True
    assert book.is_dnc("+393470000002")
    due = book.due("c", now=100.0, limit=2)
    assert [c.number for c in due] == ["+393470000001", "+393470000003"]
    skipped = book.contact(first[1].id)
    assert skipped is not None
    assert (skipped.state, skipped.next_at, skipped.attempts) == (
        "dnc", None, 0)
    (audit,) = book.attempts(skipped.id)
    assert (audit.outcome, audit.dnc_checked, audit.call_id) == (DNC_SKIPPED, True, None)
    assert audit.decision == "not dialled: on the do-not-call list (source ivr)"
    assert len(book.due("c", now=100.0, limit=10)) == 3
    assert book.due("other", now=100.0, limit=10) == []


def test_due_fills_the_limit_past_many_listed_contacts(book, tmp_path):
    f = write(tmp_path / "l.csv", "number\n" + "".join(f"34700{i:05d}\n" for i in range(30)))
    import_csv(book, "c", f, now=1.0)
    for i in range(25):
        book.add_dnc(f"34700{i:05d}")
    due = book.due("c", now=2.0, limit=4)
    assert [c.number for c in due] == [f"+3934700{i:05d}" for i in range(25, 29)]
    assert book.status("c", 2.0).states["dnc"] == 25


def test_record_attempt_retry_then_close(book, tmp_path):
    import_csv(book, "c", write(tmp_path / "l.csv", "number\n3470000001\n3470000002\n"),
               now=0.0)
    a, b = book.due("c", now=0.0, limit=10)
    book.record_attempt(a.id, "busy", "call-1", "dialled: agent anna free", next_at=600.0,
                        state="pending", now=5.0, dnc_checked=True)
    assert [c.id for c in book.due("c", now=10.0, limit=10)] == [b.id]
    assert [c.id for c in book.due("c", now=600.0, limit=10)] == [b.id, a.id]
    book.record_attempt(a.id, "answered", "call-2", "dialled: retry after busy", None, "done",
                        now=601.0, dnc_checked=True)
    after = book.contact(a.id)
    assert after is not None
    assert (after.state, after.attempts, after.last_outcome, after.next_at, after.updated) == (
        "done", 2, "answered", None, 601.0)
    assert [(t.outcome, t.call_id, t.decision, t.dnc_checked) for t in book.attempts(a.id)] == [
        ("busy", "call-1", "dialled: agent anna free", True),
        ("answered", "call-2", "dialled: retry after busy", True)]
    with pytest.raises(ValueError, match="unknown contact state"):
        book.record_attempt(b.id, "busy", None, "x", 1.0, "later", now=1.0)
    with pytest.raises(ValueError, match="needs the time of its next attempt"):
        book.record_attempt(b.id, "busy", None, "x", None, "pending", now=1.0)
    with pytest.raises(KeyError):
        book.record_attempt(9999, "busy", None, "x", None, "failed", now=1.0)
    status = book.status("c", now=10.0)
    assert status.states == {"pending": 1, "done": 1, "dnc": 0, "failed": 0, "invalid": 0}
    assert status.outcomes == {"answered": 1, "busy": 1}
    assert (status.due_now, status.next_due) == (1, None)


def test_answers_merge_and_dispositions(book, tmp_path):
    import_csv(book, "c", write(tmp_path / "l.csv",
                                "number\n3470000001\n3470000002\n3470000003\n"), now=0.0)
    a, b, c = book.due("c", now=0.0, limit=10)
    assert book.set_answers(a.id, {"q1": "2"}, now=1.0) == {"q1": "2"}
    assert book.set_answers(a.id, {"q2": 5, "q1": "3"}, now=2.0) == {"q1": "3", "q2": 5}
    stored = book.contact(a.id)
    assert stored is not None
    assert dict(stored.answers) == {"q1": "3", "q2": 5}
    book.set_disposition(a.id, "callback_later", now=3.0, ends=False)
    book.set_disposition(b.id, "sale", now=3.0, ends=True)
    book.set_disposition(c.id, "stop_calling", now=3.0, dnc=True)
    states = {x.id: (x.state, x.disposition) for x in book.contacts("c")}
    assert states == {a.id: ("pending", "callback_later"), b.id: ("done", "sale"),
                      c.id: ("dnc", "stop_calling")}
    assert book.dnc.entry("3470000003") == ("+393470000003", "disposition", 3.0,
                                            "stop_calling")
    with pytest.raises(KeyError):
        book.set_answers(9999, {"q": 1})
    with pytest.raises(KeyError):
        book.set_disposition(9999, "sale", now=1.0)


def test_tables_live_beside_the_call_records(tmp_path):
    from ivr.store import CallStore

    path = tmp_path / "calls.db"
    store = CallStore(path)
    try:
        with ContactBook(path) as book:
            import_csv(book, "c", write(tmp_path / "l.csv", "number\n3470000001\n"))
        tables = {r[0] for r in sqlite3.connect(path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"calls", "outbound_contacts", "outbound_attempts", "outbound_dnc"} <= tables
        assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_vars_keep_unicode(book, tmp_path):
    import_csv(book, "c", write(tmp_path / "l.csv", "number,città\n3470000001,Forlì\n"))
    row = book.db.execute("SELECT vars FROM outbound_contacts").fetchone()
    assert json.loads(row[0]) == {"città": "Forlì"}
    assert "Forlì" in row[0]


def test_the_planners_decisions_are_recorded_with_their_retry_counts(book, tmp_path):
    from ivr.outbound.campaigns import Campaign, Retry, Window
    from ivr.outbound.plan import after_attempt

    always = Window("UTC", (0, 1, 2, 3, 4, 5, 6), ((0, 1440),))
    campaign = Campaign(name="c", mode="progressive", trunk="gw", trunk_lines=4, max_lines=2,
                        window=always, retries={"busy": Retry(1, 60.0)},
                        final_dispositions=frozenset({"1"}), dnc_disposition="8")
    t0 = 1_800_000_000.0
    import_csv(book, "c", write(tmp_path / "l.csv",
                                "number,name\n3470000001,A\n3470000002,B\n3470000003,C\n"),
               now=t0)
    a, b, c = book.due("c", now=t0, limit=10)
    assert a.to_plan().tries == {}
    first = after_attempt(campaign, a.to_plan(), "busy", t0)
    book.record_decision(first, "busy", "call-1", t0, dnc_checked=True)
    stored = book.contact(a.id)
    assert stored is not None
    assert (stored.state, stored.next_at, dict(stored.tries), stored.attempts) == (
        "pending", t0 + 60, {"busy": 1}, 1)
    assert [x.id for x in book.due("c", now=t0 + 59, limit=10)] == [b.id, c.id]
    (again,) = [x for x in book.due("c", now=t0 + 60, limit=10) if x.id == a.id]
    second = after_attempt(campaign, again.to_plan(), "busy", t0 + 61)
    assert second.action == "failed"
    book.record_decision(second, "busy", "call-2", t0 + 61, dnc_checked=True)
    stored = book.contact(a.id)
    assert stored is not None
    assert (stored.state, stored.next_at, stored.attempts) == ("failed", None, 2)
    assert [t.decision for t in book.attempts(a.id)] == [first.reason, second.reason]

    stop = after_attempt(campaign, b.to_plan(), "answered", t0, disposition="8")
    book.record_decision(stop, "answered", "call-3", t0, dnc_checked=True, disposition="8")
    sale = after_attempt(campaign, c.to_plan(), "answered", t0, disposition="1")
    book.record_decision(sale, "answered", "call-4", t0, dnc_checked=True, disposition="1")
    states = {x.id: (x.state, x.disposition) for x in book.contacts("c")}
    assert states == {a.id: ("failed", None), b.id: ("dnc", "8"), c.id: ("done", "1")}
    assert book.dnc.entry("3470000002") == ("+393470000002", "disposition", t0, "8")
    assert book.due("c", now=t0 + 10**6, limit=10) == []
