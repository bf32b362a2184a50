"""Creating a workspace: the example config, editable templates, a secret key, demo data."""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from leads.demo_data import generate_demo, write_demo

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "leads" / "examples" / "leadflow.yaml"
SHIPPED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def init_workspace(folder: Path) -> list[str]:
    """Create what is missing (never overwrite); returns what was created, for the user."""
    created: list[str] = []
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "leadflow.yaml"
    if not config.exists():
        shutil.copyfile(EXAMPLE_CONFIG, config)
        created.append("leadflow.yaml (scoring, stages, nurture and handoff settings)")
    templates = folder / "templates"
    if not templates.exists():
        shutil.copytree(SHIPPED_TEMPLATES, templates, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
        created.append("templates/ (email templates to edit)")
    env = folder / ".env"
    if not env.exists():
        env.write_text(
            "# Secrets for this workspace. Keep this file out of version control.\n"
            f"LEADFLOW_SECRET_KEY={secrets.token_urlsafe(32)}\n",
            encoding="utf-8",
        )
        os.chmod(env, 0o600)
        created.append(".env (a new secret key for unsubscribe links)")
    return created


def ensure_demo_data(folder: Path, *, seed: int, leads: int) -> Path | None:
    """Generate demo activity once; later runs keep the same file so nothing is ingested twice."""
    activity = folder / "data" / "activity.jsonl"
    if activity.exists():
        return None
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    write_demo(activity.parent, generate_demo(seed=seed, leads=leads, end=end))
    return activity
