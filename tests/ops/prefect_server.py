"""A real Prefect server (`prefect server start`) and workers as subprocesses, and its REST API.

Not the temporary test server: its own PREFECT_HOME and database in a temporary folder, on a free
port, with the full UI. Workers are `prefect worker start` processes on a process work pool, so
every flow run is a process of its own, as on an admin's machines.

The server runs as an admin's does: its scheduler on (on a short loop, so a test sees scheduled runs
within seconds), and the event triggers that automations (heartbeat-based crash detection included)
need. Only the late-runs, foreman and vacuum services are off, to spare the CPU. Tests read the REST
API directly (what the UI reads); Prefect's own CLI works against it too (tests/ops/test_prefect_admin.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.peers import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@dataclass
class PrefectServer:
    url: str  # the UI
    api: str
    env: dict[str, str]
    logs: Path

    def _send(self, method: str, path: str, body: Any = None) -> Any:
        # A server on SQLite answers 503 while its database is busy (workers poll every second): try again.
        for _ in range(10):
            response = httpx.request(method, f"{self.api}{path}", json=body, timeout=30)
            if response.status_code != 503:
                break
            time.sleep(0.5)
        assert response.is_success, f"{method} {path}: {response.status_code} {response.text[:2000]}"
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        return self._send("GET", path)

    def post(self, path: str, body: dict[str, Any] | list[Any]) -> Any:
        return self._send("POST", path, body)

    def delete(self, path: str) -> None:
        self._send("DELETE", path)

    def run(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A command (prefect, leadflow) against this server; fails the test with its output if it fails."""
        done = subprocess.run(
            [str(BIN / args[0]), *args[1:]],
            env={**self.env, **(env or {})},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        """A command against this server, in the background; `communicate()` to wait for it."""
        return subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            env=self.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def start_flow_run(self, deployment: str, parameters: dict[str, Any]) -> str:
        deployment_id = self.get(f"/deployments/name/{deployment}")["id"]
        return str(self.post(f"/deployments/{deployment_id}/create_flow_run", {"parameters": parameters})["id"])

    def wait_for(self, flow_run_ids: list[str], timeout: float = 120) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            runs = {i: self.get(f"/flow_runs/{i}") for i in flow_run_ids}
            if all(r["state"]["type"] in TERMINAL for r in runs.values()):
                return runs
            assert time.monotonic() < deadline, f"flow runs still going: {[r['state'] for r in runs.values()]}"
            time.sleep(0.5)

    def subflow_runs(self, flow_run_id: str) -> list[dict[str, Any]]:
        body = {"flow_runs": {"parent_flow_run_id": {"any_": [flow_run_id]}}, "limit": 200, "offset": 0}
        return self.post("/flow_runs/filter", body)

    def task_runs(self, flow_run_ids: list[str]) -> list[dict[str, Any]]:
        """Task runs of these flow runs, without the stand-ins Prefect records for subflow calls."""
        body = {
            "flow_runs": {"id": {"any_": flow_run_ids}},
            "task_runs": {"subflow_runs": {"exists_": False}},
            "sort": "EXPECTED_START_TIME_ASC",
            "limit": 200,
            "offset": 0,
        }
        return self.post("/task_runs/filter", body)

    def artifacts(self, flow_run_ids: list[str]) -> list[dict[str, Any]]:
        body = {"flow_runs": {"id": {"any_": flow_run_ids}}, "limit": 200, "offset": 0, "sort": "CREATED_DESC"}
        return self.post("/artifacts/filter", body)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process this test started, and its children (flow runs), by its own process group."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@contextmanager
def prefect_server(folder: Path) -> Iterator[PrefectServer]:
    home = folder / "prefect-home"
    home.mkdir(parents=True)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "LEADFLOW_"))},
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        # The scheduler stays on, as in production; it looks for deployments to schedule every 5 s, not 60.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "true",
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "5",
        # Services these tests do not use, off to spare the CPU (no late-run marking, no worker checks, no vacuum).
        **{f"PREFECT_SERVER_SERVICES_{name}_ENABLED": "false" for name in ("LATE_RUNS", "FOREMAN", "DB_VACUUM")},
    }
    logs = folder / "server.log"
    with logs.open("wb") as log:
        process = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = PrefectServer(f"http://127.0.0.1:{port}", env["PREFECT_API_URL"], env, logs)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"prefect server exited:\n{logs.read_text()}"
            try:
                if httpx.get(f"{server.api}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"prefect server did not start:\n{logs.read_text()}"
            time.sleep(0.25)
        yield server
    finally:
        _stop(process)


@contextmanager
def workers(server: PrefectServer, pool: str, count: int, folder: Path, *, limit: int = 1) -> Iterator[None]:
    """`count` worker processes polling `pool`, each running at most `limit` flow runs at once."""
    processes = []
    try:
        for n in range(count):
            with (folder / f"worker-{n}.log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--limit", str(limit),
                         "--name", f"worker-{n}"],
                        env=server.env, cwd=folder, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                    )
                )  # fmt: skip
        deadline = time.monotonic() + 60
        body = {"workers": {"status": {"any_": ["ONLINE"]}}, "limit": 50, "offset": 0}
        while len(server.post(f"/work_pools/{pool}/workers/filter", body)) < count:
            assert all(p.poll() is None for p in processes), "a worker exited"
            assert time.monotonic() < deadline, "workers did not come online"
            time.sleep(0.25)
        yield
    finally:
        for process in processes:
            _stop(process)
