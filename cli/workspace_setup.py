"""Creating a workspace: the example config, editable templates, a secret key, demo data."""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

from leadflow.demo.data import generate_demo, write_demo
from leadflow.leads.config.settings import Settings, load_settings

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "leads" / "config" / "examples" / "leadflow.yaml"
SHIPPED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


class SecretKeyMissing(RuntimeError):
    """The workspace has no secret key, and making a new one would break the links already sent."""

    def __init__(self, message: str, created: list[str]) -> None:
        super().__init__(message)
        self.created = created  # what init made before it stopped, for the user


def init_workspace(folder: Path) -> list[str]:
    """Create what is missing (never overwrite); returns what was created, for the user.

    A new secret key is made only for a workspace that never sent an email: every email already
    sent carries links signed with the old key, which a new one would break. Raises SecretKeyMissing
    (after creating the rest) when the key must be restored instead.
    """
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
    settings = load_settings(folder)
    if settings.secret_key is None or not settings.secret_key.get_secret_value().strip():
        sent = emails_sent(settings)
        if sent is not False:  # links signed with the old key are out there (or the database could not tell)
            raise SecretKeyMissing(missing_key_message(settings, sent), created)
        line = f"LEADFLOW_SECRET_KEY={secrets.token_urlsafe(32)}\n"
        if env.exists():
            text = env.read_text(encoding="utf-8")
            env.write_text(text + ("" if not text or text.endswith("\n") else "\n") + line, encoding="utf-8")
            created.append("LEADFLOW_SECRET_KEY in .env (a new secret key for unsubscribe links)")
        else:
            header = "# Secrets for this workspace. Keep this file out of version control.\n"
            env.write_text(header + line, encoding="utf-8")
            created.append(".env (a new secret key for unsubscribe links)")
        os.chmod(env, 0o600)
    return created


def emails_sent(settings: Settings) -> bool | None:
    """Whether the workspace's database holds any email (True), none or no database yet (False), or cannot tell.

    Never creates the database: a SQLite file that does not exist means a workspace that sent nothing.
    """
    from sqlalchemy import inspect, literal, select
    from sqlalchemy.exc import SQLAlchemyError

    from leadflow.leads.db.engine import make_engine, normalize_url
    from leadflow.leads.db.models import EmailOutbox

    try:
        url = normalize_url(settings.resolved_database_url)
    except Exception:  # noqa: BLE001  (a malformed URL: `leadflow check` names it)
        return None
    if url.get_backend_name() == "sqlite" and (not url.database or not Path(url.database).is_file()):
        return False if url.database and url.database != ":memory:" else None
    try:
        engine = make_engine(url)
        try:
            with engine.connect() as conn:
                if not inspect(conn).has_table(EmailOutbox.__tablename__):
                    return False
                return conn.execute(select(literal(1)).select_from(EmailOutbox).limit(1)).first() is not None
        finally:
            engine.dispose()
    except (SQLAlchemyError, ImportError):
        return None


def missing_key_message(settings: Settings, sent: bool | None) -> str:
    """What to do about a missing LEADFLOW_SECRET_KEY: restore it if any email went out, else `leadflow init`."""
    env = settings.workspace / ".env"
    where = f"{env} has no LEADFLOW_SECRET_KEY" if env.exists() else f"there is no {env}"
    head = f"LEADFLOW_SECRET_KEY is not set: {where}, and the environment does not set it either. "
    if sent is False:
        return head + "This workspace has sent no email yet, so a new key is safe: `leadflow init` writes one to .env."
    why = (
        "The database holds emails sent with the old key"
        if sent
        else "The database could not be read to tell whether emails were sent"
    )
    return head + (
        f"{why}: restore the old key from your backup or secret store (LEADFLOW_SECRET_KEY=... in {env}, "
        "mode 600, or in the environment). Do not make a new key: it breaks the unsubscribe and tracking "
        "links in every email already sent."
    )


def ensure_demo_data(folder: Path, *, seed: int, leads: int) -> Path | None:
    """Generate demo activity once; later runs keep the same file so nothing is ingested twice."""
    activity = folder / "data" / "activity.jsonl"
    if activity.exists():
        return None
    end = datetime.now(UTC).replace(second=0, microsecond=0)
    write_demo(activity.parent, generate_demo(seed=seed, leads=leads, end=end))
    return activity
