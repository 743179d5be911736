"""Every node type of the flow language, driven by hand with the shipped office flow."""

import datetime as dt
from pathlib import Path

import pytest

from ivr.engine import (
    CallSession,
    DigitPressed,
    Enqueue,
    HangupCall,
    HttpLookup,
    LookupFinished,
    PlaybackFinished,
    PlayPrompt,
    RecordingFinished,
    SetOverrideState,
    StartRecording,
    StopPlayback,
    TimerFired,
    TransferCall,
    TransferFinished,
)
from ivr.flow import load_flow
from ivr.flow.prompts import spoken_text

ROOT = Path(__file__).resolve().parent.parent
ROME = dt.timezone(dt.timedelta(hours=1))  # winter time in Rome, for readable test dates


@pytest.fixture(scope="module")
def office():
    return load_flow(ROOT / "flows" / "office.yaml")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=ROME)


def plays(actions):
    return [a for a in actions if isinstance(a, PlayPrompt)]


def said(actions) -> str:
    return spoken_text(p for a in plays(actions) for p in a.pieces)


def finish(session, actions, now):
    """End the last prompt of *actions*."""
    return session.handle(PlaybackFinished(plays(actions)[-1].play_id), now)


def call(office, when="2026-12-02 10:00", caller="3331234567", overrides=None):
    s = CallSession(office, "c1", caller=caller, called="800123456", started_at=at(when),
                    overrides=overrides)
    return s, s.start(0.0)


def test_open_hours_known_caller_is_looked_up_and_vip_goes_first(office):
    s, actions = call(office)
    (lookup,) = [a for a in actions if isinstance(a, HttpLookup)]
    assert lookup.url == "http://127.0.0.1:8088/customers?number=3331234567"
    assert s.next_deadline() == pytest.approx(2.5)
    actions = s.handle(LookupFinished(lookup.request_id,
                                      {"customer": {"name": "Rossi", "tier": "gold"}}), 0.3)
    assert said(actions) == "Bentornato Rossi. La mettiamo subito in contatto con un operatore."
    (enqueue,) = finish(s, actions, 3.0)
    assert isinstance(enqueue, Enqueue)
    assert enqueue.priority == 10
    assert enqueue.context["customer"] == "Rossi"
    assert enqueue.context["tier"] == "gold"
    assert s.path_text() == "hours[open] > withheld[default] > crm > vip[case 1] > vip_queue"


def test_lookup_timeout_falls_back_to_the_menu_and_late_answer_is_ignored(office):
    s, actions = call(office)
    (lookup,) = [a for a in actions if isinstance(a, HttpLookup)]
    actions = s.handle(TimerFired(), 2.5)
    assert "Per l'assistenza, premere 1" in said(actions)
    assert s.handle(LookupFinished(lookup.request_id, {"customer": {"tier": "gold"}}), 3) == []
    assert s.path_text() == "hours[open] > withheld[default] > crm[timeout] > welcome"


def test_withheld_caller_skips_the_lookup(office):
    s, actions = call(office, caller="")
    assert not [a for a in actions if isinstance(a, HttpLookup)]
    assert s.node == "welcome"


def test_holiday_plays_holiday_message_then_closed_subflow(office):
    s, actions = call(office, when="2026-12-25 10:00")
    assert said(actions) == "Oggi i nostri uffici sono chiusi per festività."
    actions = finish(s, actions, 4.0)
    assert "Per lasciare un messaggio, premere 1" in said(actions)
    assert s.node == "message"
    assert s.path_text() == "hours[holiday] > holiday > closed > closed/message"


def test_custom_holiday_date_and_closed_evening(office):
    s, _ = call(office, when="2026-08-14 10:00")
    assert s.path[0].digits == "holiday"
    s, _ = call(office, when="2026-12-02 19:30")
    assert s.path_text() == "hours[closed] > closed > closed/message"
    s, _ = call(office, when="2026-12-06 10:00")  # a Sunday
    assert s.path[0].digits == "closed"


def test_override_forces_closed_and_set_override_node_emits_action(office):
    s, _ = call(office, overrides={"office": "closed"})
    assert s.path[0].digits == "closed"
    from ivr.flow.model import SetOverride

    assert SetOverride  # the node type exists; its action is checked with a tiny flow below


