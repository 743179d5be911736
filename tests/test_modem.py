"""The modem's AT dialogue and the SMS queue, against a small modem responder on a real
pseudo-terminal pair (os.openpty): success, ERROR, +CMS ERROR, a modem that stops answering,
one unplugged mid-message (the text stays queued and goes out after replug)."""

from __future__ import annotations

import io
import os
import select
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from hw.modem import (
    AtError,
    Modem,
    ModemGone,
    ModemTimeout,
    at_quote,
    exercise_modem,
    sms_text,
)
from ivr.cli import main
from ivr.metrics import Snapshot
from ivr.sms import (
    AlertInputs,
    AlertTexts,
    RateLimit,
    SmsMetrics,
    SmsOutbox,
    SmsQueue,
    SmsSender,
    alert_inputs,
)
from tests.driver_bench import CONFIG

WAIT = 10.0


class FakeModem:
    """Answers AT commands on the master side of a pty; *mode* says how +CMGS goes:
    ``ok``, ``cms`` (+CMS ERROR: 500), ``error``, ``mute`` (answers nothing at all) or
    ``unplug`` (closes the pty after the prompt, mid-message); the first *refuse* texts get
    +CMS ERROR whatever the mode."""

    def __init__(self, link: Path, *, pin: str | None = None, mode: str = "ok",
                 refuse: int = 0) -> None:
        self.master, slave = os.openpty()
        self.slave_name = os.ttyname(slave)
        os.close(slave)  # pyserial opens it by name; the master keeps the pair alive
        if link.is_symlink():
            link.unlink()
        link.symlink_to(self.slave_name)
        self.pin = pin
        self.unlocked = pin is None
        self.mode = mode
        self.refuse = refuse
        self.commands: list[str] = []
        self.texts: list[tuple[str, str]] = []
        self.got_text = threading.Event()
        self.registered = threading.Semaphore(0)
        """Released each time the dialogue reached the registration (the modem was set up)."""
        self.unplugged = threading.Event()
        self._stop = threading.Event()
        self._buffer = b""
        self._number = ""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT)
        if not self.unplugged.is_set():
            os.close(self.master)

    def _say(self, *lines: str) -> None:
        os.write(self.master, b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines))

    def _run(self) -> None:
        while not self._stop.is_set() and not self.unplugged.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                self._buffer += os.read(self.master, 1024)
            except OSError:
                continue  # nobody has the slave open yet
            self._handle()

    def _handle(self) -> None:
        while True:
            if self._number:
                if b"\x1a" not in self._buffer:
                    return
                text, self._buffer = self._buffer.split(b"\x1a", 1)
                self._message(self._number, text.decode("latin-1"))
                self._number = ""
                continue
            if b"\r" not in self._buffer:
                return
            line, self._buffer = self._buffer.split(b"\r", 1)
            self._command(line.decode().strip())

    def _message(self, number: str, text: str) -> None:
        if self.refuse:
            self.refuse -= 1
            self._say("+CMS ERROR: 500")
        elif self.mode == "ok":
            self.texts.append((number, text))
            self._say("+CMGS: 7", "OK")
            self.got_text.set()
        elif self.mode == "cms":
            self._say("+CMS ERROR: 500")
        elif self.mode == "error":
            self._say("ERROR")

    def _command(self, command: str) -> None:
        if not command or self.mode == "mute":
            return
        self.commands.append(command)
        if command == "AT+CPIN?":
            self._say("+CPIN: READY" if self.unlocked else "+CPIN: SIM PIN", "OK")
        elif command.startswith("AT+CPIN="):
            if command == f'AT+CPIN="{self.pin}"':
                self.unlocked = True
                self._say("OK")
            else:
                self._say("+CME ERROR: 16")
        elif command == "AT+CREG?":
            self._say("+CREG: 0,1", "OK")
            self.registered.release()
        elif command == "AT+CEREG?":
            self._say("ERROR")
        elif command == "AT+CSQ":
            self._say("+CSQ: 17,99", "OK")
        elif command == "AT+COPS?":
            self._say('+COPS: 0,0,"I TIM",7', "OK")
        elif command.startswith("AT+CMGS="):
            self._number = command.split('"')[1]
            os.write(self.master, b"\r\n> ")
            if self.mode == "unplug":
                self.unplugged.set()
                os.close(self.master)
        else:
            self._say("OK")


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "ttyMODEM"


