"""The edge (Kamailio from ivr.edge) against hostile SIP, end to end, on loopback only.

Raw SIP over UDP for what no well-behaved phone sends (REFER, requests inside someone else's
dialog, forged Contacts, floods), and SIPVicious (Debian package ``sipvicious``: ``svmap``,
``svwar``, ``svcrack``) as an attacker would run it, against the edge and the switchboard.

Addresses: the edge, the switchboard and the phones on 127.0.0.x (one address per test, so the
edge's flood limit for one test never touches another's), the trunk's gateway on TRUNK_IP,
scanners on 127.0.0.2 and 127.0.0.3. SIPVicious 0.3.3's ``svwar`` and ``svcrack`` ignore their
``-b`` (source address) option (their ``main()`` never passes it on), so they run through a
small wrapper that binds them to the source address; the same wrapper can give them another
User-Agent, to show what the edge does beyond dropping known scanners.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ivr.edge import Address, EdgeSettings, main
from ivr.edge.passwords import COMMON_PASSWORDS
from tests.e2e import (
    Switchboard,
    free_tcp_port,
    free_udp_port,
    missing,
    require_kamailio,
    require_sip_stack,
)
from tests.test_e2e_kamailio import Edge

pytestmark = pytest.mark.e2e

TRUNK_IP = "127.0.0.10"
SCANNERS = ("127.0.0.2", "127.0.0.3")
PASSWORDS = {"anna": "tulip orbit canyon", "zoe": "violet 7 harbor drum",
             "marco": "quiet-lantern-42-fig", "eve": "mosaic river 19 oak",
             "dora": "pebble kite 55 dune", "luca": "amber field 83 hush"}


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    binary = require_kamailio()
    settings = EdgeSettings(listen=Address("127.0.0.1", free_udp_port()),
                            ivr=Address("127.0.0.1", free_udp_port()),
                            trunk_sources=(f"{TRUNK_IP}/32",), agents=PASSWORDS,
                            rpc_port=free_tcp_port())
    running = Edge(settings, tmp_path_factory.mktemp("edge")).start(binary)
    yield running
    running.stop()
    log = running.log_text()
    for password in PASSWORDS.values():
        assert password not in log


# -- SIP by hand ----------------------------------------------------------------------------

@dataclass
class Message:
    first: str
    headers: list[tuple[str, str]]
    body: str = ""

    @property
    def status(self) -> int:
        return int(self.first.split()[1]) if self.first.startswith("SIP/2.0 ") else 0

    @property
    def method(self) -> str:
        return "" if self.first.startswith("SIP/2.0 ") else self.first.split()[0]

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def get(self, name: str) -> str:
        values = self.all(name)
        assert values, f"no {name} in {self.first}"
        return values[0]


def parse(data: bytes) -> Message:
    head, _, body = data.decode(errors="replace").partition("\r\n\r\n")
    first, *lines = head.split("\r\n")
    return Message(first, [(k.strip(), v.strip()) for k, _, v in
                           (line.partition(":") for line in lines)], body)


@dataclass
class Raw:
    """A UDP socket on *ip* that speaks SIP by hand."""

    ip: str
    edge: tuple[str, int]
    """Where it sends: the edge's SIP address."""
    port: int = 0
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((self.ip, self.port))
        self.port = self.sock.getsockname()[1]

    @property
    def addr(self) -> str:
        return f"{self.ip}:{self.port}"

    def close(self) -> None:
        self.sock.close()

    def send(self, text: str) -> None:
        self.sock.sendto(text.encode(), self.edge)

    def recv(self, timeout: float = 5.0) -> Message | None:
        """The next message (None if none came within *timeout*)."""
        self.sock.settimeout(timeout)
        try:
            return parse(self.sock.recv(65535))
        except TimeoutError:
            return None

    def final(self, timeout: float = 5.0) -> Message:
        """The next final response (provisional ones skipped)."""
        end = time.monotonic() + timeout
        while True:
            msg = self.recv(max(0.01, end - time.monotonic()))
            assert msg is not None, f"{self.addr}: no final response within {timeout} s"
            if msg.status >= 200:
                return msg

    def request(self) -> Message:
        """The next request that reaches this socket (responses skipped)."""
        end = time.monotonic() + 5.0
        while True:
            got = self.recv(max(0.01, end - time.monotonic()))
            assert got is not None, f"{self.addr}: no request arrived"
            if got.method:
                return got

    def reply(self, request: Message, status: int, reason: str, to_tag: str = "",
              contact: str = "") -> None:
        """Answer *request* (sent back to the edge, which sent it)."""
        lines = [f"SIP/2.0 {status} {reason}"]
        for name, value in request.headers:
            if name.lower() in ("via", "record-route", "from", "call-id", "cseq"):
                lines.append(f"{name}: {value}")
            elif name.lower() == "to":
                lines.append(f"To: {value}" + (f";tag={to_tag}" if to_tag and "tag=" not in
                                               value else ""))
        if contact:
            lines.append(f"Contact: {contact}")
        self.send("\r\n".join([*lines, "Content-Length: 0", "", ""]))

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def at(edge: Edge) -> tuple[str, int]:
    return edge.settings.listen.host, edge.settings.listen.port


