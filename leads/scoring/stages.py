"""Stage decisions: where a lead belongs now, and why.

Forward moves come from the entry rules; a lead may skip stages. Backward moves happen only
through the explicit recycling rules (sales rejected an SQL, a deal was lost, an MQL decayed
below a floor), never as a side effect of a score dipping, so sales never see an SQL vanish on
its own. Customers and disqualified leads stay where they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadflow.leads.config.scoring import FREE_MAIL_DOMAINS, BantField, HandRaiseGate, StageRule, StagesConfig
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.models import ActivityType, Stage, funnel_rank
from leadflow.leads.scoring.rules import ScoreParts, email_domain

FROZEN = {Stage.customer, Stage.disqualified}
_MAY_RECYCLE = {Stage.sql, Stage.mql}  # the only stages `_recycled` moves
BANT_FIELDS: tuple[BantField, ...] = ("budget", "authority", "need", "timing")


@dataclass(frozen=True)
class StageDecision:
    to_stage: Stage
    reason: str


def _fmt(value: float) -> str:
    return f"{value:g}"


def _bant_known(lead: Any, name: str) -> bool:
    value = getattr(lead, name, None)
    return value is not None and str(value).strip() != ""


def _bant_holds(rule: StageRule, lead: Any) -> tuple[bool, list[str]]:
    """Whether the BANT conditions hold, with what each contributed to the reason or what is missing."""
    met: list[str] = []
    missing: list[str] = []
    for name, wanted in rule.bant.items():
        value = getattr(lead, name, None)
        if wanted == "known":
            known = _bant_known(lead, name)
            (met if known else missing).append(f"{name} {'known' if known else 'unknown'}")
        elif value is not None and str(value).strip().lower() in {w.lower() for w in wanted}:
            met.append(f"{name} {value}")
        else:
            missing.append(f"{name} is {value or 'unknown'} (needs {' or '.join(wanted)})")
    if rule.min_bant_known is not None:
        known_count = sum(_bant_known(lead, n) for n in BANT_FIELDS)
        target = f"BANT {known_count}/4 known"
        (met if known_count >= rule.min_bant_known else missing).append(
            target if known_count >= rule.min_bant_known else f"{target} (needs {rule.min_bant_known})"
        )
    return not missing, met if not missing else missing


def gate_holds(gate: HandRaiseGate, parts: ScoreParts, lead: Any) -> str | None:
    """Why the hand-raise gate holds this lead back (for review), or None when it passes."""
    reasons = []
    if gate.min_fit is not None and parts.fit < gate.min_fit:
        reasons.append(f"fit {_fmt(parts.fit)} < {_fmt(gate.min_fit)}")
    email = getattr(lead, "email", None)
    free_mail = isinstance(email, str) and email_domain(email) in FREE_MAIL_DOMAINS
    if free_mail and gate.free_mail_min_fit is not None and parts.fit < gate.free_mail_min_fit:
        reasons.append(f"free-mail address with fit {_fmt(parts.fit)} < {_fmt(gate.free_mail_min_fit)}")
    if gate.min_bant_known is not None:
        known = sum(_bant_known(lead, n) for n in BANT_FIELDS) if lead is not None else 0
        if known < gate.min_bant_known:
            reasons.append(f"BANT {known}/4 known (needs {gate.min_bant_known})")
    return " and ".join(reasons) or None


def raised_for(rule: StageRule, parts: ScoreParts) -> list[str]:
    """The lead's hand raises this rule counts, by name."""
    return sorted(t.value for t in parts.hand_raise_types if t in rule.hand_raise)


def held_for_review(rule: StageRule, parts: ScoreParts, lead: Any) -> str | None:
    """The reason a hand raise for this rule is held for review (one stage below), or None."""
    raised = raised_for(rule, parts)
    if not raised or rule.hand_raise_gate.on_hold != "review":
        return None
    held = gate_holds(rule.hand_raise_gate, parts, lead)
    return f"hand raise {', '.join(raised)} held for review: {held}" if held else None


