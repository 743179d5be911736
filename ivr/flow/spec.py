"""The vocabulary of the flow language in one place: node types, their keys and what each means.

The loader checks files against it, and :mod:`ivr.flow.schema` turns it into the JSON Schema that
editors use, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    name: str
    kind: str
    """'node' (a node name), 'prompt', 'number', 'integer', 'boolean', 'text', 'regex',
    'language', 'options', 'mapping', 'list', 'cases', 'schedule', 'choice:a|b'."""
    doc: str
    required: bool = False


def _k(name: str, kind: str, doc: str, required: bool = False) -> Key:
    return Key(name, kind, doc, required)


_COMMON = (_k("type", "text", "The node type.", True),
           _k("description", "text", "A note for technicians; not spoken."))

NODES: dict[str, tuple[str, tuple[Key, ...]]] = {
    "menu": ("Plays a greeting and waits for keys; each option leads to a node.", (
        _k("prompt", "prompt", "Long greeting, played on first entry.", True),
        _k("short_prompt", "prompt", "Short greeting, played on re-entry and after errors."),
        _k("options", "options", "Key (or key string) -> node, 'repeat', or "
                                 "{next, language}.", True),
        _k("extensions", "mapping", "Direct dial: {pattern: '2XX' (X any digit, Z 1-9, N 2-9; "
                                    "or a list), next: node}; the digits go in the variable "
                                    "'extension'."),
        _k("timeout", "number", "Seconds to wait for the first key after the prompt (5)."),
        _k("inter_digit_timeout", "number", "Seconds to wait between keys (2)."),
        _k("max_digits", "integer", "Keys to collect at most (default: longest option)."),
        _k("terminator", "choice:#|*|none", "Key that ends entry early (#)."),
        _k("max_invalid", "integer", "Invalid entries allowed before on_failure (3)."),
        _k("max_timeouts", "integer", "Timeouts allowed before on_failure (3)."),
        _k("invalid_prompt", "prompt", "Played after an invalid entry."),
        _k("timeout_prompt", "prompt", "Played when no key came in time."),
        _k("on_failure", "node", "Where the call goes when invalid entries or timeouts run "
                                 "out; without it the call is hung up."),
    )),
    "play": ("Plays prompts, then goes on.", (
        _k("prompt", "prompt", "What to play.", True),
        _k("next", "node", "Node after the prompt.", True),
        _k("barge_in", "boolean", "A key stops the prompt and is kept for the next menu."),
    )),
    "collect": ("Collects digits into a variable (account number, PIN, ...).", (
        _k("prompt", "prompt", "Asks for the digits.", True),
        _k("variable", "text", "Variable that receives the digits.", True),
        _k("next", "node", "Node after a valid entry.", True),
        _k("min_length", "integer", "Fewest digits (1)."),
        _k("max_length", "integer", "Most digits (20); entry ends when reached."),
        _k("pattern", "regex", "Regular expression the whole entry must match."),
        _k("terminator", "choice:#|*|none", "Key that ends the entry (#)."),
        _k("timeout", "number", "Seconds to wait for the first digit (8)."),
        _k("inter_digit_timeout", "number", "Seconds to wait between digits (4)."),
        _k("max_attempts", "integer", "Attempts before on_failure (3)."),
        _k("invalid_prompt", "prompt", "Played after an invalid entry."),
        _k("confirm", "boolean", "Read the entry back: 1 confirms, 2 enters it again."),
        _k("confirm_prompt", "prompt", "The read-back; default 'You entered {digits}. "
                                       "Press 1 to confirm, 2 to try again.'"),
        _k("on_failure", "node", "Where the call goes when attempts run out; without it the "
                                 "call is hung up."),
    )),
    "branch": ("Chooses the next node by the call's data.", (
        _k("cases", "cases", "List of {when: {...}, next: node}; the first that holds wins.",
           True),
        _k("default", "node", "Node when no case holds.", True),
    )),
    "hours": ("Open, closed or holiday, by a weekly schedule in a time zone.", (
        _k("timezone", "text", "Time zone name, e.g. Europe/Rome.", True),
        _k("schedule", "schedule", "Day or day range -> opening times, e.g. mon-fri: "
                                   "'09:00-13:00, 14:00-18:00'.", True),
        _k("holidays", "mapping", "{country: IT, subdivision: ..., dates: [YYYY-MM-DD]}."),
        _k("override", "text", "Name of a switch that a set_override node can force open or "
                               "closed."),
        _k("open", "node", "Node when open.", True),
        _k("closed", "node", "Node when closed.", True),
        _k("holiday", "node", "Node on holidays (default: closed)."),
    )),
    "set_override": ("Forces an hours switch open or closed, or back to auto.", (
        _k("override", "text", "The switch's name, as in the hours node.", True),
        _k("state", "choice:open|closed|auto", "New state.", True),
        _k("next", "node", "Node after switching.", True),
    )),
    "sms": ("Texts the caller's number through the modem (a callback confirmation, the ticket "
            "number), then goes on at once; only the number that called, within the modem's "
            "rate limits (ivr.yaml devices); a withheld number gets nothing.", (
        _k("text", "text", "The text; may name variables, e.g. 'Your ticket is {ticket}'.",
           True),
        _k("next", "node", "Node after queueing the text (sent or not).", True),
    )),
    "language": ("Sets the language for the rest of the call.", (
        _k("language", "language", "One of the flow's languages.", True),
        _k("next", "node", "Node after.", True),
    )),
    "lookup": ("Asks a CRM about the caller over HTTP; answer fields become variables.", (
        _k("url", "text", "http(s) address; may name variables, e.g. {caller}.", True),
        _k("fields", "mapping", "Variable -> dotted path in the JSON answer.", True),
        _k("timeout", "number", "Seconds to wait for the answer (3)."),
        _k("next", "node", "Node after a good answer.", True),
        _k("on_failure", "node", "Node on error or timeout.", True),
    )),
    "queue": ("Hands the caller to a queue of agents.", (
        _k("queue", "text", "Queue name from ivr.yaml.", True),
        _k("prompt", "prompt", "Played once before joining."),
        _k("priority", "integer", "Higher is served first (0)."),
        _k("announce_prompt", "prompt", "Position announcement, played as the queue's "
                                        "announce_every says; default 'You are caller number "
                                        "{position}. The expected wait is about "
                                        "{expected_wait} minutes.'"),
        _k("exit_keys", "options", "Key -> node: a waiting caller who presses it leaves the "
                                   "queue (e.g. to leave a message); 'callback' keeps their "
                                   "place and calls them back when an agent is free."),
        _k("on_exit", "node", "Where the call goes when it leaves the queue unserved (queue "
                              "full, nobody logged in, max wait); without it the call is hung "
                              "up."),
    )),
    "voicemail": ("Records a message after a beep.", (
        _k("prompt", "prompt", "Asks for the message.", True),
        _k("max_seconds", "number", "Longest message (120)."),
        _k("silence_seconds", "number", "The recording ends after this much silence (5)."),
        _k("beep", "boolean", "Beep before recording (true)."),
        _k("next", "node", "Node after the recording; without it the call is hung up."),
    )),
    "transfer": ("Puts the call through to an extension or, where a dial-out rule allows, a "
                 "number.", (
                     _k("to", "text", "Extension or number; may be a variable such as "
                                      "{extension}.", True),
                     _k("prompt", "prompt", "Played before transferring."),
                     _k("on_failure", "node", "Node when the destination does not answer or "
                                              "is not allowed; without it the call is hung up."),
                 )),
    "goto": ("Jumps to another node.", (
        _k("next", "node", "The node.", True),
    )),
    "subflow": ("Runs a piece of tree from another file, then comes back.", (
        _k("flow", "text", "Flow file, relative to this one.", True),
        _k("next", "node", "Node after the subflow's 'return'.", True),
    )),
    "return": ("Ends a subflow; the call continues after the subflow node.", ()),
    "hangup": ("Says goodbye and ends the call.", (
        _k("prompt", "prompt", "Goodbye played before hanging up."),
    )),
}

NODE_TYPES = tuple(NODES)
NODE_KEYS: dict[str, tuple[str, ...]] = {
    kind: tuple(k.name for k in _COMMON + keys) for kind, (_, keys) in NODES.items()}
REQUIRED: dict[str, tuple[str, ...]] = {
    kind: tuple(k.name for k in keys if k.required) for kind, (_, keys) in NODES.items()}
TERMINAL_KINDS = ("hangup", "queue", "voicemail", "transfer", "return")

REMOVED: dict[str, dict[str, str]] = {
    "menu": {"retries": "'retries' was replaced by 'max_invalid' and 'max_timeouts' "
                        "(counted separately)"},
}

TOP: tuple[Key, ...] = (
    _k("flow", "text", "Name of the flow.", True),
    _k("description", "text", "A note for technicians."),
    _k("languages", "list", "Language codes; the first is the default (e.g. [it, en])."),
    _k("variables", "mapping", "Initial values of call variables."),
    _k("start", "node", "First node of every call.", True),
    _k("nodes", "mapping", "Node name -> node.", True),
)
TOP_KEYS = tuple(k.name for k in TOP)

CONDITION_KEYS = ("variable", "equals", "matches", "one_of", "caller", "called", "language",
                  "ticket", "ticket_level")
TICKET_TESTS = ("open", "none")
"""A branch's ``ticket:``: the caller has an open (or escalated) ticket, or has none."""
