"""`leadflow check` for templates: shipped templates pass; mistakes are reported with file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from leadflow.leads.config.workspace import WorkspaceConfig, load_config
from leadflow.nurture.checks import check_templates
from leadflow.nurture.render import SHIPPED_TEMPLATES

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
TEXT = '{% extends "base.txt" %}\n{% block content %}Hi {{ lead.first_name or "there" }},{% endblock %}\n'


def _config(*steps: dict[str, Any]) -> WorkspaceConfig:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["nurture"] = {"sequences": [{"name": "welcome", "enroll": {"stages": ["prospect"]}, "steps": list(steps)}]}
    return WorkspaceConfig.model_validate(data)


def _write(folder: Path, name: str, html: str, text: str = TEXT) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.html").write_text(html)
    (folder / f"{name}.txt").write_text(text)


def test_shipped_templates_pass(tmp_path: Path) -> None:
    config = load_config(EXAMPLE)
    assert [s.template for s in config.nurture.sequences[0].steps]  # the example has steps to check
    assert check_templates(config, tmp_path / "templates") == []  # workspace without own templates
    assert check_templates(config, SHIPPED_TEMPLATES) == []  # as copied by `leadflow init`


def test_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "welcome/1",
        ('{% extends "base.html" %}\n{% block content %}\n<p>Hi {{ lead.first_name }</p>\n{% endblock %}\n'),
    )
    problems = check_templates(_config({"template": "welcome/1", "subject": "Hello"}), tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'welcome' / '1.html'}:3: welcome step 1 ")
    assert "unexpected '}'" in problems[0]


def test_unclosed_block_in_text_part_names_that_file(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "welcome/1",
        '{% extends "base.html" %}{% block content %}<p>Hi</p>{% endblock %}\n',
        (
            '{% extends "base.txt" %}\n'
            "{% block content %}\n"
            "{% if lead.company %}Hello {{ lead.company }}\n"
            "{% endblock %}\n"
        ),
    )
    problems = check_templates(_config({"template": "welcome/1", "subject": "Hello"}), tmp_path)
    assert len(problems) == 1
    path, line = problems[0].split(": ", 1)[0].rsplit(":", 1)
    assert path == str(tmp_path / "welcome" / "1.txt")
    assert line.isdigit() and int(line) >= 3


def test_undefined_variable_names_file_and_line(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "welcome/1",
        (
            '{% extends "base.html" %}\n'
            "{% block content %}\n"
            "<p>Hi {{ lead.first_name or 'there' }},</p>\n"
            "<p>Greetings to everyone at {{ lead.compnay }}.</p>\n"
            "{% endblock %}\n"
        ),
    )
    problems = check_templates(_config({"template": "welcome/1", "subject": "Hello"}), tmp_path)
    assert problems == [
        f"{tmp_path / 'welcome' / '1.html'}:4: welcome step 1 (full profile): 'dict object' has no attribute 'compnay'"
    ]


def test_undefined_top_level_variable_in_a_workspace_layout(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("{% block content %}{% endblock %}\n\n-- \nLeave: {{ unsubscribe_link }}\n")
    problems = check_templates(load_config(EXAMPLE), tmp_path)
    # Reported once per step that uses the layout, each pointing at the layout's line.
    steps = [(s.name, i) for s in load_config(EXAMPLE).nurture.sequences for i in range(1, len(s.steps) + 1)]
    assert len(problems) == len(steps) == 9
    for (name, index), problem in zip(steps, problems, strict=True):
        assert problem.startswith(f"{tmp_path / 'base.txt'}:4: {name} step {index} (full profile): ")
        assert "'unsubscribe_link' is undefined" in problem


def test_problem_only_for_a_lead_without_optional_fields(tmp_path: Path) -> None:
    """A template that works for the full sample lead but breaks when fields are missing."""
    _write(
        tmp_path,
        "welcome/1",
        (
            '{% extends "base.html" %}\n'
            "{% block content %}\n"
            "<p>Hi {{ lead.first_name or 'there' }},</p>\n"
            "<p>Plans for {{ lead.company_size * 2 }} seats.</p>\n"
            "{% endblock %}\n"
        ),
    )
    problems = check_templates(_config({"template": "welcome/1", "subject": "Hello"}), tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'welcome' / '1.html'}:4: welcome step 1 (email only): ")
    assert "NoneType" in problems[0]


def test_missing_template_and_unsafe_access_are_problems(tmp_path: Path) -> None:
    _write(tmp_path, "welcome/2", '{% extends "base.html" %}{% block content %}{{ lead.__class__ }}{% endblock %}')
    config = _config(
        {"template": "welcome/1", "subject": "Hello"},  # no such files
        {"template": "welcome/2", "subject": "Again"},
    )
    problems = check_templates(config, tmp_path)
    assert len(problems) == 2
    assert "welcome step 1" in problems[0] and "welcome/1.html" in problems[0]
    assert problems[1].startswith(f"{tmp_path / 'welcome' / '2.html'}:1: welcome step 2 ")
    assert "unsafe" in problems[1]


def test_every_step_is_checked_and_each_problem_is_reported_once(tmp_path: Path) -> None:
    _write(tmp_path, "welcome/1", '{% extends "base.html" %}{% block content %}{{ nope }}{% endblock %}')
    _write(tmp_path, "welcome/2", '{% extends "base.html" %}{% block content %}<p>fine</p>{% endblock %}')
    _write(tmp_path, "welcome/3", '{% extends "base.html" %}{% block content %}{{ nope3 }}{% endblock %}')
    config = _config(*({"template": f"welcome/{i}", "subject": f"Step {i}"} for i in (1, 2, 3)))
    problems = check_templates(config, tmp_path)
    assert [p.split(": ", 2)[1] for p in problems] == ["welcome step 1 (full profile)", "welcome step 3 (full profile)"]


def test_a_broken_subject_names_its_key_in_the_config(tmp_path: Path) -> None:
    _write(tmp_path, "welcome/1", '{% extends "base.html" %}{% block content %}<p>Hi</p>{% endblock %}')
    config = _config(
        {"template": "welcome/1", "subject": "Hello"},
        {"template": "welcome/1", "subject": "Hi {{ lead.frist_name }}"},
    )
    assert check_templates(config, tmp_path) == [
        "leadflow.yaml nurture.sequences[0].steps[1].subject: welcome step 2 (full profile): "
        "'dict object' has no attribute 'frist_name'"
    ]
