"""The load bench: real SIP calls into a real switchboard process.

``python -m bench.load`` (``make bench-load``) starts ``ivr run`` on a generated configuration,
then for each number of calls N places N calls from several caller processes (pjsua2), presses
keys at set times, and has one process of auto-answering agents stamp each INVITE. Every
process stamps with ``time.monotonic()``, one clock for the whole machine. See
:mod:`bench.load.run` for the figures and how each is measured.

Modules:

- :mod:`bench.load.peer`: the pjsua2 endpoint both kinds of peer share (one thread, G.711, no
  packet loss concealment) and the peer's frame clock.
- :mod:`bench.load.caller`, :mod:`bench.load.agents`: the peer processes.
- :mod:`bench.load.switchboard`: the bench's ivr.yaml, flow and prompts; the ``ivr run`` process,
  its ready signal, CPU and memory.
- :mod:`bench.load.run`: the plan of one round, the figures, the table and the JSON.
"""
