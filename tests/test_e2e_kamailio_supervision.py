"""End to end behind the real edge: a supervisor whose phone registers with Kamailio listens
to an agent's call.

Kamailio runs a configuration from ivr.edge with agents anna and marco and supervisor laura;
`ivr run` sits behind it. A gateway's caller (TRUNK_IP, 1100 Hz) reaches anna's registered
pjsua2 phone (1900 Hz); laura's registered phone (2700 Hz) dials ``*51anna`` at the edge, which
authenticates her (407, digest) and forwards the call to the switchboard, which takes it as
laura's: she hears both, neither of them hears her. Then:

- marco, an agent whose phone registers too, dials the same code: the switchboard refuses it
  (403: not a supervisor's phone);
- the gateway calls From laura's name: the edge refuses it (403), so no trunk caller can pass
  for her.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.edge import Address, EdgeSettings
from tests.e2e import (
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_kamailio,
    require_sip_stack,
)
from tests.support.audio import AGENT_TONE_HZ, CALLER_TONE_HZ, make_tone_wav
from tests.support.baresip import free_port
from tests.test_e2e_kamailio import PASSWORDS, TRUNK_IP, Edge
from tests.test_e2e_kamailio_routing import registered_pjsua
from tests.test_e2e_supervision import MOSTLY, RARELY, SUPERVISOR_TONE_HZ, track, window

pytestmark = pytest.mark.e2e

LAURA_PASSWORD = "velvet harbor lamp 7"
LISTEN_S = 6.0
"""Seconds laura listens."""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Edge, Switchboard]]:
    """The edge (anna, marco and laura may register) and `ivr run` behind it."""
    require_sip_stack()
    binary = require_kamailio()
    ivr_port = free_udp_port()
    edge = Edge(EdgeSettings(
        listen=Address("127.0.0.1", free_port()), ivr=Address("127.0.0.1", ivr_port),
        trunk_sources=(f"{TRUNK_IP}/32",),
        agents={"anna": PASSWORDS["anna"], "marco": PASSWORDS["marco"]},
        supervisors={"laura": LAURA_PASSWORD}, rpc_port=free_tcp_port()),
        tmp_path / "edge").start(binary)
    (tmp_path / "ivr").mkdir()
    port = edge.settings.listen.port
    sb = Switchboard(
        tmp_path / "ivr", ivr_port, free_tcp_port(), agents={"anna": port, "marco": port},
        trunk_sources=["127.0.0.1"],
        passwords={"anna": PASSWORDS["anna"], "marco": PASSWORDS["marco"]},
        queues="  support: {agents: [anna]}\n  sales: {agents: [marco]}",
        extra_config=f"edge: {{listen: \"{edge.host_port}\", rpc_port: "
                     f"{edge.settings.rpc_port}, trunk_sources: [\"{TRUNK_IP}/32\"]}}\n"
                     "supervisors:\n"
                     f"  laura: {{uri: \"sip:laura@{edge.host_port}\", "
                     f"password: \"{LAURA_PASSWORD}\", queues: [support]}}\n")
    try:
        yield edge, sb
    finally:
        edge.stop()
        log = edge.log_text()
        for password in (LAURA_PASSWORD, PASSWORDS["anna"], PASSWORDS["marco"]):
            assert password not in log


def test_a_supervisor_registered_at_the_edge_listens(stack: tuple[Edge, Switchboard],
                                                     tmp_path: Path) -> None:
    edge, sb = stack
    heard = tmp_path / "heard"
    heard.mkdir()
    code = f"sip:*51anna@{edge.host_port}"
    anna = registered_pjsua(edge, tmp_path, "anna", "--answer-after", "0.5", "--play",
                            str(make_tone_wav(tmp_path / "anna.wav", AGENT_TONE_HZ, 90)),
                            "--record-dir", str(heard), "--duration", "90")
    peers: list[Peer] = [anna]
    sb.start()
    try:
        sb.wait_for_log("agent anna: phone registered", timeout=10)
        caller = peer(tmp_path, "gw", "caller", free_udp_port(), "--ip", TRUNK_IP,
                      "--target", f"sip:0612345@{edge.host_port}", "--digits", "2,1",
                      "--first-digit-after", "0.5", "--digit-gap", "0.8", "--hold", "60",
                      "--play", str(make_tone_wav(tmp_path / "caller.wav", CALLER_TONE_HZ, 90)),
                      "--record-dir", str(heard), "--duration", "90").start()
        peers.append(caller)
        anna.wait_event("confirmed", timeout=30)
        sb.wait_for_log("connected to agent anna", timeout=10)

        # an agent's registered phone: the edge lets marco in, the switchboard refuses him
        marco = peer(tmp_path, "marco", "caller", free_udp_port(), "--register",
                     edge.host_port, "--password", PASSWORDS["marco"], "--target", code,
                     "--duration", "20").start()
        peers.append(marco)
        assert marco.wait_exit(25) == 0
        assert [e["code"] for e in marco.events("disconnected")] == [403], marco.output()
        sb.wait_for_log("refused listen of 'anna'", timeout=5)

        # a trunk's call From laura's name never reaches the switchboard
        (tmp_path / "impostor").mkdir()
        impostor = peer(tmp_path / "impostor", "laura", "caller", free_udp_port(), "--ip", TRUNK_IP,
                        "--target", code, "--duration", "20").start()
        peers.append(impostor)
        assert impostor.wait_exit(25) == 0
        assert [e["code"] for e in impostor.events("disconnected")] == [403]
        assert "a trunk's call From the name of a user of the edge" in edge.log_text()

        laura = peer(tmp_path, "laura", "caller", free_udp_port(), "--register",
                     edge.host_port, "--password", LAURA_PASSWORD, "--target", code,
                     "--hold", str(LISTEN_S),
                     "--play", str(make_tone_wav(tmp_path / "laura.wav", SUPERVISOR_TONE_HZ,
                                                 60)),
                     "--record-dir", str(heard), "--duration", "40").start()
        peers.append(laura)
        assert laura.wait_exit(40) == 0
        assert not [e for e in anna.events() if e["event"] == "disconnected"]
    finally:
        for p in reversed(peers):
            p.stop()
        assert sb.stop() == 0, sb.log_tail()
    assert "Traceback" not in sb.log_path.read_text(), sb.log_tail()

    (on,) = laura.events("confirmed")
    (off,) = laura.events("hanging_up")
    span = (float(on["t"]), float(off["t"]))
    by = {"laura": track(laura, heard / "laura-0.wav"),
          "anna": track(anna, heard / "anna-0.wav"),
          "caller": track(caller, heard / "gw-0.wav")}
    timelines = "\n".join(f"{who} heard {t.timeline()} from {t0:.1f}"
                          for who, (t, t0) in by.items())
    print(f"listening {span}\n{timelines}")

    def share(who: str, tone: float) -> float:
        return window(by[who], *span).fraction(tone)

    assert share("laura", CALLER_TONE_HZ) >= MOSTLY, timelines
    assert share("laura", AGENT_TONE_HZ) >= MOSTLY, timelines
    assert share("anna", SUPERVISOR_TONE_HZ) <= RARELY, timelines
    assert share("caller", SUPERVISOR_TONE_HZ) <= RARELY, timelines
    (start,) = [e for e in sb.queue_events() if e["kind"] == "supervise_start"]
    assert start["agent"] == "anna", start
    assert start["detail"]["supervisor"] == "laura", start
