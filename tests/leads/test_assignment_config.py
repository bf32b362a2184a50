"""The handoff.owners / teams / sla / notify / dead_letter_after keys: valid configs load, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadflow.leads.config.assignment import Territory
from leadflow.leads.config.workspace import ConfigError, load_config
from tests.leads.test_config import BASE, _write

HANDOFF = """\
handoff:
  owners:
    - {id: anna, name: Anna, notify: "json://hooks.example/${TOKEN}", crm_ids: {hubspot: "901"}}
    - {id: bram, name: Bram, max_open_sqls: 3}
  teams:
    - name: benelux
      owners: [anna, bram]
      territory: {countries: [NL, be], company_size: {min: 50}}
      fallback: bram
  sla: {hours: 24}
  dead_letter_after: {attempts: 5, hours: null}
"""


def _errors(tmp_path: Path, handoff: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(_write(tmp_path, BASE + handoff))
    return str(caught.value)


def test_a_full_handoff_section_loads(tmp_path: Path) -> None:
    handoff = load_config(_write(tmp_path, BASE + HANDOFF)).handoff
    assert [o.id for o in handoff.owners] == ["anna", "bram"]
    assert handoff.owner("anna").crm_ids == {"hubspot": "901"}  # type: ignore[union-attr]
    assert handoff.team("benelux").fallback == "bram"  # type: ignore[union-attr]
    assert handoff.sla is not None and handoff.sla.on_breach == "reassign" and handoff.sla.until == "sales_activity"
    assert "deal_won" in handoff.sla.activity_types
    assert (handoff.dead_letter_after.attempts, handoff.dead_letter_after.hours) == (5, None)
    assert handoff.notify.enabled and [d.name for d in handoff.resolved()] == ["file"]


@pytest.mark.parametrize(
    ("broken", "expected"),
    [
        ("owners: [anna, bram]", "line 37: handoff: team benelux: unknown owner(s) carl (not in handoff.owners)"),
        ("fallback: bram", "handoff: team benelux: unknown owner(s) zed"),
        ("max_open_sqls: 3", "line 40: handoff.owners[1].max_open_sqls: Input should be greater than or equal to 0"),
        ("hubspot", "line 39: handoff.owners[0].crm_ids.zoho.[key]: Input should be 'hubspot', 'salesforce' or"),
        ('"json://hooks.example/${TOKEN}"', "handoff.owners[0].notify: must be a notification URL"),
        ("sla: {hours: 24}", "handoff.sla.on_breach: Input should be 'reassign' or 'escalate'"),
    ],
    ids=["unknown-team-owner", "unknown-fallback", "negative-capacity", "unknown-crm", "not-a-url", "bad-on-breach"],
)
def test_mistakes_are_named(tmp_path: Path, broken: str, expected: str) -> None:
    replacement = {
        "owners: [anna, bram]": "owners: [anna, bram, carl]",
        "fallback: bram": "fallback: zed",
        "max_open_sqls: 3": "max_open_sqls: -1",
        "hubspot": "zoho",
        '"json://hooks.example/${TOKEN}"': "anna@example.com",
        "sla: {hours: 24}": "sla: {hours: 24, on_breach: shrug}",
    }[broken]
    message = _errors(tmp_path, HANDOFF.replace(broken, replacement, 1))
    assert expected in message


def test_owners_without_a_team_and_duplicates(tmp_path: Path) -> None:
    assert "no team uses them" in _errors(tmp_path, "handoff:\n  owners: [{id: a, name: A}]\n")
    twice = "handoff:\n  owners: [{id: a, name: A}, {id: a, name: B}]\n  teams: [{name: t, owners: [a]}]\n"
    assert "ids must be unique" in _errors(tmp_path, twice)
    assert "listed twice" in _errors(
        tmp_path, "handoff:\n  owners: [{id: a, name: A}]\n  teams: [{name: t, owners: [a, a]}]\n"
    )
    assert "must contain {id}" in _errors(tmp_path, "handoff:\n  notify: {crm_links: {hubspot: 'https://x'}}\n")


def test_territory_matching() -> None:
    territory = Territory(countries=["NL"], industries=["Logistics"], company_size={"min": 50, "max": 500})  # type: ignore[arg-type]
    assert territory.matches(country="nl", industry="LOGISTICS", company_size=50)
    assert not territory.matches(country="DE", industry="logistics", company_size=100)
    assert not territory.matches(country="NL", industry="retail", company_size=100)
    assert not territory.matches(country="NL", industry="logistics", company_size=501)
    assert not territory.matches(country="NL", industry="logistics", company_size=None)
    assert Territory().matches(country=None, industry=None, company_size=None)