def rule_met(rule: StageRule, parts: ScoreParts, lead: Any = None) -> str | None:
    """Why the rule is met, or None. A hand raise counts only when it passes the rule's gate."""
    raised = raised_for(rule, parts)
    if raised and gate_holds(rule.hand_raise_gate, parts, lead) is None:
        return "hand raise: " + ", ".join(raised)
    if not rule.has_thresholds:
        return None
    checks = [
        (name, value, minimum)
        for name, value, minimum in (
            ("score", parts.total, rule.min_score),
            ("fit", parts.fit, rule.min_fit),
            ("engagement", parts.engagement, rule.min_engagement),
        )
        if minimum is not None
    ]
    if not all(value >= minimum for _, value, minimum in checks):
        return None
    bant_ok, bant_notes = (
        _bant_holds(rule, lead) if lead is not None else (not rule.bant and not rule.min_bant_known, [])
    )
    if not bant_ok:
        return None
    return " and ".join([*(f"{n} {_fmt(v)} ≥ {_fmt(m)}" for n, v, m in checks), *bant_notes])


def missing_for(rule: StageRule, parts: ScoreParts, lead: Any) -> str:
    """What the lead still lacks for this stage, in words a marketer can act on."""
    needs = []
    for name, value, minimum in (
        ("score", parts.total, rule.min_score),
        ("fit", parts.fit, rule.min_fit),
        ("engagement", parts.engagement, rule.min_engagement),
    ):
        if minimum is not None and value < minimum:
            needs.append(f"{_fmt(round(minimum - value, 2))} more {name} points")
    bant_ok, bant_notes = _bant_holds(rule, lead)
    gaps = [*needs, *([] if bant_ok else bant_notes)]
    text = "needs " + ", ".join(gaps) if gaps else ""
    if rule.hand_raise:
        raise_text = " or ".join(t.value.replace("_", " ") for t in rule.hand_raise)
        text = f"{text} — or a {raise_text}" if text else f"needs a {raise_text}"
        held = gate_holds(rule.hand_raise_gate, parts, lead)
        if held:
            text += f" (a hand raise is held by the gate: {held})"
    return text or "meets the rule"


def decide(
    current: Stage,
    changed_at: datetime | None,
    parts: ScoreParts,
    config: WorkspaceConfig,
    lead: Any = None,
) -> StageDecision | None:
    """The move this lead has earned, or None when it stays."""
    if current in FROZEN:
        return None
    outcomes = parts.signals.outcomes
    if ActivityType.deal_won in outcomes:
        return StageDecision(Stage.customer, f"deal won on {outcomes[ActivityType.deal_won]:%Y-%m-%d}")
    disqualified = _disqualified(parts, config) if outcomes or parts.disqualified_by else None
    if disqualified:
        return StageDecision(Stage.disqualified, disqualified)
    recycled = _recycled(current, changed_at, parts, config) if current in _MAY_RECYCLE else None
    if recycled:
        return StageDecision(Stage.recycled, recycled)
    if awaits_new_activity(current, changed_at, lead):
        return None
    rank = funnel_rank(current)
    held: str | None = None  # a gated hand raise one stage up: reviewed at this stage unless it earns more
    for stage, stage_rank, rule, checks in _entry_rules(config.stages):
        if stage_rank <= rank:
            return None
        if _may_meet_fast(rule, checks, parts):
            why = rule_met(rule, parts, lead)
            if why is not None:
                return StageDecision(to_stage=stage, reason=why)
        if held is not None:
            return StageDecision(to_stage=stage, reason=held)
        if checks[0] and parts.signals.hand_raises:
            held = held_for_review(rule, parts, lead)
    return None