def modem_on(link: Path, **options: object) -> Modem:
    return Modem(str(link), timeout=2.0, send_timeout=2.0, register_timeout=2.0, poll=0.05,
                 **options)  # type: ignore[arg-type]


def test_dialogue_unlocks_the_sim_and_sends_a_text(link: Path) -> None:
    fake = FakeModem(link, pin="1234")
    modem = modem_on(link, pin="1234")
    try:
        info = modem.open()
        assert info.registration == "home"
        assert modem.send("+39 333 1234567", "Ticket T-42 opened") == 7
    finally:
        modem.close()
        fake.stop()
    assert fake.commands[:5] == ["AT", "ATE0", "AT+CMEE=1", "AT+CPIN?", 'AT+CPIN="1234"']
    assert "AT+CMGF=1" in fake.commands
    assert fake.texts == [("+393331234567", "Ticket T-42 opened")]


def test_a_wrong_pin_is_an_error_that_does_not_show_the_pin(link: Path) -> None:
    fake = FakeModem(link, pin="1234")
    modem = modem_on(link, pin="9999")
    try:
        with pytest.raises(AtError) as err:
            modem.open()
    finally:
        fake.stop()
    assert err.value.code == "16"
    assert "9999" not in str(err.value)
    assert not modem.is_open


def test_cms_error_and_error_are_errors_of_the_command(link: Path) -> None:
    fake = FakeModem(link, mode="cms")
    modem = modem_on(link)
    try:
        modem.open()
        with pytest.raises(AtError) as err:
            modem.send("+39333", "x")
        assert err.value.code == "500"
        fake.mode = "error"
        with pytest.raises(AtError) as err:
            modem.send("+39333", "x")
        assert err.value.answer == "ERROR"
    finally:
        modem.close()
        fake.stop()


def test_a_modem_that_stops_answering_times_out(link: Path) -> None:
    fake = FakeModem(link)
    modem = Modem(str(link), timeout=0.3, register_timeout=1.0, poll=0.05)
    try:
        modem.open()
        fake.mode = "mute"
        with pytest.raises(ModemTimeout):
            modem.command("AT")
    finally:
        modem.close()
        fake.stop()


def test_a_missing_port_is_gone(tmp_path: Path) -> None:
    with pytest.raises(ModemGone):
        Modem(str(tmp_path / "nothing")).open()


def test_text_and_number_are_made_safe_for_text_mode() -> None:
    assert at_quote('+39 333"; AT+CFUN=0') == "+39333+0"
    assert sms_text("a\x1ab\x1bc\r\nd" + "x" * 300) == ("a b c d" + "x" * 153).encode()


def test_queue_retries_with_backoff_then_gives_up(tmp_path: Path) -> None:
    queue = SmsQueue(tmp_path / "calls.db", retry_first=10, retry_max=25, max_attempts=3)
    sms_id = queue.add("+39333", "hello", "alert", now=100.0)
    [sms] = queue.due(100.0)
    assert not queue.failed(sms, 100.0, "+CMS ERROR: 500")
    assert queue.due(109.0) == []
    [sms] = queue.due(110.0)
    assert not queue.failed(sms, 110.0, "x")
    assert queue.next_due() == 130.0
    [sms] = queue.due(130.0)
    assert queue.failed(sms, 130.0, "x")
    assert queue.state(sms_id) == ("failed", 3, "x")
    assert queue.queued_count() == 0
    queue.close()


