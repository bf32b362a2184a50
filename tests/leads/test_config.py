"""The workspace config: the shipped example loads, and every mistake names file, line, key path and problem."""

from __future__ import annotations

from pathlib import Path

import pytest

import leadflow.leads.config
from leadflow.leads.config.workspace import ConfigError, WorkspaceConfig, load_config
from leadflow.leads.db.models import ActivityType, Stage

EXAMPLE = Path(leadflow.leads.config.__file__).resolve().parent / "examples" / "leadflow.yaml"

# A small valid config; each test below breaks one thing in it by text replacement.
BASE = """\
sender:
  from_name: Acme
  from_email: hello@acme.example
  postal_address: "Keizersgracht 1, Amsterdam"
scoring:
  version: "v1"
  fit:
    - name: Decision maker
      field: title
      pattern: "(?i)\\\\b(ceo|director)\\\\b"
      points: 20
    - name: Big company
      field: company_size
      at_least: 200
      points: 10
  engagement:
    - name: Pricing page
      activity: page_view
      target_contains: /pricing
      points: 8
      cap: 32
    - name: Careers page
      activity: page_view
      target_contains: /careers
      points: -6
      cap: -18
stages:
  prospect:
    min_score: 10
  hot_prospect:
    min_score: 30
  mql:
    min_score: 50
  sql:
    min_score: 80
    hand_raise: [demo_request]
"""


