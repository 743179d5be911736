"""Passwords a cracking word list would find, refused before they reach the edge.

A phone's SIP password can be tried from anywhere the edge is reachable (SIPVicious' ``svcrack``
does it with a word list), so :func:`password_problem` refuses what such lists start with:
fewer than :data:`MIN_LENGTH` characters, only digits, few distinct characters, the user name
(alone or with digits), and the common passwords below, also when written with digits for
letters (``p4ssw0rd``) or with digits and symbols around them (``dragon2024!``).

    >>> password_problem("marco", "marco123")
    'is shorter than 12 characters'
    >>> password_problem("marco", "marco1234567")
    'is the user name with digits or symbols'
    >>> password_problem("marco", "correct horse battery") is None
    True

The list is the most common passwords of public breaches, with words of this trade (``voip``,
``centralino``) and of the languages of its users; the rules catch what the short list misses.
"""

from __future__ import annotations

import re

MIN_LENGTH = 12
"""Shortest password the edge takes."""

_WORDS = """
    123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon 123123 baseball
    abc123 football monkey letmein 696969 shadow master 666666 qwertyuiop 123321 mustang
    1234567890 michael 654321 superman 1qaz2wsx 7777777 121212 000000 qazwsx 123qwe killer
    trustno1 jordan jennifer zxcvbnm asdfgh hunter buster soccer harley batman andrew tigger
    sunshine iloveyou 2000 charlie robert thomas hockey ranger daniel starwars klaster 112233
    george computer michelle jessica pepper 1111 zxcvbn 555555 11111111 131313 freedom 777777
    pass maggie 159753 aaaaaa ginger princess joshua cheese amanda summer love ashley nicole
    chelsea biteme matthew access yankees 987654321 dallas austin thunder taylor matrix
    minecraft william corvette hello martin heather secret merlin diamond 1234qwer gfhjkm
    hammer silver 222222 88888888 anthony justin test bailey q1w2e3r4t5 patrick internet
    scooter orange 11111 golfer cookie richard samantha bigdog guitar jackson whatever mickey
    chicken sparky snoopy maverick phoenix camaro peanut morgan welcome falcon cowboy ferrari
    samsung andrea smokey steelers joseph mercedes dakota arsenal eagles melissa boomer booboo
    spider nascar monster tigers yellow xxxxxx 123123123 gateway marina diablo bulldog qwer1234
    compaq purple hardcore banana junior hannah 123654 porsche lakers iceman money cowboys
    987654 london tennis 999999 ncc1701 coffee scooby 0000 miller boston q1w2e3r4 brandon
    yamaha chester mother forever johnny edward 333333 oliver redsox player nikita knight
    fender barney midnight please brandy chicago badboy slayer rangers charles angel flower
    bigdaddy rabbit wizard jasmine pepper1 jaguar steven dolphin password1 password123
    qwerty123 admin administrator root toor changeme default letmein1 welcome1 passw0rd
    p@ssw0rd p@ssword azerty abcdef abcd1234 aa123456 asdf1234 zaq12wsx 1q2w3e4r 1q2w3e4r5t
    1qazxsw2 qweasdzxc asdfghjkl qwertyuiopasdfghjkl zxcvbnm123 iloveyou1 iloveyou123
    trustno1234 monkey123 dragon123 sunshine1 football1 baseball1 superman123 batman123
    princess1 qwerty12345 123456789a 1234567890a 12345678910 0123456789 9876543210 11223344
    12341234 147258369 159357 741852963 123456a a123456 123abc abc12345 password12 password1234
    passwordpassword voip sip asterisk freepbx elastix trixbox phone telefono centralino
    centralino123 pbx voip123 sip123 asterisk123 test123 test1234 testtest guest guest123 user
    user123 demo support operator reception office agent agent123 secret123 secret1234
    mypassword ciao ciaociao amore amore123 juventus napoli milano roma inter forzainter
    forzamilan forzajuve password01 qwertz qwertz123 hallo hallo123 passwort schatz bonjour
    soleil
"""
COMMON_PASSWORDS = frozenset(_WORDS.split())
"""Common passwords, lower case (also refused with digits or symbols around them)."""

_KEYBOARD_RUNS = ("qwertyuiopasdfghjklzxcvbnm", "abcdefghijklmnopqrstuvwxyz", "1234567890",
                  "0987654321", "azertyuiopqsdfghjklmwxcvbn", "qwertzuiopasdfghjklyxcvbnm",
                  "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "zyxwvutsrqponmlkjihgfedcba")
_LEET = str.maketrans("@4310$5!7+", "aaeiossitt")
_AROUND = re.compile(r"^[^a-z]*(.*?)[^a-z]*$")


def _forms(password: str) -> set[str]:
    """The lower-case password as a word list would hold it: as is, without the digits and
    symbols around it, with digits read as letters, and without those around that."""
    low = password.lower()
    forms = {low, low.translate(_LEET)}
    forms |= {_AROUND.sub(r"\1", form) for form in forms}
    return forms


def password_problem(name: str, password: str) -> str | None:
    """Why *password* is too weak for agent *name* (a phrase to follow "the password"), or None."""
    if len(password) < MIN_LENGTH:
        return f"is shorter than {MIN_LENGTH} characters"
    if password.isdigit():
        return "is only digits"
    if len(set(password.lower())) < 5:
        return "repeats too few different characters"
    low, user = password.lower(), name.lower()
    if low == user:
        return "is the user name"
    if len(user) >= 3 and user in low and not re.search(r"[a-z]", low.replace(user, "")):
        return "is the user name with digits or symbols"
    for form in _forms(password):
        if form in COMMON_PASSWORDS or (form and _repeats_a_common_word(form)):
            return "is a common password"
        if len(form) >= 6 and any(form in run for run in _KEYBOARD_RUNS):
            return "is a run of keys on a keyboard"
    return None


def _repeats_a_common_word(form: str) -> bool:
    """``passwordpassword``, ``monkeymonkey123``: a common word said more than once."""
    for size in range(3, len(form) // 2 + 1):
        if len(form) % size == 0 and form[:size] * (len(form) // size) == form:
            return form[:size] in COMMON_PASSWORDS or form[:size].isalpha()
    return False