def test_rate_limit_per_number_and_per_day() -> None:
    limit = RateLimit(per_number=2, per_day=3)
    assert limit.allow("+39111", 0.0) == ""
    assert limit.allow("+39111", 10.0) == ""
    assert limit.allow("+39111", 20.0) == "per_number"
    assert limit.allow("+39222", 30.0) == ""
    assert limit.allow("+39333", 40.0) == "per_day"
    assert limit.allow("+39333", 86400.0) == ""  # the first text is a day old
    assert limit.allow("+39111", 86410.0) == ""
    assert limit.allow("+39111", 86411.0) == "per_day"  # 30, 86400, 86410


def test_rate_limit_remembers_texts_queued_before_a_restart(tmp_path: Path) -> None:
    queue = SmsQueue(tmp_path / "calls.db")
    queue.add("+39111", "a", "caller", now=1000.0)
    queue.add("+39111", "b", "alert", now=1000.0)
    limit = RateLimit(per_number=1, per_day=10)
    limit.seed(queue.recent("caller", since=1000.0 - 86400))
    assert limit.allow("+39111", 2000.0) == "per_number"
    queue.close()


def test_unplugged_mid_message_the_text_stays_queued_and_goes_after_replug(link: Path) -> None:
    fake = FakeModem(link, mode="unplug")
    queue = SmsQueue(link.parent / "calls.db")
    registry = CollectorRegistry()
    ups: list[bool] = []
    changed = threading.Condition()

    def on_up(name: str, up: bool) -> None:
        with changed:
            ups.append(up)
            changed.notify_all()

    sender = SmsSender("gsm", str(link), queue, modem=modem_on(link),
                       metrics=SmsMetrics(registry), on_up=on_up, backoff=(0.05, 0.2))
    sms_id = sender.add("+39333", "gateway unreachable", "alert", now=0.0)
    sender.start()
    try:
        assert fake.unplugged.wait(WAIT)
        with changed:
            assert changed.wait_for(lambda: ups[-2:] == [True, False], WAIT)
        assert queue.state(sms_id) == ("queued", 0, "")
        assert registry.get_sample_value("ivr_sms_queued") == 1
        replugged = FakeModem(link)  # same name, a new port behind it
        try:
            assert replugged.got_text.wait(WAIT)
            assert sender.sent.wait(WAIT)
        finally:
            sender.stop()
            replugged.stop()
    finally:
        fake.stop()
    assert replugged.texts == [("+39333", "gateway unreachable")]
    assert queue.state(sms_id) == ("sent", 1, "")
    assert registry.get_sample_value("ivr_sms_total", {"result": "sent"}) == 1
    assert registry.get_sample_value("ivr_sms_queued") == 0
    queue.close()


def test_a_refused_text_is_retried_later_not_lost(link: Path) -> None:
    fake = FakeModem(link, refuse=2)
    queue = SmsQueue(link.parent / "calls.db", retry_first=0.05, retry_max=0.1)
    registry = CollectorRegistry()
    sender = SmsSender("gsm", str(link), queue, modem=modem_on(link),
                       metrics=SmsMetrics(registry))
    sender.start()
    sms_id = sender.add("+39333", "hello", "alert", now=time.time())
    try:
        assert fake.got_text.wait(WAIT)
        assert sender.sent.wait(WAIT)
    finally:
        sender.stop()
        fake.stop()
    assert queue.state(sms_id) == ("sent", 3, "")
    assert registry.get_sample_value("ivr_sms_total", {"result": "error"}) == 2
    assert registry.get_sample_value("ivr_sms_total", {"result": "sent"}) == 1
    queue.close()


