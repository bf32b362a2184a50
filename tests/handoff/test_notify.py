"""Owner and manager notifications through apprise, to real loopback peers (json:// and an SMTP server)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from sqlalchemy import Engine, select, update
from sqlmodel import Session

from leadflow.connectors.notify import AppriseNotifier
from leadflow.handoff.notify import NotifyReport, send_notifications, unsent_notifications
from leadflow.leads.config.workspace import WorkspaceConfig
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Lead, NotificationOutbox, OutboxStatus
from tests.handoff.helpers import OWNERS, T0, TEAMS, add_sql, config
from tests.handoff.notify_peer import NotifyServer
from tests.handoff.test_assignment import run_queue
from tests.handoff.test_sla import check

HUBSPOT = "https://app.hubspot.com/contacts/4711/record/0-1/{id}"


def notify_config(port: int, **extra: Any) -> WorkspaceConfig:
    owners = [{**o, "notify": f"json://127.0.0.1:{port}/owners/anna"} if o["id"] == "anna" else o for o in OWNERS]
    benelux = {
        **TEAMS[0],
        "notify": f"json://127.0.0.1:{port}/${{TEAM_PATH}}",
        "manager": f"json://127.0.0.1:{port}/mgr",
    }
    extra.setdefault("notify", {"crm_links": {"hubspot": HUBSPOT}})
    return config(owners=owners, teams=[benelux, *TEAMS[1:]], **extra)


def send(engine: Engine, cfg: WorkspaceConfig, hours: float = 0, env: dict[str, str] | None = None) -> NotifyReport:
    return send_notifications(
        engine=engine,
        config=cfg,
        notifier=AppriseNotifier(),
        env={"TEAM_PATH": "team-benelux"} if env is None else env,
        now=T0 + timedelta(hours=hours),
    )


def statuses(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return list(session.execute(select(NotificationOutbox.status).order_by(NotificationOutbox.id)).scalars())


def test_each_owner_hears_once_why_and_where(engine: Engine) -> None:
    with NotifyServer() as server:
        cfg = notify_config(server.port)
        add_sql(engine, "first@nl.example")
        add_sql(engine, "second@nl.example")
        with Session(engine) as session:
            session.execute(update(Lead).where(Lead.email == "first@nl.example").values(crm_ids={"hubspot": "555"}))
            session.commit()
        run_queue(engine, cfg)
        report = send(engine, cfg)
        assert report.sent == Counter({"assigned": 2})

        by_path = {p.path: p.body for p in server.inbox.posts}
        assert set(by_path) == {"/owners/anna", "/team-benelux"}  # bram has no URL of his own: his team's
        anna = by_path["/owners/anna"]
        assert anna["title"] == "New SQL for you: First (Acme)"
        assert "Why: hand raise: demo_request" in anna["message"]
        assert "Score: 120 (fit 40, engagement 80)" in anna["message"]
        assert "Open: https://app.hubspot.com/contacts/4711/record/0-1/555" in anna["message"]
        assert "Owner: Anna de Vries" in anna["message"]
        assert "Open: leadflow explain second@nl.example" in by_path["/team-benelux"]["message"]

        # Again, and after another assignment run: nobody is told twice.
        run_queue(engine, cfg)
        assert send(engine, cfg, hours=1) == NotifyReport()
        assert len(server.inbox.posts) == 2


def test_failures_retry_then_dead_letter(engine: Engine) -> None:
    with NotifyServer() as server:
        cfg = notify_config(server.port, dead_letter_after={"attempts": 2, "hours": None})
        add_sql(engine, "first@nl.example")
        add_sql(engine, "second@nl.example")
        run_queue(engine, cfg)
        server.inbox.script.extend([500, 503])
        assert send(engine, cfg).retried == 2
        assert send(engine, cfg, hours=0.001) == NotifyReport()  # not due yet (backoff)
        server.inbox.script.extend([500])
        report = send(engine, cfg, hours=1)
        assert report.dead == 1 and report.sent == Counter({"assigned": 1})
        assert sorted(statuses(engine)) == ["dead", "sent"]
        assert len(server.inbox.posts) == 4


def test_missing_url_or_variable(engine: Engine) -> None:
    with NotifyServer() as server:
        cfg = notify_config(server.port)
        add_sql(engine, "first@nl.example")  # anna: her own URL
        add_sql(engine, "second@nl.example")  # bram: the team URL, which needs ${TEAM_PATH}
        add_sql(engine, "us@x.example", country="US")  # erik: no URL anywhere
        run_queue(engine, cfg)
        report = send(engine, cfg, env={})
        assert (report.sent, report.dead, report.skipped) == (Counter({"assigned": 1}), 1, 1)
        assert report.errors == ["owner:bram: the notification URL needs ${TEAM_PATH}, which is not set"]
        assert len(server.inbox.posts) == 1


def test_escalation_reaches_the_manager(engine: Engine) -> None:
    with NotifyServer() as server:
        cfg = notify_config(server.port, sla={"hours": 24, "on_breach": "escalate"})
        add_sql(engine, "first@nl.example")
        run_queue(engine, cfg)
        check(engine, cfg, 25)
        report = send(engine, cfg, hours=25)
        assert report.sent == Counter({"assigned": 1, "escalated": 1})
        manager = next(p.body for p in server.inbox.posts if p.path == "/mgr")
        assert manager["title"] == "Escalation: First (Acme) was not followed up within 24 h"
        assert "Owner: Anna de Vries" in manager["message"] and "Why: hand raise" in manager["message"]
        check(engine, cfg, 30)
        assert send(engine, cfg, hours=30) == NotifyReport()


def test_mail_to_an_owner_through_smtp(engine: Engine, smtp_server: tuple[Any, int]) -> None:
    smtp, port = smtp_server
    url = f"mailto://127.0.0.1:{port}?from=leadflow@acme.example&to=anna@acme.example&secure=no"
    owners = [{**o, "notify": url} if o["id"] == "anna" else o for o in OWNERS]
    cfg = config(owners=owners)
    add_sql(engine, "first@nl.example")
    run_queue(engine, cfg)
    with Session(engine) as session:  # whatever a lead typed into a form is shown, never run
        session.execute(update(Lead).values(last_name="<script>x()</script>"))
        session.commit()
    assert send(engine, cfg).sent == Counter({"assigned": 1})
    [received] = smtp.messages
    assert received.rcpt_tos == ["anna@acme.example"]
    assert received.message["Subject"] == "New SQL for you: First <script>x()</script> (Acme)"
    text = received.message.get_body(("plain",)).get_content()
    assert "\nWhy: hand raise: demo_request" in text.replace("\r\n", "\n")
    assert "Open: leadflow explain first@nl.example" in text
    html = received.message.get_body(("html",)).get_content()
    assert "<br/>" in html and "<script>" not in html and "&lt;script&gt;" in html
    with session_scope(engine) as session:
        assert session.execute(select(NotificationOutbox.status)).scalar_one() == OutboxStatus.sent


def test_the_next_owner_hears_why_it_was_reassigned(engine: Engine) -> None:
    with NotifyServer() as server:
        cfg = notify_config(server.port, sla={"hours": 24})
        add_sql(engine, "first@nl.example")
        run_queue(engine, cfg)
        assert send(engine, cfg).sent == Counter({"assigned": 1})
        assert check(engine, cfg, 25).reassigned == Counter({"bram": 1})
        assert send(engine, cfg, hours=25).sent == Counter({"assigned": 1})
        bram = server.inbox.posts[-1]
        assert bram.path == "/team-benelux" and bram.body["title"] == "New SQL for you: First (Acme)"
        assert "Reassigned to you: SLA of 24 h missed by anna; round robin in team benelux" in bram.body["message"]
        assert "Owner: Bram Peeters" in bram.body["message"]


def test_a_run_sends_every_due_notification_in_batches_or_says_why_not(engine: Engine) -> None:
    with NotifyServer() as server:
        cfg = notify_config(server.port)
        for n in range(9):
            add_sql(engine, f"l{n}@nl.example")
        run_queue(engine, cfg)

        def run(**kwargs: Any) -> NotifyReport:
            env = {"TEAM_PATH": "team-benelux"}
            clock = lambda: T0  # noqa: E731  (a clock that stands still: the test decides when it is)
            return send_notifications(
                engine=engine, config=cfg, notifier=AppriseNotifier(), env=env, clock=clock, **kwargs
            )

        capped = run(batch_size=2, limit=3)
        assert (
            capped.sent == Counter({"assigned": 3})
            and capped.stopped == "the limit of 3 notifications per run was reached"
        )
        server.inbox.script.extend([503, 503])  # the next batch fails whole: the run stops there
        failing = run(batch_size=2)
        assert (failing.sent, failing.retried) == (Counter(), 2) and failing.stopped
        assert "a whole batch of 2 failed" in failing.stopped and "owner:" in failing.stopped
        rest = run(batch_size=2)  # the peer is back: the rest (not the two waiting for their retry) in two batches
        assert rest.sent == Counter({"assigned": 4}) and rest.stopped is None
        with Session(engine) as session:
            assert unsent_notifications(session) == 2  # the two to retry after their backoff
        assert len(server.inbox.posts) == 3 + 2 + 4
