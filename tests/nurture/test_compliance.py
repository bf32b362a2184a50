"""The compliance gate at send time: send windows in each lead's time zone, the frequency cap
across sequences, the suppression log and consent; the rules alone, then through the outbox to a
real SMTP server (aiosmtpd) on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from leadflow.connectors.mail import SMTPTransport
from leadflow.leads.config.compliance import ComplianceConfig, ConsentRule, FrequencyCap, SendWindow
from leadflow.leads.config.workspace import ConfigError, WorkspaceConfig, load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import EmailOutbox, Lead, OutboxStatus, SuppressionReason
from leadflow.leads.ingest.parser import parse_activity
from leadflow.leads.ingest.records import RecordError
from leadflow.leads.ingest.store import store_batch
from leadflow.nurture import compliance
from leadflow.nurture.compliance import Recipient, cap_frees_at, next_window_opening
from leadflow.nurture.outbox import claim, send_claimed
from leadflow.nurture.render import TemplateRenderer
from leadflow.nurture.suppression import suppress
from tests import factories as make
from tests.nurture.test_outbox import EXAMPLE, LINKS, _queue
from tests.peers import RecordingHandler

WEDNESDAY = datetime(2026, 11, 25, 7, 30)  # naive UTC; Amsterdam is UTC+1, New York UTC-5, Tokyo UTC+9
OFFICE = SendWindow(days=["mon", "tue", "wed", "thu", "fri"], start=time(9), end=time(17), default_timezone="UTC")


# --- the rules ----------------------------------------------------------------------------------


def test_send_window_is_the_leads_own_office_hours() -> None:
    assert next_window_opening(OFFICE, "Asia/Tokyo", WEDNESDAY) is None  # 16:30 in Tokyo
    assert next_window_opening(OFFICE, "Europe/Amsterdam", WEDNESDAY) == datetime(2026, 11, 25, 8, 0)  # 08:30 there
    assert next_window_opening(OFFICE, "America/New_York", WEDNESDAY) == datetime(2026, 11, 25, 14, 0)  # 02:30 there
    # No time zone, or one nobody knows: the configured default (UTC here): 07:30 → 09:00.
    assert next_window_opening(OFFICE, None, WEDNESDAY) == datetime(2026, 11, 25, 9, 0)
    assert next_window_opening(OFFICE, "Mars/Olympus_Mons", WEDNESDAY) == datetime(2026, 11, 25, 9, 0)
    # 17:00 sharp has closed; the last minute before is open.
    assert next_window_opening(OFFICE, "UTC", datetime(2026, 11, 25, 16, 59)) is None
    assert next_window_opening(OFFICE, "UTC", datetime(2026, 11, 25, 17, 0)) == datetime(2026, 11, 26, 9, 0)


def test_weekends_and_daylight_saving_time() -> None:
    friday_evening = datetime(2026, 11, 27, 16, 30)  # 17:30 in Amsterdam
    assert next_window_opening(OFFICE, "Europe/Amsterdam", friday_evening) == datetime(2026, 11, 30, 8, 0)  # Monday
    # Clocks go forward in Europe on Sunday 29 March 2026: Monday 09:00 is 07:00 UTC, not 08:00.
    saturday = datetime(2026, 3, 28, 12, 0)
    assert next_window_opening(OFFICE, "Europe/Amsterdam", saturday) == datetime(2026, 3, 30, 7, 0)
    # In Sydney it is already Monday 08:00 on Sunday 21:00 UTC; the window opens an hour later.
    weekend = SendWindow(days=["mon"], start=time(9), end=time(10))
    assert next_window_opening(weekend, "Australia/Sydney", datetime(2026, 11, 29, 21, 0)) == datetime(
        2026, 11, 29, 22, 0
    )


def test_frequency_cap_counts_a_rolling_window() -> None:
    cap = FrequencyCap(max_emails=2, per_days=7)
    now = WEDNESDAY
    assert cap_frees_at(cap, [], now) is None
    assert cap_frees_at(cap, [now - timedelta(days=1)], now) is None
    two = [now - timedelta(days=6), now - timedelta(days=1)]
    assert cap_frees_at(cap, two, now) == now + timedelta(days=1)  # when the older one ages out
    assert cap_frees_at(cap, [now - timedelta(days=8), now - timedelta(days=1)], now) is None


def test_consent_rules() -> None:
    anyone = ConsentRule()
    required = ConsentRule(required=True)
    germany = ConsentRule(required=True, countries=["de"])
    assert germany.countries == ["DE"]
    unknown, given, withdrawn = (
        Recipient("a@x.com"),
        Recipient("a@x.com", consent=True),
        Recipient("a@x.com", consent=False),
    )
    assert compliance.consent_missing(anyone, unknown) is None
    assert compliance.consent_missing(anyone, withdrawn) == "consent withdrawn"  # always honoured
    assert compliance.consent_missing(required, unknown) == "no consent"
    assert compliance.consent_missing(required, given) is None
    assert compliance.consent_missing(germany, Recipient("a@x.com", country="NL")) is None
    assert compliance.consent_missing(germany, Recipient("a@x.com", country="DE")) == "no consent"
    assert compliance.consent_missing(germany, Recipient("a@x.com")) == "no consent"  # country unknown
    assert compliance.consent_missing(germany, Recipient("a@x.com", country="DE", consent=True)) is None


def test_consent_arrives_as_a_profile_field_of_an_activity_record(engine: Engine) -> None:
    def record(n: int, consent: object) -> dict[str, object]:
        return {
            "id": f"c{n}",
            "email": f"c{n}@example.com",
            "type": "form_submit",
            "at": "2026-11-01T10:00:00Z",
            "lead": {"consent": consent},
        }

    parsed = [parse_activity(record(n, v), now=WEDNESDAY) for n, v in enumerate([True, "yes", "opt-out", "0"])]
    assert [r.profile for r in parsed] == [{"consent": v} for v in (True, True, False, False)]
    with pytest.raises(RecordError) as bad:
        parse_activity(record(9, "maybe"), now=WEDNESDAY)
    assert bad.value.reason == "bad_profile" and "lead.consent" in str(bad.value)

    with session_scope(engine) as session:
        store_batch(session=session, source="forms", records=parsed)
    with Session(engine) as session:
        stored = dict(session.execute(select(Lead.email, Lead.consent)).all())
    assert stored == {"c0@example.com": True, "c1@example.com": True, "c2@example.com": False, "c3@example.com": False}


def _config_with(tmp_path: Path, compliance_yaml: str) -> Path:
    path = tmp_path / "leadflow.yaml"
    shipped = EXAMPLE.read_text()
    without = shipped[: shipped.index("\ncompliance:\n")]  # the example's own section is replaced
    path.write_text(without + "\ncompliance:\n" + compliance_yaml)
    return path


def test_compliance_config_reads_times_and_names_bad_keys(tmp_path: Path) -> None:
    good = load_config(
        _config_with(
            tmp_path,
            '  send_window: {days: [mon, fri], start: 8:30, end: "18:00", default_timezone: Europe/Berlin}\n'
            "  frequency_cap: {max_emails: 2, per_days: 7}\n"
            "  consent: {required: true, countries: [de, at]}\n",
        )
    )
    window = good.compliance.send_window
    assert window is not None and (window.start, window.end) == (time(8, 30), time(18, 0))  # 8:30 is YAML's 510
    assert good.compliance.consent.countries == ["DE", "AT"]

    for text, where, what in [
        ('  send_window: {start: "25:00"}\n', "compliance.send_window.start", "time of day"),
        ('  send_window: {start: "18:00", end: "09:00"}\n', "compliance.send_window", "start must be before end"),
        (
            "  send_window: {default_timezone: Europe/Atlantis}\n",
            "compliance.send_window.default_timezone",
            "unknown time zone",
        ),
        ("  send_window: {days: [monday]}\n", "compliance.send_window.days[0]", "mon"),
        ("  frequency_cap: {max_emails: 0, per_days: 7}\n", "compliance.frequency_cap.max_emails", "greater than"),
        ("  consent: {countries: [Germany]}\n", "compliance.consent.countries", "two-letter"),
        ("  quiet_hours: true\n", "compliance.quiet_hours", "unknown key"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_config(_config_with(tmp_path, text))
        message = str(caught.value)
        assert where in message and what in message, message
        assert "line " in message


# --- through the outbox to a real SMTP server ------------------------------------------------------


def _with(config: WorkspaceConfig, compliance_config: ComplianceConfig) -> WorkspaceConfig:
    return config.model_copy(update={"compliance": compliance_config})


def _run(engine: Engine, config: WorkspaceConfig, port: int, at: datetime) -> tuple[list[int], object]:
    with session_scope(engine) as session:
        ids = claim(session=session, now=at, limit=100)
    with SMTPTransport("127.0.0.1", port, timeout=5.0) as transport:
        report = send_claimed(
            engine=engine,
            ids=ids,
            config=config,
            renderer=TemplateRenderer(Path("/nonexistent")),
            transport=transport,
            links=LINKS,
            now=at,
        )
    return ids, report


def _received(mailbox: RecordingHandler) -> list[str]:
    return [r for m in mailbox.messages for r in m.rcpt_tos]


def _outbox(engine: Engine) -> dict[int, EmailOutbox]:
    with Session(engine) as session:
        return {row.lead_id: row for row in session.scalars(select(EmailOutbox))}


@pytest.fixture
def config() -> WorkspaceConfig:
    return load_config(EXAMPLE)


def test_quiet_hours_defer_each_lead_to_its_own_morning(
    engine: Engine, config: WorkspaceConfig, smtp_server: tuple[RecordingHandler, int]
) -> None:
    mailbox, port = smtp_server
    config = _with(config, ComplianceConfig(send_window=OFFICE))
    zones = {
        "tokyo@example.com": "Asia/Tokyo",
        "amsterdam@example.com": "Europe/Amsterdam",
        "ny@example.com": "America/New_York",
    }
    ids = _queue(engine, config, WEDNESDAY, *zones)
    with session_scope(engine) as session:
        for address, zone in zones.items():
            session.get(Lead, ids[address]).timezone = zone  # type: ignore[union-attr]

    _, report = _run(engine, config, port, WEDNESDAY)
    assert report.sent == 1 and report.deferred == Counter({"quiet hours": 2})  # type: ignore[attr-defined]
    assert _received(mailbox) == ["tokyo@example.com"]
    rows = _outbox(engine)
    amsterdam, ny = rows[ids["amsterdam@example.com"]], rows[ids["ny@example.com"]]
    assert (amsterdam.status, amsterdam.next_attempt_at, amsterdam.attempts) == (
        "pending",
        datetime(2026, 11, 25, 8),
        0,
    )
    assert (ny.status, ny.next_attempt_at, ny.attempts) == ("pending", datetime(2026, 11, 25, 14), 0)
    assert amsterdam.last_error == "deferred: quiet hours"

    assert _run(engine, config, port, datetime(2026, 11, 25, 7, 59))[0] == []  # not before its morning
    assert _run(engine, config, port, datetime(2026, 11, 25, 8, 0))[1].sent == 1  # type: ignore[attr-defined]
    assert _run(engine, config, port, datetime(2026, 11, 25, 14, 0))[1].sent == 1  # type: ignore[attr-defined]
    assert sorted(_received(mailbox)) == sorted(zones)  # each exactly once
    assert all(row.status == OutboxStatus.sent and row.attempts == 1 for row in _outbox(engine).values())


def test_frequency_cap_across_sequences_defers_then_sends(
    engine: Engine, config: WorkspaceConfig, smtp_server: tuple[RecordingHandler, int]
) -> None:
    mailbox, port = smtp_server
    config = _with(config, ComplianceConfig(frequency_cap=FrequencyCap(max_emails=1, per_days=7)))
    ids = _queue(engine, config, WEDNESDAY, "busy@example.org", "quiet@example.org")
    # busy@ got an email from another sequence two days ago.
    sent = make.email_outbox(
        ids["busy@example.org"],
        idempotency_key="other:1:0",
        sequence="product-news",
        step=0,
        status=OutboxStatus.sent.value,
        attempts=1,
        next_attempt_at=WEDNESDAY - timedelta(days=2),
        created_at=WEDNESDAY - timedelta(days=2),
        sent_at=WEDNESDAY - timedelta(days=2),
    )
    make.add(engine, sent)

    _, report = _run(engine, config, port, WEDNESDAY)
    assert report.sent == 1 and report.deferred == Counter({"frequency cap": 1})  # type: ignore[attr-defined]
    assert _received(mailbox) == ["quiet@example.org"]
    with Session(engine) as session:
        row = session.scalars(
            select(EmailOutbox).where(EmailOutbox.lead_id == ids["busy@example.org"], EmailOutbox.sequence == "warm-up")
        ).one()
    assert (row.status, row.next_attempt_at, row.attempts) == ("pending", WEDNESDAY + timedelta(days=5), 0)

    assert _run(engine, config, port, WEDNESDAY + timedelta(days=4))[0] == []
    assert _run(engine, config, port, WEDNESDAY + timedelta(days=5))[1].sent == 1  # type: ignore[attr-defined]
    assert sorted(_received(mailbox)) == ["busy@example.org", "quiet@example.org"]


def test_suppressed_after_queuing_is_not_mailed(
    engine: Engine, config: WorkspaceConfig, smtp_server: tuple[RecordingHandler, int]
) -> None:
    mailbox, port = smtp_server
    addresses = ("stays@example.com", "manual@example.com", "complained@example.com", "series@example.com")
    ids = _queue(engine, config, WEDNESDAY, *addresses)
    # After the emails were queued: a manual do-not-contact, a spam complaint, an unsubscribe from this series.
    with session_scope(engine) as session:
        for address, scope, reason in [
            ("manual@example.com", "all", SuppressionReason.manual),
            ("complained@example.com", "all", SuppressionReason.complained),
            ("series@example.com", "warm-up", SuppressionReason.unsubscribed),
        ]:
            suppress(session=session, lead_id=ids[address], scope=scope, reason=reason, source="cli", now=WEDNESDAY)

    _, report = _run(engine, config, port, WEDNESDAY)
    assert report.sent == 1  # type: ignore[attr-defined]
    assert report.skipped == Counter(  # type: ignore[attr-defined]
        {"do not contact": 1, "complained": 1, "unsubscribed": 1}
    )
    assert _received(mailbox) == ["stays@example.com"]
    rows = _outbox(engine)
    assert {a: rows[ids[a]].status for a in addresses} == {
        "stays@example.com": "sent",
        "manual@example.com": "skipped",
        "complained@example.com": "skipped",
        "series@example.com": "skipped",
    }
    assert _run(engine, config, port, WEDNESDAY + timedelta(days=30))[0] == []


def test_consent_required_only_consenting_leads_are_mailed(
    engine: Engine, config: WorkspaceConfig, smtp_server: tuple[RecordingHandler, int]
) -> None:
    mailbox, port = smtp_server
    config = _with(config, ComplianceConfig(consent=ConsentRule(required=True, countries=["DE"])))
    leads = {
        "de-yes@example.com": ("DE", True),
        "de-unknown@example.com": ("DE", None),
        "nl-unknown@example.com": ("NL", None),
        "nl-withdrawn@example.com": ("NL", False),
    }
    ids = _queue(engine, config, WEDNESDAY, *leads)
    with session_scope(engine) as session:
        for address, (country, consent) in leads.items():
            lead = session.get(Lead, ids[address])
            lead.country, lead.consent = country, consent  # type: ignore[union-attr]

    _, report = _run(engine, config, port, WEDNESDAY)
    assert report.sent == 2  # type: ignore[attr-defined]
    assert report.skipped == Counter({"no consent": 1, "consent withdrawn": 1})  # type: ignore[attr-defined]
    assert sorted(_received(mailbox)) == ["de-yes@example.com", "nl-unknown@example.com"]
