"""End to end: the flow reloads on SIGHUP and on a change of its file while calls are in
progress; those calls keep the version they started with, new calls get the new one, and a
broken file keeps the running version in service."""

from __future__ import annotations

import re
import shutil
import signal
import time

import pytest

from tests.e2e import ROOT, Switchboard, free_tcp_port, free_udp_port, peer, require_sip_stack

pytestmark = pytest.mark.e2e


@pytest.fixture
def board(tmp_path):
    require_sip_stack()
    flow = tmp_path / "flow.yaml"
    shutil.copy(ROOT / "flows" / "demo.yaml", flow)
    sb = Switchboard(tmp_path, free_udp_port(), free_tcp_port(), agents={"anna": free_udp_port()},
                     flow=flow)
    sb.start()
    yield sb
    assert sb.stop() == 0, sb.log_tail()
    assert "Traceback" not in sb.log_path.read_text(), sb.log_tail()


def edited(text: str) -> str:
    """The flow with one prompt text changed (whatever the demo flow says today)."""
    for word in ("Welcome", "Goodbye", "Benvenuti", "Arrivederci"):
        if word in text:
            return text.replace(word, f"{word} again", 1)
    return text + "\n# changed by the reload test\n"


def broken(text: str) -> str:
    """The flow starting at a node that does not exist."""
    new, n = re.subn(r"(?m)^start:.*$", "start: nowhere", text)
    assert n == 1, "the flow file has no top-level 'start:' line"
    return new


def flow_info(board: Switchboard) -> list[dict[str, str]]:
    from prometheus_client.parser import text_string_to_metric_families

    return [dict(s.labels) for family in text_string_to_metric_families(board.metrics())
            for s in family.samples if s.name == "ivr_flow_info"]


def reload(board: Switchboard, trigger: str, text: str) -> None:
    """Write the flow file; for SIGHUP, also signal at once (the watcher sees the change too)."""
    assert board.flow is not None
    assert board.proc is not None
    board.flow.write_text(text)
    if trigger == "SIGHUP":
        board.proc.send_signal(signal.SIGHUP)


def call_support(board: Switchboard, tmp_path, name: str) -> dict[str, object]:
    """One call through the menu to the support queue and the agent; its record."""
    caller = peer(tmp_path, name, "caller", free_udp_port(), "--target", board.uri,
                  "--digits", "2,1", "--first-digit-after", "0.5", "--digit-gap", "0.8",
                  "--duration", "25").start()
    assert caller.wait_exit(30) == 0
    (record,) = [r for r in board.records() if r["caller"] == name]
    return record


@pytest.mark.parametrize("trigger", ["file change", "SIGHUP"])
def test_reload_while_calls_are_in_progress_then_a_broken_file(board, tmp_path, trigger):
    version_a = re.search(r"flow \S+ \(version (\w+)", board.log_path.read_text()).group(1)
    anna = peer(tmp_path, "anna", "agent", board.agents["anna"], "--talk", "1",
                "--answer-after", "0.3", "--duration", "60").start()
    # five callers choose English and sit in the main menu for 8 s
    early = peer(tmp_path, "5550001", "caller", free_udp_port(), "--target", board.uri,
                 "--calls", "5", "--call-gap", "0.1", "--digits", "2", "--first-digit-after",
                 "0.5", "--hold", "8", "--duration", "30").start()
    try:
        early.wait_event("confirmed", 5, timeout=15)
        changed_at = time.time()
        reload(board, trigger, edited(board.flow.read_text()))
        board.wait_for_log(f"flow reloaded ({trigger})", timeout=10)
        reloaded_at = time.time()
        late = call_support(board, tmp_path, "5550002")
        assert early.wait_exit(30) == 0

        # a broken file: every problem logged with its place, the running version stays
        reload(board, trigger, broken(board.flow.read_text()))
        board.wait_for_log(f"flow reload ({trigger}) refused", timeout=10)
        assert board.proc.poll() is None
        log = board.log_path.read_text()
        assert re.search(rf"ERROR .*{re.escape(str(board.flow))}:\d+:\d+: .*'nowhere'", log), \
            board.log_tail()
        after = call_support(board, tmp_path, "5550003")
    finally:
        early.stop()
        anna.stop()

    records = [r for r in board.records() if r["caller"] == "5550001"]
    assert len(records) == 5
    for record in records:
        assert record["flow_version"] == version_a
        assert record["started_at"] < changed_at, record
        assert record["ended_at"] > reloaded_at, record
    version_b = late["flow_version"]
    assert version_b != version_a
    for record in (late, after):
        assert record["flow_version"] == version_b
        assert record["outcome"] == "completed", record
        assert record["queue"] == "support", record
        assert record["agent"] == "anna", record
    # one reload each way, although for SIGHUP the watcher saw the same changes
    assert board.metric("ivr_flow_reloads_total", {"result": "ok"}) == 1.0
    assert board.metric("ivr_flow_reloads_total", {"result": "failed"}) == 1.0
    assert flow_info(board) == [{"flow": "demo", "version": version_b}]
    assert board.metric("ivr_flow_last_reload_timestamp_seconds") == pytest.approx(
        (changed_at + reloaded_at) / 2, abs=(reloaded_at - changed_at) / 2 + 0.5)
