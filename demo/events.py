"""One persona's activity over the window: a first event that makes the lead known, then behaviour
that its propensity shapes (what it looks at, how often, ramping up or fading), mostly in office hours."""

from __future__ import annotations

import bisect
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from leadflow.demo.people import Persona, cumulate, pick
from leadflow.demo.vocabulary import BLOG, CAMPAIGNS, CASES, HAND_RAISE, OFFICE_HOURS, UTM
from leadflow.leads.db.models import ActivityType as A

Event = tuple[datetime, str, str | None, dict[str, Any]]


def _office_time(rng: random.Random, raw: datetime, tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """Move a moment to office hours on a local working day, mostly; keep it within [lo, hi]."""
    if rng.random() < 0.15:
        return raw
    day = raw.astimezone(tz).date()
    if day.weekday() >= 5 and rng.random() < 0.85:
        day -= timedelta(days=day.weekday() - 4)
    local = datetime(
        day.year, day.month, day.day, rng.choice(OFFICE_HOURS), rng.randrange(60), rng.randrange(60), tzinfo=tz
    )
    moved = local.astimezone(UTC)
    return moved if lo <= moved <= hi else raw


def _target(
    rng: random.Random, kind: str, p: float, pages: list[str], page_cum: list[float]
) -> tuple[str, dict[str, Any]]:
    """What an event was about; high-intent assets are likelier for high-propensity leads."""
    if kind == "page_view":
        page = pages[bisect.bisect(page_cum, rng.random() * page_cum[-1])]
        return page, ({"utm_source": rng.choice(UTM)} if rng.random() < 0.25 else {})
    if kind.startswith("email_"):
        if kind != "email_click":
            return rng.choice(CAMPAIGNS), {}
        url = rng.choice(["/pricing", "/features", f"/blog/{rng.choice(BLOG)}"])
        return rng.choice(CAMPAIGNS), {"url": url}
    if kind == "download":
        if rng.random() < p:
            return "trial-software", {}
        return rng.choice(["ebook-lead-scoring", "whitepaper-nurture", "checklist-gdpr"]), {}
    if kind == "webinar":
        name = (
            "webinar-product-tour"
            if rng.random() < p
            else rng.choice(["webinar-scoring-101", "webinar-ops-masterclass"])
        )
        return name, {"attended_minutes": rng.randint(5, 60)}
    if kind == "ad_click":
        campaign = rng.choice(["retargeting-q3", "brand-search", "ebook-promo"])
        return campaign, {"network": rng.choice(["linkedin", "google"])}
    return {
        "form_submit": "contact-us",
        "newsletter_signup": "newsletter",
        "cart_add": "plan-pro",
        "wishlist_add": "addon-crm-sync",
    }[kind], {}


def lead_events(rng: random.Random, lead: Persona, start: datetime, end: datetime) -> list[Event]:
    """One lead's activity: a first 'became known' event, then propensity-shaped behaviour."""
    p, span = lead.propensity, (end - start).total_seconds()
    first_raw = start + timedelta(seconds=rng.uniform(0, 0.85) ** 1.3 * span)
    first_at = _office_time(rng, first_raw, lead.tz, start, end - timedelta(days=1))
    kind = pick(rng, [(A.form_submit, 4), (A.newsletter_signup, 3), (A.download, 3)])
    target = {
        A.form_submit: rng.choice(["ebook-gate", "webinar-registration", "contact-us"]),
        A.newsletter_signup: "newsletter",
        A.download: rng.choice(["ebook-lead-scoring", "checklist-gdpr"]),
    }[kind]
    props = {"utm_source": rng.choice(UTM)} if rng.random() < 0.6 else {}
    out: list[Event] = [(first_at, kind.value, target, props)]

    known = (end - first_at).total_seconds()
    quiet = rng.random() < 0.3 * (1 - p)  # some leads stop engaging part-way
    active = known * (rng.uniform(0.15, 0.7) if quiet else 1.0)
    ramp = max(-2.0, min(3.0, (p - 0.3) * 6))  # hot leads ramp up towards the end, cold ones fade
    # students browse blog and careers; competitors snoop on pricing; neither buys
    curious = {"student": 1.0, "competitor": 0.5}.get(lead.kind, 0.0)
    pages = [
        ("/", 10),
        ("/features", 6 + 6 * p),
        ("/features/scoring", 2 + 8 * p),
        ("/integrations", 2 + 6 * p),
        ("/pricing", 1.5 + 25 * max(p, curious * 0.5)),
        ("/careers", 1 + 12 * curious),
        ("/about", 2),
        ("/security", 0.5 + 4 * p),
    ]
    pages += [(f"/blog/{b}", 3 + 2 * curious) for b in BLOG]
    pages += [(f"/case-studies/{c}", 0.5 + 4 * p) for c in CASES]
    types = [
        (A.page_view, 45),
        (A.email_open, 22),
        (A.email_click, 4 + 10 * p),
        (A.ad_click, 3),
        (A.download, 2 + 4 * p),
        (A.webinar, 0.5 + 3 * p),
        (A.form_submit, 0.5 + 2 * p),
        (A.email_reply, 2 * p * p),
        (A.newsletter_signup, 0.2),
        (A.cart_add, 0.3),
        (A.wishlist_add, 0.3),
    ]
    page_names, page_cum = [t for t, _ in pages], cumulate(w for _, w in pages)
    type_names, type_cum = [t.value for t, _ in types], cumulate(w for _, w in types)
    count = round(rng.gammavariate(2.0, (2 + 12 * rng.random() + 45 * p) / 2))
    for _ in range(count):
        u = rng.random()
        u = u ** (1 / (1 + ramp)) if ramp >= 0 else 1 - u ** (1 / (1 - ramp))
        raw = first_at + timedelta(seconds=1 + u * active)
        at = _office_time(rng, raw, lead.tz, first_at, end)
        name = type_names[bisect.bisect(type_cum, rng.random() * type_cum[-1])]
        out.append((at, name, *_target(rng, name, p, page_names, page_cum)))

    if rng.random() < (p - 0.5) * 1.4:  # the hottest few percent raise their hand, mostly late
        for _ in range(rng.choice((1, 1, 2, 3))):
            hand, target = rng.choice(HAND_RAISE)
            raw = first_at + timedelta(seconds=1 + rng.random() ** 0.2 * known)
            at = _office_time(rng, raw, lead.tz, first_at, end)
            seats = {"seats": rng.choice((5, 10, 25, 50))} if hand is A.quote_request else {}
            out.append((at, hand.value, target, seats))

    # the profile-carrying event must stay the lead's earliest
    out[1:] = [e if e[0] > first_at else (first_at + timedelta(seconds=1), *e[1:]) for e in out[1:]]
    if rng.random() < 0.03 + 0.04 * (1 - p):
        stop: A | None = A.unsubscribe
    else:
        stop = A.email_bounce if rng.random() < 0.02 else None
    if stop is not None and len(out) > 1:  # no email is opened or clicked after this point
        stop_at = rng.choice(out[1:])[0]
        out = [e for e in out if not (e[1] in ("email_open", "email_click") and e[0] > stop_at)]
        reason = {"reason": "mailbox_unavailable"} if stop is A.email_bounce else {}
        out.append((stop_at, stop.value, rng.choice(CAMPAIGNS), reason))
    return out
