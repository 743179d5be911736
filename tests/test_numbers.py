"""Called and calling numbers: one canonical spelling, or refused."""

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.numbers import MAX_DIGITS, is_number, normalise, number_from_uri

CANONICAL = re.compile(r"\+?[0-9*#]*")
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

EXACT = [
    # bare numbers, with the separators people and gateways write
    ("0612345678", "0612345678"),
    ("+39 06 1234 5678", "+390612345678"),
    ("(06) 1234-5678", "0612345678"),
    ("06.1234.5678", "0612345678"),
    ("*41", "*41"),
    ("#31#", "#31#"),
    ("%2B390612345678", "+390612345678"),
    ("%2341", "#41"),
    (" 800123456 ", "800123456"),
    ("0612;phone-context=example.com", "0612"),
    # URIs and name-addrs
    ("tel:+39-06-1234;phone-context=example.com", "+39061234"),
    ("TEL:+39.06.1234", "+39061234"),
    ("sip:0612345678@192.0.2.1", "0612345678"),
    ("sips:+3902123@gw.example;transport=tls", "+3902123"),
    ("sip:+3902123;phone-context=gw@gw;user=phone", "+3902123"),
    ('"Anna" <sip:+3902123@gw;user=phone>', "+3902123"),
    ('"A <b> \\"c\\"" <sip:0212@gw>;tag=1', "0212"),
    ("Anna <sip:0212@gw>", "0212"),
    ("<tel:+39%2006%201234>", "+39061234"),
    ("sip:0612:secret@192.0.2.1", "0612"),
    # withheld
    ("", ""),
    ("anonymous", ""),
    ("Anonymous", ""),
    ("RESTRICTED", ""),
    ("unknown", ""),
    ("sip:anonymous@anonymous.invalid", ""),
    ('"Anonymous" <sip:anonymous@anonymous.invalid>;tag=x', ""),
    ("sip:192.0.2.1:5060", ""),
    ("tel:", ""),
    # refused
    ("ivr", None),
    ("ivr%00evil", None),
    ("0612\x00", None),
    ("06%0a12", None),
    ("0612\n", None),
    ("0612\t", None),
    ("39+06", None),
    ("++39", None),
    ("+", None),
    ("-", None),
    ("()", None),
    ("06%3B12", None),
    ("06%2512", None),
    ("0612@evil", None),
    ("1" * (MAX_DIGITS + 1), None),
    ("+" + "1" * MAX_DIGITS, None),
    ("%E0%A5%A7", None),  # a Devanagari digit one: only ASCII digits are digits
    ("\u0967", None),
    ("http://192.0.2.1/0612", None),
    ("mailto:0612@example.com", None),
    ("12:34", None),
    ('"Anna <sip:0612@gw>', None),
    ("<sip:0612@gw", None),
    ("sip:ivr@127.0.0.1:5080", None),
    ("x" * 600, None),
]


@pytest.mark.parametrize(("raw", "expected"), EXACT)
def test_exact_cases(raw, expected):
    assert normalise(raw) == expected


def test_the_longest_number_is_kept():
    assert normalise("1" * MAX_DIGITS) == "1" * MAX_DIGITS
    assert normalise("+" + "1" * (MAX_DIGITS - 1)) == "+" + "1" * (MAX_DIGITS - 1)


def test_number_from_uri_takes_uris_only():
    assert number_from_uri("sip:0612@gw") == "0612"
    assert number_from_uri("tel:+39-06") == "+3906"
    assert number_from_uri('"x" <sips:*41@gw>') == "*41"
    assert number_from_uri("0612") is None
    assert number_from_uri("ftp:0612@gw") is None
    assert number_from_uri("sip:ivr@gw") is None


def test_is_number():
    assert is_number("+390612")
    assert not is_number("")
    assert not is_number("06 12")


@SETTINGS
@given(st.text(max_size=80))
def test_any_text_is_a_canonical_number_or_refused_and_never_raises(raw):
    result = normalise(raw)
    if result is not None:
        assert CANONICAL.fullmatch(result)
        assert len(result) <= MAX_DIGITS


@SETTINGS
@given(st.one_of(
    st.text(max_size=60),
    st.text(alphabet="0123456789+*#%-.() ;:@<>\"sipteladr", max_size=60),
))
def test_normalise_is_idempotent(raw):
    once = normalise(raw)
    if once is not None:
        assert normalise(once) == once


@SETTINGS
@given(st.from_regex(r"\+?[0-9*#]{1,31}", fullmatch=True),
       st.lists(st.sampled_from([" ", "-", ".", "(", ")"]), max_size=5), st.randoms())
def test_a_number_keeps_its_keys_whatever_separators_and_uri_wrap_it(number, seps, rnd):
    spelled = list(number)
    for sep in seps:  # separators anywhere after a leading +
        spelled.insert(rnd.randint(1 if number.startswith("+") else 0, len(spelled)), sep)
    text = "".join(spelled)
    assert normalise(text) == number
    encoded = number.replace("#", "%23")
    assert normalise(f"sip:{encoded}@192.0.2.1;user=phone") == number
    assert normalise(f'"Caller" <sip:{encoded}@gw>;tag=1') == number
    assert normalise(f"tel:{encoded};phone-context=example.com") == number


@SETTINGS
@given(st.from_regex(r"[0-9]{1,10}", fullmatch=True),
       st.sampled_from(["%00", "%0a", "%0d", "\x00", "\n", "a", "Z", "'", '"', "%22", "/",
                        "\\", "$", "{", "%7B", "\u00a0", "\u200b", "\x7f"]))
def test_a_hostile_byte_anywhere_refuses_the_number(number, bad):
    for at in (0, len(number) // 2, len(number)):
        assert normalise(number[:at] + bad + number[at:]) is None
