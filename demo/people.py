"""The demo's people: companies with a domain and a size, personas whose fit (title, industry, size)
raises a hidden propensity to buy, and the typing noise their emails arrive with."""

from __future__ import annotations

import math
import random
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from leadflow.demo.vocabulary import (
    COMPETITORS,
    COUNTRIES,
    FREEMAIL,
    INDUSTRIES,
    NAMES,
    PLAIN_NAMES,
    SIZE_BANDS,
    STEMS_A,
    STEMS_B,
    TITLES,
    UNIVERSITIES,
)


@dataclass
class Persona:
    email: str
    profile: dict[str, Any]
    tz: ZoneInfo
    propensity: float
    kind: str  # "company", "freemail", "student" or "competitor"


def pick(rng: random.Random, weighted: Iterable[tuple[Any, float]]) -> Any:
    values, weights = zip(*weighted, strict=True)
    return rng.choices(values, weights=weights)[0]


def cumulate(weights: Iterable[float]) -> list[float]:
    """Cumulative weights, so the hot loop can pick with one bisect instead of rng.choices."""
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def ascii_fold(text: str) -> str:
    """Fold a name into an email-safe local part: 'Søren' -> 'soren', 'de Vries' -> 'devries'."""
    text = text.lower().replace("ø", "o").replace("æ", "ae").replace("ß", "ss")
    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum())


def make_companies(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Distinct companies, each with an industry, a banded size, a country and its own domain."""
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    numbered: dict[str, int] = {}  # once every plain name is taken: "Nordvik Software 2", "… 3", …
    while len(out) < count:
        industry = pick(rng, ((i, v[0]) for i, v in INDUSTRIES.items()))
        stem = f"{rng.choice(STEMS_A)}{rng.choice(STEMS_B)}"
        name = f"{stem} {rng.choice(INDUSTRIES[industry][2])}"
        if name in seen:
            if len(seen) < PLAIN_NAMES:
                continue  # plain names left: draw again (the same draws as always, so small demos do not change)
            numbered[name] = numbered.get(name, 1) + 1
            name = f"{name} {numbered[name]}"  # plain names never end in a number, so this one is new
        seen.add(name)
        low, high, _ = pick(rng, ((b, b[2]) for b in SIZE_BANDS))
        size = int(math.exp(rng.uniform(math.log(low), math.log(high))))
        country = pick(rng, ((c, v[0]) for c, v in COUNTRIES.items()))
        slug = rng.choice(["", "-"]).join(ascii_fold(part) for part in name.split())
        out.append(
            {
                "company": name,
                "industry": industry,
                "company_size": size,
                "country": country,
                "domain": f"{slug}.{COUNTRIES[country][2]}",
            }
        )
    return out


def make_lead(rng: random.Random, company: dict[str, Any], taken: set[str]) -> Persona:
    """One persona: name, title, email and a propensity that fit (title, industry, size) raises."""
    roll = rng.random()
    kind = "student" if roll < 0.04 else "competitor" if roll < 0.065 else "freemail" if roll < 0.18 else "company"
    country = company["country"]
    _, langs, _, zones = COUNTRIES[country]
    lang = rng.choice(langs) if rng.random() < 0.9 else rng.choice(list(NAMES))
    first = rng.choice(NAMES[lang][0])
    last = rng.choice(NAMES[lang][1]).replace("_", " ")
    title, seniority, _ = pick(rng, ((t, t[2]) for t in TITLES))
    org = dict(company)
    if kind == "student":
        title, seniority = "Student", 0.0
        org.update(
            company=UNIVERSITIES[country][0],
            industry="education",
            company_size=rng.randint(8000, 30000),
            domain=UNIVERSITIES[country][1],
        )
    elif kind == "competitor":
        name, domain = rng.choice(COMPETITORS)
        org.update(company=name, industry="software", company_size=rng.randint(40, 400), domain=domain)
    elif kind == "freemail":
        org["domain"] = rng.choice(FREEMAIL)
    given, family = ascii_fold(first), ascii_fold(last)
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
    fit = 0.45 * seniority + 0.3 * INDUSTRIES[org["industry"]][1] + 0.25 * size_score
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
        "timezone": pick(rng, zones),
    }
    return Persona(email, profile, ZoneInfo(profile["timezone"]), propensity, kind)


def noisy(rng: random.Random, email: str) -> str:
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