def _write(tmp_path: Path, text: str, name: str = "leadflow.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _broken(tmp_path: Path, *replacements: tuple[str, str]) -> tuple[Path, str]:
    text = BASE
    for old, new in replacements:
        assert text.count(old) == 1, f"test setup: {old!r} must occur once in BASE"
        text = text.replace(old, new)
    return _write(tmp_path, text), text


def _line_of(text: str, fragment: str) -> int:
    """1-based line of the only line containing `fragment`."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if fragment in line]
    assert len(hits) == 1, f"test setup: {fragment!r} is on lines {hits}"
    return hits[0]


def _problems(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == path
    assert str(info.value).startswith(f"{path}: invalid config")
    # Every problem is also in the message the user sees.
    for problem in info.value.problems:
        assert problem in str(info.value)
    return info.value


def test_the_shipped_example_loads_and_describes_a_working_funnel() -> None:
    config = load_config(EXAMPLE)
    assert isinstance(config, WorkspaceConfig)
    assert config.scoring.version
    assert config.scoring.fit and config.scoring.engagement
    assert [s for s, _ in config.stages.ordered()] == [Stage.prospect, Stage.hot_prospect, Stage.mql, Stage.sql]
    # Thresholds rise through the funnel, or a stage could never be entered on its own.
    scores = [rule.min_score for _, rule in config.stages.ordered()]
    assert all(s is not None for s in scores) and scores == sorted(scores) and len(set(scores)) == 4
    assert ActivityType.demo_request in config.stages.sql.hand_raise
    assert [s.name for s in config.sources] and config.nurture.sequences


def test_the_base_config_of_these_tests_is_valid(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, BASE))
    assert [r.name for r in config.scoring.engagement] == ["Pricing page", "Careers page"]
    assert config.scoring.engagement[1].cap == -18


@pytest.mark.parametrize(
    ("replacements", "line_fragment", "key_path", "what"),
    [
        pytest.param(
            [("  engagement:\n", "  engagment:\n")],
            "engagment:",
            "scoring.engagment",
            "unknown key (check the spelling)",
            id="misspelled-key-points-at-the-key-line",
        ),
        pytest.param(
            [("      at_least: 200\n      points: 10", "      at_least: 200\n      points: lots")],
            "points: lots",
            "scoring.fit[1].points",
            "valid number",
            id="wrong-type",
        ),
        pytest.param(
            [('pattern: "(?i)\\\\b(ceo|director)\\\\b"', 'pattern: "(?i)(ceo|director"')],
            "pattern:",
            "scoring.fit[0].pattern",
            "not a valid regular expression",
            id="invalid-regex",
        ),
        pytest.param(
            [("  prospect:\n    min_score: 10\n", "  prospect: {}\n")],
            "prospect: {}",
            "stages.prospect",
            "a stage needs at least one of min_score, min_fit, min_engagement, hand_raise",
            id="stage-without-condition",
        ),
        pytest.param(
            [("      at_least: 200\n", "      at_least: 200\n      one_of: ['1000']\n")],
            "- name: Big company",
            "scoring.fit[1]",
            "give exactly one condition",
            id="fit-rule-with-two-conditions",
        ),
        pytest.param(
            [("      points: -6\n      cap: -18", "      points: -6\n      cap: 18")],
            "- name: Careers page",
            "scoring.engagement[1]",
            "cap must be non-zero and have the same sign as points",
            id="cap-wrong-sign",
        ),
        pytest.param(
            [("name: Careers page", "name: Pricing page")],
            "scoring:",
            "scoring",
            "rule names must be unique; repeated: Pricing page",
            id="duplicate-rule-names",
        ),
        pytest.param(
            [("name: Big company", "name: Pricing page")],
            "scoring:",
            "scoring",
            "repeated: Pricing page",
            id="fit-and-engagement-rule-share-a-name",
        ),
        pytest.param(
            [
                (
                    "      activity: page_view\n      target_contains: /careers",
                    "      activity: page_visit\n      target_contains: /careers",
                )
            ],
            "page_visit",
            "scoring.engagement[1].activity",
            "'page_view'",
            id="unknown-activity-type-in-rule",
        ),
        pytest.param(
            [("hand_raise: [demo_request]", "hand_raise: [demo_request, call_me]")],
            "hand_raise:",
            "stages.sql.hand_raise[1]",
            "'contact_sales'",
            id="unknown-hand-raise-type",
        ),
        pytest.param(
            [("  mql:\n    min_score: 50\n", "")],
            "stages:",
            "stages.mql",
            "Field required",
            id="missing-stage",
        ),
        pytest.param(
            [("      field: title\n      pattern", "      field: job_title\n      pattern")],
            "job_title",
            "scoring.fit[0].field",
            "'title'",
            id="unknown-lead-field",
        ),
        pytest.param(
            [("  mql:\n    min_score: 50\n", "  mql:\n    min_score: 50\n  mql: {min_score: 5}\n")],
            "mql: {min_score: 5}",
            "stages.mql",
            "duplicate key",
            id="duplicate-yaml-key-would-silently-win",
        ),
    ],
)
def test_a_mistake_is_reported_with_file_line_key_path_and_problem(
    tmp_path: Path, replacements: list[tuple[str, str]], line_fragment: str, key_path: str, what: str
) -> None:
    path, text = _broken(tmp_path, *replacements)
    expected_line = _line_of(text, line_fragment)
    error = _problems(path)
    matching = [p for p in error.problems if f": {key_path}: " in p]
    assert matching, f"no problem about {key_path} in {error.problems}"
    assert matching[0].startswith(f"line {expected_line}: {key_path}: ")
    assert what in matching[0]


def test_several_mistakes_in_one_file_are_all_reported(tmp_path: Path) -> None:
    path, text = _broken(
        tmp_path,
        ("  engagement:\n", "  engagment:\n"),
        ("      at_least: 200\n      points: 10", "      at_least: 200\n      points: lots"),
        ("  prospect:\n    min_score: 10\n", "  prospect: {}\n"),
        ("from_email: hello@acme.example", "from_email: not-an-address"),
    )
    error = _problems(path)
    reported = {p.split(": ")[1] for p in error.problems}
    assert {"scoring.engagment", "scoring.fit[1].points", "stages.prospect", "sender.from_email"} <= reported
    assert f"line {_line_of(text, 'from_email')}: sender.from_email: " in str(error)


def test_broken_yaml_gives_the_line(tmp_path: Path) -> None:
    path, text = _broken(tmp_path, ("hand_raise: [demo_request]", "hand_raise: [demo_request"))
    error = _problems(path)
    assert len(error.problems) == 1
    assert "not valid YAML" in error.problems[0]
    assert error.problems[0].startswith("line ")
    line = int(error.problems[0].split(":")[0].removeprefix("line "))
    assert _line_of(text, "hand_raise:") <= line <= len(text.splitlines()) + 1


def test_bad_indentation_names_its_line(tmp_path: Path) -> None:
    path, text = _broken(tmp_path, ("      points: 8\n", "     points: 8\n"))
    error = _problems(path)
    assert "not valid YAML" in error.problems[0]
    assert error.problems[0].startswith(f"line {_line_of(text, '     points: 8')}: ")


def test_a_missing_file_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "nope" / "leadflow.yaml"
    error = _problems(path)
    assert str(path) in str(error)
    assert "file not found" in error.problems[0]


@pytest.mark.parametrize("text", ["", "- sender\n- scoring\n", "just a sentence\n"], ids=["empty", "list", "scalar"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    error = _problems(_write(tmp_path, text))
    assert error.problems == ["the file must be a mapping of keys (sender, scoring, stages, ...)"]


def test_missing_sections_are_named(tmp_path: Path) -> None:
    error = _problems(_write(tmp_path, "sender:\n  from_name: A\n"))
    reported = {p.split(": ")[1] for p in error.problems}
    assert {"scoring", "stages", "sender.from_email", "sender.postal_address"} <= reported


def test_a_sequence_may_not_be_called_all(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("    - name: warm-up\n", "    - name: all\n")
    path = tmp_path / "leadflow.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match='nurture.sequences\\[0\\].name: "all" is reserved'):
        load_config(path)
