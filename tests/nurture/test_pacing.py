"""Sequences paced from delivery, over weeks of hourly runs (issue 16).

The real queue and send loop runs every simulated hour on a real database, with a frequency cap,
office hours in each lead's own time zone and a mail server that refuses some first attempts.
Each step's delay starts when the previous email was sent, so nothing arrives early, nothing is
queued while the email before it is unsent, and nothing is lost or sent twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
import yaml
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from leadflow.connectors.errors import TransientMailError
from leadflow.connectors.mail import BeforeData, Envelope, MailTransport
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import make_engine, session_scope, upgrade
from leadflow.leads.db.models import EmailOutbox, EnrollmentStatus, Lead, NurtureEnrollment, OutboxStatus, Stage
from leadflow.leads.work.outbox import fixed_clock
from leadflow.nurture.enrollment import enroll, exit_finished
from leadflow.nurture.links import LinkSigner
from leadflow.nurture.outbox import send_due
from leadflow.nurture.render import TemplateRenderer
from leadflow.nurture.steps import queue_due_steps

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
LINKS = LinkSigner(secret_key="pacing-test-secret", public_base_url="https://mail.acme.example")
T0 = datetime(2026, 11, 2, 0, 0)  # a Monday, midnight UTC
HOUR = timedelta(hours=1)
ZONES = {
    "tokyo": "Asia/Tokyo",
    "newyork": "America/New_York",
    "amsterdam": "Europe/Amsterdam",
    "losangeles": "America/Los_Angeles",
}
CAP_EMAILS, CAP_DAYS = 2, 7


@dataclass
class Server:
    """A mail server that records what it accepted and when; refuses the first try of some messages."""

    now: datetime = T0
    refuse_first: set[str] = field(default_factory=set)  # recipients whose next message is refused once
    accepted: list[tuple[str, str, datetime]] = field(default_factory=list)  # (recipient, key, at)
    refused: Counter[str] = field(default_factory=Counter)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def send(self, message: EmailMessage) -> str:
        raise NotImplementedError

    def copies(self) -> list[MailTransport]:
        return [cast(MailTransport, self)]

    def deliver(self, envelope: Envelope, *, before_data: BeforeData | None = None) -> str:
        if envelope.rcpt_to in self.refuse_first:
            self.refuse_first.discard(envelope.rcpt_to)
            self.refused[envelope.rcpt_to] += 1
            raise TransientMailError("451 try again later", code=451)
        if before_data is not None:
            before_data()
        key = envelope.data.split(b"X-Leadflow-Key: ", 1)[1].split(b"\r\n", 1)[0].decode()
        self.accepted.append((envelope.rcpt_to, key, self.now))
        return f"queued {len(self.accepted)}"


def _config() -> WorkspaceConfig:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["compliance"] = {
        "frequency_cap": {"max_emails": CAP_EMAILS, "per_days": CAP_DAYS},
        "send_window": {"start": "09:00", "end": "17:00", "default_timezone": "Europe/Amsterdam"},
    }
    data["nurture"]["sequences"] = [s for s in data["nurture"]["sequences"] if s["name"] == "warm-up"]
    return WorkspaceConfig.model_validate(data)


def _unsent_per_enrollment(engine: Engine) -> int:
    """The most emails of one enrollment waiting to go out at once (pending, sending or in flight)."""
    with Session(engine) as session:
        counts = session.execute(
            select(func.count())
            .select_from(EmailOutbox)
            .where(
                EmailOutbox.status.in_([OutboxStatus.pending, OutboxStatus.sending, OutboxStatus.in_flight])  # type: ignore[attr-defined]
            )
            .group_by(EmailOutbox.enrollment_id)
        ).scalars()
        return max(counts, default=0)


def _simulate(engine: Engine, tmp_path: Path, days: int) -> tuple[Server, WorkspaceConfig, dict[str, str]]:
    config = _config()
    with session_scope(engine) as session:
        for name, zone in ZONES.items():
            session.add(Lead(email=f"{name}@example.com", first_name=name.title(), stage=Stage.prospect, timezone=zone))
    server = Server(refuse_first={"newyork@example.com", "tokyo@example.com"})
    renderer = TemplateRenderer(tmp_path / "templates")
    most_unsent = 0
    for hour in range(days * 24):
        now = T0 + hour * HOUR + timedelta(minutes=20)  # the schedule's "20 * * * *"
        server.now = now
        for step in (exit_finished, enroll, queue_due_steps):
            with session_scope(engine) as session:
                step(session=session, config=config, now=now)
        most_unsent = max(most_unsent, _unsent_per_enrollment(engine))
        send_due(
            engine=engine,
            transports=[cast(MailTransport, server)],
            clock=fixed_clock(now),
            batch_size=50,
            config=config,
            renderer=renderer,
            links=LINKS,
        )
    assert most_unsent == 1  # the next step is never queued while the previous one is unsent
    return server, config, {f"{name}@example.com": zone for name, zone in ZONES.items()}


def _check_quarter_rules(server: Server, config: WorkspaceConfig, zones: dict[str, str]) -> None:
    steps = config.nurture.sequences[0].steps
    by_lead: dict[str, list[tuple[int, datetime]]] = defaultdict(list)
    for rcpt, key, at in server.accepted:
        by_lead[rcpt].append((int(key.rsplit(":", 1)[1]), at))
    assert set(by_lead) == set(zones)
    for rcpt, sends in by_lead.items():
        # Nothing lost, nothing doubled: every step once (nobody clicks, so the checklist is sent too).
        assert [step for step, _ in sends] == [0, 1, 2, 3], rcpt
        for (_, before), (step, after) in zip(sends, sends[1:], strict=False):
            gap = after - before
            wait = steps[step].wait_for
            configured = timedelta(days=wait.up_to_days if wait is not None else steps[step].delay_days)
            assert gap >= configured, (rcpt, step, gap)
        times = [at for _, at in sends]
        for i, at in enumerate(times):  # the cap: never more than CAP_EMAILS in any CAP_DAYS
            assert sum(1 for t in times[i:] if t - at < timedelta(days=CAP_DAYS)) <= CAP_EMAILS, (rcpt, times)
        for _, at in sends:
            local = at.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(zones[rcpt]))
            assert local.weekday() < 5 and 9 <= local.hour < 17, (rcpt, local)


def test_hourly_runs_over_four_weeks_keep_every_gap_from_delivery(sqlite_url: str, tmp_path: Path) -> None:
    engine = make_engine(sqlite_url)  # a real SQLite file
    upgrade(engine)
    try:
        server, config, zones = _simulate(engine, tmp_path, days=35)
        _check_quarter_rules(server, config, zones)
        assert server.refused == Counter({"newyork@example.com": 1, "tokyo@example.com": 1})
        with Session(engine) as session:
            statuses = Counter(str(s) for s in session.scalars(select(EmailOutbox.status)))
            enrollments = [str(s) for s in session.scalars(select(NurtureEnrollment.status))]
        assert statuses == Counter({"sent": 4 * len(ZONES)})
        assert enrollments == [EnrollmentStatus.completed.value] * len(ZONES)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_hourly_runs_keep_their_gaps_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    upgrade(engine)
    try:
        server, config, zones = _simulate(engine, tmp_path, days=35)
        _check_quarter_rules(server, config, zones)
    finally:
        engine.dispose()


def test_a_retried_send_pushes_the_next_step_back(engine: Engine, tmp_path: Path) -> None:
    """The case study counts its four days from when the welcome finally went out, not when it was queued."""
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    data["compliance"] = {}
    config = WorkspaceConfig.model_validate(data)
    with session_scope(engine) as session:
        session.add(Lead(email="late@example.com", stage=Stage.prospect))
    server = Server(refuse_first={"late@example.com"})
    renderer = TemplateRenderer(tmp_path / "templates")
    start = datetime(2026, 11, 2, 9, 0)

    def run(now: datetime) -> int:
        server.now = now
        with session_scope(engine) as session:
            enroll(session=session, config=config, now=now)
            queued = queue_due_steps(session=session, config=config, now=now)
        send_due(engine=engine, transports=[cast(MailTransport, server)], clock=fixed_clock(now), batch_size=10,
                 config=config, renderer=renderer, links=LINKS)  # fmt: skip
        return queued

    assert run(start) == 1  # the welcome, refused once by the server
    assert server.accepted == []
    welcome_sent = start + 6 * HOUR
    assert run(welcome_sent) == 0  # retried and accepted now
    assert [key for _, key, _ in server.accepted] == ["nurture:1:0"]
    assert run(start + 4 * timedelta(days=1)) == 0  # four days after queuing: too early
    assert run(welcome_sent + 4 * timedelta(days=1)) == 1
    assert [at for _, _, at in server.accepted] == [welcome_sent, welcome_sent + 4 * timedelta(days=1)]
