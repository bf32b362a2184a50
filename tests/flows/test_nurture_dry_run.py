"""The nurture dry run: every decision a run would make, reported per lead, and nothing changed.

A demo workspace sends its first emails through a real SMTP server (aiosmtpd); then dry runs,
through Prefect and through `leadflow run nurture --dry-run`, must leave every table, the SMTP
server and the outbox folder exactly as they were, while reporting enrollments, sends, deferrals
and template errors.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel
from typer.testing import CliRunner

from leadflow.cli.main import app
from leadflow.flows.nurture import nurture_flow
from leadflow.flows.params import NurtureParams
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import EmailOutbox, EnrollmentStatus, Lead, NurtureEnrollment, Stage, Suppression
from tests.flows.test_pipeline import END, make_workspace, run

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _snapshot(url: str) -> dict[str, list[tuple[Any, ...]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return {
                name: sorted(map(tuple, conn.execute(sa.select(table)).all()), key=repr)
                for name, table in SQLModel.metadata.tables.items()
            }
    finally:
        engine.dispose()


def test_dry_run_reports_per_lead_and_changes_nothing(
    tmp_path: Path, db_url: str, smtp_server: tuple[Any, int]
) -> None:
    mailbox, port = smtp_server
    folder = make_workspace(
        tmp_path / "ws", db_url, leads=200, extra_env=f"LEADFLOW_MAIL_URL=smtp://127.0.0.1:{port}\n"
    )
    # One sequence keeps the counts below exact (the example's re-engage sequence is about inactivity).
    config = folder / "leadflow.yaml"
    text = config.read_text()
    start = text.index("    - name: re-engage\n")
    config.write_text(text[:start] + text[text.index("\n\n", start) + 1 :])
    first = run(folder)
    assert first.nurture.sent == len(mailbox.messages) > 0
    delivered = len(mailbox.messages)

    # A lead that became a prospect since (not yet enrolled): the dry run must enroll it, in its head.
    engine = make_engine(db_url)
    with engine.begin() as conn:
        enrolled_ids = sa.select(NurtureEnrollment.lead_id)
        # (Lead ids follow ingest order, which varies between processes: pick by what matters.)
        newcomer_id, newcomer = conn.execute(
            sa.select(Lead.id, Lead.email)
            .where(
                Lead.id.not_in(enrolled_ids),
                Lead.unsubscribed_at.is_(None),
                Lead.bounced_at.is_(None),
                Lead.email.not_in(sa.select(Suppression.email)),
            )
            .order_by(Lead.email)
            .limit(1)
        ).one()
        conn.execute(sa.update(Lead).where(Lead.id == newcomer_id).values(stage=Stage.prospect.value))
        active = conn.execute(
            sa.select(sa.func.count())
            .select_from(NurtureEnrollment)
            .where(NurtureEnrollment.status == EnrollmentStatus.active)
        ).scalar_one()
    engine.dispose()
    shipped = config.read_text()
    assert "    max_emails: 3\n" in shipped  # the example's cap, tightened to one email a week here
    config.write_text(shipped.replace("    max_emails: 3\n", "    max_emails: 1\n"))
    before = _snapshot(db_url)

    # Five days on, step 2 is due for everyone enrolled on day one, but the cap holds it back.
    later = END + timedelta(days=5)
    report = nurture_flow(NurtureParams(workspace=str(folder), as_of=later, dry_run=True))
    assert report.dry_run and report.sent == 0
    assert report.enrolled == {"warm-up": 1}
    assert report.would_send == 1 and report.queued == active + 1
    assert report.deferred == {"frequency cap": active}
    by_lead = {row.email: row for row in report.preview}
    assert len(report.preview) == report.queued
    newcomer_row = by_lead[newcomer]
    assert (newcomer_row.outcome, newcomer_row.step, newcomer_row.reason) == ("send", 0, "")
    assert "three signs a lead is ready for sales" in newcomer_row.subject
    held = [row for row in report.preview if row.outcome == "defer"]
    assert {(row.step, row.reason) for row in held} == {(1, "frequency cap")}
    # Each waits until a week after its first email went: when the SMTP server accepted it (the first
    # run's clock started at END and ran on with the wall clock).
    engine = make_engine(db_url)
    with engine.connect() as conn:
        first_sent = dict(
            conn.execute(sa.select(Lead.email, EmailOutbox.sent_at).join(Lead, Lead.id == EmailOutbox.lead_id)).all()
        )
    engine.dispose()
    assert {row.until - first_sent[row.email] for row in held} == {timedelta(days=7)}
    assert min(first_sent.values()) >= END.replace(tzinfo=None)

    # With the shipped cap (3 a week), and a typo in step 2's template: each of those emails would be held, by line.
    config.write_text(shipped)
    broken = folder / "templates" / "warm-up" / "2-case-study.html"
    broken.write_text(broken.read_text().replace("{{ lead.company", "{{ lead.compnay", 1))
    report = nurture_flow(NurtureParams(workspace=str(folder), as_of=later, dry_run=True))
    assert not report.failed and sum(report.held.values()) == active and report.would_send == 1
    held = next(row for row in report.preview if row.outcome == "hold")
    assert "templates/warm-up/2-case-study.html:" in held.reason and "compnay" in held.reason

    # The command line shows the same, per lead.
    cli = CliRunner().invoke(app, ["run", "nurture", "--dry-run", "--workspace", str(folder)])
    assert cli.exit_code == 0, cli.output
    assert "nothing was sent" in cli.output and newcomer in cli.output

    # Nothing changed: not a row in any table, not a message at the server, no outbox folder.
    assert _snapshot(db_url) == before
    assert len(mailbox.messages) == delivered
    assert not (folder / "outbox").exists()
