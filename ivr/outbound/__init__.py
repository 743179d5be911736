"""Outbound: campaigns the same agents work between inbound calls (issue 14).

- :mod:`ivr.outbound.campaigns`: campaign files (the ``campaigns:`` folder of ivr.yaml),
  checked like flows, into typed :class:`~ivr.outbound.campaigns.Campaign` values;
- :mod:`ivr.outbound.plan`: the pure planning (calling windows, the hopper of next contacts,
  retry rules, pacing), time passed in;
- :mod:`ivr.outbound.contacts` and :mod:`ivr.outbound.dnc`: contact lists and the do-not-call
  list in the store's SQLite file.

Every number a campaign dials also passes :meth:`ivr.config.Config.campaign_dial_target`.
"""
