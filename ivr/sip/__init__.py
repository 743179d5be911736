"""The SIP adapter: the only package that imports pjsua2 (in :mod:`ivr.sip.stack`).

:mod:`ivr.sip.events` is plain data and can be imported without pjsua2 installed.
"""
