"""Why a lead stands where it does: score parts, the rules and events behind them, what is missing.

The numbers come from the same engine requalify uses (one lead's row of the same query), so the
explanation always adds up to the stored score when computed at the same moment. The events list
is recomputed in Python for display: each event with its age and decay factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlmodel import col

from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import PROFILE_FIELDS, Activity, Lead, Stage, StageTransition
from leadflow.leads.requalify.lead_reads import AFTER_RECYCLING, LEAD_COLUMNS, ever_recycled
from leadflow.leads.requalify.run import make_scorer
from leadflow.leads.scoring.rules import Contribution, ScoreParts
from leadflow.leads.scoring.stages import (
    FROZEN,
    awaits_new_activity,
    gate_holds,
    missing_for,
    next_stage,
    raised_for,
    rule_met,
)

EVENTS_PER_RULE = 3


@dataclass(frozen=True)
class EventPoints:
    type: str
    target: str | None
    at: datetime
    age_days: float
    factor: float
    points: float


@dataclass(frozen=True)
class RuleDetail:
    contribution: Contribution
    cap: float | None
    events: tuple[EventPoints, ...]  # the most recent few
    matched: int = 0  # all matching events
    note: str = ""


@dataclass(frozen=True)
class Explanation:
    lead: dict[str, Any]
    stage: Stage
    stage_changed_at: datetime | None
    parts: ScoreParts
    rules: tuple[RuleDetail, ...]
    transitions: tuple[StageTransition, ...]
    next_stage: Stage | None
    missing: str | None
    as_of: datetime
    gate: str | None = None  # what the hand-raise gate made of the lead's hand raises, if any


class LeadNotFound(LookupError):
    pass


def explain_lead(*, session: Session, config: WorkspaceConfig, email: str, now: datetime) -> Explanation:
    lead = session.execute(select(*LEAD_COLUMNS).where(col(Lead.email) == email.strip().lower())).first()
    if lead is None:
        raise LeadNotFound(f"no lead with email {email.strip().lower()!r}")
    scorer = make_scorer(session, config)
    # The activity requalify counts: after the last recycling, for a lead that was ever recycled.
    counted = [AFTER_RECYCLING] if ever_recycled(session, [lead], col(StageTransition.lead_id) == lead.id) else []
    row = scorer.totals(session.connection(), now, col(Activity.lead_id) == lead.id, *counted).row(lead.id)
    parts = scorer.parts(lead, row, now)
    events = _events(session, lead.id, now, counted)
    rules = tuple(_detail(c, config, scorer.decay_rate, events, now) for c in parts.contributions)
    history = tuple(
        session.execute(
            select(StageTransition)
            .where(col(StageTransition.lead_id) == lead.id)
            .order_by(col(StageTransition.at).desc(), col(StageTransition.id).desc())
            .limit(10)
        ).scalars()
    )
    stage = Stage(lead.stage)
    upcoming = None if stage in FROZEN else next_stage(stage, config)
    missing = None
    if upcoming is not None and awaits_new_activity(stage, lead.stage_changed_at, lead):
        missing = f"needs activity after recycling on {lead.stage_changed_at:%Y-%m-%d}"
    elif upcoming is not None and rule_met(upcoming[1], parts, lead) is None:
        missing = missing_for(upcoming[1], parts, lead)
    full = session.get(Lead, lead.id)
    profile = {"email": lead.email, **{f: getattr(full, f) for f in PROFILE_FIELDS}}
    return Explanation(
        lead=profile,
        stage=stage,
        stage_changed_at=lead.stage_changed_at,
        parts=parts,
        rules=rules,
        transitions=history,
        next_stage=upcoming[0] if upcoming else None,
        missing=missing,
        as_of=now,
        gate=gate_note(config, parts, lead),
    )


def gate_note(config: WorkspaceConfig, parts: ScoreParts, lead: Any) -> str | None:
    """The hand-raise gate of the highest stage the lead's hand raises count for: passed, or why held."""
    for stage, rule in reversed(config.stages.ordered()):
        raised = raised_for(rule, parts)
        if not raised:
            continue
        held = gate_holds(rule.hand_raise_gate, parts, lead)
        if held is None:
            return f"{', '.join(raised)} passes the {stage.value} gate"
        verdict = "held for review one stage below" if rule.hand_raise_gate.on_hold == "review" else "ignored"
        return f"{', '.join(raised)} {verdict} by the {stage.value} gate: {held}"
    return None


def _events(session: Session, lead_id: int, now: datetime, counted: list[Any]) -> list[Activity]:
    query = select(Activity).where(col(Activity.lead_id) == lead_id, col(Activity.occurred_at) <= now, *counted)
    return list(session.execute(query.order_by(col(Activity.occurred_at).desc())).scalars())


