"""The `leadflow` command as a user meets it: demo, run again, check, status, bad config."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from leadflow.cli.main import app

pytestmark = pytest.mark.usefixtures("prefect_harness")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI quiets Prefect through the environment; keep that change inside the test."""
    monkeypatch.setenv("PREFECT_LOGGING_LEVEL", "WARNING")
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)


def number(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in output:\n{text}"
    return int(match.group(1))


def test_demo_then_run_again_sends_nothing_twice(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--workspace", str(tmp_path), "--leads", "300"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Leads by stage" in out and "Stage changes in this run" in out and "Where to look next" in out
    sent = number(r"(\d+) emails sent this run", out)
    handed = number(r"(\d+) new SQLs handed to sales", out)
    assert sent == len(list((tmp_path / "outbox").glob("*.eml"))) > 0
    assert handed == len(list((tmp_path / "handoff-inbox").glob("*.json"))) > 0
    assert (tmp_path / "leadflow.db").exists() and (tmp_path / ".env").stat().st_mode & 0o077 == 0
    # The summary's explain example is a real SQL, ready to copy.
    example = re.search(r"`leadflow explain (\S+)`", out)
    assert example, out
    explained = runner.invoke(app, ["explain", example.group(1), "--workspace", str(tmp_path)])
    assert explained.exit_code == 0 and "stage: sql" in explained.output, explained.output

    again = runner.invoke(app, ["demo", "--workspace", str(tmp_path), "--leads", "300"])
    assert again.exit_code == 0, again.output
    assert number(r"(\d+) emails sent this run", again.output) == 0
    assert number(r"(\d+) new SQLs handed to sales", again.output) == 0
    assert "Stage changes in this run: none" in again.output
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == sent

    status = runner.invoke(app, ["status", "--workspace", str(tmp_path)])
    assert status.exit_code == 0 and f"sent {sent}" in status.output


def test_check_accepts_the_shipped_workspace_and_names_a_broken_template(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", "--workspace", str(tmp_path)]).exit_code == 0
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "activity.jsonl").write_text("")  # the source leadflow.yaml names
    ok = runner.invoke(app, ["check", "--workspace", str(tmp_path)])
    assert ok.exit_code == 0 and "valid" in ok.output, ok.output

    template = tmp_path / "templates" / "warm-up" / "2-case-study.html"
    template.write_text(template.read_text().replace("{{ lead.first_name", "{{ lead.frist_name"))
    broken = runner.invoke(app, ["check", "--workspace", str(tmp_path)])
    assert broken.exit_code == 1
    assert "templates/warm-up/2-case-study.html:3" in broken.output and "frist_name" in broken.output


def test_run_with_an_invalid_config_names_the_file_line_and_key(tmp_path: Path) -> None:
    runner.invoke(app, ["init", "--workspace", str(tmp_path)])
    config = tmp_path / "leadflow.yaml"
    config.write_text(config.read_text().replace("  engagement:\n", "  engagment:\n", 1))
    result = runner.invoke(app, ["run", "--workspace", str(tmp_path)])
    assert result.exit_code == 2
    said = result.output.replace("\n", "")  # rich wraps long paths at the terminal's width
    assert "leadflow.yaml" in said and "scoring.engagment" in said and "unknown key" in said
    assert not (tmp_path / "leadflow.db").exists()


def test_init_never_overwrites(tmp_path: Path) -> None:
    runner.invoke(app, ["init", "--workspace", str(tmp_path)])
    (tmp_path / "leadflow.yaml").write_text("# mine\n")
    result = runner.invoke(app, ["init", "--workspace", str(tmp_path)])
    assert "already a workspace" in " ".join(result.output.split())  # rich wraps long paths, at any space
    assert (tmp_path / "leadflow.yaml").read_text() == "# mine\n"


def test_processes_apply_to_requalify_only(tmp_path: Path) -> None:
    assert runner.invoke(app, ["demo", "--workspace", str(tmp_path), "--leads", "200"]).exit_code == 0
    wrong = runner.invoke(app, ["run", "nurture", "--processes", "2", "--workspace", str(tmp_path)])
    assert wrong.exit_code != 0 and "--processes applies to the requalify and pipeline flows" in wrong.output
    right = runner.invoke(app, ["run", "requalify", "--processes", "2", "--workspace", str(tmp_path)])
    assert right.exit_code == 0, right.output


def test_a_run_from_the_cli_carries_the_tags_automations_look_for(tmp_path: Path) -> None:
    """The failed-run automation (flows/automations.yaml) matches runs by the `leadflow` tag."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    assert runner.invoke(app, ["init", "--workspace", str(tmp_path)]).exit_code == 0
    result = runner.invoke(app, ["run", "handoff", "--workspace", str(tmp_path)])
    assert result.exit_code == 0, result.output
    body = {"flows": {"name": {"any_": ["handoff"]}}, "sort": "EXPECTED_START_TIME_DESC", "limit": 1}
    [newest] = httpx.post(f"{PREFECT_API_URL.value()}/flow_runs/filter", json=body).json()
    assert {"leadflow", "handoff", "sales", "cli"} <= set(newest["tags"]), newest["tags"]


def test_a_run_with_a_failing_source_shows_what_it_did_then_why_it_failed(tmp_path: Path) -> None:
    assert runner.invoke(app, ["demo", "--workspace", str(tmp_path), "--leads", "100"]).exit_code == 0
    config = tmp_path / "leadflow.yaml"
    config.write_text(
        config.read_text().replace(
            "    path: data/activity.jsonl\n",
            "    path: data/activity.jsonl\n  - name: partner-feed\n    kind: file\n    path: data/missing.jsonl\n",
        )
    )
    result = runner.invoke(app, ["run", "--workspace", str(tmp_path)])
    assert result.exit_code == 1
    out = result.output
    # The rest of the pipeline ran: its summary is there, then the source that stopped, then the failure.
    assert "leadflow run summary" in out and "Sales handoff" in out
    assert "source partner-feed stopped" in out and "missing.jsonl" in out
    assert out.index("leadflow run summary") < out.index("the pipeline run failed:")