def build(method: str, uri: str, via: Raw, from_: str, to: str, call_id: str, cseq: int,
          *extra: str, body: str = "") -> str:
    lines = [f"{method} {uri} SIP/2.0",
             f"Via: SIP/2.0/UDP {via.addr};branch=z9hG4bK{secrets.token_hex(8)};rport",
             "Max-Forwards: 70", f"From: {from_}", f"To: {to}", f"Call-ID: {call_id}",
             f"CSeq: {cseq} {method}", *extra, f"Content-Length: {len(body.encode())}", "", body]
    return "\r\n".join(lines)


@dataclass
class Dialog:
    """One side's view of an established dialog, enough to send requests inside it."""

    me: Raw
    local: str
    """From of our requests (with our tag)."""
    remote: str
    """To of our requests (with their tag)."""
    call_id: str
    target: str
    """The Request-URI: the other side's Contact."""
    route: list[str]
    cseq: int = 1

    def send(self, method: str, *extra: str, sender: Raw | None = None) -> None:
        """*method* in this dialog, from *sender* (default: our own socket) via the edge."""
        self.cseq += 1
        lines = [f"Route: {r}" for r in self.route]
        self.me_or(sender).send(build(method, self.target, self.me_or(sender), self.local,
                                      self.remote, self.call_id, self.cseq, *lines, *extra))

    def me_or(self, sender: Raw | None) -> Raw:
        return sender if sender is not None else self.me


def uri_of(header: str) -> str:
    found = re.search(r"<([^>]+)>", header)
    return found[1] if found else header.split(";")[0]


def establish(edge: Edge, caller: Raw, callee: Raw, uri: str, from_user: str) -> tuple[Dialog,
                                                                                      Dialog]:
    """*caller* sends an INVITE for *uri* through the edge, *callee* receives and answers it
    200, *caller* sends the ACK; the two sides' dialogs."""
    call_id, tag = secrets.token_hex(10), secrets.token_hex(4)
    local = f"<sip:{from_user}@{caller.addr}>;tag={tag}"
    to = f"<{uri}>"
    caller.send(build("INVITE", uri, caller, local, to, call_id, 1,
                      f"Contact: <sip:{from_user}@{caller.addr}>"))
    invite = callee.request()
    assert invite.method == "INVITE", invite
    callee_contact = f"<sip:callee@{callee.addr}>"
    callee.reply(invite, 200, "OK", to_tag="b" + tag, contact=callee_contact)
    ok = caller.final()
    assert ok.status == 200, ok
    route = list(reversed(ok.all("Record-Route")))
    remote = ok.get("To")
    dialog = Dialog(caller, local, remote, call_id, uri_of(ok.get("Contact")), route)
    caller.send(build("ACK", dialog.target, caller, local, remote, call_id, 1,
                      *[f"Route: {r}" for r in route]))
    ack = callee.request()
    assert ack.method == "ACK", ack
    back = Dialog(callee, invite.get("To") + f";tag=b{tag}", invite.get("From"), call_id,
                  uri_of(invite.get("Contact")), list(invite.all("Record-Route")))
    return dialog, back


