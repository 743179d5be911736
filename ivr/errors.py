"""Errors that end a command with one line for the operator, never a traceback.

Each carries a message that says what failed and what to do about it; ``ivr`` prints it as
``ivr: error: <message>`` on standard error and exits with status 2::

    raise StartupError("cannot listen for SIP on udp 127.0.0.1:5080: the address is in use "
                       "(another switchboard or PBX?); stop it or set sip.listen in ivr.yaml")
"""

from __future__ import annotations


class StartupError(Exception):
    """The switchboard cannot start: a port in use, a store path it cannot write...

    The message is one line naming the thing that failed and the fix.
    """


class RecordsError(Exception):
    """A file given as the call record database is not one (``ivr report``, ``ivr purge``).

    Example: ``calls.txt is not a Centralino call record database (not an SQLite file)``.
    """


def one_line(message: str) -> str:
    """*message* on one line: an operator's terminal and the journal show it whole."""
    return " ".join(message.split())


__all__ = ["RecordsError", "StartupError", "one_line"]
