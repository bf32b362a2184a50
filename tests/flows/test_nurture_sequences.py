"""The nurture flow walks the example's warm-up sequence: a click wakes the waiting step and branches to the demo.

The workspace and its first pipeline run are set up as in tests/flows/test_pipeline.py; later runs
are nurture flow runs "as of" later moments, and what they send is read back from the file outbox.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from leadflow.flows.nurture import nurture_flow
from leadflow.flows.params import NurtureParams
from leadflow.leads.db.engine import make_engine, session_scope
from leadflow.leads.db.models import EnrollmentStatus, Lead, NurtureEnrollment
from tests import factories as make
from tests.flows.test_pipeline import END, emails_in, make_workspace, run

pytestmark = pytest.mark.usefixtures("prefect_harness")
CASE_STUDY = "could cut follow-up time in half"
CHECKLIST = "A one-page checklist for your next lead review"
DEMO = "Want to see it on your own funnel?"


def _subjects(folder: Path) -> dict[str, list[str]]:
    """Subjects of the emails sent, per recipient (in no particular order: files are named by key)."""
    sent: dict[str, list[str]] = defaultdict(list)
    for message in emails_in(folder):
        sent[str(message["To"])].append(str(message["Subject"]))
    return sent


def test_a_click_after_the_case_study_sends_the_demo_at_once_and_skips_the_checklist(
    tmp_path: Path, sqlite_url: str
) -> None:
    folder = make_workspace(tmp_path / "ws", sqlite_url, leads=300)
    run(folder)  # ingest, requalify, enroll, welcome emails
    engine = make_engine(sqlite_url)
    with session_scope(engine) as session:
        warm = session.execute(
            select(Lead.id, Lead.email)
            .join(NurtureEnrollment, NurtureEnrollment.lead_id == Lead.id)
            .where(NurtureEnrollment.sequence == "warm-up", NurtureEnrollment.status == EnrollmentStatus.active)
            .order_by(Lead.id)
        ).all()
    assert len(warm) >= 4
    clicker, quiet = warm[0], warm[1]

    def nurture(days: float) -> None:
        nurture_flow(NurtureParams(workspace=str(folder), as_of=END + timedelta(days=days)))

    # The case study goes out to every warm-up lead: four days after the welcome was sent (a moment after
    # the first run's as_of), so at the next hourly run.
    nurture(4.05)
    click = make.activity(
        clicker.id,
        "email_click",
        (END + timedelta(days=4, hours=3)).replace(tzinfo=None),
        source="web",
        source_id="test-click",
        target="https://acme.example/case-studies/logistics",
        properties={"sequence": "warm-up", "step": 1},  # as the tracked link records it
    )
    make.add(engine, click)
    nurture(4.5)  # the click wakes the waiting checklist step, whose branch sends the demo instead
    sent = _subjects(folder)
    assert any(CASE_STUDY in s for s in sent[clicker.email])
    assert DEMO in sent[clicker.email]
    assert CHECKLIST not in sent[clicker.email]
    assert DEMO not in sent[quiet.email] and CHECKLIST not in sent[quiet.email]

    nurture(9.1)  # five days after the case study was sent: the checklist for those who did not click
    sent = _subjects(folder)
    assert CHECKLIST in sent[quiet.email] and DEMO not in sent[quiet.email]
    assert sent[clicker.email].count(DEMO) == 1 and CHECKLIST not in sent[clicker.email]
    engine.dispose()
