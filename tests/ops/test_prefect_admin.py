"""What an admin does with a real `prefect server start`, its scheduler on: scheduled runs that workers
run, Prefect's own listing commands, `prefect deploy --all` from prefect.yaml, and a run whose worker
is killed, which must end Crashed and be reported by the shipped automation.

A fresh install that resolves SQLAlchemy 2.1 fails the first test (the scheduler creates no run), one
that resolves fastapi 0.151 or later fails the listing and deploy tests (422): pyproject.toml pins both.
One server serves the whole module.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.flows.test_pipeline import make_workspace
from tests.ops.prefect_server import BIN, ROOT, PrefectServer, prefect_server, workers

POOL = "leadflow"
BLOCK = "leadflow-admin"


@dataclass
class Notifications:
    """What Prefect's notification block posted to our webhook on loopback."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Admin:
    server: PrefectServer
    notifications: Notifications
    folder: Path


def _webhook(notifications: Notifications) -> ThreadingHTTPServer:
    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            notifications.received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    notifications.url = f"http://127.0.0.1:{httpd.server_address[1]}/notify"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


SAVE_BLOCK = """
from prefect.blocks.notifications import CustomWebhookNotificationBlock
CustomWebhookNotificationBlock(
    name="admin hook", url={url!r}, json_data={{"subject": "{{{{subject}}}}", "body": "{{{{body}}}}"}},
    allow_private_urls=True,
).save({block!r}, overwrite=True)
"""


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    """The server, the `leadflow` process pool with one worker, a notification block, leadflow's automations."""
    folder = tmp_path_factory.mktemp("prefect-admin")
    notifications = Notifications()
    httpd = _webhook(notifications)
    try:
        with prefect_server(folder) as server:
            server.env["COLUMNS"] = "250"  # Prefect's CLI tables at full width: names are not cut short
            server.run("prefect", "work-pool", "create", POOL, "--type", "process")
            server.run("python", "-c", SAVE_BLOCK.format(url=notifications.url, block=BLOCK))
            server.run("leadflow", "ops", "automations", "--block", BLOCK, "--block-type", "custom-webhook")
            with workers(server, POOL, 1, folder):
                yield Admin(server, notifications, folder)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _until(what: str, probe: Callable[[], Any], timeout: float) -> Any:
    """Call `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.25)
    return found


def _scheduled_runs(server: PrefectServer, deployment_id: str, state: str | None = None) -> list[dict[str, Any]]:
    """The deployment's runs that the scheduler created, earliest first (in `state` only, if given)."""
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}, "sort": "EXPECTED_START_TIME_ASC", "limit": 200}
    runs = server.post("/flow_runs/filter", body)
    return [r for r in runs if r["auto_scheduled"] and state in (None, r["state_type"])]


def test_the_scheduler_fills_a_cron_schedule_and_a_worker_runs_a_scheduled_run(
    admin: Admin, tmp_path: Path, sqlite_url: str
) -> None:
    server = admin.server
    workspace = make_workspace(tmp_path / "ws", sqlite_url, leads=40)
    server.run("leadflow", "deploy", "--pool", POOL, "--name", "ingest", "--workspace", str(workspace))
    deployment = server.get("/deployments/name/ingest/ingest")
    try:
        # The server's scheduler, not a person, creates the cron schedule's runs (every 15 minutes).
        scheduled = _until(
            "scheduled runs of the cron schedule",
            lambda: _scheduled_runs(server, deployment["id"])[:3],
            timeout=90,
        )
        assert len(scheduled) == 3 and all(r["state"]["type"] == "SCHEDULED" for r in scheduled)
        starts = [datetime.fromisoformat(r["expected_start_time"]) for r in scheduled]
        assert all(s.minute % 15 == 0 and s.second == 0 for s in starts), starts

        # An interval schedule makes a run due within seconds: the scheduler creates it, the worker runs it.
        server.post(f"/deployments/{deployment['id']}/schedules", [{"schedule": {"interval": 10}, "active": True}])
        done = _until(
            "a scheduled run that completed",
            lambda: _scheduled_runs(server, deployment["id"], "COMPLETED"),
            timeout=240,
        )
        keys = {a["key"] for a in server.artifacts([done[0]["id"]])}
        assert "leadflow-ingest" in keys  # it did the work: its run report is there
    finally:
        server.delete(f"/deployments/{deployment['id']}")  # and its scheduled runs with it


def test_prefects_own_listing_commands_answer_with_what_the_server_holds(
    admin: Admin, tmp_path: Path, sqlite_url: str
) -> None:
    server = admin.server
    workspace = make_workspace(tmp_path / "ws", sqlite_url, leads=40)
    server.run("leadflow", "deploy", "--pool", POOL, "--name", "ingest", "--workspace", str(workspace))
    deployment = server.get("/deployments/name/ingest/ingest")
    try:
        run_id = server.start_flow_run("ingest/ingest", {"params": {"workspace": str(workspace)}})
        run = server.wait_for([run_id], timeout=180)[run_id]
        assert run["state"]["type"] == "COMPLETED", run["state"]

        expected = {
            ("deployment", "ls"): "ingest/ingest",
            ("flow-run", "ls"): run["name"],
            ("work-pool", "ls"): POOL,
            ("artifact", "ls"): "leadflow-ingest",
            ("block", "ls"): BLOCK,
            ("automation", "ls"): "leadflow: runs that stopped heartbeating",
        }
        for command, name in expected.items():
            out = server.run("prefect", *command).stdout  # fails the test with Prefect's output on exit code != 0
            assert name in out, f"prefect {' '.join(command)} does not show {name!r}:\n{out}"
    finally:
        server.delete(f"/deployments/{deployment['id']}")