def register(sock: Raw, edge: Edge, user: str, password: str | None,
             contacts: tuple[str, ...] | None = None, expires: int = 60,
             nonce: str | None = None) -> tuple[Message, Message | None]:
    """REGISTER as *user*: the first answer (a 401 challenge, or a refusal) and, when
    challenged and *password* is given, the answer to the REGISTER with credentials. The
    Contact is the socket's own address unless *contacts* (whole header lines) are given."""
    uri = f"sip:{edge.host_port}"
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    lines = contacts if contacts is not None else (f"Contact: <sip:{user}@{sock.addr}>",)

    def send(cseq: int, *auth: str) -> Message:
        sock.send(build("REGISTER", uri, sock, f"<sip:{user}@{edge.host_port}>;tag={tag}",
                        f"<sip:{user}@{edge.host_port}>", call_id, cseq, *lines,
                        f"Expires: {expires}", *auth))
        return sock.final()

    first = send(1)
    if first.status != 401 or password is None:
        return first, None
    challenge = first.get("WWW-Authenticate")
    realm = re.search(r'realm="([^"]+)"', challenge)
    found = re.search(r'nonce="([^"]+)"', challenge)
    assert realm, challenge
    assert found, challenge

    def md5(text: str) -> str:
        import hashlib

        return hashlib.md5(text.encode()).hexdigest()

    used = nonce if nonce is not None else found[1]
    cnonce, nc = secrets.token_hex(4), "00000001"
    response = md5(f"{md5(f'{user}:{realm[1]}:{password}')}:{used}:{nc}:{cnonce}:auth:"
                   f"{md5(f'REGISTER:{uri}')}")
    return first, send(2, f'Authorization: Digest username="{user}", realm="{realm[1]}", '
                          f'nonce="{used}", uri="{uri}", response="{response}", '
                          f'algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"')


def final_status(sock: Raw, edge: Edge, user: str, password: str,
                 contacts: tuple[str, ...] | None = None, expires: int = 60) -> int:
    first, second = register(sock, edge, user, password, contacts, expires)
    return (second or first).status


def invite_agent(ivr: Raw, edge: Edge, agent: str) -> Message:
    """The switchboard (its own address) calls *agent* at the edge; the edge's answer (final,
    or the INVITE is relayed and this returns the phone's answer)."""
    call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
    ivr.send(build("INVITE", f"sip:{agent}@{edge.host_port}", ivr,
                   f"<sip:ivr@{ivr.addr}>;tag={tag}", f"<sip:{agent}@{edge.host_port}>",
                   call_id, 1, f"Contact: <sip:ivr@{ivr.addr}>"))
    return ivr.final(10.0)


# -- REFER and dialogs ----------------------------------------------------------------------

def test_refer_from_the_caller_or_a_stranger_is_never_relayed(edge: Edge) -> None:
    """A call from the trunk to the switchboard through the edge: the caller's REFER (in the
    dialog and out of it) and a stranger's requests with the call's Call-ID, tags and route
    get 403 and reach nobody; the caller's own INFO and BYE still go through."""
    with Raw(TRUNK_IP, at(edge)) as gw, \
            Raw("127.0.0.1", at(edge), edge.settings.ivr.port) as ivr, \
            Raw("127.0.0.3", at(edge)) as stranger:
        call, _ = establish(edge, gw, ivr, f"sip:0612345@{edge.host_port}", "0298765")
        refer_to = "Refer-To: <sip:00390612345678@127.0.0.10>"
        call.send("REFER", refer_to)
        assert gw.final().status == 403
        for method in ("REFER", "BYE", "INVITE"):  # the stranger knows the call's identifiers
            call.send(method, refer_to, sender=stranger)
            assert stranger.final().status == 403, method
        # out of any dialog: from the trunk, and from a stranger
        for sock in (gw, stranger):
            sock.send(build("REFER", f"sip:ivr@{edge.host_port}", sock,
                            f"<sip:x@{sock.addr}>;tag=1", f"<sip:ivr@{edge.host_port}>",
                            secrets.token_hex(8), 1, refer_to))
            assert sock.final().status == 403
        # the first request the switchboard's side receives after the ACK is the caller's INFO
        call.send("INFO")
        info = ivr.request()
        assert info.method == "INFO", info
        ivr.reply(info, 200, "OK")
        assert gw.final().status == 200
        call.send("BYE")
        bye = ivr.request()
        assert bye.method == "BYE", bye
        ivr.reply(bye, 200, "OK")
        assert gw.final().status == 200
    log = edge.log_text()
    assert "refused REFER from 127.0.0.10" in log
    assert re.search(r"refused (BYE|REFER|INVITE) from 127\.0\.0\.3:\d+: in-dialog request from an "
                     r"address that is no party of the dialog", log), log


