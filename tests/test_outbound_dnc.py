"""The do-not-call list: numbers in E.164, sources, registers loaded from files."""

import sqlite3

import pytest

from ivr.outbound.dnc import DncList, ImportReport, ListError, to_e164


@pytest.mark.parametrize(("raw", "expected"), [
    ("+390612345678", ("+390612345678", "")),
    ("06 1234 5678", ("+390612345678", "")),
    ("347-123.4567", ("+393471234567", "")),
    ("(347) 1234567", ("+393471234567", "")),
    ("0041 44 123 45 67", ("+41441234567", "")),
    ("tel:+39-06-12345678", ("+390612345678", "")),
    ("", (None, "empty")),
    ("   ", (None, "empty")),
    ("abc", (None, "invalid")),
    ("anonymous", (None, "invalid")),
    ("+39 06 12a4", (None, "invalid")),
    ("112", (None, "not_e164")),
    ("800123456", (None, "not_e164")),  # toll free, no country: not dialled as E.164
    ("*41", (None, "not_e164")),
    ("+0612345678", (None, "not_e164")),
    ("+3912", (None, "not_e164")),
    ("+39061234567890123", (None, "not_e164")),  # 17 digits: longer than E.164 allows
])
def test_to_e164(raw, expected):
    assert to_e164(raw) == expected


def test_add_check_remove_any_spelling(tmp_path):
    db = tmp_path / "calls.db"
    with DncList(db) as dnc:
        assert dnc.add("347 123 4567", "internal", "asked on the phone", now=100.0) is True
        assert dnc.is_dnc("+393471234567")
        assert dnc.is_dnc("3471234567")
        assert not dnc.is_dnc("3471234568")
        assert not dnc.is_dnc("not a number")
        # listed again from another source: the first entry is kept as it was
        assert dnc.add("+393471234567", "ivr", "pressed 9", now=200.0) is False
        assert dnc.entry("3471234567") == ("+393471234567", "internal", 100.0,
                                           "asked on the phone")
        assert dnc.count() == {"internal": 1}
    # another connection (another process) sees it
    with DncList(db) as again:
        assert again.is_dnc("347 1234567")
        assert again.remove("3471234567") is True
        assert again.remove("3471234567") is False
        assert not again.is_dnc("+393471234567")
        assert again.count() == {}


def test_add_refuses_bad_numbers_and_sources(tmp_path):
    with DncList(tmp_path / "calls.db") as dnc:
        with pytest.raises(ListError, match=r"not an E\.164 number"):
            dnc.add("112")
        with pytest.raises(ListError, match="empty number"):
            dnc.add(" ")
        with pytest.raises(ListError, match="unknown do-not-call source"):
            dnc.add("3471234567", "friends")
        with pytest.raises(ListError, match="unknown do-not-call source"):
            dnc.add("3471234567", "register:")
        assert dnc.add("3471234567", "register:rpo-2026") is True
        assert dnc.count() == {"register:rpo-2026": 1}


def test_import_one_number_per_line(tmp_path):
    register = tmp_path / "rpo.txt"
    register.write_text("0612345678\n\n+393471234567\n06 1234 5678\nabc\n112\n3479999999\n")
    with DncList(tmp_path / "calls.db") as dnc:
        dnc.add("3479999999", "internal", "by hand")
        report = dnc.import_file(register, now=5.0)
        assert (report.read, report.added, report.already) == (6, 2, 1)
        assert [(r.line, r.raw, r.reason) for r in report.refused] == [
            (4, "06 1234 5678", "duplicate_in_file"), (5, "abc", "invalid"),
            (6, "112", "not_e164")]
        assert dnc.count() == {"internal": 1, "register:rpo.txt": 2}
        assert dnc.entry("0612345678") == ("+390612345678", "register:rpo.txt", 5.0, "")
        text = report.summary()
        assert "6 rows read, 2 added, 3 refused" in text
        assert "1  already on the do-not-call list (kept as it was)" in text
        assert "line 5: 'abc': not a telephone number" in text


