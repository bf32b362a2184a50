"""The handoff flow through Prefect with owners, notifications, a 410, a dead letter and `leadflow handoff`."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from leadflow.cli.main import app
from leadflow.flows.handoff import handoff_flow
from leadflow.flows.params import HandoffParams
from leadflow.flows.reports import handoff_markdown
from leadflow.handoff.report import HandoffRunReport
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import HandoffOutbox, Lead, LeadAssignment, NotificationOutbox, Stage
from tests.flows.test_delivery_peers import webhook_workspace
from tests.flows.test_pipeline import END, run
from tests.handoff.notify_peer import NotifyServer

pytestmark = pytest.mark.usefixtures("prefect_harness")

OWNERS_YAML = """
  owners:
    - {{id: anna, name: Anna de Vries, email: anna@acme.example, notify: "json://127.0.0.1:{port}/${{ANNA_PATH}}",
       crm_ids: {{hubspot: "901"}}}}
    - {{id: bram, name: Bram Peeters}}
    - {{id: cleo, name: Cleo Jansen}}
  teams:
    - name: sales
      owners: [anna, bram, cleo]
      notify: json://127.0.0.1:{port}/team
      manager: json://127.0.0.1:{port}/manager
  sla: {{hours: 100, on_breach: escalate}}
"""


def handoff(folder: Path, hours: float = 0) -> HandoffRunReport:
    return handoff_flow(HandoffParams(workspace=str(folder), as_of=END + timedelta(hours=hours)))


def latest_report_markdown() -> str:
    """The newest `leadflow-handoff-owners` artifact, as an admin sees it in the Prefect UI."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    body = {"artifacts": {"key": {"any_": ["leadflow-handoff-owners"]}}, "sort": "CREATED_DESC", "limit": 1}
    [artifact] = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=body).json()
    return str(artifact["data"])


def cli(folder: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["handoff", *args, "--workspace", str(folder)])
    assert result.exit_code == 0, result.output
    return result.output


def test_owners_notifications_gone_and_dead_letters(
    tmp_path: Path, db_url: str, webhook_receiver: tuple[Any, str]
) -> None:
    hook, url = webhook_receiver
    with NotifyServer() as notes:
        folder = webhook_workspace(tmp_path / "ws", db_url, url, "ANNA_PATH=anna\n")
        config = folder / "leadflow.yaml"
        head = config.read_text().split("\nhandoff:\n")[0]  # the example's own owners make way for these
        handoff_yaml = "handoff:\n  allow_private_addresses: true" + OWNERS_YAML.format(port=notes.port)
        config.write_text(f"{head}\n{handoff_yaml}\ntemplates_dir: templates\n")

        hook.script.append((410, {}))
        first = run(folder).handoff
        sqls = first.queued
        assert sqls > 3 and first.delivered == 0 and len(hook.requests) == 1
        assert set(first.disabled) == {first.destination} and "410" in first.disabled[first.destination]
        assert sum(first.assigned.values()) == sqls and set(first.assigned) == {"anna", "bram", "cleo"}
        assert max(first.assigned.values()) - min(first.assigned.values()) <= 1  # round robin
        assert first.notified == {"assigned": sqls} and len(notes.inbox.posts) == sqls
        assert "Disabled destinations" in handoff_markdown(first)

        second = handoff(folder, 1)  # still off: nothing is sent, the report says why
        assert second.delivered == 0 and len(hook.requests) == 1 and second.disabled == first.disabled
        assert "disabled" in cli(folder, "status")
        assert "enabled" in cli(folder, "enable", first.destination)

        hook.script.append((400, {}))  # one handoff is refused outright: a dead letter
        third = handoff(folder, 2)
        assert third.disabled == {} and third.delivered == sqls - 1 and third.dead == 1
        assert third.dead_letters == {third.destination: 1}
        assert sum(third.delivered_by_owner.values()) == sqls - 1
        assert "Dead letters" in handoff_markdown(third)
        published = latest_report_markdown()
        assert f"## Dead letters (re-drive with `leadflow handoff retry`)\n\n- {third.destination}: 1" in published
        assert f"- delivered by destination: {third.destination} {sqls - 1}" in published
        assert "answered 400" in cli(folder, "status")

        assert "re-queued 1" in cli(folder, "retry", "--all")
        fourth = handoff(folder, 3)
        assert fourth.delivered == 1 and fourth.dead_letters == {}

        fifth = handoff(folder, 4)  # nothing again: no delivery, no notification
        assert (fifth.queued, fifth.delivered, fifth.notified, fifth.escalated) == (0, 0, {}, {})

        late = handoff(folder, 101)  # nobody recorded a sales outcome in 100 h: the manager hears of each
        assert late.escalated == {"sales": sqls} and late.notified == {"escalated": sqls}
        assert "- escalated to a manager (team): sales " + str(sqls) in handoff_markdown(late)
        again = handoff(folder, 102)
        assert (again.escalated, again.notified, again.delivered) == ({}, {}, 0)
        manager = [p for p in notes.inbox.posts if p.path == "/manager"]
        assert len(manager) == sqls and all(p.body["title"].startswith("Escalation: ") for p in manager)

    verified = [r for r in hook.requests if isinstance(r.verified, dict)]
    assert len(verified) == len(hook.requests) == sqls + 2  # the 410, the 400, then each SQL once
    assert len({r.headers["webhook-id"] for r in verified}) == sqls
    owners = Counter(r.verified["owner"]["id"] for r in verified[2:])
    assert owners == Counter(first.assigned)
    anna = next(r.verified for r in verified if r.verified["owner"]["id"] == "anna")
    assert anna["owner"] == {"id": "anna", "name": "Anna de Vries", "email": "anna@acme.example",
                             "crm_ids": {"hubspot": "901", "salesforce": None, "pipedrive": None}}  # fmt: skip
    assert len(notes.inbox.posts) == 2 * sqls and {p.path for p in notes.inbox.posts} == {"/anna", "/team", "/manager"}

    engine = make_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(LeadAssignment)).scalar_one() == sqls
        assert conn.execute(select(func.count()).select_from(NotificationOutbox)).scalar_one() == 2 * sqls
        assert conn.execute(select(func.count()).select_from(HandoffOutbox)).scalar_one() == sqls
        owned = conn.execute(select(func.count()).where(Lead.stage == Stage.sql.value, Lead.owner.is_not(None)))
        assert owned.scalar_one() == sqls
    engine.dispose()