def test_prefect_deploy_all_deploys_prefect_yaml_and_its_ingest_deployment_runs_on_a_worker(
    admin: Admin, tmp_path: Path, sqlite_url: str
) -> None:
    server = admin.server
    workspace = make_workspace(tmp_path / "ws", sqlite_url, leads=40)
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = [d["name"] for d in spec["deployments"]]
    # The command prefect.yaml's header gives, from the repository's root.
    out = server.run("prefect", "deploy", "--all", env={"LEADFLOW_WORKSPACE": str(workspace)}, timeout=300)
    try:
        for name in names:
            assert f"Deployment '{name}/{name}' successfully created" in out.stdout, out.stdout
            deployment = server.get(f"/deployments/name/{name}/{name}")
            assert deployment["entrypoint"] == f"leadflow.flows.{name}.{name}_flow" and deployment["pull_steps"] == []
            env = deployment["job_variables"]["env"]
            assert env["LEADFLOW_WORKSPACE"] == str(workspace) and env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == "30"

        run_id = server.start_flow_run("ingest/ingest", {"params": {"workspace": str(workspace)}})
        run = server.wait_for([run_id], timeout=180)[run_id]
        assert run["state"]["type"] == "COMPLETED", run["state"]
        report = {a["key"]: a for a in server.artifacts([run_id])}["leadflow-ingest"]
        assert "website" in report["data"]  # the workspace's file source was read
    finally:
        for name in names:
            deployment = server.get(f"/deployments/name/{name}/{name}")
            server.delete(f"/deployments/{deployment['id']}")


DEPLOY_SLEEPY = """
from leadflow.cli.prefect_env import RUN_ENV
from prefect.client.schemas.objects import ConcurrencyLimitConfig
from prefect.deployments.runner import EntrypointType
from tests.ops.sleepy import sleepy_flow
sleepy_flow.to_deployment(
    name="doomed", tags=["leadflow"], entrypoint_type=EntrypointType.MODULE_PATH,
    concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy="ENQUEUE"),
    job_variables={{"env": RUN_ENV, "working_dir": {root!r}}},
).apply(work_pool_name="doomed")
"""


def _family(pid: int) -> list[int]:
    """`pid` and every process below it (a worker and the flow runs it started)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    family, todo = [], [pid]
    while todo:
        current = todo.pop()
        family.append(current)
        todo.extend(parents.get(current, []))
    return family


@contextmanager
def _doomed_run(admin: Admin) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A run of a flow that never ends (deployment limit 1) on a worker of its own, once it has sent a heartbeat."""
    server = admin.server
    server.run("prefect", "work-pool", "create", "doomed", "--type", "process", "--overwrite")
    server.run("python", "-c", DEPLOY_SLEEPY.format(root=str(ROOT)))
    run_id = server.start_flow_run("sleepy/doomed", {})
    with (admin.folder / "doomed-worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "doomed", "--name", f"doomed-{run_id[:8]}"],
            env=server.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        heartbeats = {
            "filter": {
                "event": {"name": ["prefect.flow-run.heartbeat"]},
                "resource": {"id": [f"prefect.flow-run.{run_id}"]},
            },
            "limit": 10,
        }
        _until("the run's first heartbeat", lambda: server.post("/events/filter", heartbeats)["events"], timeout=120)
        assert server.get(f"/flow_runs/{run_id}")["state"]["type"] == "RUNNING"
        yield run_id, worker
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        server.delete(f"/deployments/{server.get('/deployments/name/sleepy/doomed')['id']}")


def _crashed_and_reported(admin: Admin, run_id: str, timeout: float) -> dict[str, Any]:
    """Wait until the run is Crashed and the failed-run automation's notification about it arrived."""
    server = admin.server
    state = _until(
        "the killed run marked Crashed",
        lambda: (s := server.get(f"/flow_runs/{run_id}")["state"])["type"] == "CRASHED" and s,
        timeout=timeout,
    )
    subject = f"leadflow: sleepy run {server.get(f'/flow_runs/{run_id}')['name']} Crashed"
    _until(
        "the failed-run notification",
        lambda: [n for n in admin.notifications.received if n["subject"] == subject],
        timeout=60,
    )
    return state  # type: ignore[no-any-return]


def _slots_in_use(server: PrefectServer) -> int:
    return int(server.get("/deployments/name/sleepy/doomed")["global_concurrency_limit"]["active_slots"])


def test_a_run_killed_on_a_live_worker_ends_crashed_and_the_failed_run_automation_reports_it(admin: Admin) -> None:
    with _doomed_run(admin) as (run_id, worker):
        family = _family(worker.pid)
        assert len(family) >= 2, "the flow run's process is not the worker's child"
        for pid in family[1:]:  # the flow run's process (and anything it started), not the worker
            os.kill(pid, signal.SIGKILL)
        state = _crashed_and_reported(admin, run_id, timeout=120)
        assert "exited with status code: -9" in state["message"]  # the worker saw it die
        assert _slots_in_use(admin.server) == 0


def test_a_run_whose_worker_is_killed_too_ends_crashed_and_the_failed_run_automation_reports_it(
    admin: Admin,
) -> None:
    """kill -9 of a worker and its flow run (a lost machine): only the missing heartbeats tell."""
    with _doomed_run(admin) as (run_id, worker):
        assert _slots_in_use(admin.server) == 1
        for pid in _family(worker.pid):
            os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        worker.wait(10)
        state = _crashed_and_reported(admin, run_id, timeout=200)
        print(f"Crashed and reported {time.monotonic() - killed:.0f} s after kill -9")
        assert "No heartbeat for 90 s" in state["message"]
        assert _slots_in_use(admin.server) == 0  # the deployment's next run may start
