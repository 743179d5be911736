"""The SIP request policy and the INVITE checks, as pure functions (no SIP stack)."""

from __future__ import annotations

import pytest

from ivr.sip.policy import ALLOW, DROP, MAX_BODY, PASS, check_invite, decide, kind_of


# -- requests outside calls ------------------------------------------------------------------
@pytest.mark.parametrize(("method", "status", "reason"), [
    ("OPTIONS", 200, "answered"),
    ("MESSAGE", 403, "not handled"),
    ("SUBSCRIBE", 403, "not handled"),
    ("PUBLISH", 403, "not handled"),
    ("NOTIFY", 403, "not handled"),
    ("REFER", 403, "not handled"),
    ("REGISTER", 403, "not handled"),
    ("INFO", 403, "not handled"),
    ("FOO", 405, "not allowed"),
])
def test_a_trunk_out_of_dialog_gets_an_answer(method: str, status: int, reason: str) -> None:
    decision = decide(method, known=True, in_dialog=False, content_type="")
    assert (decision.status, decision.reason) == (status, reason)


@pytest.mark.parametrize("method", ["OPTIONS", "MESSAGE", "SUBSCRIBE", "PUBLISH", "NOTIFY",
                                    "REFER", "REGISTER", "INFO", "FOO"])
def test_a_stranger_gets_no_answer_or_403_when_the_setting_says_so(method: str) -> None:
    dropped = decide(method, known=False, in_dialog=False, content_type="")
    assert (dropped.status, dropped.reason) == (DROP, "stranger")
    assert dropped.refused
    refused = decide(method, known=False, in_dialog=False, content_type="",
                     refuse_strangers=True)
    assert (refused.status, refused.reason) == (403, "stranger")


def test_options_answer_allows_only_what_we_handle() -> None:
    decision = decide("OPTIONS", known=True, in_dialog=False, content_type="")
    assert decision.headers == (("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"),)
    assert not decision.refused
    for word in ("REFER", "MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH", "UPDATE", "PRACK"):
        assert word not in ALLOW


@pytest.mark.parametrize("content_type", ["application/dtmf-relay", "application/dtmf",
                                          "Application/DTMF-Relay"])
def test_dtmf_info_in_a_call_goes_to_pjsua(content_type: str) -> None:
    decision = decide("INFO", known=True, in_dialog=True, content_type=content_type)
    assert decision.status == PASS
    assert not decision.refused


@pytest.mark.parametrize("content_type", ["application/media_control+xml", "text/plain", ""])
def test_other_info_in_a_call_is_415(content_type: str) -> None:
    decision = decide("INFO", known=False, in_dialog=True, content_type=content_type)
    assert (decision.status, decision.reason) == (415, "not dtmf")


@pytest.mark.parametrize("method", ["REFER", "NOTIFY"])
def test_refer_and_notify_in_a_call_reach_the_calls_own_policy(method: str) -> None:
    assert decide(method, known=True, in_dialog=True, content_type="").status == PASS


@pytest.mark.parametrize("method", ["MESSAGE", "SUBSCRIBE", "PUBLISH"])
def test_a_call_party_sending_other_requests_in_the_call_gets_403(method: str) -> None:
    assert decide(method, known=False, in_dialog=True, content_type="").status == 403


def test_unknown_methods_share_one_counter_label_and_get_an_allow() -> None:
    decision = decide("X" * 500, known=True, in_dialog=False, content_type="")
    assert decision.kind == "other"
    assert decision.headers == (("Allow", ALLOW),)
    assert kind_of("message") == "message"


# -- INVITE framing and media ------------------------------------------------------------------
SDP = ("v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 {session}\r\nt=0 0\r\n"
       "m=audio 4000 RTP/AVP 0\r\n{media}a=sendrecv\r\n")


def invite(body: str, length: str | None = None) -> str:
    size = str(len(body.encode())) if length is None else length
    return ("INVITE sip:800@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {size}\r\n\r\n{body}")


def gateway(ip: str) -> bool:
    return ip == "192.0.2.10"


def test_sdp_on_the_trunk_is_accepted() -> None:
    assert check_invite(invite(SDP.format(session="192.0.2.10", media="")),
                        trunk_source=gateway).status == 0


def test_sdp_elsewhere_is_488_unless_in_the_media_networks() -> None:
    body = SDP.format(session="8.8.8.8", media="")
    check = check_invite(invite(body), trunk_source=gateway)
    assert (check.status, check.reason) == (488, "media address")
    assert "8.8.8.8" in check.detail
    assert check_invite(invite(body), trunk_source=gateway,
                        media_networks=("8.8.8.0/24",)).status == 0


def test_a_media_level_connection_elsewhere_is_488_too() -> None:
    body = SDP.format(session="192.0.2.10", media="c=IN IP4 198.51.100.9\r\n")
    assert check_invite(invite(body), trunk_source=gateway).status == 488


def test_hold_address_and_invalid_networks() -> None:
    body = SDP.format(session="0.0.0.0", media="")
    assert check_invite(invite(body), trunk_source=gateway,
                        media_networks=("not a network",)).status == 0
    named = SDP.format(session="media.example.com", media="")
    assert check_invite(invite(named), trunk_source=gateway).status == 488


@pytest.mark.parametrize(("length", "reason"), [
    ("9999", "truncated body"),
    ("1e20", "bad content-length"),
    ("abc", "bad content-length"),
    ("-5", "bad content-length"),
    (str(MAX_BODY + 1), "bad content-length"),
    ("100000000000000000000", "bad content-length"),
])
def test_a_content_length_larger_than_the_body_or_absurd_is_400(length: str, reason: str) -> None:
    body = SDP.format(session="192.0.2.10", media="")
    check = check_invite(invite(body, length), trunk_source=gateway)
    assert (check.status, check.reason) == (400, reason)


def test_a_smaller_content_length_only_counts_that_much_body() -> None:
    body = SDP.format(session="192.0.2.10", media="")
    # the bytes beyond Content-Length are not the SDP: a c= there is not looked at
    tail = "c=IN IP4 8.8.8.8\r\n"
    message = invite(body + tail, str(len(body.encode())))
    assert check_invite(message, trunk_source=gateway).status == 0


def test_no_end_of_headers_is_400() -> None:
    assert check_invite("INVITE sip:800@x SIP/2.0\r\nVia: x", trunk_source=gateway).status \
        == 400


def test_two_different_content_lengths_are_400() -> None:
    message = invite("", "0").replace("Content-Length: 0", "Content-Length: 0\r\nl: 5")
    assert check_invite(message, trunk_source=gateway).reason == "bad content-length"


def test_a_content_length_that_is_not_the_last_header_is_read_without_its_cr() -> None:
    # Kamailio relays the INVITE with Content-Length in the middle of the headers
    body = SDP.format(session="192.0.2.10", media="")
    message = ("INVITE sip:800@192.0.2.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10\r\n"
               f"Content-Length: {len(body.encode())}\r\nContent-Type: application/sdp\r\n"
               f"Record-Route: <sip:192.0.2.10;lr>\r\n\r\n{body}")
    assert check_invite(message, trunk_source=gateway).status == 0
    short = message.replace(f"Content-Length: {len(body.encode())}\r\n",
                            f"Content-Length: {len(body.encode()) + 9}\r\n")
    assert check_invite(short, trunk_source=gateway).reason == "truncated body"
