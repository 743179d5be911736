"""The call session on the shipped demo flow, with time passed by hand."""

from pathlib import Path

import pytest

from ivr.engine import (
    Answer,
    CallSession,
    DigitPressed,
    Enqueue,
    HangupCall,
    PlaybackFinished,
    PlayPrompt,
    StopPlayback,
    TimerFired,
)
from ivr.flow import load_flow

DEMO = Path(__file__).resolve().parent.parent / "flows" / "demo.yaml"


@pytest.fixture(scope="module")
def flow():
    return load_flow(DEMO)


def last_play(actions):
    plays = [a for a in actions if isinstance(a, PlayPrompt)]
    assert plays, actions
    return plays[-1]


def texts(play):
    return " ".join(p.value for p in play.pieces)


def test_start_answers_and_plays_bilingual_welcome(flow):
    s = CallSession(flow, "c1", "3331234567", "800123456")
    actions = s.start(now=0.0)
    assert isinstance(actions[0], Answer)
    play = last_play(actions)
    assert play.barge_in
    assert "premere 1" in texts(play)
    assert "press 2" in texts(play)
    assert s.next_deadline() is None  # no timeout while the prompt plays


def test_english_then_support_reaches_support_queue(flow):
    s = CallSession(flow, "c1")
    play = last_play(s.start(0.0))
    assert s.handle(PlaybackFinished(play.play_id), 3.0) == []
    assert s.next_deadline() == pytest.approx(8.0)
    actions = s.handle(DigitPressed("2"), 4.0)
    menu = last_play(actions)
    assert s.language == "en"
    assert "technical support, press 1" in texts(menu)
    actions = s.handle(DigitPressed("1"), 5.0)  # barge in during the menu prompt
    assert StopPlayback(menu.play_id) in actions
    holding = last_play(actions)
    assert "Connecting you to technical support" in texts(holding)
    (enqueue,) = s.handle(PlaybackFinished(holding.play_id), 8.0)
    assert isinstance(enqueue, Enqueue)
    assert (enqueue.queue, enqueue.priority) == ("support", 0)
    assert enqueue.context["language"] == "en"
    assert enqueue.context["ivr_path"] == "welcome[2] > main[1] > support"
    assert s.state == "queued"
    assert s.queue == "support"
    assert s.path_text() == "welcome[2] > main[1] > support"


def test_italian_and_sales(flow):
    s = CallSession(flow, "c1")
    s.start(0.0)
    s.handle(DigitPressed("1"), 1.0)
    play = last_play(s.handle(DigitPressed("2"), 2.0))
    assert "ufficio commerciale" in texts(play)
    assert s.language == "it"


def test_repeat_replays_menu_and_keeps_path(flow):
    s = CallSession(flow, "c1")
    s.start(0.0)
    first = last_play(s.handle(DigitPressed("2"), 1.0))
    again = last_play(s.handle(DigitPressed("9"), 2.0))
    assert again.play_id != first.play_id
    assert texts(again) == texts(first)
    assert s.node == "main"
    assert s.path_text() == "welcome[2] > main[9]"


def test_stale_playback_end_is_ignored(flow):
    s = CallSession(flow, "c1")
    first = last_play(s.start(0.0))
    s.handle(DigitPressed("2"), 1.0)
    assert s.handle(PlaybackFinished(first.play_id), 2.0) == []
    assert s.next_deadline() is None


def test_invalid_key_plays_notice_then_menu_again(flow):
    s = CallSession(flow, "c1")
    s.start(0.0)
    s.handle(DigitPressed("2"), 1.0)
    notice = last_play(s.handle(DigitPressed("7"), 2.0))
    assert texts(notice) == "That is not a valid choice."
    menu = last_play(s.handle(PlaybackFinished(notice.play_id), 3.0))
    assert "press 1" in texts(menu)
    assert s.path_text() == "welcome[2] > main[7!]"


def test_timeouts_run_out_to_goodbye_and_hangup(flow):
    s = CallSession(flow, "c1")
    s.start(0.0)
    play = last_play(s.handle(DigitPressed("2"), 1.0))
    now, timeouts = 1.0, 0
    while s.node == "main":
        now += 2.0
        assert s.handle(PlaybackFinished(play.play_id), now) == []
        deadline = s.next_deadline()
        assert deadline == pytest.approx(now + 6.0)
        assert s.handle(TimerFired(), deadline - 0.1) == []  # not yet
        play = last_play(s.handle(TimerFired(), deadline))
        now = deadline
        timeouts += 1
        if s.node == "main":
            assert texts(play) == "We did not receive your choice."
            now += 1.0
            play = last_play(s.handle(PlaybackFinished(play.play_id), now))
            assert "press 1" in texts(play)
    assert timeouts == 4  # main's max_timeouts
    assert s.node == "goodbye"
    assert "Goodbye" in texts(play)
    assert s.path_text() == "welcome[2] > main[~~~~] > goodbye"
    assert s.handle(PlaybackFinished(play.play_id), now + 2) == [HangupCall("flow_end")]
    assert s.state == "ended"


def test_welcome_failures_go_to_goodbye_in_default_language(flow):
    s = CallSession(flow, "c1")
    s.start(0.0)
    s.handle(DigitPressed("5"), 1.0)
    s.handle(DigitPressed("6"), 2.0)
    actions = s.handle(DigitPressed("7"), 3.0)
    assert s.node == "goodbye"
    assert "Arrivederci" in texts(last_play(actions))


def test_keys_after_enqueue_do_nothing(flow):
    s = CallSession(flow, "c1")
    s.start(0.0)
    s.handle(DigitPressed("2"), 1.0)
    hold = last_play(s.handle(DigitPressed("2"), 2.0))
    s.handle(PlaybackFinished(hold.play_id), 3.0)
    assert s.state == "queued"
    assert s.handle(DigitPressed("1"), 4.0) == []
