"""Deterministic demo data: B2B leads, their activity over a window, and later sales outcomes.

Each lead has a hidden propensity to buy, drawn from its fit (seniority, industry, company size).
Propensity shapes how much the lead does, what it looks at and how its activity ramps up towards
the end of the window. Outcomes are drawn afterwards from propensity plus independent noise and
decided after the window, so a scoring model can be backtested on the events without leakage.
Everything comes from `random.Random(seed)`; the clock is never read.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from leadflow.leads.db.models import ActivityType as A

# language: (first names, last names); "_" stands for a space inside a last name
_NAMES: dict[str, tuple[list[str], list[str]]] = {
    "nl": (
        "Anna Sanne Lotte Eva Femke Iris Noor Maartje Bram Daan Joris Pieter Sem Thijs Jeroen "
        "Wouter Ruud Lieke".split(),
        "Jansen de_Vries van_Dijk Bakker Visser Smit Meijer de_Boer Mulder Bos Vos Peters "
        "Hendriks van_Leeuwen Dekker".split(),
    ),
    "da": (
        "Mette Freja Ida Sofie Karen Signe Søren Mads Rasmus Frederik Jens Lars Anders Mikkel Kasper Jørgen".split(),
        "Jensen Nielsen Hansen Pedersen Andersen Christensen Larsen Sørensen Rasmussen "
        "Jørgensen Madsen Kristensen".split(),
    ),
    "de": (
        "Lena Hannah Julia Katrin Sabine Jana Lukas Jonas Felix Tobias Stefan Jürgen Matthias Florian Andreas".split(),
        "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Koch Richter Klein Wolf".split(),
    ),
    "en": (
        "Emma Olivia Sophie Grace Chloe Emily Sarah Jack Oliver Harry James Daniel Michael Ryan Thomas Ethan".split(),
        "Smith Jones Taylor Brown Williams Wilson Johnson Davies Robinson Wright Walker Clarke Hughes Miller".split(),
    ),
    "fr": (
        "Camille Léa Chloé Manon Hélène Claire Julie Lucas Hugo Louis Théo Nicolas Julien Antoine François".split(),
        "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Lefèvre Girard Lambert Fontaine".split(),
    ),
    "sv": (
        "Elin Maja Ebba Linnea Astrid Erik Lars Nils Oskar Gustav Johan Axel".split(),
        "Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson Svensson Lindberg".split(),
    ),
}
_Country = tuple[float, tuple[str, ...], str, tuple[tuple[str, float], ...]]
# country: (weight, name languages, domain TLD, timezones with weights)
_COUNTRIES: dict[str, _Country] = {
    "NL": (22, ("nl",), "nl", (("Europe/Amsterdam", 1),)),
    "DE": (16, ("de",), "de", (("Europe/Berlin", 1),)),
    "DK": (10, ("da",), "dk", (("Europe/Copenhagen", 1),)),
    "GB": (14, ("en",), "co.uk", (("Europe/London", 1),)),
    "US": (
        16,
        ("en",),
        "com",
        (("America/New_York", 5), ("America/Chicago", 3), ("America/Denver", 1), ("America/Los_Angeles", 3)),
    ),
    "FR": (9, ("fr",), "fr", (("Europe/Paris", 1),)),
    "BE": (7, ("nl", "fr"), "be", (("Europe/Brussels", 1),)),
    "SE": (6, ("sv",), "se", (("Europe/Stockholm", 1),)),
}
# industry: (weight, fit for the product, company-name suffixes)
_INDUSTRIES: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "software": (20, 1.0, ("Software", "Systems", "Labs", "Cloud", "Digital")),
    "finance": (11, 0.8, ("Capital", "Finance", "Bank", "Partners")),
    "manufacturing": (13, 0.75, ("Industries", "Manufacturing", "Machines", "Components")),
    "logistics": (10, 0.8, ("Logistics", "Freight", "Transport", "Shipping")),
    "healthcare": (9, 0.55, ("Health", "Medical", "Care", "Pharma")),
    "retail": (11, 0.6, ("Retail", "Stores", "Commerce", "Brands")),
    "education": (6, 0.3, ("Academy", "Learning", "Institute")),
    "media": (6, 0.5, ("Media", "Studios", "Publishing")),
    "government": (3, 0.25, ("Agency", "Services")),
    "non-profit": (3, 0.2, ("Foundation", "Trust")),
}
_STEMS_A = (
    "Nord Zee Alp Bright Blue Kes Lin Vel Ost Wester Sol Hav Berg Stern Lumen Cor Aur Fal Riv Tand Acme Gro Kvik Hel"
).split()
_STEMS_B = ("vik tra ex ora io holm dal mark gate field wood bridge stone works ly haven point line").split()
# Every "stem suffix" company name there is; past this many companies, names get a number.
_PLAIN_NAMES = len({f"{a}{b} {s}" for a in _STEMS_A for b in _STEMS_B for v in _INDUSTRIES.values() for s in v[2]})
# (title, seniority, weight): seniority drives fit, weight how common the title is
_TITLES: list[tuple[str, float, float]] = [
    ("CEO", 1.0, 2),
    ("CTO", 0.95, 2),
    ("CMO", 0.95, 2),
    ("COO", 0.9, 1),
    ("VP Sales", 0.9, 2),
    ("VP Marketing", 0.9, 2),
    ("Head of Marketing", 0.8, 4),
    ("Head of Sales", 0.8, 3),
    ("Head of Operations", 0.75, 3),
    ("Marketing Director", 0.8, 3),
    ("Sales Director", 0.75, 3),
    ("Director of Demand Generation", 0.8, 2),
    ("Marketing Manager", 0.6, 10),
    ("Sales Manager", 0.55, 7),
    ("Operations Manager", 0.5, 5),
    ("Product Manager", 0.45, 5),
    ("Marketing Operations Specialist", 0.45, 4),
    ("Growth Marketer", 0.4, 4),
    ("Marketing Specialist", 0.35, 7),
    ("Account Executive", 0.3, 5),
    ("Consultant", 0.3, 4),
    ("Business Analyst", 0.3, 4),
    ("Data Analyst", 0.2, 3),
    ("Software Engineer", 0.15, 6),
    ("Office Manager", 0.15, 3),
    ("Recruiter", 0.05, 3),
    ("Intern", 0.02, 2),
]
# (low, high, weight): many small companies, few large ones
_SIZE_BANDS = [(2, 10, 28), (11, 50, 30), (51, 200, 22), (201, 1000, 12), (1001, 5000, 6), (5001, 50000, 2)]
_FREEMAIL = ["gmail.com", "gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com"]
_COMPETITORS = [("FunnelForge", "funnelforge.io"), ("LeadPilot", "leadpilot.com"), ("Nurturly", "nurturly.io")]
_UNIVERSITIES = {
    "NL": ("Rijnland University", "student.rijnland-uni.nl"),
    "DE": ("Hochschule Elbtal", "stud.hs-elbtal.de"),
    "DK": ("Øresund Business School", "student.oresund-bs.dk"),
    "GB": ("Pennine University", "pennine.ac.uk"),
    "US": ("Lakeshore State University", "lakeshore.edu"),
    "FR": ("École de Gestion Loire", "etu.egl.fr"),
    "BE": ("Hogeschool Schelde", "student.schelde.be"),
    "SE": ("Mälardal Tekniska", "stud.malardal-tek.se"),
}
_BLOG = [
    "what-is-lead-scoring",
    "mql-vs-sql",
    "nurture-sequences-that-work",
    "b2b-email-benchmarks",
    "gdpr-for-marketers",
    "attribution-101",
]
_CASES = ["logistics-scaleup", "regional-bank", "saas-pipeline", "factory-leads"]
_CAMPAIGNS = ["newsletter-weekly", "product-update", "webinar-invite", "case-study-digest", "ebook-followup"]
_UTM = ["linkedin", "google", "newsletter", "partner", "twitter"]
_HAND_RAISE = [(A.demo_request, "demo-form"), (A.contact_sales, "contact-sales-form"), (A.quote_request, "quote-form")]
_OFFICE_HOURS = (8, 9, 9, 10, 10, 11, 11, 12, 13, 14, 14, 15, 15, 16, 17)
_UTC = UTC

_Event = tuple[datetime, str, str | None, dict[str, Any]]
# The demo holds every lead and event in memory (about 20 KB a lead, 23 events each) before writing
# them; past this it takes gigabytes. Scale tests generate their own data (bench/).
MAX_DEMO_LEADS = 100_000


@dataclass(frozen=True)
class DemoData:
    """Generated activity (activity-file dicts sorted by "at") and each lead's later outcome."""

    events: list[dict[str, Any]]
    outcomes: list[dict[str, str]]


