"""The SIP stack's own start fails in one line when its port is taken (a race past the check)."""

from __future__ import annotations

import socket

import pytest

from ivr.errors import StartupError
from tests.e2e import require_sip_stack


@pytest.mark.e2e
def test_a_sip_port_taken_is_a_startup_error_not_a_traceback() -> None:
    require_sip_stack()
    from ivr.sip.stack import SipSettings, SipStack

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        stack = SipStack(SipSettings("127.0.0.1", port), lambda ip: (None, 403))
        with pytest.raises(StartupError, match=rf"cannot listen for SIP on udp 127\.0\.0\.1:"
                                               rf"{port}: the address is in use"):
            stack.start()
    # the stack released what it had made: a new one starts on a free port
    other = SipStack(SipSettings("127.0.0.1", 0), lambda ip: (None, 403))
    other.start()
    other.shutdown()