def test_import_csv_column_and_replace(tmp_path):
    old = tmp_path / "rpo-1.csv"
    old.write_text("numero;data\n0612345678;2026-01-01\n0611111111;2026-01-02\n")
    new = tmp_path / "rpo-2.csv"
    new.write_text("numero;data\n0611111111;2026-02-01\n0622222222;2026-02-02\n")
    with DncList(tmp_path / "calls.db") as dnc:
        dnc.add("3471234567")
        assert dnc.import_file(old, column="numero").added == 2
        report = dnc.import_file(new, column="NUMERO", replace=True)
        assert (report.added, report.already, report.removed) == (1, 1, 1)
        assert "        1  dropped: no longer in the register" in report.summary()
        assert not dnc.is_dnc("0612345678")  # left the register
        assert dnc.is_dnc("0611111111")
        assert dnc.is_dnc("0622222222")
        assert dnc.is_dnc("3471234567")  # internal entries stay
        assert dnc.count() == {"internal": 1, "register:rpo-2.csv": 2}


def test_import_refuses_whole_files(tmp_path):
    with DncList(tmp_path / "calls.db") as dnc:
        csv_file = tmp_path / "r.csv"
        csv_file.write_text("numero,data\n0612345678,x\n")
        with pytest.raises(ListError, match="more than one field on a line: give the CSV "
                                            "column of the numbers with --column"):
            dnc.import_file(csv_file)
        with pytest.raises(ListError, match="no column 'number' in the header"):
            dnc.import_file(csv_file, column="number")
        with pytest.raises(ListError, match="cannot read it"):
            dnc.import_file(tmp_path / "missing.txt")
        assert dnc.count() == {}


def test_a_failed_import_leaves_the_list_as_it_was(tmp_path):
    db = tmp_path / "calls.db"
    register = tmp_path / "rpo.txt"
    register.write_text("0612345678\n0611111111\n")
    with DncList(db) as dnc:
        dnc.import_file(register)
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        dnc.db.execute("PRAGMA busy_timeout = 50")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            dnc.import_file(register, replace=True)
        blocker.execute("ROLLBACK")
        blocker.close()
        assert dnc.count() == {"register:rpo.txt": 2}


def test_progress_every_10000_rows(tmp_path):
    register = tmp_path / "rpo.txt"
    register.write_text("".join(f"06{i:08d}\n" for i in range(25_000)))
    seen: list[int] = []
    with DncList(tmp_path / "calls.db") as dnc:
        report = dnc.import_file(register, progress=seen.append)
        assert report.added == 25_000
    assert seen == [10_000, 20_000]


def test_refused_rows_to_csv(tmp_path):
    report = ImportReport(read=2)
    report.refuse(3, "abc", "invalid")
    report.refuse(7, "112", "not_e164")
    out = tmp_path / "refused.csv"
    report.write_refused(out)
    assert out.read_text().splitlines() == [
        "line,number,reason,why", "3,abc,invalid,not a telephone number",
        "7,112,not_e164,not an E.164 number after normalisation"]


def test_a_register_goes_in_by_chunks_and_a_new_edition_replaces_it(tmp_path, monkeypatch):
    from ivr.outbound import dnc as module

    monkeypatch.setattr(module, "CHUNK", 3)
    first = tmp_path / "ed1.txt"
    first.write_text("".join(f"06{i:08d}\n" for i in range(10)))
    second = tmp_path / "ed2.txt"
    second.write_text("".join(f"06{i:08d}\n" for i in range(5, 12)))
    with DncList(tmp_path / "calls.db") as dnc:
        dnc.add("0600000001", "internal", "by hand")
        report = dnc.import_file(first)
        assert (report.added, report.already) == (9, 1)
        report = dnc.import_file(second, replace=True)
        assert (report.added, report.already, report.removed) == (2, 5, 4)
        assert dnc.count() == {"internal": 1, "register:ed2.txt": 7}
        assert [dnc.is_dnc(f"06{i:08d}") for i in range(13)] == [
            False, True, False, False, False, True, True, True, True, True, True, True, False]
        temp = dnc.db.execute("SELECT COUNT(*) FROM temp.dnc_kept").fetchone()[0]
        assert temp == 0
