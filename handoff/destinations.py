"""Destinations switched off by a 410 Gone, remembered across runs.

A receiver that answers 410 says the endpoint is retired; hammering it on every run would be
rude and pointless. The destination stays off until `leadflow handoff enable NAME`, or until its
URL changes in the config (someone fixed it), which re-enables it by itself. Its handoffs wait.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from leadflow.leads.db.models import DisabledDestination


def url_hash(url: str) -> str:
    """A fingerprint of the URL; the URL itself may carry a token and is not stored."""
    return hashlib.sha256(url.strip().encode("utf-8")).hexdigest()


def disabled_reason(session: Session, name: str, url: str) -> str | None:
    """Why the destination is off, or None; a changed URL clears the switch."""
    row = session.get(DisabledDestination, name)
    if row is None:
        return None
    if row.url_hash != url_hash(url):
        session.delete(row)
        return None
    return f"disabled since {row.disabled_at:%Y-%m-%d %H:%M} UTC: {row.reason}"


def disable(session: Session, name: str, url: str, reason: str, now: datetime) -> None:
    row = session.get(DisabledDestination, name) or DisabledDestination(
        name=name, disabled_at=now, reason="", url_hash=""
    )
    row.disabled_at, row.reason, row.url_hash = now, reason[:500], url_hash(url)
    session.add(row)


def enable(session: Session, name: str) -> bool:
    """Switch a destination back on; False if it was not off."""
    return bool(session.exec(delete(DisabledDestination).where(col(DisabledDestination.name) == name)).rowcount)


def all_disabled(session: Session) -> list[DisabledDestination]:
    return list(session.exec(select(DisabledDestination).order_by(col(DisabledDestination.name))))
