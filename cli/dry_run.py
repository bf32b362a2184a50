"""Printing a nurture dry run: the counts, then one line per email (who, which step, what and why)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

SHOWN = 200  # lines on screen; the Prefect artifact lists up to 1,000


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items())) or "none"


def print_dry_run(console: Console, report: Any) -> None:
    console.print("[bold]nurture dry run[/]: nothing was sent, the database is unchanged")
    console.print(f"would enroll: {_counts(report.enrolled)}; would exit: {_counts(report.exited)}")
    console.print(f"would queue {report.queued} emails; would send {report.would_send}")
    console.print(f"would skip: {_counts(report.skipped)}")
    console.print(f"would defer: {_counts(report.deferred)}")
    console.print(f"would fail: {_counts(report.failed)}")
    if report.held:
        console.print(f"would hold until the template is fixed: {_counts(report.held)}", soft_wrap=True)
    if report.unconfirmed:
        console.print(f"{report.unconfirmed} emails a stopped sender left in flight would be recorded as unconfirmed")
    if not report.preview:
        return
    console.print("[bold]emails due now[/] (outcome, lead, sequence and step, subject or reason):")
    for row in report.preview[:SHOWN]:
        detail = f'"{row.subject}"' if row.outcome == "send" else row.reason
        if row.until is not None:
            detail += f" until {row.until:%Y-%m-%d %H:%M} UTC"
        # One line per email, never wrapped inside an address, so it greps and copies whole.
        console.print(f"{row.outcome:<5} {row.email}  {row.sequence} step {row.step + 1}  {detail}", soft_wrap=True)
    hidden = len(report.preview) - SHOWN + report.preview_more if len(report.preview) > SHOWN else report.preview_more
    if hidden > 0:
        console.print(f"… and {hidden} more (all are counted above)")