def test_voicemail_in_subflow_records_then_returns_to_goodbye(office):
    s, actions = call(office, when="2026-12-02 20:00")
    actions = s.handle(DigitPressed("1"), 1.0)
    assert isinstance(actions[0], StopPlayback)
    assert said(actions) == "Lasci un messaggio dopo il segnale acustico."
    (record,) = finish(s, actions, 3.0)
    assert isinstance(record, StartRecording)
    assert (record.max_seconds, record.silence_seconds, record.beep) == (120, 5, True)
    actions = s.handle(RecordingFinished(record.recording_id, "/rec/c1.wav", 12.5, "silence"),
                       16.0)
    assert s.variables["voicemail"] == "/rec/c1.wav"
    assert said(actions) == "Arrivederci."
    assert finish(s, actions, 17.0) == [HangupCall("flow_end")]
    assert s.path_text() == ("hours[closed] > closed > closed/message[1] > closed/record > "
                             "closed/done > bye")


def test_account_number_with_read_back_and_confirm(office):
    s, _ = call(office, caller="")
    s.handle(DigitPressed("1"), 1.0)
    assert s.node == "account"
    for i, key in enumerate("12345#"):
        actions = s.handle(DigitPressed(key), 2.0 + i * 0.3)
    assert said(actions) == "Ha inserito 1 2 3 4 5. Prema 1 per confermare, 2 per riprovare."
    actions = s.handle(DigitPressed("1"), 5.0)
    assert s.variables["account"] == "12345"
    assert said(actions).startswith("Resti in linea.")
    assert s.path_text() == "hours[open] > withheld[case 1] > welcome[1] > account[12345] > support"


def test_account_too_short_counts_attempts_then_fails_over(office):
    s, _ = call(office, caller="")
    s.handle(DigitPressed("1"), 1.0)
    now = 2.0
    for _ in range(3):
        s.handle(DigitPressed("9"), now)
        actions = s.handle(DigitPressed("#"), now + 0.2)
        now += 1.0
        if s.node == "account":
            assert said(actions) == "Numero non valido."
            finish(s, actions, now)
    assert s.node == "support"
    assert s.path[-2].digits == "9!9!9!"


def test_inter_digit_timeout_ends_the_collect(office):
    s, _ = call(office, caller="")
    s.handle(DigitPressed("1"), 1.0)
    for i, key in enumerate("4321"):
        s.handle(DigitPressed(key), 2.0 + i * 0.5)
    assert s.next_deadline() == pytest.approx(3.5 + 4.0)
    actions = s.handle(TimerFired(), 7.5)
    assert "4 3 2 1" in said(actions)


def test_direct_dial_extension_transfers_and_failure_returns_to_menu(office):
    s, _ = call(office, caller="")
    s.handle(DigitPressed("2"), 1.0)   # option 2 or extension 2xx: wait for more keys
    assert s.node == "welcome"
    assert s.next_deadline() == pytest.approx(3.0)
    s.handle(DigitPressed("0"), 1.5)
    assert s.next_deadline() == pytest.approx(3.5)
    actions = s.handle(DigitPressed("4"), 2.0)  # three keys: a whole extension, no waiting
    assert said(actions) == "La trasferisco all'interno 2 0 4."
    assert finish(s, actions, 6.0) == [TransferCall("204")]
    actions = s.handle(TransferFinished(False, "486 Busy Here"), 8.0)
    assert s.node == "welcome"
    assert s.path_text() == ("hours[open] > withheld[case 1] > welcome[204] > extension[failed]"
                             " > welcome")


def test_option_two_alone_goes_to_sales_after_the_pause(office):
    s, _ = call(office, caller="")
    s.handle(DigitPressed("2"), 1.0)
    s.handle(TimerFired(), 3.0)
    assert s.node == "sales"


def test_transfer_success_leaves_the_ivr(office):
    s, _ = call(office, caller="")
    for key in "215":
        actions = s.handle(DigitPressed(key), 1.0)
    finish(s, actions, 3.0)
    assert s.handle(TransferFinished(True), 5.0) == []
    assert s.state == "transferred"
    assert s.exit == {"transfer": "215"}


def test_language_option_switches_prompts(office):
    s, _ = call(office, caller="")
    actions = s.handle(DigitPressed("9"), 1.0)
    assert said(actions).startswith("Welcome. For support, press 1.")
    assert s.language == "en"


