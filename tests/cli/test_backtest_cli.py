"""`leadflow backtest` on a demo workspace, as a marketer and as a script meet it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from leadflow.cli.main import app
from leadflow.cli.workspace_setup import init_workspace
from leadflow.leads.db.engine import make_engine, session_scope
from leadflow.leads.db.models import Lead
from tests.demo_workspace import ingest_demo

runner = CliRunner()
STAGES = ["prospect", "hot_prospect", "mql", "sql"]


@pytest.fixture(autouse=True)
def _workspace_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_DATABASE_URL", raising=False)


@pytest.fixture(scope="module")
def demo_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 demo leads ingested without Prefect: the activity file through the file source."""
    folder = tmp_path_factory.mktemp("demo")
    init_workspace(folder)
    ingest_demo(folder, leads=300)
    return folder


@pytest.fixture
def workspace(demo_workspace: Path, tmp_path: Path) -> Path:
    """A copy of the demo workspace that a test may change."""
    return Path(shutil.copytree(demo_workspace, tmp_path / "ws"))


def backtest(workspace: Path, *args: str) -> str:
    result = runner.invoke(app, ["backtest", "--workspace", str(workspace), *args])
    assert result.exit_code == 0, result.output
    return result.output


def backtest_json(workspace: Path, *args: str) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(backtest(workspace, "--json", *args))
    return report


def test_prints_the_tables_with_how_to_read_them(workspace: Path) -> None:
    out = backtest(workspace)
    assert "Backtest as of 2026-11-30" in out and "over 12 whole weeks of history" in out
    assert f"Outcomes from {workspace / 'data' / 'outcomes.csv'}" in out.replace("\n", "")
    assert "How to read the tables" in out
    for title in ("Rules on the test set", "Naive Bayes on the test set", "Rules on all leads"):
        assert title in out
    for label in ("prospect", "hot prospect", "MQL", "SQL", "precision", "recall", "lift", "conversion", "weekly"):
        assert label in out
    assert "ROC AUC" in out and "rules 2026-11-demo 0." in out and "naive Bayes 0." in out.replace("\n", " ")
    assert "Stored" not in out


def test_json_report_adds_up(workspace: Path) -> None:
    report = backtest_json(workspace)
    assert report["as_of"].startswith("2026-11-30") and report["weeks"] == 12
    assert report["train"]["leads"] + report["test"]["leads"] == report["all"]["leads"] == 300
    assert report["all"]["won"] + report["all"]["lost"] + report["all"]["open"] == 300
    (rules,) = report["rule_sets"]
    assert rules["name"] == "2026-11-demo"
    for population in ("test", "all"):
        selected = [rules[population][s]["selected"] for s in STAGES]
        assert selected == sorted(selected, reverse=True) and selected[-1] > 0
        for stage in STAGES:
            m = rules[population][stage]
            won, lost = m["won"], m["lost"]
            assert m["precision"] == pytest.approx(won / (won + lost), abs=1e-4)
            assert m["recall"] == pytest.approx(won / report[population]["won"], abs=1e-4)
            assert m["lift"] == pytest.approx(m["precision"] / report[population]["base_rate"], abs=1e-3)
            assert m["conversion"] == pytest.approx(won / m["selected"], abs=1e-4)
    for stage in STAGES:
        assert rules["naive_bayes_same_count"][stage]["selected"] == rules["test"][stage]["selected"]
        weekly = rules["new_per_week"][stage]
        assert len(weekly) == 12 and rules["all"][stage]["per_week"] == pytest.approx(sum(weekly) / 12, abs=1e-4)
    assert 0.5 < rules["auc"] <= 1 and 0.5 < report["naive_bayes_auc"] <= 1
    assert report["stored_predictive_scores"] is None


def test_compare_shows_both_rule_sets_side_by_side(workspace: Path) -> None:
    other = workspace / "stricter.yaml"
    text = (workspace / "leadflow.yaml").read_text()
    text = text.replace('version: "2026-11-demo"', 'version: "stricter"').replace("min_score: 120", "min_score: 140")
    other.write_text(text)
    out = backtest(workspace, "--compare", str(other))
    assert "stage ≥ / rules" in out and out.count("2026-11-demo") >= 12 and out.count("stricter") >= 12
    first, second = backtest_json(workspace, "--compare", str(other))["rule_sets"]
    assert (first["name"], second["name"]) == ("2026-11-demo", "stricter")
    assert second["all"]["sql"]["selected"] < first["all"]["sql"]["selected"]
    assert second["all"]["mql"] == first["all"]["mql"]

    same_version = workspace / "copy.yaml"
    shutil.copyfile(workspace / "leadflow.yaml", same_version)
    names = [rs["name"] for rs in backtest_json(workspace, "--compare", str(same_version))["rule_sets"]]
    assert names == ["2026-11-demo (leadflow.yaml)", "2026-11-demo (copy.yaml)"]


def test_bad_outcome_rows_are_named_and_skipped(workspace: Path) -> None:
    lines = (workspace / "data" / "outcomes.csv").read_text().splitlines()
    lines[2] = lines[2].split(",")[0] + ",maybe,"
    lines[5] = "nobody,won,2026-12-01"
    bad = workspace / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    out = backtest(workspace, "--outcomes", str(bad))
    flat = out.replace("\n", "")
    assert f"skipped {bad}:3: outcome must be won, lost or open, got 'maybe'" in flat
    assert f"skipped {bad}:6: not an email address: 'nobody'" in flat
    assert backtest_json(workspace, "--outcomes", str(bad))["outcomes"]["skipped_rows"] == [
        f"{bad}:3: outcome must be won, lost or open, got 'maybe'",
        f"{bad}:6: not an email address: 'nobody'",
    ]


def test_store_writes_the_probability_on_every_lead(workspace: Path) -> None:
    out = backtest(workspace, "--store")
    assert "Stored the naive-Bayes won probability on 300 leads" in out.replace("\n", " ")
    engine = make_engine(f"sqlite:///{workspace}/leadflow.db")
    try:
        with session_scope(engine) as session:
            low, high, stored = session.execute(
                select(
                    func.min(Lead.predictive_score), func.max(Lead.predictive_score), func.count(Lead.predictive_score)
                )
            ).one()
    finally:
        engine.dispose()
    assert stored == 300 and 0 < low < high < 1


def test_without_an_outcomes_file_the_crm_deals_are_used(workspace: Path) -> None:
    (workspace / "data" / "outcomes.csv").unlink()
    out = backtest(workspace)
    assert "Outcomes from CRM (deal_won / deal_lost activity): 0 won, 0 lost" in out.replace("\n", " ")
    assert "Naive Bayes: not trained" in out.replace("\n", " ")


def test_errors_stop_with_a_message(workspace: Path) -> None:
    missing = runner.invoke(app, ["backtest", "--workspace", str(workspace), "--outcomes", "nowhere.csv"])
    assert missing.exit_code == 2 and "nowhere.csv: file not found" in missing.output
    broken = workspace / "broken.yaml"
    broken.write_text("sender: {}\n")
    bad_compare = runner.invoke(app, ["backtest", "--workspace", str(workspace), "--compare", str(broken)])
    assert bad_compare.exit_code == 2 and "broken.yaml: invalid config" in bad_compare.output.replace("\n", "")
