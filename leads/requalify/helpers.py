"""Helper processes that score shards of a requalify round beside the flow's own process.

Scoring a shard is CPU work in Python and numpy; one process uses one core. A requalify run
with `processes > 1` starts that many minus one of these helpers; each claims shards of the same
round through `leadflow.leads.work.claims`, exactly as another worker would, so no lead is scored twice and a
helper that dies leaves its shard to be taken over. Helpers are plain Python processes
(`python -m leadflow.leads.requalify.helpers`) that import only `leads`: they start in well under a second
and know nothing of Prefect. Nothing secret goes on their command line: they read the workspace's
settings (and its database URL) the way the flow does, from the folder and the environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import traceback
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import IO

from leadflow.leads.requalify.rounds import drain_round
from leadflow.leads.requalify.run import BatchResult
from leadflow.leads.workspace import open_workspace


@dataclass
class Helper:
    name: str
    process: subprocess.Popen[str]
    errors: IO[str]  # its stderr, in a temporary file (a pipe nobody reads could fill and stall it)

    output: tuple[str, str] | None = None  # (stdout, stderr) once it ended

    def failed(self) -> bool:
        return self.process.poll() not in (None, 0)

    def wait(self) -> tuple[str, str]:
        if self.output is None:
            out, _ = self.process.communicate()
            self.errors.seek(0)
            self.output = (out, self.errors.read())
            self.errors.close()
        return self.output


READY = "ready"


class HelperFailed(RuntimeError):
    """A helper process ended with an error; its shard is taken over by the next run after the lease."""


MAX_DEFAULT_PROCESSES = 4  # beyond this the database, not the CPU, bounds a round


def default_processes() -> int:
    """One scoring process per CPU core this process may run on, at most MAX_DEFAULT_PROCESSES."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_DEFAULT_PROCESSES))


def start_helpers(count: int, *, workspace: str | None, round_id: int, now: datetime, worker: str) -> list[Helper]:
    """Start `count` helpers on the round and wait until they are ready; they run until no shard is left."""
    helpers = []
    for n in range(1, count + 1):
        name = f"{worker}/p{n}"
        command = [sys.executable, "-m", "leadflow.leads.requalify.helpers", "--round", str(round_id)]
        command += ["--as-of", now.isoformat(), "--worker", name]
        if workspace:
            command += ["--workspace", workspace]
        errors = tempfile.TemporaryFile("w+")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=os.environ)
        helpers.append(Helper(name, process, errors))
    for helper in helpers:  # ready (config read, database open), or ended: either way the caller goes on
        assert helper.process.stdout is not None
        helper.process.stdout.readline()
    return helpers


def finish_helpers(helpers: list[Helper]) -> tuple[BatchResult, int]:
    """Wait for the helpers; what they scored together and how many shards. Raises if one failed."""
    total, shards, failed = BatchResult(), 0, []
    for helper in helpers:
        out, err = helper.wait()
        if helper.process.returncode != 0:
            tail = err.strip().splitlines()[-1:] or ["(no output)"]
            failed.append(f"{helper.name} exited with {helper.process.returncode}: {tail[0][:500]}")
            continue
        done = json.loads(out.strip().splitlines()[-1])
        moves = Counter({(m[0], m[1]): m[2] for m in done["moves"]})
        total = total.merge(BatchResult(done["leads"], done["rescored"], moves))
        shards += done["shards"]
    if failed:
        raise HelperFailed("requalify helper failed: " + "; ".join(failed))
    return total, shards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m leads.requalify_helpers", description=__doc__)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--as-of", required=True, type=datetime.fromisoformat)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--workspace", default=None)
    args = parser.parse_args(argv)
    try:
        with open_workspace(args.workspace, migrate=False) as ws:  # the run that started it migrated
            print(READY, flush=True)
            total, shards = drain_round(ws.engine, ws.config, round_id=args.round, now=args.as_of, worker=args.worker)
    except Exception as exc:  # one line for the flow's error (the traceback stays in this process's stderr)
        traceback.print_exc()
        print(f"{type(exc).__name__}: " + " / ".join(str(exc).split("\n"))[:500], file=sys.stderr)
        return 1
    moves = [[f, t, n] for (f, t), n in sorted(total.moves.items())]
    print(json.dumps({"leads": total.leads, "rescored": total.rescored, "moves": moves, "shards": shards}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
