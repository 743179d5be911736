"""The edge: Kamailio in front of the switchboard, as the registrar of agents' and
supervisors' phones.

pjsua2 cannot be a registrar, so agents and supervisors whose phones register (instead of
sitting at a fixed address) register with a Kamailio 5.6 process that this package configures:

- REGISTER: only configured agents and supervisors (the edge's users), digest authentication
  (every name gets the same 401 challenge, then the same 403 on failure), a Contact only at the
  address the REGISTER came from, failures counted per user and per address; contacts kept in
  memory (usrloc ``db_mode`` 0).
- INVITE from a trunk source: forwarded to the switchboard (record-routed, dialog tracked),
  unless it is From a user's name (403).
- INVITE of a feature code (``sip:*...@edge``) from a user's phone: authenticated as a REGISTER
  is (407), From the user's own name, Contact at its source; forwarded to the switchboard,
  which takes the From user of a call from the edge's address as that agent or supervisor.
- INVITE from the switchboard's own address to ``sip:AGENT@edge``: to the agent's registered
  phone(s); 404 for a name that is not an agent, 480 when the agent is not registered.
- REFER: refused, in and out of dialogs. In-dialog requests: only in dialogs the edge routed,
  from one of their two parties, towards the other.
- Anything else: 403; scanners' User-Agents and floods (``pike``): dropped. Refusals are logged
  once a minute per source and kind. ``docs/edge-security.md`` says what and why.

The configuration holds no password: each user's digest HA1 (MD5 of ``user:realm:password``)
is put in an ``htable`` at start-up, and no log line carries credentials.

One module per concern:

- :mod:`ivr.edge.settings`: :class:`EdgeSettings` and how ``ivr.yaml`` (and the secrets file
  named by ``edge.secrets``) gives them (:func:`settings_from_yaml`);
- :mod:`ivr.edge.passwords`: the passwords ``python -m ivr.edge`` refuses as too weak;
- :mod:`ivr.edge.kamailio`: ``kamailio.cfg``, rendered from the template
  ``kamailio.cfg.tmpl`` beside it, and the commands that run and check it;
- :mod:`ivr.edge.supervisor`: ``supervisord.conf`` running Kamailio and the switchboard;
- :mod:`ivr.edge.registrations`: the registered contacts, read over JSON-RPC on 127.0.0.1
  (``jsonrpcs`` + ``xhttp``; only the read-only methods ``ul.dump`` and ``ul.lookup`` are let
  through) by :class:`Registrations`; :class:`RegistrationsPoller` reports which agents are
  reachable;
- :mod:`ivr.edge.cli`: ``python -m ivr.edge --config ivr.yaml --out var/edge`` writes
  ``kamailio.cfg`` and ``supervisord.conf`` (``make run-edge`` then runs both processes under
  supervisord).
"""

from ivr.edge.cli import main, write_edge
from ivr.edge.kamailio import (
    KAMAILIO_SEARCH_PATH,
    RPC_METHODS,
    SOURCE_HEADER,
    check_kamailio_config,
    find_kamailio,
    kamailio_command,
    kamailio_config,
)
from ivr.edge.registrations import (
    Contact,
    Registrations,
    RegistrationsError,
    RegistrationsPoller,
    parse_ul_dump,
)
from ivr.edge.settings import (
    AGENT_NAME,
    DEFAULT_LISTEN,
    DEFAULT_RPC_PORT,
    EDGE_KEYS,
    REALM,
    Address,
    EdgeError,
    EdgePlan,
    EdgeSettings,
    Network,
    settings_from_yaml,
)
from ivr.edge.supervisor import supervisord_config

__all__ = [
    "AGENT_NAME", "DEFAULT_LISTEN", "DEFAULT_RPC_PORT", "EDGE_KEYS", "KAMAILIO_SEARCH_PATH",
    "REALM", "RPC_METHODS", "SOURCE_HEADER", "Address", "Contact", "EdgeError", "EdgePlan",
    "EdgeSettings", "Network", "Registrations", "RegistrationsError", "RegistrationsPoller",
    "check_kamailio_config", "find_kamailio", "kamailio_command", "kamailio_config", "main",
    "parse_ul_dump", "settings_from_yaml", "supervisord_config", "write_edge",
]
