"""System notices: what the switchboard itself says, in every language, rendered ahead of calls.

Fixed texts only (no agent names, no numbers written in), so that every one is a file ready
before the first call; the queue announcement, the callback promise and the read-back of
collected keys keep their variables, whose values are spoken by joining pre-rendered words.

    >>> resolve(NOTICES["login"], "it")
    (PromptPiece(kind='say', value='Sei connesso.', language='it', follows=False),)
"""

from __future__ import annotations

from ivr.engine.session import CONFIRM_PROMPT
from ivr.flow.model import Prompts, Say
from ivr.flow.prompts import ANNOUNCE_PROMPT, CALLBACK_PROMPT

NOTICE_LANGUAGES = ("it", "en")
"""Languages every notice is written in (``*`` falls back to English)."""


def _say(it: str, en: str) -> Prompts:
    return (Say({"it": it, "en": en, "*": en}),)


ESCALATION_NOTICE = _say(
    "La stiamo passando a un collega esperto. Resti in linea, per favore.",
    "We are passing your call to a specialist. Please stay on the line.")
"""To a caller whose agent escalated the call: they wait again, for the next level."""

CALLBACK_REFUSED_NOTICES: dict[str, Prompts] = {
    "not allowed": _say("Non possiamo richiamarla a questo numero. Resti in linea, per favore.",
                        "We cannot call you back on this number. Please stay on the line."),
    "withheld": _say("Il suo numero è nascosto: non possiamo richiamarla. Resti in linea, per "
                     "favore.", "Your number is withheld, so we cannot call you back. Please "
                                "stay on the line."),
}
"""To a waiting caller whose callback key is refused (by the reason of
:class:`~ivr.engine.CallbackRefused`): they keep their place."""

FEATURE_NOTICES: dict[str, Prompts] = {
    "login": _say("Sei connesso.", "You are logged in."),
    "logout": _say("Sei disconnesso.", "You are logged out."),
    "pause": _say("Sei in pausa.", "You are paused."),
    "unpause": _say("Sei di nuovo disponibile.", "You are available again."),
    "refused": _say("Questo codice non è disponibile.", "This code is not available."),
    "disposition": _say("Esito registrato.", "Outcome recorded."),
}
"""To an agent who dialled a feature code: what it did, or that it was refused."""

OUTBOUND_SORRY_NOTICE = _say(
    "Ci scusi, al momento non c'è un operatore libero. La richiameremo.",
    "Sorry, no agent is free to take your call right now. We will call you back.")
"""To a campaign's contact who answered when no agent could take the call (abandoned): said
within 2 seconds of the answer, then the box hangs up."""

NOTICES: dict[str, Prompts] = {
    "escalation": ESCALATION_NOTICE,
    **FEATURE_NOTICES,
    "announce": ANNOUNCE_PROMPT,
    "callback": CALLBACK_PROMPT,
    "callback_refused": CALLBACK_REFUSED_NOTICES["not allowed"],
    "callback_withheld": CALLBACK_REFUSED_NOTICES["withheld"],
    "confirm": CONFIRM_PROMPT,
    "outbound_sorry": OUTBOUND_SORRY_NOTICE,
}
"""Every system notice by name, as Say prompts with 'it', 'en' and '*' texts."""

__all__ = ["CALLBACK_REFUSED_NOTICES", "ESCALATION_NOTICE", "FEATURE_NOTICES", "NOTICES",
           "NOTICE_LANGUAGES"]
