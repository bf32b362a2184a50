"""Suppression: recording an opt-out once, and enrollment and the send-time gate honouring the log."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from leadflow.leads.config.workspace import WorkspaceConfig, load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import (
    Activity,
    EmailOutbox,
    EnrollmentStatus,
    Lead,
    NurtureEnrollment,
    OutboxStatus,
    Stage,
    Suppression,
    SuppressionReason,
)
from leadflow.nurture.enrollment import enroll
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.steps import queue_due_steps
from leadflow.nurture.suppression import ALL, UnknownLead, suppress
from tests import factories as make
from tests.sending import send_due

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
NOW = datetime(2026, 10, 1, 9, 0)


@pytest.fixture
def config() -> WorkspaceConfig:
    """The example config with a second sequence, so scopes can differ."""
    base = load_config(EXAMPLE)
    warm_up = base.nurture.sequences[0]
    second = warm_up.model_copy(update={"name": "webinar-follow-up"})
    return base.model_copy(update={"nurture": base.nurture.model_copy(update={"sequences": [warm_up, second]})})


def _leads(engine: Engine, *addresses: str) -> dict[str, int]:
    ids = make.add(engine, *(make.lead(a, first_name="Lee", stage=Stage.prospect) for a in addresses))
    return dict(zip(addresses, ids, strict=True))


def _suppress(engine: Engine, lead_id: int, scope: str, when: datetime = NOW) -> bool:
    with session_scope(engine) as session:
        return suppress(
            session=session,
            lead_id=lead_id,
            scope=scope,
            reason=SuppressionReason.unsubscribed,
            source="web",
            now=when,
            detail="test",
        ).created


def _enrollments(engine: Engine) -> dict[int, tuple[str, str, str | None]]:
    with Session(engine) as session:
        rows = session.scalars(select(NurtureEnrollment))
        return {row.lead_id: (row.sequence, row.status, row.exit_reason) for row in rows}


def test_unsubscribe_from_everything_is_recorded_once(engine: Engine, config: WorkspaceConfig) -> None:
    ids = _leads(engine, "anna@example.com", "bo@example.com")
    with session_scope(engine) as session:
        enroll(session=session, config=config, now=NOW)

    assert _suppress(engine, ids["anna@example.com"], ALL) is True
    assert _suppress(engine, ids["anna@example.com"], ALL, NOW + timedelta(hours=1)) is False  # harmless repeat

    with Session(engine) as session:
        anna = session.get(Lead, ids["anna@example.com"])
        assert anna is not None and anna.unsubscribed_at == NOW and anna.last_activity_at == NOW
        log = session.scalars(select(Suppression)).all()
        assert [(s.email, s.scope, s.reason, s.source, s.created_at) for s in log] == [
            ("anna@example.com", "all", "unsubscribed", "web", NOW)
        ]
        activity = session.scalars(select(Activity)).all()
        assert [(a.lead_id, a.type, a.source, a.occurred_at) for a in activity] == [
            (anna.id, "unsubscribe", "web", NOW)
        ]
    enrollments = _enrollments(engine)
    assert enrollments[ids["anna@example.com"]] == ("warm-up", EnrollmentStatus.exited, "unsubscribed")
    assert enrollments[ids["bo@example.com"]] == ("warm-up", EnrollmentStatus.active, None)


def test_unsubscribe_from_one_sequence_leaves_the_others(engine: Engine, config: WorkspaceConfig) -> None:
    ids = _leads(engine, "anna@example.com")
    with session_scope(engine) as session:
        enroll(session=session, config=config, now=NOW)
    assert _suppress(engine, ids["anna@example.com"], "warm-up") is True

    with Session(engine) as session:
        anna = session.get(Lead, ids["anna@example.com"])
        assert anna is not None and anna.unsubscribed_at is None
        assert session.scalars(select(Suppression.scope)).all() == ["warm-up"]
        assert session.scalars(select(Activity.target)).all() == ["warm-up"]
    assert _enrollments(engine)[ids["anna@example.com"]] == ("warm-up", EnrollmentStatus.exited, "unsubscribed")

    # Out of warm-up, and free to join the next sequence that fits.
    with session_scope(engine) as session:
        assert enroll(session=session, config=config, now=NOW + timedelta(days=1)) == Counter(
            {"webinar-follow-up": 1, "warm-up": 0}
        )


def test_enrollment_skips_leads_suppressed_for_that_sequence_or_everything(
    engine: Engine, config: WorkspaceConfig
) -> None:
    ids = _leads(engine, "all@example.com", "warm@example.com", "free@example.com")
    # Suppressions from elsewhere (an import, a bounce handler) arrive before the first enrollment.
    with session_scope(engine) as session:
        session.add(Suppression(email="all@example.com", scope=ALL, reason=SuppressionReason.manual, source="import"))
        session.add(
            Suppression(email="warm@example.com", scope="warm-up", reason=SuppressionReason.manual, source="import")
        )
    with session_scope(engine) as session:
        enroll(session=session, config=config, now=NOW)
    enrollments = _enrollments(engine)
    assert ids["all@example.com"] not in enrollments
    assert enrollments[ids["warm@example.com"]][0] == "webinar-follow-up"
    assert enrollments[ids["free@example.com"]][0] == "warm-up"


def test_the_next_send_honours_a_suppression_made_after_queuing(
    engine: Engine, config: WorkspaceConfig, tmp_path: Path
) -> None:
    ids = _leads(engine, "stays@example.com", "all@example.com", "warm@example.com", "other@example.com")
    with session_scope(engine) as session:
        enroll(session=session, config=config, now=NOW)
        queue_due_steps(session=session, config=config, now=NOW)
    # A manual suppression touches no lead column: only the log stops these sends.
    with session_scope(engine) as session:
        session.add(Suppression(email="all@example.com", scope=ALL, reason=SuppressionReason.manual, source="cli"))
        session.add(
            Suppression(email="warm@example.com", scope="warm-up", reason=SuppressionReason.manual, source="cli")
        )
        session.add(
            Suppression(
                email="other@example.com", scope="webinar-follow-up", reason=SuppressionReason.manual, source="cli"
            )
        )
    links = LinkSigner(secret_key="k", public_base_url="https://mail.acme.example")
    report = send_due(engine, config, links=links, folder=tmp_path, now=NOW)
    assert report.sent == 2 and report.skipped == Counter({"do not contact": 2})
    with Session(engine) as session:
        status = dict(session.execute(select(EmailOutbox.lead_id, EmailOutbox.status)).all())
        assert session.scalar(select(func.count()).select_from(Activity)) == 0
    assert status == {
        ids["stays@example.com"]: OutboxStatus.sent,
        ids["all@example.com"]: OutboxStatus.skipped,
        ids["warm@example.com"]: OutboxStatus.skipped,
        ids["other@example.com"]: OutboxStatus.sent,  # suppressed for another sequence only
    }


def test_unknown_lead_is_an_error_and_writes_nothing(engine: Engine) -> None:
    with pytest.raises(UnknownLead), session_scope(engine) as session:
        suppress(session=session, lead_id=999, scope=ALL, reason=SuppressionReason.unsubscribed, source="web", now=NOW)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_opt_outs_that_arrive_as_activity_land_in_the_log_once(engine: Engine, tmp_path: Path) -> None:
    """An unsubscribe from a CRM or a file (or a bounce) is logged like one from the web: once, its source, its time."""
    from leadflow.connectors.files import FileActivitySource
    from leadflow.connectors.sync import sync_source
    from tests.factories import jsonl, raw_event

    file = tmp_path / "crm-export.jsonl"
    file.write_text(
        jsonl(
            raw_event(1, email="ann@x.example", type="unsubscribe", at="2026-09-12T08:00:00Z"),
            raw_event(2, email="ann@x.example", type="unsubscribe", at="2026-09-14T08:00:00Z"),
            raw_event(3, email="bob@x.example", type="email_bounce", at="2026-09-13T08:00:00Z"),
            raw_event(4, email="cy@x.example", type="page_view"),
        ),
        encoding="utf-8",
    )
    sync_source(engine=engine, source=FileActivitySource("hubspot", file), now=NOW)
    with Session(engine) as session:
        rows = session.execute(
            select(
                Suppression.email, Suppression.scope, Suppression.reason, Suppression.source, Suppression.created_at
            ).order_by(Suppression.email)
        ).all()
        assert [tuple(r) for r in rows] == [
            ("ann@x.example", ALL, "unsubscribed", "hubspot", datetime(2026, 9, 12, 8, 0)),
            ("bob@x.example", ALL, "bounced", "hubspot", datetime(2026, 9, 13, 8, 0)),
        ]
        ann = session.execute(select(Lead.id).where(Lead.email == "ann@x.example")).scalar_one()

    # The web's one-click unsubscribe for the same person later finds her in the log already.
    assert _suppress(engine, ann, ALL) is False
    file.write_text(jsonl(raw_event(5, email="ann@x.example", type="unsubscribe", at="2026-09-20T08:00:00Z")))
    sync_source(engine=engine, source=FileActivitySource("hubspot", file), now=NOW)
    with Session(engine) as session:
        assert session.execute(select(func.count()).select_from(Suppression)).scalar_one() == 2
