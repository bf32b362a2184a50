"""Render speed: personalised nurture emails per second on one core, once templates are compiled.

    python bench/render_bench.py                   # 20,000 leads, every step of the example config
    python bench/render_bench.py --leads 50000 --repeat 3

The leads are deterministic (a seeded generator): names, companies, titles and industries from
small pools, a fifth of them with fields missing (so fallbacks run) and one in fifty with markup
in a field (so escaping runs). Templates are loaded and compiled before the clock starts; one
"email" is a subject, an HTML part and a text part, like the sender renders.

Three figures from the same run, same leads, same templates:

- leadflow: `TemplateRenderer` as the sender uses it — sandboxed environment, autoescaping,
  StrictUndefined, the stylesheet inlined into the compiled HTML templates;
- bare jinja2: a plain `jinja2.Environment` (no sandbox, default Undefined, autoescaping on) over
  the same template files, without CSS inlining;
- str.format: the same text as one Python format string per part, no template engine at all
  (the floor; it cannot do fallbacks or escaping, which the generator pre-computes for it);
- inlining per send: leadflow's templates rendered as written, then css-inline over each HTML
  part — what inlining once per template avoids.
"""

from __future__ import annotations

import argparse
import html
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import css_inline  # noqa: E402
import jinja2  # noqa: E402

from leadflow.leads.config.workspace import load_config  # noqa: E402
from leadflow.nurture.render import SHIPPED_TEMPLATES, TemplateRenderer  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "leads" / "config" / "examples" / "leadflow.yaml"
FIRST = ["Anna", "Bo", "Chris", "Dana", "Emil", "Fatima", "Guus", "Hanna", "Ivo", "Jasmijn", "Karel", "Lotte"]
LAST = ["Jansen", "de Vries", "Bakker", "Visser", "Smit", "Meijer", "Mulder", "Bos", "Vos", "Peters"]
COMPANIES = ["Acme Logistics", "Northwind", "Globex", "Initech", "Umbrella Retail", "Hooli", "Vandelay Import"]
TITLES = ["Head of Marketing", "Marketing Manager", "CMO", "Growth Lead", "Sales Director", "Founder"]
INDUSTRIES = ["logistics", "software", "finance", "manufacturing", "retail"]


def make_leads(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    leads = []
    for i in range(n):
        lead: dict[str, Any] = {
            "email": f"lead{i}@example{i % 97}.com",
            "first_name": rng.choice(FIRST),
            "last_name": rng.choice(LAST),
            "company": rng.choice(COMPANIES),
            "title": rng.choice(TITLES),
            "industry": rng.choice(INDUSTRIES),
            "company_size": rng.randint(5, 5000),
            "country": "NL",
            "timezone": "Europe/Amsterdam",
            "budget": None,
            "authority": None,
            "need": None,
            "timing": None,
        }
        if rng.random() < 0.2:
            lead.update(first_name=None, company=None, industry=None)
        if rng.random() < 0.02:
            lead["first_name"] = "<b>Bo</b> & co"
        leads.append(lead)
    return leads


def contexts(leads: list[dict[str, Any]], sender: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"lead": lead, "sender": sender, "unsubscribe_url": f"https://links.acme.example/u/{i}.sig{i * 7919}"}
        for i, lead in enumerate(leads)
    ]