def test_failures_use_short_prompt_then_on_failure(office):
    s, actions = call(office, caller="")
    actions = finish(s, actions, 5.0)
    actions = s.handle(TimerFired(), 11.0)                 # first timeout: short greeting
    assert said(actions) == "Assistenza 1, commerciale 2, oppure l'interno."
    finish(s, actions, 13.0)
    s.handle(TimerFired(), 19.0)                           # second timeout: max_timeouts 2
    assert s.node == "sales"


def test_set_override_language_goto_and_play_barge_in(tmp_path):
    flow_file = tmp_path / "f.yaml"
    flow_file.write_text("""
flow: t
languages: [it, en]
start: intro
nodes:
  intro:
    type: play
    prompt: "Messaggio lungo"
    barge_in: true
    next: lang
  lang:
    type: language
    language: en
    next: jump
  jump:
    type: goto
    next: admin
  admin:
    type: menu
    prompt: "Press 5 to close the office"
    options: {"5": close}
  close:
    type: set_override
    override: office
    state: closed
    next: done
  done:
    type: hangup
""")
    flow = load_flow(flow_file)
    s = CallSession(flow, "c1")
    s.start(0.0)
    actions = s.handle(DigitPressed("5"), 0.5)   # barge in: the key is kept for the menu
    assert isinstance(actions[0], StopPlayback)
    assert SetOverrideState("office", "closed") in actions
    assert s.language == "en"
    assert s.path_text() == "intro > lang > jump > admin[5] > close > done"
    assert actions[-1] == HangupCall("flow_end")


def test_waiting_caller_hears_position_and_can_leave_with_an_exit_key(office):
    from ivr.engine import LeaveQueueRequest, QueueLeft

    s, _ = call(office, caller="")
    actions = s.handle(DigitPressed("1"), 1.0)
    for i, key in enumerate("1234#"):
        actions = s.handle(DigitPressed(key), 2.0 + i * 0.2)
    actions = s.handle(DigitPressed("1"), 4.0)           # confirm the account number
    finish(s, actions, 8.0)
    assert s.state == "queued"
    (announce,) = s.announcement(position=3, expected_wait=200)
    assert said([announce]) == ("Lei è il chiamante numero 3. L'attesa prevista è di circa 3 "
                                "minuti.")
    assert s.handle(DigitPressed("5"), 30.0) == []        # not an exit key
    actions = s.handle(DigitPressed("1"), 31.0)
    assert isinstance(actions[0], LeaveQueueRequest)
    assert s.state == "ivr"
    assert s.node == "message"
    assert s.path_text().endswith("account[1234] > support[1] > closed > closed/message")

    s2, _ = call(office, caller="")
    s2.handle(DigitPressed("1"), 1.0)
    for key in "1234#":
        actions = s2.handle(DigitPressed(key), 2.0)
    finish(s2, s2.handle(DigitPressed("1"), 3.0), 5.0)
    s2.handle(QueueLeft("timeout"), 600.0)                # max wait passed: routing lets go
    assert s2.node == "message"
    assert "support[timeout]" in s2.path_text()


def test_callback_key_keeps_the_place_promises_a_call_and_hangs_up(tmp_path):
    from ivr.engine import CallbackRefused, RequestCallback

    flow = load_flow(ROOT / "tests" / "flows_e2e" / "callback.yaml")
    s = CallSession(flow, "c1", caller="3331234567")
    actions = s.start(0.0)
    actions = s.handle(DigitPressed("2"), 1.0)      # during the queue's prompt
    assert isinstance(actions[0], StopPlayback)
    assert isinstance(actions[1], Enqueue)
    assert isinstance(actions[2], RequestCallback)
    assert said(actions) == "We will call you back on 3 3 3 1 2 3 4 5 6 7 as soon as an agent " \
                            "is free. Goodbye."
    assert finish(s, actions, 6.0) == [HangupCall("callback_requested")]
    assert s.exit == {"callback": "3331234567", "hangup": "callback_requested"}
    withheld = CallSession(flow, "c2", caller="")
    withheld.start(0.0)
    assert withheld.handle(DigitPressed("2"), 1)[-1] == CallbackRefused("withheld")
    assert withheld.state == "queued"
    # a number no dial_out rule allows to call back (the driver tells the session at start)
    premium = CallSession(flow, "c3", caller="899123456", callback_allowed=False)
    premium.start(0.0)
    actions = premium.handle(DigitPressed("2"), 1)
    assert actions[-1] == CallbackRefused("not allowed")
    assert not any(isinstance(a, RequestCallback) for a in actions)
    assert premium.state == "queued"
    assert premium.path_text().endswith("[2 no callback]")
