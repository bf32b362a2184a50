"""Handoff destinations in leadflow.yaml: the list, the old single URL, the override, and clear mistakes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from leadflow.leads.config.handoff import (
    FileDestination,
    HubSpotDestination,
    PipedriveDestination,
    SalesforceDestination,
    WebhookDestination,
)
from leadflow.leads.config.workspace import load_config
from tests.leads.test_config import BASE, _line_of, _problems, _write

DESTINATIONS = """\
handoff:
  destinations:
    - kind: file
    - name: sales-hook
      kind: webhook
      url: https://hooks.acme.example/leadflow
    - name: hubspot
      kind: hubspot
      default_owner_id: "501"
    - name: sfdc
      kind: salesforce
      base_url: https://acme.my.salesforce.com
      client_id_env: SF_CLIENT_ID
      client_secret_env: SF_CLIENT_SECRET
      external_id_field: Leadflow_Email__c
    - name: pipedrive
      kind: pipedrive
      create: deal
"""


def test_several_named_destinations_of_every_kind(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, BASE + DESTINATIONS))
    file, hook, hubspot, sfdc, pipedrive = config.handoff.resolved()
    assert isinstance(file, FileDestination) and (file.name, file.path) == ("file", "handoff-inbox")
    assert isinstance(hook, WebhookDestination) and hook.name == "sales-hook"
    assert isinstance(hubspot, HubSpotDestination) and (hubspot.token_env, hubspot.follow_up) == (
        "HUBSPOT_TOKEN",
        "task",
    )
    assert isinstance(sfdc, SalesforceDestination) and sfdc.external_id_field == "Leadflow_Email__c"
    assert isinstance(pipedrive, PipedriveDestination) and pipedrive.create == "deal"


def test_the_single_url_form_keeps_working_under_the_names_it_always_had(tmp_path: Path) -> None:
    # The name is part of every handoff's idempotency key: keeping it means nothing is handed off twice.
    hook = load_config(_write(tmp_path, BASE + "handoff:\n  destination: https://crm.acme.example:8443/in\n"))
    [only] = hook.handoff.resolved()
    assert isinstance(only, WebhookDestination)
    assert (only.name, only.url) == ("webhook:crm.acme.example:8443", "https://crm.acme.example:8443/in")
    inbox = load_config(_write(tmp_path, BASE + "handoff:\n  destination: file://sales/inbox\n"))
    assert inbox.handoff.resolved() == [FileDestination(kind="file", path="sales/inbox")]
    # No handoff section at all: the local inbox, as before.
    assert load_config(_write(tmp_path, BASE)).handoff.resolved() == [FileDestination(kind="file")]


def test_leadflow_handoff_url_replaces_every_configured_destination(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, BASE + DESTINATIONS))
    [only] = config.handoff.resolved("https://staging.acme.example/hook")
    assert isinstance(only, WebhookDestination) and only.name == "webhook:staging.acme.example"


def test_mistakes_name_the_line_and_the_key_path(tmp_path: Path) -> None:
    text = BASE + DESTINATIONS.replace("kind: pipedrive", "kind: zoho").replace(
        "      base_url: https://acme.my.salesforce.com\n", ""
    )
    problems = _problems(_write(tmp_path, text)).problems
    assert f"line {_line_of(text, 'name: sfdc')}: handoff.destinations[3].base_url: Field required" in problems
    zoho = _line_of(text, "kind: zoho") - 1
    assert any(p.startswith(f"line {zoho}: handoff.destinations[4]: kind must be one of") for p in problems), problems


def test_names_are_unique_and_the_two_forms_do_not_mix(tmp_path: Path) -> None:
    twice = BASE + DESTINATIONS.replace("name: sfdc", "name: hubspot")
    [problem] = _problems(_write(tmp_path, twice)).problems
    assert "handoff: Value error" not in problem and "destination names must be unique" in problem
    both = BASE + DESTINATIONS.replace("handoff:\n", "handoff:\n  destination: file://inbox\n")
    [problem] = _problems(_write(tmp_path, both)).problems
    assert "either destination (one URL) or destinations (a list)" in problem
    bad_url = BASE + "handoff:\n  destination: ftp://files.acme.example\n"
    [problem] = _problems(_write(tmp_path, bad_url)).problems
    assert "unsupported handoff URL scheme 'ftp'" in problem


def test_since_is_a_date_a_moment_in_utc_or_all(tmp_path: Path) -> None:
    text = BASE + DESTINATIONS.replace("kind: file\n", "kind: file\n      since: all\n")
    text = text.replace('default_owner_id: "501"\n', 'default_owner_id: "501"\n      since: 2026-11-01\n')
    text = text.replace("create: deal\n", 'create: deal\n      since: "2026-11-01T10:30:00+01:00"\n')
    file, hook, hubspot, _, pipedrive = load_config(_write(tmp_path, text)).handoff.resolved()
    assert (file.since, hook.since) == ("all", None)  # unset: the automatic rule (handoff/starts.py)
    assert hubspot.since == datetime(2026, 11, 1, 0, 0)  # a date: its midnight, UTC
    assert pipedrive.since == datetime(2026, 11, 1, 9, 30)  # stored times are naive UTC

    wrong = BASE + DESTINATIONS.replace("create: deal\n", "create: deal\n      since: last tuesday\n")
    [problem] = _problems(_write(tmp_path, wrong)).problems
    assert problem.startswith(f"line {_line_of(wrong, 'since: last tuesday')}: handoff.destinations[4].since"), problem
    assert "since must be a date (2026-11-01), a moment (2026-11-01T09:00:00Z) or all" in problem
    year = BASE + DESTINATIONS.replace("create: deal\n", "create: deal\n      since: 2026\n")  # not 1970 plus 2026 s
    [problem] = _problems(_write(tmp_path, year)).problems
    assert "handoff.destinations[4].since" in problem and "got 2026" in problem