def test_a_modem_that_will_not_register_is_closed_and_tried_again(link: Path) -> None:
    fake = FakeModem(link, pin="1234")  # and we have no PIN
    ups: list[bool] = []
    down = threading.Event()

    def on_up(name: str, up: bool) -> None:
        ups.append(up)
        if not up:
            down.set()

    queue = SmsQueue(link.parent / "calls.db")
    sender = SmsSender("gsm", str(link), queue, modem=modem_on(link), on_up=on_up,
                       backoff=(0.05, 0.1))
    sender.start()
    try:
        assert down.wait(WAIT)
    finally:
        sender.stop()
        fake.stop()
    assert ups[:2] == [True, False]
    queue.close()


class Published:
    def __init__(self) -> None:
        self.inputs = AlertInputs()

    def __call__(self) -> AlertInputs:
        return self.inputs


def test_alerts_text_every_supervisor_when_a_condition_starts_and_ends() -> None:
    state = Published()
    queued: list[tuple[str, str, str, float]] = []
    alerts = AlertTexts(state, {"laura": "+39111", "marco": "+39222"},
                        lambda *text: queued.append(text), site="Rossi srl")
    assert alerts.check(0.0) == []
    state.inputs = AlertInputs(gateways_down=("fxo",), records_pending=3)
    assert alerts.check(10.0) == []
    assert alerts.check(129.0) == []  # GatewayUnreachable holds for 2 minutes
    assert alerts.check(130.0) == ["Rossi srl ALERT: gateway fxo does not answer."]
    assert [(n, p) for n, _, p, _ in queued] == [("+39111", "alert"), ("+39222", "alert")]
    state.inputs = AlertInputs(records_pending=3)
    assert alerts.check(140.0) == ["Rossi srl OK again: gateway fxo does not answer - "
                                   "resolved."]
    assert alerts.check(309.0) == []
    assert alerts.check(310.0) == ["Rossi srl ALERT: call records are not being written "
                                   "(3 wait)."]
    state.inputs = AlertInputs()
    assert len(alerts.check(311.0)) == 1
    assert alerts.announced == {}


def test_a_condition_that_clears_before_its_hold_time_sends_nothing() -> None:
    state = Published()
    queued: list[object] = []
    alerts = AlertTexts(state, {"laura": "+39111"}, lambda *text: queued.append(text))
    state.inputs = AlertInputs(recordings_suspended=True, unstaffed_queues=("support",))
    assert alerts.check(0.0) == []
    state.inputs = AlertInputs()
    assert alerts.check(59.0) == []
    state.inputs = AlertInputs(recordings_suspended=True)
    assert alerts.check(60.0) == []  # it started again at 60: held 0 s
    assert alerts.check(120.0) == ["Centralino ALERT: call recording suspended: the disk is "
                                   "nearly full."]
    assert len(queued) == 1


def test_the_outbox_queues_a_caller_text_within_limits_without_a_modem(tmp_path: Path) -> None:
    queue = SmsQueue(tmp_path / "calls.db")
    queue.add("+39111", "earlier today", "caller", now=time.time() - 3600)
    outbox = SmsOutbox(queue, limit=RateLimit(per_number=1, per_day=5))
    outbox.start()
    try:
        assert outbox.offer("", "x", time.time()) == "withheld"
        assert outbox.offer("+39111", "x", time.time()) == "per_number"  # seeded from the file
        assert outbox.offer("+39222", "Ticket T-1", time.time()) == ""
        assert outbox.written.wait(WAIT)
    finally:
        outbox.stop()  # closes the queue
    queue = SmsQueue(tmp_path / "calls.db")
    assert queue.queued_count() == 2
    assert [n for n, _ in queue.recent("caller", 0.0)] == ["+39111", "+39222"]
    queue.close()


def test_the_outbox_looks_at_the_alerts_with_no_modem_plugged_in(tmp_path: Path) -> None:
    queue = SmsQueue(tmp_path / "calls.db")
    outbox = SmsOutbox(queue, check_every=0.01)
    state = Published()
    state.inputs = AlertInputs(gateways_down=("fxo",))
    outbox.alerts = AlertTexts(state, {"laura": "+39111"}, outbox.add_alert, hold={})
    outbox.start()
    try:
        assert outbox.written.wait(WAIT)
    finally:
        outbox.stop()
    queue = SmsQueue(tmp_path / "calls.db")
    assert queue.recent("alert", 0.0)[0][0] == "+39111"
    queue.close()


