"""The driver: the call core (pure), its executor, and the loop that feeds them.

- :mod:`ivr.driver.messages`: what goes into the inbox and what effects come out;
- :mod:`ivr.driver.core`: every call's machine and the router, fed ``(message, now)``;
- :mod:`ivr.driver.console`: the web console's view of the core and its commands;
- :mod:`ivr.driver.executor`: the only code touching SIP, the store and the metrics;
- :mod:`ivr.driver.service`: the loop, the workers and ``ivr run``.
"""
