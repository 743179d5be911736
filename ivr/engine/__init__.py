"""The call engine: a pure state machine per call, fed events and the time."""

from ivr.engine.session import (
    Action,
    Answer,
    CallSession,
    DigitPressed,
    Enqueue,
    Event,
    HangupCall,
    PathStep,
    PlaybackFinished,
    PlayPrompt,
    PromptPiece,
    StopPlayback,
    TimerFired,
)

__all__ = [
    "Action", "Answer", "CallSession", "DigitPressed", "Enqueue", "Event", "HangupCall",
    "PathStep", "PlayPrompt", "PlaybackFinished", "PromptPiece", "StopPlayback", "TimerFired",
]
