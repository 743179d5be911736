"""The flow language: YAML IVR trees turned into immutable, checked :class:`Flow` versions."""

from ivr.flow.loader import load_flow
from ivr.flow.model import (
    Branch,
    Collect,
    File,
    Flow,
    Goto,
    Hangup,
    Hours,
    Language,
    Lookup,
    Menu,
    MenuOption,
    Node,
    Play,
    Prompt,
    Queue,
    Return,
    Say,
    SetOverride,
    Sms,
    Subflow,
    Transfer,
    Voicemail,
)
from ivr.yamlsrc import DocumentError, Problem

__all__ = ["Branch", "Collect", "DocumentError", "File", "Flow", "Goto", "Hangup", "Hours",
           "Language", "Lookup", "Menu", "MenuOption", "Node", "Play", "Problem", "Prompt",
           "Queue", "Return", "Say", "SetOverride", "Sms", "Subflow", "Transfer", "Voicemail",
           "load_flow"]