def test_alert_inputs_from_the_published_snapshot() -> None:
    snap = Snapshot(callers_waiting={"support": 2, "level2": 1, "sales": 0},
                    queue_agents={("support", "logged_out"): 2, ("level2", "idle"): 1},
                    trunks={"fxo": False, "sip": True})
    assert alert_inputs(snap, 4, True) == AlertInputs(
        gateways_down=("fxo",), records_pending=4, recordings_suspended=True,
        unstaffed_queues=("support",))


def test_hw_test_runs_the_dialogue_and_texts_the_number_given(link: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    fake = FakeModem(link, pin="1234")
    (tmp_path / "flow.yaml").write_text("flow: t\nlanguages: [en]\nstart: bye\nnodes:\n"
                                        "  bye: {type: hangup}\n")
    (tmp_path / "ivr.yaml").write_text(
        CONFIG.format(lines=2, strategy="ring_all", dial_out="")
        + f"devices:\n  gsm: {{kind: modem, url: '{link}', pin: '1234'}}\n")
    try:
        assert main(["hw", "test", "gsm", "--config", str(tmp_path / "ivr.yaml"),
                     "--to", "+393331234567"]) == 0
    finally:
        fake.stop()
    out = capsys.readouterr().out
    assert "registered (home)" in out
    assert '0,0,"I TIM",7' in out
    assert "17/31 (about -79 dBm)" in out
    assert "test SMS to +393331234567 sent (reference 7)" in out
    assert "1234" not in out.replace("+393331234567", "")
    assert fake.texts[0][0] == "+393331234567"


def test_hw_test_of_a_modem_that_is_not_there_fails(tmp_path: Path) -> None:
    out = io.StringIO()
    assert exercise_modem(str(tmp_path / "nothing"), None, out) == 1
    assert "cannot open" in out.getvalue()


def test_an_idle_modem_that_stops_answering_is_noticed_and_reopened(link: Path) -> None:
    fake = FakeModem(link)
    ups: list[bool] = []
    changed = threading.Condition()

    def on_up(name: str, up: bool) -> None:
        with changed:
            ups.append(up)
            changed.notify_all()

    queue = SmsQueue(link.parent / "calls.db")
    sender = SmsSender("gsm", str(link), queue, on_up=on_up, backoff=(0.05, 0.1),
                       modem=Modem(str(link), timeout=0.3, register_timeout=1.0, poll=0.05),
                       poll_every=0.05, heartbeat=0.05)
    sender.start()
    try:
        assert fake.registered.acquire(timeout=WAIT)
        fake.mode = "mute"
        with changed:
            assert changed.wait_for(lambda: ups[:2] == [True, False], WAIT)
        fake.mode = "ok"  # it answers again: the dialogue runs anew
        assert fake.registered.acquire(timeout=WAIT)
    finally:
        sender.stop()
        fake.stop()
    assert fake.commands.count("ATE0") >= 2
    queue.close()


def test_ivr_sms_shows_the_queue(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    queue = SmsQueue(tmp_path / "calls.db")
    queue.add("+393331234567", "a", "caller", now=time.time())
    [sms] = queue.due(time.time())
    queue.failed(sms, time.time(), "+CMS ERROR: 500")
    queue.add("+393337654321", "b", "alert", now=time.time())
    queue.close()
    assert main(["sms", "--store", str(tmp_path / "calls.db")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "queued 2, sent 0, failed 0"
    assert "alert" in out[1]
    assert "…321" in out[1]
    assert out[2].endswith("1 attempt  +CMS ERROR: 500")
    assert "1234567" not in "\n".join(out)
