"""Building blocks for handoff tests: the example config with owners, and SQLs written straight to the database."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlmodel import Session

from leadflow.leads.config.workspace import HandoffConfig, WorkspaceConfig, load_config
from leadflow.leads.db.models import HandoffOutbox, Lead, LeadAssignment, Stage, StageTransition
from tests import factories as make

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
T0 = datetime(2026, 10, 1, 9, 0)

OWNERS: list[dict[str, Any]] = [
    {
        "id": "anna",
        "name": "Anna de Vries",
        "email": "anna@acme.example",
        "crm_ids": {"hubspot": "901", "pipedrive": "7"},
    },
    {"id": "bram", "name": "Bram Peeters", "email": "bram@acme.example"},
    {"id": "cleo", "name": "Cleo Jansen"},
    {"id": "dana", "name": "Dana Smith", "email": "dana@acme.example"},
    {"id": "erik", "name": "Erik Berg"},
]
TEAMS: list[dict[str, Any]] = [
    {"name": "benelux", "owners": ["anna", "bram", "cleo"], "territory": {"countries": ["NL", "BE", "LU"]}},
    {
        "name": "enterprise",
        "owners": ["dana"],
        "territory": {"industries": ["Banking"], "company_size": {"min": 1000}},
    },
    {"name": "rest", "owners": ["erik"]},
]


def config(**handoff: Any) -> WorkspaceConfig:
    """The example workspace config with `handoff` replaced (owners and teams default to the ones above)."""
    handoff.setdefault("owners", OWNERS)
    handoff.setdefault("teams", TEAMS)
    return load_config(EXAMPLE).model_copy(update={"handoff": HandoffConfig.model_validate(handoff)})


def add_sql(
    engine: Engine,
    email: str,
    *,
    at: datetime = T0,
    country: str | None = "NL",
    industry: str | None = "Logistics",
    size: int | None = 200,
) -> int:
    """A lead that became an SQL at `at`; returns the transition id."""
    with Session(engine) as session:
        lead = make.lead(
            email,
            first_name=email.split("@")[0].title(),
            company="Acme",
            country=country,
            industry=industry,
            company_size=size,
            stage=Stage.sql,
            stage_changed_at=at,
            score=120,
            fit_score=40,
            engagement_score=80,
        )
        session.add(lead)
        session.flush()
        transition = StageTransition(
            lead_id=lead.id,  # type: ignore[arg-type]
            from_stage=Stage.mql,
            to_stage=Stage.sql,
            at=at,
            fit_score=40,
            engagement_score=80,
            score=120,
            ruleset_version="test",
            reason="hand raise: demo_request",
        )
        session.add(transition)
        session.commit()
        return transition.id  # type: ignore[return-value]


def owners_by_email(engine: Engine) -> dict[str, str | None]:
    with Session(engine) as session:
        return dict(session.execute(select(Lead.email, Lead.owner)).all())  # type: ignore[arg-type]


def assignments(engine: Engine) -> list[LeadAssignment]:
    with Session(engine) as session:
        return list(session.execute(select(LeadAssignment).order_by(LeadAssignment.id)).scalars())


def outbox(engine: Engine) -> list[HandoffOutbox]:
    with Session(engine) as session:
        return list(session.execute(select(HandoffOutbox).order_by(HandoffOutbox.id)).scalars())
