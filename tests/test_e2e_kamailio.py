"""End to end with the real edge: Kamailio 5.6 running a configuration from ivr.edge, agents'
phones (baresip, pjsua2) registering with it, and calls between a trunk, the switchboard's
address and the registered phones.

Addresses on loopback: the edge on 127.0.0.1, the "switchboard" (a pjsua2 peer bound to the
switchboard's address) on 127.0.0.1, the trunk gateway on 127.0.0.2, strangers on 127.0.0.3+.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ivr.edge import (
    Address,
    EdgeSettings,
    Registrations,
    RegistrationsError,
    RegistrationsPoller,
    kamailio_command,
    kamailio_config,
)
from tests.e2e import (
    Peer,
    Switchboard,
    free_tcp_port,
    free_udp_port,
    peer,
    require_baresip,
    require_kamailio,
    require_sip_stack,
)
from tests.support.baresip import Baresip, free_port

pytestmark = pytest.mark.e2e

TRUNK_IP = "127.0.0.2"
STRANGER_IP = "127.0.0.3"
PASSWORDS = {"anna": "anna-Pw-7391", "marco": "marco-Pw-2204", "zoe": "zoe-Pw-55183"}


@dataclass
class Edge:
    settings: EdgeSettings
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def host_port(self) -> str:
        return str(self.settings.listen)

    @property
    def log_path(self) -> Path:
        return self.workdir / "kamailio.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def start(self, binary: str, timeout: float = 10.0) -> Edge:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(kamailio_config(self.settings, "test_e2e_kamailio"))
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(kamailio_command(cfg, self.workdir, binary),
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        client = Registrations(timeout=0.5)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            try:
                client.fetch(self.settings.rpc_url)
                return self
            except RegistrationsError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"kamailio did not answer JSON-RPC:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()

    def registered(self) -> dict[str, list[str]]:
        regs = Registrations().fetch(self.settings.rpc_url)
        return {name: [c.address for c in contacts] for name, contacts in regs.items()}

    def wait_registered(self, names: set[str], timeout: float = 5.0) -> dict[str, list[str]]:
        end = time.monotonic() + timeout
        while True:
            found = self.registered()
            if set(found) == names or time.monotonic() > end:
                assert set(found) == names, found
                return found
            time.sleep(0.05)


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    binary = require_kamailio()
    settings = EdgeSettings(
        listen=Address("127.0.0.1", free_port()),
        ivr=Address("127.0.0.1", free_udp_port()),
        trunk_sources=(f"{TRUNK_IP}/32",),
        agents=PASSWORDS,
        rpc_port=free_tcp_port(),
    )
    running = Edge(settings, tmp_path_factory.mktemp("edge")).start(binary)
    yield running
    running.stop()
    log = running.log_text()
    for password in PASSWORDS.values():
        assert password not in log


def agent_phone(edge: Edge, workdir: Path, user: str, password: str) -> Baresip:
    """An agent's baresip phone that registers with the edge (skips, or fails in CI, where
    baresip is missing)."""
    require_baresip()
    return Baresip(workdir / user, free_port(), free_port(), user=user, answermode="auto",
                   register_via=edge.host_port, password=password)


# -- raw SIP, for what no well-behaved UA sends ---------------------------------------------

def _sip_socket(ip: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 0))
    sock.settimeout(3.0)
    return sock


def _send(sock: socket.socket, edge: Edge, message: str) -> str:
    sock.sendto(message.replace("\n", "\r\n").encode(), ("127.0.0.1", edge.settings.listen.port))
    while True:
        reply = sock.recv(65535).decode(errors="replace")
        if not reply.startswith("SIP/2.0 1"):  # skip 100 Trying
            return reply


def raw_register(sock: socket.socket, edge: Edge, user: str, password: str,
                 expires: int = 0) -> int:
    """REGISTER as *user*, answering the digest challenge; the final status code."""
    ip, port = sock.getsockname()
    uri = f"sip:{edge.host_port}"
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)

    def request(cseq: int, authorization: str = "") -> str:
        return (f"REGISTER {uri} SIP/2.0\n"
                f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\n"
                f"Max-Forwards: 70\nFrom: <sip:{user}@{edge.host_port}>;tag={tag}\n"
                f"To: <sip:{user}@{edge.host_port}>\nCall-ID: {call_id}\n"
                f"CSeq: {cseq} REGISTER\nContact: <sip:{user}@{ip}:{port}>\n"
                f"Expires: {expires}\n{authorization}Content-Length: 0\n\n")

    reply = _send(sock, edge, request(1))
    status = int(reply.split()[1])
    if status != 401:
        return status
    nonce = re.search(r'nonce="([^"]+)"', reply)
    realm = re.search(r'realm="([^"]+)"', reply)
    assert nonce, reply
    assert realm, reply

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{user}:{realm[1]}:{password}")
    cnonce, nc = secrets.token_hex(4), "00000001"
    response = md5(f"{ha1}:{nonce[1]}:{nc}:{cnonce}:auth:{md5(f'REGISTER:{uri}')}")
    authorization = (f'Authorization: Digest username="{user}", realm="{realm[1]}", '
                     f'nonce="{nonce[1]}", uri="{uri}", response="{response}", '
                     f'algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"\n')
    return int(_send(sock, edge, request(2, authorization)).split()[1])


def calls(edge: Edge, workdir: Path, name: str, target: str, ip: str = "127.0.0.1",
          port: int | None = None, *extra: str) -> Peer:
    """A pjsua2 caller (one call to *target*) that has finished."""
    args = ["caller", "--user", name, "--ip", ip, "--port", str(port or free_udp_port()),
            "--rtp-port", str(free_udp_port()), "--target", target, "--duration", "15", *extra]
    caller = Peer(args, workdir, f"{name}-{secrets.token_hex(2)}").start()
    caller.wait_exit(15)
    return caller


def final_code(caller: Peer) -> int:
    return int(str(caller.wait_event("disconnected")[0]["code"]))


# -- the tests ------------------------------------------------------------------------------

def test_agents_register_with_their_password_only(edge: Edge, tmp_path: Path) -> None:
    require_sip_stack()
    seen: list[frozenset[str]] = []
    poller = RegistrationsPoller(edge.settings.rpc_url, 1.0, seen.append)
    assert poller.check() == frozenset()
    with agent_phone(edge, tmp_path, "anna", PASSWORDS["anna"]) as anna, \
            agent_phone(edge, tmp_path / "wrong", "zoe", "not-her-password") as wrong, \
            agent_phone(edge, tmp_path, "mallory", "whatever") as stranger:
        assert anna.wait_registration() == "OK"
        assert wrong.wait_registration() == "403 Forbidden"
        assert stranger.wait_registration() == "403 Forbidden"
        marco = peer(tmp_path, "marco", "agent", free_udp_port(), "--register", edge.host_port,
                     "--password", PASSWORDS["marco"]).start()
        try:
            assert marco.wait_event("registered")[0]["code"] == 200
            found = edge.wait_registered({"anna", "marco"})
            (contact,) = found["anna"]  # baresip's contact: sip:anna-0x...@127.0.0.1:PORT
            assert contact.startswith("sip:anna")
            assert f"@127.0.0.1:{anna.sip_port}" in contact
            assert poller.check() == frozenset({"anna", "marco"})
            assert poller.check() == frozenset({"anna", "marco"})
        finally:
            marco.stop()
        edge.wait_registered({"anna"})  # pjsua2 unregisters as it shuts down
        poller.check()
    edge.wait_registered(set())  # and so does baresip
    poller.check()
    assert seen == [frozenset(), frozenset({"anna", "marco"}), frozenset({"anna"}), frozenset()]
    log = edge.log_text()
    assert re.search(r"refused REGISTER from 127\.0\.0\.1:\d+: agent zoe: wrong user or password",
                     log), log
    assert re.search(r"refused REGISTER from 127\.0\.0\.1:\d+: 'mallory' is not an agent", log), log


def test_raw_digest_and_lockout_after_ten_failures(edge: Edge) -> None:
    with _sip_socket("127.0.0.5") as good:
        assert raw_register(good, edge, "zoe", PASSWORDS["zoe"]) == 200
    with _sip_socket("127.0.0.4") as guesser:
        assert [raw_register(guesser, edge, "zoe", f"guess{i}") for i in range(10)] == [403] * 10
        # the right password from that address is refused too for the next 5 minutes
        assert raw_register(guesser, edge, "zoe", PASSWORDS["zoe"]) == 403
    assert "too many failed attempts" in edge.log_text()


def test_calls_trunk_to_switchboard_and_switchboard_to_registered_phone(
        edge: Edge, tmp_path: Path) -> None:
    require_sip_stack()
    ivr_port = edge.settings.ivr.port
    target = f"sip:0612345@{edge.host_port}"
    # a trunk's call reaches the switchboard, which hangs up after a second (BYE back)
    ivr = peer(tmp_path, "ivr", "agent", ivr_port, "--answer-after", "0.1", "--talk", "1").start()
    try:
        trunk = calls(edge, tmp_path, "gw", target, TRUNK_IP)
        assert ivr.wait_event("incoming")[0]["src"] == f"127.0.0.1:{edge.settings.listen.port}"
        assert trunk.events("confirmed")
        assert final_code(trunk) == 200
    finally:
        ivr.stop()

    with agent_phone(edge, tmp_path, "anna", PASSWORDS["anna"]) as anna:
        assert anna.wait_registration() == "OK"
        # the switchboard calls anna at the edge: her phone rings (and answers by itself);
        # she hangs up: her BYE goes through the edge back to the switchboard
        args = ["caller", "--user", "ivr", "--port", str(ivr_port), "--rtp-port",
                str(free_udp_port()), "--target", f"sip:anna@{edge.host_port}",
                "--duration", "15"]
        ivr_call = Peer(args, tmp_path, "ivr-calls-anna").start()
        established = anna.wait_event("CALL_ESTABLISHED")
        assert established["peeruri"].startswith("sip:ivr@")
        ivr_call.wait_event("confirmed")
        anna.wait_event("CALL_RTPESTAB")  # the call's media flows: it is up at both ends
        anna.hangup()
        anna.wait_event("CALL_CLOSED")
        ivr_call.wait_exit(10)
        assert final_code(ivr_call) == 200

        # a configured agent that has not registered: 480; a name that is no agent: 404
        zoe = calls(edge, tmp_path, "ivr", f"sip:zoe@{edge.host_port}", port=ivr_port)
        assert final_code(zoe) == 480
        nobody = calls(edge, tmp_path, "ivr", f"sip:nobody@{edge.host_port}", port=ivr_port)
        assert final_code(nobody) == 404

        # a registered phone cannot call out through the edge (toll fraud)
        anna.dial(f"sip:00390212345678@{edge.host_port}")
        closed = anna.wait_event("CALL_CLOSED")
        assert "403" in str(closed.get("param")), closed


def test_strangers_are_refused(edge: Edge, tmp_path: Path) -> None:
    require_sip_stack()
    # neither a trunk nor the switchboard (same IP, other port counts as a stranger too)
    for ip, port, user in ((STRANGER_IP, None, "ivr"), ("127.0.0.1", None, "anna")):
        caller = calls(edge, tmp_path, "scanner", f"sip:{user}@{edge.host_port}", ip, port)
        assert final_code(caller) == 403

    # an in-dialog request from a stranger that is not headed for the switchboard
    with _sip_socket(STRANGER_IP) as sock:
        ip, port = sock.getsockname()
        reply = _send(sock, edge, (
            f"BYE sip:victim@192.0.2.9:5060 SIP/2.0\n"
            f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\n"
            f"Route: <sip:{edge.host_port};lr>\nMax-Forwards: 70\n"
            f"From: <sip:x@{ip}>;tag=1\nTo: <sip:victim@192.0.2.9>;tag=2\n"
            f"Call-ID: {secrets.token_hex(8)}\nCSeq: 1 BYE\nContent-Length: 0\n\n"))
        assert reply.startswith("SIP/2.0 403"), reply

    # the JSON-RPC interface lets only the read-only registrations methods through
    with pytest.raises(RegistrationsError, match="HTTP 403"):
        Registrations().call(edge.settings.rpc_url, "core.kill")
    with pytest.raises(RegistrationsError, match="HTTP 403"):
        Registrations().call(edge.settings.rpc_url, "ul.add", ["location", "anna", "sip:x@y"])
    request = urllib.request.Request(
        edge.settings.rpc_url, method="POST",
        data=b'{"jsonrpc": "2.0", "method": "ul.dump", "method": "core.kill", "id": 1}')
    with pytest.raises(urllib.error.HTTPError, match="403"):
        urllib.request.urlopen(request, timeout=2)
    assert edge.proc is not None
    assert edge.proc.poll() is None


def test_forwarded_invite_names_the_gateway(edge: Edge) -> None:
    """What the switchboard receives from a trunk's INVITE: the request URI rewritten to its
    address, the edge record-routed, and the gateway's address in X-Centralino-Source (a copy
    sent by the gateway itself is replaced)."""
    with _sip_socket(TRUNK_IP) as gw, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ivr:
        ivr.bind(("127.0.0.1", edge.settings.ivr.port))
        ivr.settimeout(3.0)
        ip, port = gw.getsockname()
        gw.sendto((f"INVITE sip:0612345@{edge.host_port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK{secrets.token_hex(6)};rport\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:0298765@{ip}>;tag=1\r\n"
                   f"To: <sip:0612345@{edge.host_port}>\r\nCall-ID: {secrets.token_hex(8)}\r\n"
                   f"CSeq: 1 INVITE\r\nContact: <sip:gw@{ip}:{port}>\r\n"
                   f"X-Centralino-Source: 10.9.9.9\r\nContent-Length: 0\r\n\r\n").encode(),
                  ("127.0.0.1", edge.settings.listen.port))
        request, source = ivr.recvfrom(65535)
        text = request.decode()
        assert source == ("127.0.0.1", edge.settings.listen.port)
        lines = text.split("\r\n")
        assert lines[0] == f"INVITE sip:0612345@{edge.settings.ivr} SIP/2.0"
        assert [x for x in lines if x.lower().startswith("x-centralino-source")] == [
            f"X-Centralino-Source: {TRUNK_IP}"]
        assert any(x.startswith(f"Record-Route: <sip:{edge.host_port};lr") for x in lines)
        # refuse it, so the transaction ends now
        keep = [x for x in lines[1:] if x.split(":")[0].lower() in
                ("via", "from", "to", "call-id", "cseq")]
        reply = ["SIP/2.0 486 Busy Here", *[x + ";tag=ivr" if x.lower().startswith("to:")
                                            else x for x in keep], "Content-Length: 0", "", ""]
        ivr.sendto("\r\n".join(reply).encode(), source)
        while True:
            answer = gw.recv(65535).decode()
            if not answer.startswith("SIP/2.0 1"):
                break
        assert answer.startswith("SIP/2.0 486"), answer


def test_switchboard_puts_a_trunk_call_through_to_a_registered_phone(
        edge: Edge, tmp_path: Path) -> None:
    """The whole chain: gateway -> edge -> switchboard (demo flow, keys 2 then 1: support) ->
    edge -> anna's registered phone. The switchboard's ivr.yaml names anna at the edge."""
    require_sip_stack()
    (tmp_path / "ivr").mkdir()
    board = Switchboard(tmp_path / "ivr", edge.settings.ivr.port, free_tcp_port(),
                        agents={"anna": edge.settings.listen.port}, trunk_sources=["127.0.0.1"],
                        trunk_media=[f"{TRUNK_IP}/32"])  # the gateway behind the edge
    with agent_phone(edge, tmp_path, "anna", PASSWORDS["anna"]) as anna:
        assert anna.wait_registration() == "OK"
        board.start()
        try:
            caller = peer(tmp_path, "gw", "caller", free_udp_port(), "--ip", TRUNK_IP,
                          "--target", f"sip:0612345@{edge.host_port}", "--digits", "2,1",
                          "--first-digit-after", "0.5", "--digit-gap", "0.8", "--hold", "8",
                          "--duration", "30").start()
            established = anna.wait_event("CALL_ESTABLISHED", timeout=20)
            assert established["peeruri"].startswith("sip:ivr@")
            assert caller.wait_exit(20) == 0
            anna.wait_event("CALL_CLOSED")
        finally:
            assert board.stop() == 0, board.log_tail()
    (record,) = board.records()
    assert record["queue"] == "support", record
    assert record["agent"] == "anna", record
    assert record["trunk"] == "test", record
    assert record["outcome"] == "completed", record


def test_switchboard_never_rings_an_agent_whose_phone_is_not_registered(
        edge: Edge, tmp_path: Path) -> None:
    """ivr.yaml names the edge: the switchboard polls its registrations; marco's phone is not
    registered, so the call goes to anna although marco is first in a top-down queue."""
    require_sip_stack()
    (tmp_path / "ivr").mkdir()
    port = edge.settings.listen.port
    board = Switchboard(
        tmp_path / "ivr", edge.settings.ivr.port, free_tcp_port(),
        agents={"marco": port, "anna": port}, trunk_sources=["127.0.0.1"],
        passwords={"marco": PASSWORDS["marco"], "anna": PASSWORDS["anna"]},
        queues="  support: {agents: [marco, anna], strategy: top_down, ring_timeout: 5}\n"
               "  sales: {agents: [anna]}",
        extra_config=f"edge: {{listen: \"{edge.host_port}\", rpc_port: "
                     f"{edge.settings.rpc_port}, trunk_sources: [\"{TRUNK_IP}/32\"]}}\n")
    with agent_phone(edge, tmp_path, "anna", PASSWORDS["anna"]) as anna:
        assert anna.wait_registration() == "OK"
        board.start()
        try:
            board.wait_for_log("agent anna: phone registered")
            caller = peer(tmp_path, "gw", "caller", free_udp_port(), "--ip", TRUNK_IP,
                          "--target", f"sip:0612345@{edge.host_port}", "--digits", "2,1",
                          "--first-digit-after", "0.5", "--digit-gap", "0.8", "--hold", "10",
                          "--duration", "30").start()
            anna.wait_event("CALL_ESTABLISHED", timeout=20)
            assert caller.wait_exit(30) == 0
            anna.wait_event("CALL_CLOSED")
        finally:
            assert board.stop() == 0, board.log_tail()
    (record,) = board.records()
    assert record["agent"] == "anna", record
    assert record["outcome"] == "completed", record
    assert [e["agent"] for e in board.queue_events("ring")] == ["anna"]