def time_round(figures: dict[str, Any], items: list[Any], repeat: int) -> dict[str, float]:
    """Best of `repeat` rounds per figure, the figures taking turns within each round.

    Taking turns keeps a burst of load from other work on the machine from landing on one
    figure only, so the ratios stay fair even when the absolute rates wobble.
    """
    best = dict.fromkeys(figures, float("inf"))
    for _ in range(repeat):
        for label, fn in figures.items():
            start = time.perf_counter()
            for item in items:
                fn(item)
            best[label] = min(best[label], time.perf_counter() - start)
    rates = {label: len(items) / seconds for label, seconds in best.items()}
    for label, rate in rates.items():
        print(f"  {label:<44} {rate:>10,.0f} emails/s   ({best[label]:.2f} s for {len(items):,})")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is reported")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    config = load_config(EXAMPLE)
    sender = config.sender.model_dump()
    steps = [(seq.name, step) for seq in config.nurture.sequences for step in seq.steps]
    leads = make_leads(args.leads, args.seed)
    items = contexts(leads, sender)

    renderer = TemplateRenderer(SHIPPED_TEMPLATES)
    as_written = TemplateRenderer(SHIPPED_TEMPLATES, inline=False)
    inliner = css_inline.CSSInliner(
        extra_css=(SHIPPED_TEMPLATES / "email.css").read_text(), keep_style_tags=True, load_remote_stylesheets=False
    )
    bare = jinja2.Environment(
        loader=jinja2.FileSystemLoader(SHIPPED_TEMPLATES), autoescape=jinja2.select_autoescape(["html"])
    )
    print(
        f"python {platform.python_version()}, jinja2 {jinja2.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs (pinned to one), {len(items):,} leads, {len(steps)} steps"
    )

    totals: dict[str, list[float]] = {"leadflow": [], "bare": [], "format": [], "per_send": []}
    for name, step in steps:
        for part in ("html", "txt"):  # compile (and inline) before timing
            renderer.env.get_template(f"{step.template}.{part}")
        renderer.subject(step.subject, items[0])
        b_subject = bare.from_string(step.subject)
        b_html, b_text = bare.get_template(f"{step.template}.html"), bare.get_template(f"{step.template}.txt")
        sample = renderer.render(template=step.template, subject=step.subject, context=items[0])
        # The floor: the sample's text with the lead's fields swapped for format fields.
        fmt_html = sample.html.replace("{", "{{").replace("}", "}}").replace("Anna", "{first}")
        fmt_text = sample.text.replace("{", "{{").replace("}", "}}").replace("Anna", "{first}")
        fmt_subject = sample.subject.replace("{", "{{").replace("}", "}}").replace("Anna", "{first}")

        def leadflow(ctx: dict[str, Any], step: Any = step) -> None:
            renderer.render(template=step.template, subject=step.subject, context=ctx)

        def plain(ctx: dict[str, Any], s: Any = b_subject, h: Any = b_html, t: Any = b_text) -> None:
            subject = " ".join(s.render(ctx).split())
            h.render({**ctx, "subject": subject})
            t.render({**ctx, "subject": subject})

        def formatted(ctx: dict[str, Any], s: str = fmt_subject, h: str = fmt_html, t: str = fmt_text) -> None:
            first = ctx["lead"]["first_name"] or "there"
            s.format(first=first)
            h.format(first=html.escape(first))
            t.format(first=first)

        def per_send(ctx: dict[str, Any], step: Any = step) -> None:
            email = as_written.render(template=step.template, subject=step.subject, context=ctx)
            inliner.inline(email.html)

        print(f"{name} / {step.key}:")
        rates = time_round(
            {
                "leadflow (sandbox, strict, inlined CSS)": leadflow,
                "bare jinja2 (no sandbox, no inlining)": plain,
                "str.format (no template engine)": formatted,
                "css-inline per send (not what leadflow does)": per_send,
            },
            items,
            args.repeat,
        )
        for key, rate in zip(totals, rates.values(), strict=True):
            totals[key].append(rate)

    def mean(rates: list[float]) -> float:  # harmonic: emails per second over the whole mix
        return len(rates) / sum(1 / r for r in rates)

    lf, bj, sf, ps = (mean(totals[k]) for k in ("leadflow", "bare", "format", "per_send"))
    print(
        f"\nall steps: leadflow {lf:,.0f}/s; bare jinja2 {bj:,.0f}/s (leadflow {lf / bj:.2f}×); "
        f"str.format {sf:,.0f}/s (leadflow {lf / sf:.2f}×); inlining per send {ps:,.0f}/s (leadflow {lf / ps:.1f}×)"
    )


if __name__ == "__main__":
    main()
