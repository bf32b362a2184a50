"""One workspace per run: `leadflow run` reads leadflow.yaml and .env once, the pipeline's four steps
share its config and engine, and nothing holds the database open after the run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import leadflow.flows.handoff
import leadflow.flows.ingest
import leadflow.flows.nurture
import leadflow.flows.requalify
import leadflow.leads.config.settings
import leadflow.leads.workspace
from leadflow.cli.main import app
from leadflow.cli.workspace_setup import ensure_demo_data, init_workspace
from leadflow.flows.params import PipelineParams
from leadflow.flows.pipeline import pipeline_flow
from leadflow.leads.workspace import Workspace

pytestmark = pytest.mark.usefixtures("prefect_harness")
PACKAGES = Path(leadflow.leads.workspace.__file__).resolve().parents[1]  # the worktree: leads/, flows/, cli/, ...


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)
    monkeypatch.delenv("LEADFLOW_WORKSPACE", raising=False)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    init_workspace(tmp_path)
    ensure_demo_data(tmp_path, seed=3, leads=60)
    return tmp_path


def _count_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How often leadflow.yaml and .env are read (the config by its loader's read_text, .env by dotenv)."""
    reads = {"leadflow.yaml": 0, ".env": 0}
    read_text = Path.read_text

    def counting_read_text(self: Path, *args: Any, **kwargs: Any) -> str:
        if self.name == "leadflow.yaml":
            reads["leadflow.yaml"] += 1
        return read_text(self, *args, **kwargs)

    original = leadflow.leads.config.settings.dotenv_values

    def counting_dotenv(path: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(path).name == ".env":
            reads[".env"] += 1
        return original(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", counting_read_text)
    monkeypatch.setattr(leadflow.leads.config.settings, "dotenv_values", counting_dotenv)
    return reads


def _steps_see(monkeypatch: pytest.MonkeyPatch) -> list[Workspace]:
    """The workspace each pipeline step's work runs in, in order."""
    seen: list[Workspace] = []
    for module, name in (
        (leadflow.flows.ingest, "ingest"),
        (leadflow.flows.requalify, "requalify"),
        (leadflow.flows.nurture, "nurture"),
        (leadflow.flows.handoff, "handoff"),
    ):
        work = getattr(module, name)

        def spy(ws: Workspace, params: Any, work: Any = work) -> Any:
            seen.append(ws)
            return work(ws, params)

        monkeypatch.setattr(module, name, spy)
    return seen


def _engines(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    made: list[Any] = []
    make_engine = leadflow.leads.workspace.make_engine

    def recording(url: Any) -> Any:
        made.append(make_engine(url))
        return made[-1]

    monkeypatch.setattr(leadflow.leads.workspace, "make_engine", recording)
    return made


def _open_handles(path: Path) -> list[str]:
    """This process's open file descriptors on the database file (and its -wal / -shm files)."""
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc")
    found = []
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(path)):
            found.append(target)
    return found


def test_leadflow_run_reads_the_config_and_env_once_and_every_step_shares_the_workspace(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _count_reads(monkeypatch)
    seen = _steps_see(monkeypatch)
    engines = _engines(monkeypatch)

    result = CliRunner().invoke(app, ["run", "--workspace", str(folder)])

    assert result.exit_code in (0, 3), result.output
    assert "leadflow run summary" in result.output
    assert reads == {"leadflow.yaml": 1, ".env": 1}
    assert len(seen) == 4 and all(ws is seen[0] for ws in seen)  # one config, one engine for the four steps
    assert len(engines) == 1 and engines[0] is seen[0].engine
    assert engines[0].pool.checkedout() == 0 and engines[0].pool.checkedin() == 0  # disposed at the end
    assert _open_handles(folder / "leadflow.db") == []


def test_a_pipeline_run_without_a_caller_opens_one_workspace_and_closes_it(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads = _count_reads(monkeypatch)
    seen = _steps_see(monkeypatch)
    engines = _engines(monkeypatch)

    report = pipeline_flow(PipelineParams(workspace=str(folder)))  # as a deployment starts it

    assert report.ingest.sources["website"].inserted > 0
    assert reads == {"leadflow.yaml": 1, ".env": 1}
    assert len(seen) == 4 and len({id(ws.config) for ws in seen}) == 1
    assert len(engines) == 1 and engines[0].pool.checkedin() == 0
    assert _open_handles(folder / "leadflow.db") == []


def test_the_ui_form_of_every_flow_shows_only_its_parameters() -> None:
    from leadflow.flows.registry import FLOWS

    for flow, model in FLOWS.values():
        schema = flow.parameters.model_dump()
        assert list(schema["properties"]) == ["params"]
        assert set(schema["definitions"][model.__name__]["properties"]) == set(model.model_fields)


def test_only_the_settings_module_reads_the_workspace_env_file() -> None:
    readers = sorted(
        str(path.relative_to(PACKAGES))
        for folder in ("leads", "connectors", "nurture", "handoff", "flows", "cli", "web", "demo")
        for path in (PACKAGES / folder).rglob("*.py")
        if "dotenv" in path.read_text(encoding="utf-8")
    )
    assert readers == ["leads/config/settings.py"]
