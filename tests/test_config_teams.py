"""ivr.yaml: teams of agents under a team leader, with their exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import Team, load_config
from ivr.yamlsrc import DocumentError

ROOT = Path(__file__).resolve().parent.parent
BASE = f"""\
sip: {{listen: 127.0.0.1:5080}}
trunks: {{gw: {{sources: [127.0.0.1]}}}}
flow: {ROOT / "flows" / "demo.yaml"}
agents:
  anna: {{uri: "sip:anna@127.0.0.1:5070"}}
  marco: {{uri: "sip:marco@127.0.0.1:5071"}}
  laura: {{uri: "sip:laura@127.0.0.1:5072"}}
"""


def problems(tmp_path: Path, extra: str) -> list[str]:
    path = tmp_path / "ivr.yaml"
    path.write_text(BASE + extra)
    with pytest.raises(DocumentError) as err:
        load_config(path)
    return [str(p).replace(str(tmp_path) + "/", "") for p in err.value.problems]


def test_a_leader_who_is_an_agent_counts_with_the_team(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(BASE + """\
teams:
  front: {leader: laura, members: [anna]}
  back: {leader: Giulia Rossi, members: [marco]}
""")
    c = load_config(path)
    assert c.teams == {"front": Team("front", "laura", ("anna", "laura")),
                       "back": Team("back", "Giulia Rossi", ("marco",))}
    assert c.team_of() == {"anna": "front", "laura": "front", "marco": "back"}


def test_a_person_who_is_not_an_agent_may_lead_two_teams(tmp_path: Path) -> None:
    path = tmp_path / "ivr.yaml"
    path.write_text(BASE + """\
teams:
  front: {leader: Giulia, members: [anna]}
  back: {leader: Giulia, members: [marco]}
""")
    assert load_config(path).team_of() == {"anna": "front", "marco": "back"}


def test_unknown_agents_and_agents_in_two_teams_are_located(tmp_path: Path) -> None:
    assert problems(tmp_path, """\
teams:
  front: {leader: laura, members: [anna, nobody]}
  back: {leader: Giulia, members: [marco, anna]}
  night: {leader: marco, members: []}
  day: {members: [marco]}
""") == [
        "ivr.yaml:9:42: teams.front.members[1]: unknown agent 'nobody'",
        "ivr.yaml:10:9: teams.back: agent 'anna' is already in team 'front': an agent belongs "
        "to one team (their calls would count in both)",
        "ivr.yaml:11:10: teams.night: agent 'marco' is already in team 'back': an agent "
        "belongs to one team (their calls would count in both)",
        "ivr.yaml:12:8: teams.day: missing required key 'leader'",
        "ivr.yaml:12:8: teams.day: agent 'marco' is already in team 'back': an agent belongs "
        "to one team (their calls would count in both)",
    ]
