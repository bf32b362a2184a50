"""Stage decisions: a lead moves forward to the highest stage whose entry rule it meets.

Moves are forward only here; going back (recycling, disqualifying) is an explicit act, never a
side effect of a score dipping, so sales never see an SQL vanish on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from leads.scoring_config import StageRule, StagesConfig
from leads.models import Stage, funnel_rank
from leads.scoring import ScoreParts

FROZEN = {Stage.customer, Stage.disqualified}


@dataclass(frozen=True)
class StageDecision:
    to_stage: Stage
    reason: str


def _fmt(value: float) -> str:
    return f"{value:g}"


def rule_met(rule: StageRule, parts: ScoreParts) -> str | None:
    """Why the rule is met, or None."""
    raised = sorted(t.value for t in parts.hand_raises if t in rule.hand_raise)
    if raised:
        return "hand raise: " + ", ".join(raised)
    if not rule.has_thresholds:
        return None
    checks = [
        ("score", parts.total, rule.min_score),
        ("fit", parts.fit, rule.min_fit),
        ("engagement", parts.engagement, rule.min_engagement),
    ]
    if all(value >= minimum for _, value, minimum in checks if minimum is not None):
        return " and ".join(
            f"{name} {_fmt(value)} ≥ {_fmt(minimum)}" for name, value, minimum in checks if minimum is not None
        )
    return None


def decide(current: Stage, parts: ScoreParts, stages: StagesConfig) -> StageDecision | None:
    """The forward move this lead has earned, or None when it stays."""
    if current in FROZEN:
        return None
    for stage, rule in reversed(stages.ordered()):
        if funnel_rank(stage) <= funnel_rank(current):
            return None
        why = rule_met(rule, parts)
        if why is not None:
            return StageDecision(to_stage=stage, reason=why)
    return None