@dataclass
class _Lead:
    email: str
    profile: dict[str, Any]
    tz: ZoneInfo
    propensity: float
    kind: str  # "company", "freemail", "student" or "competitor"


def _pick(rng: random.Random, weighted: Iterable[tuple[Any, float]]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights=weights)[0]


def _cumulate(weights: Iterable[float]) -> list[float]:
    """Cumulative weights, so the hot loop can pick with one bisect instead of rng.choices."""
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def _ascii(text: str) -> str:
    """Fold a name into an email-safe local part: 'Søren' -> 'soren', 'de Vries' -> 'devries'."""
    text = text.lower().replace("ø", "o").replace("æ", "ae").replace("ß", "ss")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum())


def _companies(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Distinct companies, each with an industry, a banded size, a country and its own domain."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    numbered: dict[str, int] = {}  # once every plain name is taken: "Nordvik Software 2", "… 3", …
    while len(out) < count:
        industry = _pick(rng, ((i, v[0]) for i, v in _INDUSTRIES.items()))
        stem = f"{rng.choice(_STEMS_A)}{rng.choice(_STEMS_B)}"
        name = f"{stem} {rng.choice(_INDUSTRIES[industry][2])}"
        if name in seen:
            if len(seen) < _PLAIN_NAMES:
                continue  # plain names left: draw again (the same draws as always, so small demos do not change)
            numbered[name] = numbered.get(name, 1) + 1
            name = f"{name} {numbered[name]}"  # plain names never end in a number, so this one is new
        seen.add(name)
        low, high, _ = _pick(rng, ((b, b[2]) for b in _SIZE_BANDS))
        size = int(math.exp(rng.uniform(math.log(low), math.log(high))))
        country = _pick(rng, ((c, v[0]) for c, v in _COUNTRIES.items()))
        slug = rng.choice(["", "-"]).join(_ascii(part) for part in name.split())
        out.append(
            {
                "company": name,
                "industry": industry,
                "company_size": size,
                "country": country,
                "domain": f"{slug}.{_COUNTRIES[country][2]}",
            }
        )
    return out


def _make_lead(rng: random.Random, company: dict[str, Any], taken: set[str]) -> _Lead:
    """One persona: name, title, email and a propensity that fit (title, industry, size) raises."""
    roll = rng.random()
    kind = "student" if roll < 0.04 else "competitor" if roll < 0.065 else "freemail" if roll < 0.18 else "company"
    country = company["country"]
    _, langs, _, zones = _COUNTRIES[country]
    lang = rng.choice(langs) if rng.random() < 0.9 else rng.choice(list(_NAMES))
    first = rng.choice(_NAMES[lang][0])
    last = rng.choice(_NAMES[lang][1]).replace("_", " ")
    title, seniority, _ = _pick(rng, ((t, t[2]) for t in _TITLES))
    org = dict(company)
    if kind == "student":
        title, seniority = "Student", 0.0
        org.update(
            company=_UNIVERSITIES[country][0],
            industry="education",
            company_size=rng.randint(8000, 30000),
            domain=_UNIVERSITIES[country][1],
        )
    elif kind == "competitor":
        name, domain = rng.choice(_COMPETITORS)
        org.update(company=name, industry="software", company_size=rng.randint(40, 400), domain=domain)
    elif kind == "freemail":
        org["domain"] = rng.choice(_FREEMAIL)
    given, family = _ascii(first), _ascii(last)
    if kind == "freemail":
        local = f"{given}.{family}{rng.randint(1, 99)}"
    else:
        local = rng.choice(
            [f"{given}.{family}", f"{given}.{family}", f"{given[0]}.{family}", f"{given}{family[0]}", given]
        )
    email, n = f"{local}@{org['domain']}", 2
    while email in taken:
        email, n = f"{local}{n}@{org['domain']}", n + 1
    taken.add(email)
    size_score = min(1.0, math.log10(max(org["company_size"], 1)) / 4)
    fit = 0.45 * seniority + 0.3 * _INDUSTRIES[org["industry"]][1] + 0.25 * size_score
    propensity = rng.betavariate(0.3 + 2.4 * fit, 3.2)
    if kind in ("student", "competitor"):
        propensity *= 0.3
    profile = {
        "first_name": first,
        "last_name": last,
        "company": org["company"],
        "title": title,
        "industry": org["industry"],
        "company_size": org["company_size"],
        "country": country,
        "timezone": _pick(rng, zones),
    }
    return _Lead(email, profile, ZoneInfo(profile["timezone"]), propensity, kind)


def _noisy(rng: random.Random, email: str) -> str:
    """Case and whitespace noise as typed into forms or exported by tools: normalisation matters."""
    local, domain = email.split("@")
    variant = rng.randrange(4)
    if variant == 0:
        return email.upper()
    if variant == 1:
        return f"  {email} "
    host, tld = domain.rsplit(".", 1)
    styled = ".".join(p.capitalize() for p in local.split("."))
    styled += f"@{host.capitalize()}.{tld.upper()}"
    return styled if variant == 2 else f"  {styled} "


def _office_time(rng: random.Random, raw: datetime, tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """Move a moment to office hours on a local working day, mostly; keep it within [lo, hi]."""
    if rng.random() < 0.15:
        return raw
    day = raw.astimezone(tz).date()
    if day.weekday() >= 5 and rng.random() < 0.85:
        day -= timedelta(days=day.weekday() - 4)
    local = datetime(
        day.year, day.month, day.day, rng.choice(_OFFICE_HOURS), rng.randrange(60), rng.randrange(60), tzinfo=tz
    )
    moved = local.astimezone(_UTC)
    return moved if lo <= moved <= hi else raw


def _target(
    rng: random.Random, kind: str, p: float, pages: list[str], page_cum: list[float]
) -> tuple[str, dict[str, Any]]:
    """What an event was about; high-intent assets are likelier for high-propensity leads."""
    if kind == "page_view":
        page = pages[bisect.bisect(page_cum, rng.random() * page_cum[-1])]
        return page, ({"utm_source": rng.choice(_UTM)} if rng.random() < 0.25 else {})
    if kind.startswith("email_"):
        if kind != "email_click":
            return rng.choice(_CAMPAIGNS), {}
        url = rng.choice(["/pricing", "/features", f"/blog/{rng.choice(_BLOG)}"])
        return rng.choice(_CAMPAIGNS), {"url": url}
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


def _lead_events(rng: random.Random, lead: _Lead, start: datetime, end: datetime) -> list[_Event]:
    """One lead's activity: a first 'became known' event, then propensity-shaped behaviour."""
    p, span = lead.propensity, (end - start).total_seconds()
    first_raw = start + timedelta(seconds=rng.uniform(0, 0.85) ** 1.3 * span)
    first_at = _office_time(rng, first_raw, lead.tz, start, end - timedelta(days=1))
    kind = _pick(rng, [(A.form_submit, 4), (A.newsletter_signup, 3), (A.download, 3)])
    target = {
        A.form_submit: rng.choice(["ebook-gate", "webinar-registration", "contact-us"]),
        A.newsletter_signup: "newsletter",
        A.download: rng.choice(["ebook-lead-scoring", "checklist-gdpr"]),
    }[kind]
    props = {"utm_source": rng.choice(_UTM)} if rng.random() < 0.6 else {}
    out: list[_Event] = [(first_at, kind.value, target, props)]

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
    pages += [(f"/blog/{b}", 3 + 2 * curious) for b in _BLOG]
    pages += [(f"/case-studies/{c}", 0.5 + 4 * p) for c in _CASES]
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
    page_names, page_cum = [t for t, _ in pages], _cumulate(w for _, w in pages)
    type_names, type_cum = [t.value for t, _ in types], _cumulate(w for _, w in types)
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
            hand, target = rng.choice(_HAND_RAISE)
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
        out.append((stop_at, stop.value, rng.choice(_CAMPAIGNS), reason))
    return out


def _outcomes(seed: int, leads: list[_Lead], end: datetime) -> list[dict[str, str]]:
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
    end = end.astimezone(_UTC).replace(microsecond=0)  # whole seconds keep formatted times inside
    start = end - timedelta(days=days)
    rng = random.Random(seed)
    companies = _companies(rng, max(1, leads // 2))
    company_weights = [1 + math.log10(c["company_size"]) for c in companies]
    taken: set[str] = set()
    people = [_make_lead(rng, rng.choices(companies, company_weights)[0], taken) for _ in range(leads)]
    rows: list[tuple[datetime, int, int, dict[str, Any]]] = []
    for li, lead in enumerate(people):
        for seq, (at, kind, target, props) in enumerate(_lead_events(rng, lead, start, end)):
            email = _noisy(rng, lead.email) if rng.random() < 0.04 else lead.email
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
