"""Held steps: which templates a run checks, where it says the error is, and who waits (both backends).

Templates are real files in a temporary workspace; enrollments are queued by the real code in the
real database. The whole story, through Prefect and a real SMTP server, is tests/flows/test_template_hold.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, select, update
from sqlmodel import Session

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import EmailOutbox, Lead, NurtureEnrollment, OutboxStatus, Stage
from leadflow.nurture.enrollment import enroll
from leadflow.nurture.held import TemplateGate, count_held
from leadflow.nurture.steps import queue_due_steps
from tests import factories as make

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
T0 = datetime(2026, 11, 2, 9, 0, 0)
GOOD = '{{% extends "base.{part}" %}}{{% block content %}}Hi {{{{ lead.first_name or "there" }}}}{{% endblock %}}'
STEPS = [
    {"id": "intro", "template": "s/intro", "subject": "Intro"},
    {"id": "nudge", "template": "s/nudge", "subject": "Nudge", "branches": [{"if": "clicked", "goto": "demo"}]},
    {"id": "demo", "template": "s/demo", "subject": "Demo", "delay_days": 3},
]


def _config(steps: list[dict[str, Any]] = STEPS) -> WorkspaceConfig:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nurture"] = {"sequences": [{"name": "seq", "enroll": {"stages": ["prospect"]}, "steps": steps}]}
    return WorkspaceConfig.model_validate(data)


def _templates(folder: Path, **broken: str) -> Path:
    """Good templates for every step, except `name=html source` for the broken ones."""
    for step in ("intro", "nudge", "demo"):
        (folder / "s").mkdir(parents=True, exist_ok=True)
        for part in ("html", "txt"):
            source = broken.get(step, GOOD) if part == "html" else GOOD
            (folder / "s" / f"{step}.{part}").write_text(source.format(part=part) if source is GOOD else source)
    return folder


def test_errors_name_the_file_line_or_the_subject_and_the_sample_that_broke_it(tmp_path: Path) -> None:
    templates = _templates(
        tmp_path / "templates",
        intro='{% extends "base.html" %}\n{% block content %}\n{% if lead.company %}\n{% endblock %}\n',
        nudge='{% extends "base.html" %}{% block content %}\n\n{{ 1000 // lead.company_size }}{% endblock %}',
    )
    steps = [*STEPS[:2], {**STEPS[2], "subject": "Demo for {{ lead.company }"}]
    gate = TemplateGate(_config(steps), templates)
    intro, nudge, demo = (gate.problem("seq", i) for i in range(3))
    assert intro is not None and intro.where == "templates/s/intro.html:4" and "endblock" in intro.error
    assert nudge is not None and nudge.where == "templates/s/nudge.html:3"
    assert "for a lead like the sample 'email only'" in nudge.error  # the full sample lead renders fine
    assert demo is not None and demo.where == "leadflow.yaml (subject of s/demo)"
    assert gate.problem("seq", 3) is None and gate.problem("gone", 0) is None  # no such step: nothing to hold
    assert gate.held_steps() == {("seq", 0), ("seq", 1), ("seq", 2)}


def test_a_lead_a_branch_sends_to_a_held_step_waits_where_it_is(tmp_path: Path, engine: Engine) -> None:
    config = _config()
    with session_scope(engine) as session:
        session.add_all([make.lead(f"{n}@example.com", stage=Stage.prospect) for n in ("clicker", "quiet")])
    with session_scope(engine) as session:
        enroll(session=session, config=config, now=T0)
        assert queue_due_steps(session=session, config=config, now=T0) == 2  # the intro for both ...
        session.execute(update(EmailOutbox).values(status=OutboxStatus.sent.value, sent_at=T0))  # ... sent
        clicker = session.scalar(select(Lead.id).where(Lead.email == "clicker@example.com"))
        session.add(
            make.activity(clicker, "email_click", T0 + timedelta(hours=2), source_id="1",
                          target="https://acme.example/x", properties={"sequence": "seq", "step": 0})
        )  # fmt: skip
    typo = '{% extends "base.html" %}{% block content %}{{ x }{% endblock %}'
    broken = _templates(tmp_path / "templates", demo=typo, intro=typo)  # nobody is due for the intro any more
    gate = TemplateGate(config, broken)
    now = T0 + timedelta(days=1)
    with session_scope(engine) as session:  # the nudge is due: the clicker would jump to the (broken) demo
        assert queue_due_steps(session=session, config=config, now=now, gate=gate) == 1
        assert list(gate.jumped.values()) == [("seq", 2)]
        held = count_held(session=session, gate=gate, now=now)
        assert [(h.index, h.emails) for h in held] == [(2, 1)]  # the intro held no one back: not reported
    with Session(engine) as session:
        rows = session.execute(select(EmailOutbox.lead_id, EmailOutbox.step).where(EmailOutbox.step > 0)).all()
        waiting = session.execute(select(NurtureEnrollment).where(NurtureEnrollment.lead_id == clicker)).scalar_one()
    assert [step for _, step in rows] == [1]  # the quiet lead got the nudge; the clicker nothing
    assert (waiting.step, waiting.next_due_at) == (1, now - timedelta(days=1))  # not moved on

    _templates(tmp_path / "templates")  # fixed: the next run's gate finds nothing to hold
    with session_scope(engine) as session:
        assert queue_due_steps(session=session, config=config, now=now, gate=TemplateGate(config, broken)) == 1
    with Session(engine) as session:
        demo = session.execute(select(EmailOutbox.lead_id).where(EmailOutbox.step == 2)).scalars().all()
    assert demo == [clicker]
