"""Leases with real processes: a killed holder is taken over promptly, a live one never, on SQLite and PostgreSQL.

The holder runs in its own process (tests/leads/lease_holder.py) and is killed with SIGKILL, as `kill -9`
or the OOM killer would. Heartbeat and staleness are seconds here instead of 20 s and 75 s.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from leadflow.leads.db.engine import make_engine, upgrade
from leadflow.leads.db.models import utcnow
from leadflow.leads.work.leases import (
    HEARTBEAT,
    STALE_AFTER,
    LeaseBusy,
    LeaseHeld,
    LeaseState,
    acquire_lease,
    holding,
    read_leases,
    release_for_admin,
    release_lease,
)
from tests.leads.holders import holder, start, wait_held
from tests.waiting import until

NAME = "leadflow:nurture:enrollments"


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _lease(engine: Engine, name: str = NAME):  # type: ignore[no-untyped-def]
    return next(info for info in read_leases(engine) if info.name == name)


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _unreaped_exit(pid: int) -> int | None:
    """The signal that ended a child not reaped yet (its other threads may take a moment to end)."""
    deadline = time.monotonic() + 30
    while (child := os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)) is None:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)
    return child.si_status


def test_a_dead_holder_is_taken_over_within_two_minutes_by_default() -> None:
    assert HEARTBEAT * 3 < STALE_AFTER <= timedelta(minutes=2)


def test_a_lease_has_one_holder_until_released(engine: Engine) -> None:
    assert acquire_lease(engine, "ingest:web", holder="a")
    assert not acquire_lease(engine, "ingest:web", holder="b")  # a is this process: alive
    assert acquire_lease(engine, "ingest:crm", holder="b")  # another name is another lease
    with pytest.raises(LeaseBusy, match=r"ingest:web is held by run a \(pid \d+ on host .*waited 0 s"):
        with holding(engine, "ingest:web", holder="b", wait=0.3, poll=0.1):
            pass
    release_lease(engine, "ingest:web", holder="b")  # not b's to release
    assert not acquire_lease(engine, "ingest:web", holder="b")
    release_lease(engine, "ingest:web", holder="a")
    with holding(engine, "ingest:web", holder="c"):
        assert not acquire_lease(engine, "ingest:web", holder="a")
        info = _lease(engine, "ingest:web")
        assert (info.holder, info.pid, info.state(utcnow())) == ("c", os.getpid(), LeaseState.alive)
    assert acquire_lease(engine, "ingest:web", holder="a")  # released when the block ended


def test_a_holder_killed_on_this_machine_is_taken_over_at_once(engine: Engine) -> None:
    """Its heartbeat would keep it for an hour; its pid being gone frees it. Not reaped: a zombie is dead too."""
    proc = start(_url(engine), NAME, "run-1", "--heartbeat", "3600", "--stale", "3600")
    try:
        wait_held(proc)
        assert _lease(engine).state(utcnow()) is LeaseState.alive
        _kill(proc.pid)
        said: list[str] = []
        with holding(engine, NAME, holder="run-2", wait=30, poll=0.05, notify=said.append):
            assert _unreaped_exit(proc.pid) == signal.SIGKILL  # taken over while the process was not reaped
            info = _lease(engine)
            assert (info.holder, info.pid) == ("run-2", os.getpid())
            assert info.expires_at is not None and info.expires_at < utcnow() + timedelta(hours=1)
        assert any(f"took over {NAME} from run run-1 (pid {proc.pid}" in line and "dead" in line for line in said)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=60)


def test_a_holder_on_another_machine_keeps_its_lease_while_it_beats_and_loses_it_once_killed(engine: Engine) -> None:
    args = ("--elsewhere", "box-2", "--heartbeat", "0.2", "--stale", "3")
    with holder(_url(engine), NAME, "run-1", *args) as proc:
        first = _lease(engine).heartbeat_at
        with pytest.raises(LeaseBusy, match="held by run run-1"):  # longer than the staleness limit: it keeps beating
            with holding(engine, NAME, holder="run-2", wait=5, poll=0.1):
                pass
        info = _lease(engine)
        assert info.host == "box-2" and info.state(utcnow()) is LeaseState.alive and not info.here
        assert info.heartbeat_at is not None and first is not None and info.heartbeat_at > first
        _kill(proc.pid)
        proc.wait(timeout=60)
        last = _lease(engine)
        said: list[str] = []
        with holding(engine, NAME, holder="run-2", wait=60, poll=0.1, notify=said.append):
            taken_at = utcnow()
        assert last.expires_at is not None and taken_at >= last.expires_at  # not before its heartbeat went stale
        assert any("took over" in line and "box-2" in line and "stale" in line for line in said)


def test_a_live_holder_on_this_machine_keeps_its_lease_even_when_its_heartbeat_lags(engine: Engine) -> None:
    """A long database lock can hold up heartbeats; a process this machine sees running keeps its lease."""
    with holder(_url(engine), NAME, "run-1", "--heartbeat", "3600", "--stale", "0.5") as proc:
        # Time must pass here: the holder's one heartbeat goes stale after 0.5 s.
        until("the heartbeat went stale", lambda: (e := _lease(engine).expires_at) is not None and e < utcnow())
        info = _lease(engine)
        assert info.expires_at is not None and info.expires_at < utcnow()  # stale by its heartbeat
        assert info.state(utcnow()) is LeaseState.alive
        with pytest.raises(LeaseBusy, match=f"pid {proc.pid}"):
            with holding(engine, NAME, holder="run-2", wait=2, poll=0.1):
                pass
        assert proc.poll() is None and _lease(engine).holder == "run-1"


def test_contending_processes_never_hold_it_together(engine: Engine, tmp_path: Path) -> None:
    """Three processes take it four times each; heartbeats stale all along, so only pids and the CAS guard it."""
    log = tmp_path / "holds.log"
    args = (
        "--rounds",
        "4",
        "--hold",
        "0.1",
        "--wait",
        "300",
        "--poll",
        "0.02",
        "--heartbeat",
        "3600",
        "--stale",
        "0.05",
    )
    procs = [start(_url(engine), NAME, f"run-{n}", *args, "--log", str(log)) for n in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
    lines = log.read_text().splitlines()
    assert len(lines) == 24
    for enter, leave in zip(lines[::2], lines[1::2], strict=True):
        assert enter.startswith("in ") and leave == f"out {enter[3:]}", lines  # nobody entered before it left
    assert _lease(engine).state(utcnow()) is LeaseState.free


def test_a_flow_step_killed_mid_way_is_taken_over_by_the_next_run(engine: Engine) -> None:
    """flows.ops.single_writer: the next nurture run gets the step at once instead of waiting 600 s."""
    from leadflow.flows.ops import single_writer

    with holder(_url(engine), "nurture:enrollments", "-", "--flows") as proc:
        info = _lease(engine)
        assert info.holder and info.holder.startswith("local-") and info.pid == proc.pid
        _kill(proc.pid)
        proc.wait(timeout=60)
        with single_writer(engine, "nurture:enrollments", wait=0):
            assert _lease(engine).pid == os.getpid()


def test_a_lease_released_by_an_admin_is_lost_by_its_holder(engine: Engine) -> None:
    said: list[str] = []
    with holding(engine, NAME, holder="run-1", heartbeat=timedelta(seconds=0.1), notify=said.append) as lease:
        with pytest.raises(LeaseHeld):
            release_for_admin(engine, NAME)
        freed = release_for_admin(engine, NAME, force=True)
        assert freed.holder == "run-1" and _lease(engine).holder is None
        deadline = time.monotonic() + 30
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lease.lost
        assert acquire_lease(engine, NAME, holder="run-2")
    assert _lease(engine).holder == "run-2"  # the old holder's exit did not free the new holder's lease
    assert any("no longer held by this run" in line for line in said)


def test_a_lease_held_before_the_upgrade_keeps_its_expiry_then_is_taken_over(db_url: str) -> None:
    """Rows of 0008 have no process or heartbeat: their old expiry still says when they may be taken."""
    engine = make_engine(db_url)
    try:
        upgrade(engine, "0008")
        now = utcnow()
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO work_lease (name, holder, acquired_at, expires_at) VALUES (:n, :h, :a, :e)"),
                [
                    {"n": "leadflow:ingest:web", "h": "old-run", "a": now, "e": now + timedelta(minutes=30)},
                    {"n": "leadflow:handoff:queue", "h": "older-run", "a": now, "e": now - timedelta(minutes=1)},
                ],
            )
        upgrade(engine)
        states = {info.name: (info.holder, info.state(utcnow())) for info in read_leases(engine)}
        assert states == {
            "leadflow:ingest:web": ("old-run", LeaseState.alive),
            "leadflow:handoff:queue": ("older-run", LeaseState.stale),
        }
        assert not acquire_lease(engine, "leadflow:ingest:web", holder="new")
        assert acquire_lease(engine, "leadflow:handoff:queue", holder="new")
    finally:
        engine.dispose()
