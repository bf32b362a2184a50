"""Deterministic demo data: B2B leads, their activity over a window, and later sales outcomes.

Each lead has a hidden propensity to buy, drawn from its fit (seniority, industry, company size).
Propensity shapes how much the lead does, what it looks at and how its activity ramps up towards
the end of the window. Outcomes are drawn afterwards from propensity plus independent noise and
decided after the window, so a scoring model can be backtested on the events without leakage.
Everything comes from `random.Random(seed)`; the clock is never read.
"""

from __future__ import annotations

import csv
import json
import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadflow.demo.events import lead_events
from leadflow.demo.people import Persona, make_companies, make_lead, noisy

# The demo holds every lead and event in memory (about 20 KB a lead, 23 events each) before writing
# them; past this it takes gigabytes. Scale tests generate their own data (bench/).
MAX_DEMO_LEADS = 100_000


@dataclass(frozen=True)
class DemoData:
    """Generated activity (activity-file dicts sorted by "at") and each lead's later outcome."""

    events: list[dict[str, Any]]
    outcomes: list[dict[str, str]]


def _outcomes(seed: int, leads: list[Persona], end: datetime) -> list[dict[str, str]]:
    """Won/lost/open from propensity plus independent noise, decided after the window ends.

    A separate Random keeps outcomes independent of the event draws given propensity. The top
    4.5% by noisy propensity win (never students or competitors); the next 20% form the pipeline,
    more than half of which is lost; the rest is sometimes disqualified (lost) but mostly open.
    """
    rng = random.Random(f"{seed}:outcomes")
    latent = [
        (lead.propensity + rng.gauss(0, 0.08) if lead.kind in ("company", "freemail") else -1.0, i)
        for i, lead in enumerate(leads)
    ]
    ranked = [i for _, i in sorted(latent, reverse=True)]
    n_won, n_pipeline = round(0.045 * len(leads)), round(0.2 * len(leads))
    won, pipeline = set(ranked[:n_won]), set(ranked[n_won : n_won + n_pipeline])
    out = []
    for i, lead in enumerate(leads):
        outcome, decided = "open", ""
        if i in won:
            outcome, decided = "won", (end.date() + timedelta(days=rng.randint(5, 60))).isoformat()
        elif rng.random() < (0.55 if i in pipeline else 0.18):
            outcome, decided = "lost", (end.date() + timedelta(days=rng.randint(1, 75))).isoformat()
        out.append({"email": lead.email, "outcome": outcome, "decided_at": decided})
    return sorted(out, key=lambda o: o["email"])


def generate_demo(*, seed: int = 7, leads: int = 3000, end: datetime, days: int = 90) -> DemoData:
    """Generate `leads` personas with activity over the `days` days ending at `end` (aware UTC)."""
    if end.tzinfo is None or end.utcoffset() is None:
        raise ValueError("end must be timezone-aware")
    if leads < 0 or days < 2:
        raise ValueError("leads must be >= 0 and days >= 2")
    end = end.astimezone(UTC).replace(microsecond=0)  # whole seconds keep formatted times inside
    start = end - timedelta(days=days)
    rng = random.Random(seed)
    companies = make_companies(rng, max(1, leads // 2))
    company_weights = [1 + math.log10(c["company_size"]) for c in companies]
    taken: set[str] = set()
    people = [make_lead(rng, rng.choices(companies, company_weights)[0], taken) for _ in range(leads)]
    rows: list[tuple[datetime, int, int, dict[str, Any]]] = []
    for li, lead in enumerate(people):
        for seq, (at, kind, target, props) in enumerate(lead_events(rng, lead, start, end)):
            email = noisy(rng, lead.email) if rng.random() < 0.04 else lead.email
            event: dict[str, Any] = {
                "id": "",
                "email": email,
                "type": kind,
                "at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "target": target,
                "properties": props,
            }
            if seq == 0:
                event["lead"] = lead.profile
            rows.append((at.replace(microsecond=0), li, seq, event))
    rows.sort(key=lambda r: r[:3])  # ties keep each lead's profile event first
    events = [r[3] for r in rows]
    for n, event in enumerate(events, 1):
        event["id"] = f"demo-{n:07d}"
    return DemoData(events=events, outcomes=_outcomes(seed, people, end))


def write_demo(directory: Path, data: DemoData) -> tuple[Path, Path]:
    """Write activity.jsonl and outcomes.csv into `directory`; identical data, identical bytes."""
    directory.mkdir(parents=True, exist_ok=True)
    activity, outcomes = directory / "activity.jsonl", directory / "outcomes.csv"
    with activity.open("w", encoding="utf-8", newline="\n") as fh:
        fh.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in data.events)
    with outcomes.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["email", "outcome", "decided_at"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(data.outcomes)
    return activity, outcomes
