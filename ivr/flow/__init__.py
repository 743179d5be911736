"""The flow language: YAML IVR trees turned into immutable, checked :class:`Flow` versions."""

from ivr.flow.loader import load_flow
from ivr.flow.model import File, Flow, Hangup, Menu, MenuOption, Node, Play, Prompt, Queue, Say
from ivr.yamlsrc import DocumentError, Problem

__all__ = ["DocumentError", "File", "Flow", "Hangup", "Menu", "MenuOption", "Node", "Play",
           "Problem", "Prompt", "Queue", "Say", "load_flow"]
