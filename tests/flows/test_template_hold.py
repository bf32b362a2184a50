"""A template typo during a live campaign holds its step: nothing lost, nothing doubled, the run fails naming the line.

A real workspace on a SQLite file, emails through a real SMTP server (aiosmtpd) on loopback, the
flows run through Prefect. The pipeline sends the welcome emails; a marketer then breaks the case
study template; the nurture run four-plus days on sends what else is due, holds the case study
(emails unsent, leads not moved on) and fails naming file and line; after the fix, the next run
sends each held email exactly once.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.states import State
from sqlalchemy import func, select, update

from leadflow.flows.nurture import TemplatesHeld, nurture_flow
from leadflow.flows.params import NurtureParams
from leadflow.leads.config.workspace import load_config
from leadflow.leads.db.engine import make_engine, session_scope
from leadflow.leads.db.models import EmailOutbox, EnrollmentStatus, Lead, NurtureEnrollment, OutboxStatus
from leadflow.nurture.steps import queue_due_steps
from tests.flows.test_pipeline import END, make_workspace, run

pytestmark = pytest.mark.usefixtures("prefect_harness")
CASE_STUDY = "could cut follow-up time in half"
TEMPLATE = Path("templates") / "warm-up" / "2-case-study.html"
TYPO = '<p>Hi {{ lead.first_name or "there" }</p>'  # line 3: a closing brace lost


def _subjects(handler: Any) -> Counter[str]:
    return Counter(str(m.message["Subject"]) for m in handler.messages)


def _case_studies(handler: Any) -> list[str]:
    return sorted(str(m.message["To"]) for m in handler.messages if CASE_STUDY in str(m.message["Subject"]))


def _nurture(folder: Path, days: float | None) -> State:
    """A nurture run `days` after the demo data ends (None: now, by the wall clock)."""
    params = NurtureParams(workspace=str(folder), as_of=None if days is None else END + timedelta(days=days))
    return nurture_flow(params, return_state=True)  # type: ignore[call-overload,no-any-return]


def _warm_up_at(engine: Any, step: int) -> int:
    with session_scope(engine) as session:
        return session.execute(
            select(func.count()).where(
                NurtureEnrollment.sequence == "warm-up",
                NurtureEnrollment.status == EnrollmentStatus.active,
                NurtureEnrollment.step == step,
            )
        ).scalar_one()


def _live_campaign(tmp_path: Path, sqlite_url: str, port: int) -> tuple[Path, Any]:
    """A workspace sending to the loopback SMTP server, after its first pipeline run: (folder, engine)."""
    folder = make_workspace(
        tmp_path / "ws", sqlite_url, leads=300, extra_env=f"LEADFLOW_MAIL_URL=smtp://127.0.0.1:{port}\n"
    )
    run(folder)
    return folder, make_engine(sqlite_url)


def _queue_case_studies(folder: Path, engine: Any) -> int:
    """Queue the case studies due on day 5 as a run would before sending (the tests then stop it there)."""
    config = load_config(folder / "leadflow.yaml")
    with session_scope(engine) as session:
        return queue_due_steps(session=session, config=config, now=(END + timedelta(days=5)).replace(tzinfo=None))


def test_typo_mid_campaign_holds_the_step_fails_the_run_and_sends_once_after_the_fix(
    tmp_path: Path, sqlite_url: str, smtp_server: tuple[Any, int]
) -> None:
    mailbox, port = smtp_server
    # The campaign is live: welcome emails (warm-up) and "still relevant" (re-engage) went out.
    folder, engine = _live_campaign(tmp_path, sqlite_url, port)
    waiting = _warm_up_at(engine, 1)
    assert waiting > 0 and not _case_studies(mailbox)

    source = (folder / TEMPLATE).read_text()
    lines = source.splitlines(keepends=True)
    assert lines[2].startswith("<p>Hi {{ lead.first_name")
    lines[2] = TYPO + "\n"
    (folder / TEMPLATE).write_text("".join(lines))
    before = _subjects(mailbox)

    # Eleven days on: the case study (due since day 4) and re-engage's last call (day 10) are due.
    state = _nurture(folder, 11)
    assert state.is_failed()
    with pytest.raises(TemplatesHeld) as raised:
        state.result()
    message = str(raised.value)
    assert f"{TEMPLATE}:3: unexpected '}}'" in message
    assert f"{waiting} email(s) held" in message
    sent = _subjects(mailbox) - before
    assert not _case_studies(mailbox)  # nothing of the held step went out ...
    assert sent["Should we stop writing?"] > 0  # ... the other campaign's step did
    assert _warm_up_at(engine, 1) == waiting  # nobody was moved past the case study
    with session_scope(engine) as session:
        failed = session.execute(
            select(func.count()).where(EmailOutbox.status.in_([OutboxStatus.failed.value, OutboxStatus.dead.value]))
        ).scalar_one()
    assert failed == 0

    # The same typo, and the run again: still held, still nothing lost.
    assert _nurture(folder, 11.2).is_failed()
    assert not _case_studies(mailbox) and _warm_up_at(engine, 1) == waiting

    (folder / TEMPLATE).write_text(source)  # the marketer fixes the line
    state = _nurture(folder, 11.5)
    assert state.is_completed(), state.message
    report = state.result()
    assert report.held == {} and report.sent >= waiting
    received = _case_studies(mailbox)
    assert len(received) == waiting == len(set(received))  # each held lead got it, once
    assert _warm_up_at(engine, 1) == 0

    assert _nurture(folder, 11.6).is_completed()
    assert _case_studies(mailbox) == received  # never twice
    engine.dispose()


def test_emails_queued_before_the_typo_stay_pending_until_the_fix(
    tmp_path: Path, sqlite_url: str, smtp_server: tuple[Any, int]
) -> None:
    """Rows an earlier run queued (then stopped before sending) are held at send time, not failed."""
    mailbox, port = smtp_server
    folder, engine = _live_campaign(tmp_path, sqlite_url, port)
    queued = _queue_case_studies(folder, engine)  # a run queued the case studies, then died before sending
    assert queued > 0

    source = (folder / TEMPLATE).read_text()
    (folder / TEMPLATE).write_text(source.replace("{{ lead.company }}", "{{ lead.company | nosuchfilter }}"))
    state = _nurture(folder, 5)
    assert state.is_failed()
    with pytest.raises(TemplatesHeld, match=rf"{TEMPLATE}:\d+: .*nosuchfilter"):
        state.result()
    assert not _case_studies(mailbox)
    with session_scope(engine) as session:
        rows = session.execute(
            select(EmailOutbox.status, EmailOutbox.attempts, func.count())
            .where(EmailOutbox.step == 1, EmailOutbox.sequence == "warm-up")
            .group_by(EmailOutbox.status, EmailOutbox.attempts)
        ).all()
    assert rows == [(OutboxStatus.pending.value, 0, queued)]

    (folder / TEMPLATE).write_text(source)
    assert _nurture(folder, 5.1).is_completed()
    assert len(_case_studies(mailbox)) == queued == len(set(_case_studies(mailbox)))
    engine.dispose()


def test_retry_dead_requeues_emails_an_earlier_version_failed_on_a_template_error(
    tmp_path: Path, sqlite_url: str, smtp_server: tuple[Any, int]
) -> None:
    """Before holding, a typo marked emails failed for good; after the fix `ops retry-dead` sends them."""
    from typer.testing import CliRunner

    from leadflow.cli.main import app

    mailbox, port = smtp_server
    folder, engine = _live_campaign(tmp_path, sqlite_url, port)
    queued = _queue_case_studies(folder, engine)
    with session_scope(engine) as session:  # what the old sender wrote for each case study it could not render
        session.execute(
            update(EmailOutbox)
            .where(EmailOutbox.status == OutboxStatus.pending.value)
            .values(
                status=OutboxStatus.failed.value,
                attempts=1,
                last_error="template warm-up/2-case-study: TemplateSyntaxError: unexpected '}'",
            )
        )
        bounced = session.execute(select(EmailOutbox.id).where(EmailOutbox.step == 0).limit(1)).scalar_one()
        session.execute(
            update(EmailOutbox)
            .where(EmailOutbox.id == bounced)
            .values(status=OutboxStatus.failed.value, last_error="permanent: 550 no such user")
        )
    assert queued > 0 and _nurture(folder, 5).is_completed() and not _case_studies(mailbox)

    shown = CliRunner().invoke(app, ["ops", "dead-letters", "--workspace", str(folder)], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "TemplateSyntaxError" in shown.output and "550 no such user" not in shown.output
    retried = CliRunner().invoke(app, ["ops", "retry-dead", "--workspace", str(folder), "--no-handoffs"])
    assert retried.exit_code == 0, retried.output
    assert f"requeued {queued} email_outbox rows" in retried.output

    assert _nurture(folder, None).is_completed()  # the requeued rows are due from the moment of the retry
    received = _case_studies(mailbox)
    assert len(received) == queued == len(set(received))
    with session_scope(engine) as session:
        assert session.get(EmailOutbox, bounced).status == OutboxStatus.failed.value  # a bounce stays failed
    again = CliRunner().invoke(app, ["ops", "retry-dead", "--workspace", str(folder), "--no-handoffs"])
    assert "requeued 0 email_outbox rows" in again.output
    engine.dispose()


def test_leadflow_run_names_file_and_line_then_sends_the_held_emails_after_the_fix(
    tmp_path: Path, sqlite_url: str, smtp_server: tuple[Any, int]
) -> None:
    """What marketing ops see on the command line: the summary, the held step with file:line, exit code 1."""
    from typer.testing import CliRunner

    from leadflow.cli.main import app

    mailbox, port = smtp_server
    folder = make_workspace(
        tmp_path / "ws", sqlite_url, leads=200, extra_env=f"LEADFLOW_MAIL_URL=smtp://127.0.0.1:{port}\n"
    )
    welcome = folder / "templates" / "warm-up" / "1-welcome.html"
    source = welcome.read_text()
    welcome.write_text(source.replace("{{ lead.first_name", "{{ lead.frist_name", 1))

    first = CliRunner().invoke(app, ["run", "--workspace", str(folder)], terminal_width=200)
    assert first.exit_code == 1, first.output
    assert "Leads by stage" in first.output  # the summary of what did happen comes first
    assert "the pipeline run failed" in first.output
    assert "templates/warm-up/1-welcome.html:3: 'dict object' has no attribute 'frist_name'" in first.output
    assert "Traceback" not in first.output
    greeted = [m for m in mailbox.messages if "three signs a lead is ready" in str(m.message["Subject"])]
    assert greeted == []

    welcome.write_text(source)
    second = CliRunner().invoke(app, ["run", "nurture", "--workspace", str(folder)], terminal_width=200)
    assert second.exit_code == 0, second.output
    greeted = [
        str(m.message["To"]) for m in mailbox.messages if "three signs a lead is ready" in str(m.message["Subject"])
    ]
    assert greeted and len(greeted) == len(set(greeted))
    held = int(first.output.split("email(s) wait")[0].split()[-1])
    assert len(greeted) == held


def test_a_template_that_fails_only_for_a_real_lead_holds_the_rest_of_its_step(
    tmp_path: Path, sqlite_url: str, smtp_server: tuple[Any, int]
) -> None:
    """The samples render, one real lead's email does not: what went out stays sent, the rest of the step waits."""
    mailbox, port = smtp_server
    folder, engine = _live_campaign(tmp_path, sqlite_url, port)
    waiting = _warm_up_at(engine, 1)
    with session_scope(engine) as session:  # a lead in the middle of the send order
        ids = (
            session.execute(
                select(NurtureEnrollment.lead_id)
                .where(NurtureEnrollment.sequence == "warm-up", NurtureEnrollment.step == 1)
                .order_by(NurtureEnrollment.id)
            )
            .scalars()
            .all()
        )
        odd = session.execute(select(Lead.email).where(Lead.id == ids[len(ids) // 2])).scalar_one()
    source = (folder / TEMPLATE).read_text()
    (folder / TEMPLATE).write_text(
        source.replace(
            "{% block content %}\n",
            f'{{% block content %}}\n{{% if lead.email == "{odd}" %}}{{{{ lead.nope }}}}{{% endif %}}\n',
            1,
        )
    )

    state = _nurture(folder, 5)
    assert state.is_failed()
    with pytest.raises(TemplatesHeld, match=rf"{TEMPLATE}:3: 'dict object' has no attribute 'nope'"):
        state.result()
    early = _case_studies(mailbox)
    assert 0 < len(early) < waiting and odd not in early
    with session_scope(engine) as session:
        rows = dict(
            session.execute(
                select(EmailOutbox.status, func.count())
                .where(EmailOutbox.sequence == "warm-up", EmailOutbox.step == 1)
                .group_by(EmailOutbox.status)
            ).all()
        )
    assert rows == {OutboxStatus.sent.value: len(early), OutboxStatus.pending.value: waiting - len(early)}

    (folder / TEMPLATE).write_text(source)
    assert _nurture(folder, 5.1).is_completed()
    received = _case_studies(mailbox)
    assert len(received) == waiting == len(set(received)) and odd in received
    engine.dispose()
