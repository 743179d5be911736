"""The call engine: a pure state machine per call, fed events and the time."""

from ivr.engine.session import (
    Action,
    Answer,
    CallSession,
    DigitPressed,
    Enqueue,
    Event,
    HangupCall,
    HttpLookup,
    LeaveQueueRequest,
    LookupFinished,
    PathStep,
    PlaybackFinished,
    PlayPrompt,
    PromptPiece,
    QueueLeft,
    RecordingFinished,
    RequestCallback,
    SetOverrideState,
    StartRecording,
    StopPlayback,
    TimerFired,
    TransferCall,
    TransferFinished,
    resolve,
)

__all__ = [
    "Action", "Answer", "CallSession", "DigitPressed", "Enqueue", "Event", "HangupCall",
    "HttpLookup", "LeaveQueueRequest", "LookupFinished", "PathStep", "PlayPrompt",
    "PlaybackFinished", "PromptPiece", "QueueLeft", "RecordingFinished", "RequestCallback",
    "SetOverrideState", "StartRecording", "StopPlayback", "TimerFired", "TransferCall",
    "TransferFinished", "resolve",
]
