"""Two workers' first runs open a fresh database at the same moment: both migrate, neither fails."""

from __future__ import annotations

import threading

from leadflow.leads.db.engine import current_revision, make_engine, upgrade
from tests.leads.test_migrations import HEAD


def test_two_processes_migrating_a_fresh_database_at_once_both_succeed(db_url: str) -> None:
    start, errors = threading.Barrier(3), []

    def migrate() -> None:
        start.wait()
        try:
            upgrade(db_url)  # its own engine, as a separate process would have
        except Exception as exc:  # collected, so the assertion below shows what went wrong
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) == HEAD
    finally:
        engine.dispose()