_Checks = tuple[tuple[ActivityType, ...], float | None, float | None, float | None, bool]
_ENTRY_RULES: dict[int, tuple[StagesConfig, tuple[tuple[Stage, int, StageRule, _Checks], ...]]] = {}


def _entry_rules(stages: StagesConfig) -> tuple[tuple[Stage, int, StageRule, _Checks], ...]:
    """The entry rules from the top of the funnel down, with their numbers as plain tuples (read per lead)."""
    cached = _ENTRY_RULES.get(id(stages))
    if cached is None or cached[0] is not stages:
        plan = tuple(
            (stage, funnel_rank(stage), rule,
             (tuple(rule.hand_raise), rule.min_score, rule.min_fit, rule.min_engagement, rule.has_thresholds))
            for stage, rule in reversed(stages.ordered())
        )  # fmt: skip
        if len(_ENTRY_RULES) > 64:
            _ENTRY_RULES.clear()
        cached = _ENTRY_RULES[id(stages)] = (stages, plan)
    return cached[1]


def _may_meet_fast(rule: StageRule, checks: _Checks, parts: ScoreParts) -> bool:
    """`_may_meet` on the precomputed numbers."""
    hand_raise, min_score, min_fit, min_engagement, has_thresholds = checks
    if hand_raise:
        raised = parts.signals.hand_raises
        if raised and any(t in raised for t in hand_raise):
            return True
    if min_score is not None and parts.total < min_score:
        return False
    if min_fit is not None and parts.fit < min_fit:
        return False
    if min_engagement is not None and parts.engagement < min_engagement:
        return False
    return has_thresholds


def awaits_new_activity(current: Stage, changed_at: datetime | None, lead: Any) -> bool:
    """A recycled lead qualifies again on activity after recycling only: not on who it is alone."""
    if current != Stage.recycled or lead is None or changed_at is None:
        return False
    return lead.last_activity_at is None or lead.last_activity_at <= changed_at


def _may_meet(rule: StageRule, parts: ScoreParts) -> bool:
    """A cheap first look (numbers only) before building the reason; BANT is checked after."""
    if rule.hand_raise and any(t in parts.signals.hand_raises for t in rule.hand_raise):
        return True
    for value, minimum in (
        (parts.total, rule.min_score),
        (parts.fit, rule.min_fit),
        (parts.engagement, rule.min_engagement),
    ):
        if minimum is not None and value < minimum:
            return False
    return rule.has_thresholds


def _disqualified(parts: ScoreParts, config: WorkspaceConfig) -> str | None:
    if parts.disqualified_by:
        return f"disqualified: {parts.disqualified_by}"
    at = parts.signals.outcomes.get(ActivityType.sales_disqualified)
    if at is not None and config.disqualify.on_sales_disqualified:
        return f"disqualified by sales on {at:%Y-%m-%d}"
    return None


def _recycled(current: Stage, changed_at: datetime | None, parts: ScoreParts, config: WorkspaceConfig) -> str | None:
    outcomes, recycle = parts.signals.outcomes, config.recycle
    if current == Stage.sql:
        for kind, enabled, what in (
            (ActivityType.sales_rejected, recycle.on_sales_rejection, "rejected by sales"),
            (ActivityType.deal_lost, recycle.on_deal_lost, "deal lost"),
        ):
            at = outcomes.get(kind)
            if enabled and at is not None and (changed_at is None or at > changed_at):
                return f"{what} on {at:%Y-%m-%d}"
    if current == Stage.mql and recycle.mql_below_score is not None and parts.total < recycle.mql_below_score:
        return f"score {_fmt(parts.total)} fell below the MQL floor {_fmt(recycle.mql_below_score)}"
    return None


def next_stage(current: Stage, config: WorkspaceConfig) -> tuple[Stage, StageRule] | None:
    """The next stage up the funnel that has an entry rule, if any."""
    for stage, rule in config.stages.ordered():
        if funnel_rank(stage) > funnel_rank(current):
            return stage, rule
    return None
