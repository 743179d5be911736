"""ivr.yaml: dispositions, require_disposition and tickets, with their exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import Disposition, load_config
from ivr.yamlsrc import DocumentError

ROOT = Path(__file__).resolve().parent.parent
BASE = f"""\
sip: {{listen: 127.0.0.1:5080}}
trunks: {{gw: {{sources: [127.0.0.1]}}}}
flow: {ROOT / "flows" / "demo.yaml"}
agents: {{anna: {{uri: "sip:anna@127.0.0.1:5070"}}}}
"""


def problems(tmp_path: Path, extra: str) -> list[str]:
    path = tmp_path / "ivr.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(DocumentError) as err:
        load_config(path)
    return [str(p).replace(str(tmp_path) + "/", "") for p in err.value.problems]


def test_dispositions_queues_that_require_one_and_the_customer_variable(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(BASE + """\
queues:
  support: {agents: [anna], require_disposition: true, disposition_wait: 90}
  sales: {agents: [anna], wrap_up: 10}
dispositions:
  1: {label: resolved, resolves: true}
  "2": {label: callback}
tickets: {customer_variable: account}
""")
    c = load_config(path)
    assert c.dispositions == {"1": Disposition("1", "resolved", True),
                              "2": Disposition("2", "callback", False)}
    assert (c.queues["support"].disposition_hold, c.queues["sales"].disposition_hold) == (90, 0)
    assert c.ticket_customer_variable == "account"


def test_bad_dispositions_are_located(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
feature_codes: {escalate: "*9"}
dispositions:
  "12": {label: two digits}
  "9": {label: clashes}
  "3": {resolves: true}
tickets: {customer_variable: Account}
""") == [
        "ivr.yaml:7:9: dispositions.12: disposition '12' must be one digit 0 to 9",
        "ivr.yaml:8:8: dispositions.9: disposition '9' is keyed as *9, the escalate feature "
        "code: use another digit or change feature_codes",
        "ivr.yaml:9:8: dispositions.3: missing required key 'label'",
        "ivr.yaml:10:30: tickets.customer_variable: 'Account' is not a flow variable name",
    ]