def test_a_call_to_an_agent_is_relayed_only_between_its_two_parties(edge: Edge) -> None:
    """The switchboard calls anna's registered phone: a stranger's BYE inside that call is
    refused; a phone that answers with a Contact elsewhere gets none of the switchboard's
    in-dialog requests sent there."""
    ivr_port = edge.settings.ivr.port
    with Raw("127.0.0.21", at(edge)) as phone, Raw("127.0.0.1", at(edge), ivr_port) as ivr, \
            Raw("127.0.0.3", at(edge)) as stranger, Raw("127.0.0.6", at(edge)) as elsewhere:
        assert final_status(phone, edge, "anna", PASSWORDS["anna"]) == 200
        call, answered = establish(edge, ivr, phone, f"sip:anna@{edge.host_port}", "ivr")
        call.send("BYE", sender=stranger)
        assert stranger.final().status == 403
        answered.send("INFO")  # the phone's own requests go to the switchboard
        info = ivr.request()
        assert info.method == "INFO", info
        ivr.reply(info, 200, "OK")
        assert phone.final().status == 200
        call.send("BYE")
        bye = phone.request()
        assert bye.method == "BYE", bye
        phone.reply(bye, 200, "OK")
        assert ivr.final().status == 200

        # a second call, answered with a Contact at another address: not followed
        call, _ = establish(edge, ivr, phone, f"sip:anna@{edge.host_port}", "ivr")
        call.target = f"sip:00390699999999@{elsewhere.addr}"
        call.send("BYE")
        assert ivr.final().status == 403  # answered by the edge: it relayed nothing
        assert elsewhere.recv(0.2) is None
        assert final_status(phone, edge, "anna", PASSWORDS["anna"],
                            ("Contact: *",), expires=0) == 200


# -- Contacts -------------------------------------------------------------------------------

def test_a_contact_must_be_the_address_the_register_came_from(edge: Edge) -> None:
    """anna's phone, with her right password, cannot register a Contact anywhere but where its
    REGISTER came from; the switchboard's calls to anna never go to such an address."""
    ivr_port = edge.settings.ivr.port
    with Raw("127.0.0.22", at(edge)) as phone, Raw("127.0.0.6", at(edge)) as elsewhere, \
            Raw("127.0.0.1", at(edge), ivr_port) as ivr:
        other = elsewhere.addr
        refused = {
            "a number at another address": f"Contact: <sip:00390699999999@{other}>",
            "another address": f"Contact: <sip:anna@{other}>",
            "a number at its own address": f"Contact: <sip:+390699999999@{phone.addr}>",
            "the edge": f"Contact: <sip:anna@{edge.host_port}>",
            "the switchboard": f"Contact: <sip:anna@127.0.0.1:{ivr_port}>",
            "the trunk": f"Contact: <sip:anna@{TRUNK_IP}:5060>",
            "maddr": f"Contact: <sip:anna@{phone.addr};maddr=127.0.0.6>",
            "another port": f"Contact: <sip:anna@{phone.ip}:{elsewhere.port}>",
            "two contacts": f"Contact: <sip:anna@{phone.addr}>, <sip:anna@{other}>",
            "compact form": f"m: <sip:00390699999999@{other}>",
            "a host name": f"Contact: <sip:anna@gateway.example:{phone.port}>",
        }
        for what, line in refused.items():
            assert final_status(phone, edge, "anna", PASSWORDS["anna"], (line,)) == 403, what
        assert final_status(phone, edge, "anna", PASSWORDS["anna"],
                            (f"Contact: <sip:anna@{phone.addr}>",
                             f"Contact: <sip:anna@{other}>")) == 403
        assert edge.registered() == {}
        assert invite_agent(ivr, edge, "anna").status == 480  # not registered: nowhere to go

        # registered where it is; a later REGISTER pointing elsewhere changes nothing
        assert final_status(phone, edge, "anna", PASSWORDS["anna"]) == 200
        assert final_status(phone, edge, "anna", PASSWORDS["anna"],
                            (f"Contact: <sip:00390699999999@{other}>",)) == 403
        assert edge.registered() == {"anna": [f"sip:anna@{phone.addr}"]}
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        ivr.send(build("INVITE", f"sip:anna@{edge.host_port}", ivr,
                       f"<sip:ivr@{ivr.addr}>;tag={tag}", f"<sip:anna@{edge.host_port}>",
                       call_id, 1, f"Contact: <sip:ivr@{ivr.addr}>"))
        invite = phone.request()
        assert invite.first.startswith(f"INVITE sip:anna@{phone.addr} ")
        phone.reply(invite, 486, "Busy Here", to_tag="x")
        assert ivr.final().status == 486
        assert elsewhere.recv(0.2) is None
        assert final_status(phone, edge, "anna", PASSWORDS["anna"], ("Contact: *",),
                            expires=0) == 200
    log = edge.log_text()
    assert "agent anna: Contact refused: its user part is a number" in log  # the first, once


