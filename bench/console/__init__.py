"""The console bench: open pages against a real switchboard under real calls.

``python -m bench.console`` (``make bench-console``) runs the load bench's plan
(:mod:`bench.load`) twice per pair on a switchboard with its console on: once with no page
open, once with 50 wallboards and 20 agent pages holding their live streams
(:mod:`bench.console.clients`). The difference in the switchboard's CPU is what the pages cost;
the agents' answers, stamped, against the messages the pages receive give the event latency.
See :mod:`bench.console.run`.
"""