def _detail(
    contribution: Contribution, config: WorkspaceConfig, rate: float, events: list[Activity], now: datetime
) -> RuleDetail:
    scoring = config.scoring
    rule = next((r for r in scoring.engagement if r.name == contribution.rule), None)
    if rule is None:
        frequency = next((r for r in scoring.frequency if r.name == contribution.rule), None)
        if frequency is not None:
            note = f"{contribution.matched:g} in the last {frequency.within_days:g} days, needs {frequency.at_least}"
            return RuleDetail(contribution, None, (), 0, note)
        inactive = next((r for r in scoring.inactivity if r.name == contribution.rule), None)
        note = f"no activity for {inactive.days:g}+ days" if inactive else ""
        return RuleDetail(contribution, None, (), 0, note)
    matching = [
        e
        for e in events
        if e.type == rule.activity.value
        and (not rule.target_contains or rule.target_contains.lower() in (e.target or "").lower())
    ]
    shown = []
    for event in matching[:EVENTS_PER_RULE]:
        age = max(0.0, (now - event.occurred_at).total_seconds() / 86400)
        factor = math.exp(-rate * age) if rule.decays and rate else 1.0
        shown.append(EventPoints(event.type, event.target, event.occurred_at, age, factor, rule.points * factor))
    decayed = rule.decays and rate and abs(contribution.matched - len(matching)) > 1e-6
    raw = len(matching) * rule.points
    note = f"{len(matching)} × {rule.points:g}" + (
        f", decayed from {raw:g}" if decayed and not contribution.capped else ""
    )
    return RuleDetail(contribution, rule.cap, tuple(shown), len(matching), note)


def render_text(explanation: Explanation) -> str:
    """The explanation as `leadflow explain` prints it."""
    e, p = explanation, explanation.parts
    name = " ".join(x for x in (e.lead.get("first_name"), e.lead.get("last_name")) if x) or e.lead["email"]
    who = ", ".join(x for x in (e.lead.get("title"), e.lead.get("company")) if x)
    lines = [
        f"{name} <{e.lead['email']}>" + (f" — {who}" if who else ""),
        f"stage: {e.stage.value}" + (f" since {e.stage_changed_at:%Y-%m-%d %H:%M}" if e.stage_changed_at else ""),
        f"score {p.total:g} = fit {p.fit:g} + engagement {p.engagement:g}   (as of {e.as_of:%Y-%m-%d %H:%M} UTC)",
        "",
    ]
    for part in ("fit", "engagement"):
        lines.append(f"{part}:")
        details = [d for d in e.rules if d.contribution.part == part]
        if not details:
            lines.append("  (no rule applies)")
        for d in details:
            c = d.contribution
            cap = f", cap {d.cap:g} reached" if c.capped and d.cap is not None else ""
            detail = f"  ({d.note}{cap})" if d.note or cap else ""
            lines.append(f"  {c.points:+g}  {c.rule}{detail}")
            for ev in d.events:
                decay = f" (×{ev.factor:.2f} after {ev.age_days:.0f} days)" if ev.factor < 0.999 else ""
                lines.append(f"        {ev.at:%Y-%m-%d} {ev.type} {ev.target or ''}  {ev.points:+.2f}{decay}")
            if d.matched > len(d.events):
                lines.append(f"        … and {d.matched - len(d.events)} earlier")
    if p.hand_raise_types:
        lines.append("hand raises: " + ", ".join(sorted(t.value for t in p.hand_raise_types)))
    if e.gate:
        lines.append(f"hand-raise gate: {e.gate}")
    if e.next_stage is not None:
        lines += ["", f"next stage: {e.next_stage.value} — {e.missing or 'rules met; moves at the next requalify'}"]
    if e.transitions:
        lines += ["", "recent stage changes:"]
        for t in e.transitions:
            lines.append(
                f"  {t.at:%Y-%m-%d %H:%M}  {t.from_stage} → {t.to_stage}  ({t.reason}; rules {t.ruleset_version})"
            )
    return "\n".join(lines)


def as_payload(explanation: Explanation) -> dict[str, Any]:
    """The explanation as it travels with a handoff to sales."""
    return {
        "score": {"fit": explanation.parts.fit, "engagement": explanation.parts.engagement,
                  "total": explanation.parts.total},
        "rules": [
            {"rule": d.contribution.rule, "part": d.contribution.part, "points": d.contribution.points,
             "count": d.contribution.matched, "capped": d.contribution.capped,
             "recent_events": [{"type": ev.type, "target": ev.target, "at": ev.at.isoformat() + "Z",
                                "points": round(ev.points, 2)} for ev in d.events]}
            for d in explanation.rules
        ],
        "hand_raises": sorted(t.value for t in explanation.parts.hand_raise_types),
        "summary": render_text(explanation),
    }  # fmt: skip