# -- names, failures, lockouts --------------------------------------------------------------

def _shape(msg: Message) -> tuple[str, list[str]]:
    """What a response says apart from its nonce and tags: status line and header names."""
    return msg.first, sorted(name.lower() for name, _ in msg.headers)


def test_agents_and_made_up_names_get_the_same_answers(edge: Edge) -> None:
    """zoe is an agent, the others are not: the same 401 challenge first, the same 403 for a
    wrong password, the same answer to a forged nonce."""
    answers: dict[str, list[tuple[str, list[str]]]] = {}
    with Raw("127.0.0.7", at(edge)) as sock:
        for user in ("zoe", "nobody", "zz9-plural-z-alpha", "1000"):
            challenge, wrong = register(sock, edge, user, "not the password")
            _, forged = register(sock, edge, user, "not the password",
                                 nonce="AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
            assert challenge.status == 401
            assert 'nonce="' in challenge.get("WWW-Authenticate")
            assert wrong is not None
            assert forged is not None
            answers[user] = [_shape(challenge), _shape(wrong), _shape(forged)]
    assert answers["zoe"][1][0] == "SIP/2.0 403 Forbidden"
    for user, shapes in answers.items():
        assert shapes == answers["zoe"], user


def test_failures_count_per_agent_and_per_address(edge: Edge) -> None:
    """Made-up names never lock an address out; failures for marco from many addresses lock
    marco out (another agent's success in between does not clear them) except where his phone
    logged in before; failures at one address lock it out except for agents who logged in
    there. (Each address sends fewer requests than the flood limit.)"""
    with Raw("127.0.0.31", at(edge)) as office, Raw("127.0.0.32", at(edge)) as home:
        # ten made-up names from the office, then eve's phone there still registers
        for i in range(10):
            assert final_status(office, edge, f"made-up-{i}", "guess") == 403
        assert final_status(office, edge, "eve", PASSWORDS["eve"]) == 200
        # marco's phone registers from home
        assert final_status(home, edge, "marco", PASSWORDS["marco"]) == 200
    wrong = []
    for i in range(10):  # ten guesses for marco, each from its own address
        with Raw(f"127.0.0.{40 + i}", at(edge)) as sock:
            wrong.append(final_status(sock, edge, "marco", f"guess {i}"))
            if i == 4:  # eve logs in well in between: it clears eve's count, not marco's
                assert final_status(sock, edge, "eve", PASSWORDS["eve"]) == 200
    assert wrong == [403] * 10
    with Raw("127.0.0.51", at(edge)) as fresh, Raw("127.0.0.32", at(edge)) as home:
        assert final_status(fresh, edge, "marco", PASSWORDS["marco"]) == 403  # locked out
        assert final_status(home, edge, "marco", PASSWORDS["marco"]) == 200  # his phone
    with Raw("127.0.0.33", at(edge)) as office:
        assert final_status(office, edge, "eve", PASSWORDS["eve"]) == 200
        # ten failures for dora here lock this address out for agents new here, not for eve
        assert [final_status(office, edge, "dora", f"x{i}") for i in range(10)] == [403] * 10
        assert final_status(office, edge, "luca", PASSWORDS["luca"]) == 403
        assert final_status(office, edge, "eve", PASSWORDS["eve"]) == 200
    assert "agent marco: too many failed attempts" in edge.log_text()


# -- scanners, floods, logs -----------------------------------------------------------------

def options(sock: Raw, edge: Edge, *extra: str, call_id: str | None = None) -> str:
    call_id = call_id or secrets.token_hex(8)
    sock.send(build("OPTIONS", f"sip:100@{edge.host_port}", sock, f"<sip:100@{sock.addr}>;tag=1",
                    f"<sip:100@{edge.host_port}>", call_id, 1, *extra))
    return call_id


@pytest.mark.parametrize("agent", ["friendly-scanner", "sipvicious", "VaxSIPUserAgent/3.1",
                                   "sipcli/v1.8", "sundayddr", "Friendly-Scanner"])
def test_scanners_get_no_answer(edge: Edge, agent: str) -> None:
    with Raw("127.0.0.8", at(edge)) as sock:
        options(sock, edge, f"User-Agent: {agent}")
        marker = options(sock, edge, "User-Agent: Linphone/5.2")
        answer = sock.final()
        assert answer.get("Call-ID") == marker  # the first answer is the second request's
        assert answer.status == 403
        assert not answer.all("Server")
        assert not answer.all("User-Agent")


def test_a_flood_is_cut_short_and_logged_in_a_few_lines(edge: Edge) -> None:
    """300 requests at once: from a stranger, most get no answer and the log grows by a few
    lines; from the trunk's gateway, every one is answered."""
    before = len(edge.log_text().splitlines())
    counts = {}
    for ip in ("127.0.0.9", TRUNK_IP):
        with Raw(ip, at(edge)) as sock:
            sock.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            for _ in range(300):
                options(sock, edge)
            got = 0
            while got < 300 and sock.recv(1.0 if got else 5.0) is not None:
                got += 1
            counts[ip] = got
    assert counts[TRUNK_IP] == 300
    assert counts["127.0.0.9"] < 100
    new = edge.log_text().splitlines()[before:]
    assert len([line for line in new if "127.0.0.9" in line]) <= 3, new
    assert len([line for line in new if TRUNK_IP in line]) <= 2, new


# -- passwords ------------------------------------------------------------------------------

def test_ivr_edge_refuses_a_weak_password_before_it_is_ever_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ivr.yaml"
    config.write_text("sip: {listen: 127.0.0.1:5080}\ntrunks: {gw: {sources: [127.0.0.1]}}\n"
                      "agents:\n  marco: {uri: \"sip:marco@127.0.0.1:5060\", password: marco123}\n"
                      "edge: {listen: 127.0.0.1:5060}\n")
    config.chmod(0o600)
    out = tmp_path / "out"
    assert main(["--config", str(config), "--out", str(out), "--no-check"]) == 2
    err = capsys.readouterr().err
    assert "agents.marco.password: agent 'marco': the password is shorter than 12" in err
    assert not out.exists()  # no kamailio.cfg: the password never reaches the edge


# -- SIPVicious -----------------------------------------------------------------------------

WRAPPER = '''\
import importlib, socket, sys
tool_dir, source, agent, tool, *args = sys.argv[1:]
sys.path.insert(0, tool_dir)
from sipvicious.libs import svhelper
if agent:
    svhelper.makeRequest.__defaults__ = tuple(
        agent if d == "friendly-scanner" else d for d in svhelper.makeRequest.__defaults__)
_bind = socket.socket.bind
def bind(self, address):
    return _bind(self, (source if address[0] in ("", "0.0.0.0") else address[0], *address[1:]))
socket.socket.bind = bind
module = importlib.import_module("sipvicious." + tool)
sys.argv = [tool, *args]
sys.exit(module.main())
'''


@dataclass
class Sipvicious:
    """SIPVicious' tools, run bound to a source address, with their own or another UA."""

    workdir: Path

    @classmethod
    def find(cls, workdir: Path) -> Sipvicious:
        if shutil.which("svwar") is None:
            missing("SIPVicious is not installed", "Debian package sipvicious; "
                    "scripts/system-deps.sh installs it")
        (workdir / "sv.py").write_text(WRAPPER)
        return cls(workdir)

    def run(self, tool: str, source: str, *args: str, agent: str = "") -> str:
        script = Path(os.path.realpath(shutil.which(tool) or tool))
        python = script.read_text().splitlines()[0].removeprefix("#!").strip() or sys.executable
        done = subprocess.run([python, str(self.workdir / "sv.py"), str(script.parent), source,
                               agent, tool, *args, "-x", source], capture_output=True,
                              text=True, timeout=120, cwd=self.workdir)
        return done.stdout + done.stderr


DISGUISE = "Linphone/5.2.0 (belle-sip/5.2.0)"


@pytest.fixture(scope="module")
def sv(tmp_path_factory: pytest.TempPathFactory) -> Sipvicious:
    return Sipvicious.find(tmp_path_factory.mktemp("sipvicious"))


def dictionary(path: Path, names: list[str]) -> Path:
    path.write_text("\n".join(names) + "\n")
    return path


def test_sipvicious_finds_no_extension_at_the_edge(edge: Edge, sv: Sipvicious,
                                                   tmp_path: Path) -> None:
    port = str(edge.settings.listen.port)
    names = dictionary(tmp_path / "names.txt", [*PASSWORDS, "admin", "100", "1000", "ivr"])
    out = sv.run("svmap", SCANNERS[0], "-p", port, "127.0.0.1", "-b", SCANNERS[0])
    assert "found nothing" in out, out
    for agent in ("", DISGUISE):  # as shipped (dropped), and disguised (answered alike)
        for method in ("REGISTER", "OPTIONS", "INVITE"):
            out = sv.run("svwar", SCANNERS[0], "--force", "-m", method, "-d", str(names),
                         "-e", "100-120", "-p", port, "--maximumtime", "3", "127.0.0.1",
                         agent=agent)
            assert "found nothing" in out, (agent, method, out)
            assert not re.search(r"extension '\S+' (exists|probably exists)", out), out


def test_sipvicious_cracks_nothing_from_several_addresses(edge: Edge, sv: Sipvicious,
                                                          tmp_path: Path) -> None:
    port = str(edge.settings.listen.port)
    words = dictionary(tmp_path / "words.txt",
                       [*sorted(COMMON_PASSWORDS), "luca", "luca123", "luca1234", "Luca2024!"])
    for source in SCANNERS:
        for agent in ("", DISGUISE):
            out = sv.run("svcrack", source, "-u", "luca", "-d", str(words), "-p", port,
                         "--maximumtime", "3", "127.0.0.1", agent=agent)
            assert "found nothing" in out, (source, agent, out)
            assert "The password for" not in out, out
    log = edge.log_text()
    for source in SCANNERS:  # the disguised runs reached the password check, and were refused
        assert re.search(rf"refused REGISTER from {re.escape(source)}:\d+: agent luca: wrong user "
                         "or password", log), log
        assert re.search(rf"refused \S+ from {re.escape(source)}:\d+: a scanner's User-Agent", log)


def test_sipvicious_finds_no_extension_and_cracks_nothing_at_the_switchboard(
        edge: Edge, sv: Sipvicious, tmp_path: Path) -> None:
    """The switchboard's own SIP port, scanned from addresses that are not trunks."""
    require_sip_stack()
    (tmp_path / "ivr").mkdir()
    board = Switchboard(tmp_path / "ivr", free_udp_port(), free_tcp_port(),
                        agents={"anna": edge.settings.listen.port}, trunk_sources=["127.0.0.1"])
    board.start()
    try:
        port = str(board.sip_port)
        names = dictionary(tmp_path / "names.txt", ["anna", "ivr", "100", "1000", "admin"])
        for agent in ("", DISGUISE):
            for method in ("REGISTER", "OPTIONS", "INVITE"):
                out = sv.run("svwar", SCANNERS[0], "--force", "-m", method, "-d", str(names),
                             "-e", "100-110", "-p", port, "--maximumtime", "3", "127.0.0.1",
                             agent=agent)
                assert not re.search(r"extension '\S+' (exists|probably exists)", out), out
            for source in SCANNERS:
                out = sv.run("svcrack", source, "-u", "anna", "-r", "1000-1050", "-p", port,
                             "--maximumtime", "3", "127.0.0.1", agent=agent)
                assert "The password for" not in out, out
    finally:
        assert board.stop() == 0, board.log_tail()
    outcomes = [record["outcome"] for record in board.records()]
    assert set(outcomes) <= {"refused"}, outcomes  # the scan's INVITEs: refused, none answered
