"""A separate process that takes a lease, says `held` on stdout, and holds it (tests kill it with SIGKILL).

python -m tests.leads.lease_holder URL NAME HOLDER [--heartbeat S] [--stale S] [--hold S] [--elsewhere HOST]
    [--rounds N] [--log FILE] [--flows]

--elsewhere records a made-up machine as the holder's process, as a run on another machine would look.
--log appends `in HOLDER` and `out HOLDER` around each hold (one line each, O_APPEND), for overlap checks.
--flows takes it through flows.ops.single_writer, as a flow run does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

from leadflow.leads.db.engine import make_engine
from leadflow.leads.work.leases import holding
from leadflow.leads.work.processes import ProcessId


def _log(path: str | None, line: str) -> None:
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{line}\n".encode())
        finally:
            os.close(fd)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("holder")
    parser.add_argument("--heartbeat", type=float, default=20.0)
    parser.add_argument("--stale", type=float, default=75.0)
    parser.add_argument("--hold", type=float, default=600.0)
    parser.add_argument("--wait", type=float, default=0.0)
    parser.add_argument("--poll", type=float, default=0.25)
    parser.add_argument("--elsewhere")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--log")
    parser.add_argument("--flows", action="store_true")
    args = parser.parse_args(argv)
    engine = make_engine(args.url)
    process = ProcessId(args.elsewhere, os.getpid(), f"host {args.elsewhere}", None) if args.elsewhere else None
    for _ in range(args.rounds):
        lease: AbstractContextManager[Any]
        if args.flows:
            from leadflow.flows.ops import single_writer

            lease = single_writer(engine, args.name, wait=args.wait, poll=args.poll)
        else:
            lease = holding(
                engine, args.name, holder=args.holder, wait=args.wait, poll=args.poll,
                heartbeat=timedelta(seconds=args.heartbeat), stale_after=timedelta(seconds=args.stale),
                process=process,
            )  # fmt: skip
        with lease:
            _log(args.log, f"in {args.holder}")
            print("held", flush=True)
            time.sleep(args.hold)  # the behaviour under test: the lease is held this long
            _log(args.log, f"out {args.holder}")
    engine.dispose()


if __name__ == "__main__":
    main(sys.argv[1:])
