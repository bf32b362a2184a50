"""`leadflow check` beyond leadflow.yaml: what a run would fail on, found before the run.

A run reads more than the config: the secret key, the files its sources name, the webhook and CRM
secrets, the mail URL and the database. Each problem names the variable, file or config key; a
secret's value, and any part of a URL that may hold one, is never printed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

from leadflow.cli.workspace_setup import emails_sent, missing_key_message
from leadflow.connectors.mail import FileOutbox, transport_from_url
from leadflow.leads.config.handoff import FileDestination, HandoffDestination, WebhookDestination
from leadflow.leads.config.settings import Settings
from leadflow.leads.config.workspace import FileSource, WorkspaceConfig


def run_problems(settings: Settings, config: WorkspaceConfig) -> list[str]:
    """Every problem found, one line each; an empty list means a run would get past all of them."""
    env = settings.secrets  # what a run's secret lookup sees: the environment, else the workspace .env
    problems = secret_key_problems(settings)
    problems += source_problems(settings, config, env)
    problems += destination_problems(settings, config, env)
    problems += mail_problems(settings)
    problems += database_problems(settings)
    problems += folder_problems(settings, config)
    return problems


def secret_key_problems(settings: Settings) -> list[str]:
    if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
        return []
    return [missing_key_message(settings, emails_sent(settings))]


def source_problems(settings: Settings, config: WorkspaceConfig, env: Mapping[str, str]) -> list[str]:
    """A file source whose file or folder is missing; a CRM source whose token variable is not set."""
    problems = []
    base = settings.config_file.parent
    for source in config.sources:
        where = f"sources[{source.name}]"
        if isinstance(source, FileSource):
            path = Path(source.path)
            path = path if path.is_absolute() else (base / path).resolve()
            if not path.exists():
                problems.append(
                    f"{settings.config_file.name}: {where}.path: {path} does not exist; "
                    "put the activity export there or correct the path"
                )
            continue
        problems += _credential_problems(where, source, env)
    return problems


def destination_problems(settings: Settings, config: WorkspaceConfig, env: Mapping[str, str]) -> list[str]:
    """Webhook signing secrets and CRM tokens a handoff run would ask for."""
    try:
        specs: list[HandoffDestination] = config.handoff.resolved(settings.handoff_url)
    except ValueError as exc:
        return [f"LEADFLOW_HANDOFF_URL: {exc}"]
    problems = []
    for spec in specs:
        where = f"handoff destination {spec.name}" if settings.handoff_url else f"handoff.destinations[{spec.name}]"
        if isinstance(spec, WebhookDestination):
            if spec.secret_block:
                continue  # a Prefect Secret block: read by the run from the Prefect server
            if spec.secret_env:
                if not env.get(spec.secret_env):
                    problems.append(
                        f"{where}: {spec.secret_env} is not set (environment or the workspace's .env); "
                        f"it signs the webhooks to {_host(spec.url)}"
                    )
            elif settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
                problems.append(
                    f"{where}: LEADFLOW_WEBHOOK_SECRET is not set (environment or the workspace's .env); "
                    f"it signs the webhooks to {_host(spec.url)}"
                )
            continue
        if not isinstance(spec, FileDestination):  # a CRM: its token, or its client id and secret
            problems += _credential_problems(where, spec, env)
    return problems


def mail_problems(settings: Settings) -> list[str]:
    """LEADFLOW_MAIL_URL read by the very code the sender uses (it opens no connection)."""
    try:
        transport_from_url(settings.mail_url, base_dir=settings.workspace)
    except ValueError as exc:  # the message never echoes the URL: it may hold a password
        return [f"LEADFLOW_MAIL_URL: {exc}"]
    return []


def database_problems(settings: Settings) -> list[str]:
    """The database answers (a SQLite file that does not exist yet is fine: the run creates it)."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from leadflow.leads.db.engine import make_engine, normalize_url

    try:
        url = normalize_url(settings.resolved_database_url)
    except (ArgumentError, ValueError):
        return ["LEADFLOW_DATABASE_URL: not a database URL (e.g. sqlite:///leadflow.db or postgresql://host/db)"]
    if url.get_backend_name() == "sqlite":
        return []
    try:
        engine = make_engine(url)
    except (ArgumentError, ImportError, SQLAlchemyError) as exc:
        return [f"LEADFLOW_DATABASE_URL: {_first_line(exc)}"]
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:  # the driver's message names host and port, never the password
        cause = _first_line(getattr(exc, "orig", None) or exc)
        return [f"LEADFLOW_DATABASE_URL: cannot connect to {url.host or 'the server'}: {cause}"]
    finally:
        engine.dispose()
    return []


def folder_problems(settings: Settings, config: WorkspaceConfig) -> list[str]:
    """Folders a run writes to and could not make: the file outbox, file handoff destinations, the SQLite folder."""
    from leadflow.leads.db.engine import normalize_url

    folders: list[tuple[str, Path]] = []
    try:
        transport = transport_from_url(settings.mail_url, base_dir=settings.workspace)
    except ValueError:
        transport = None  # mail_problems names it
    if isinstance(transport, FileOutbox):
        folders.append(("LEADFLOW_MAIL_URL", transport.directory))
    try:
        specs = config.handoff.resolved(settings.handoff_url)
    except ValueError:
        specs = []  # destination_problems names it
    for spec in specs:
        if isinstance(spec, FileDestination):
            path = Path(spec.path)
            where = "LEADFLOW_HANDOFF_URL" if settings.handoff_url else f"handoff destination {spec.name}"
            folders.append((where, path if path.is_absolute() else settings.workspace / path))
    try:
        url = normalize_url(settings.resolved_database_url)
    except Exception:  # noqa: BLE001  (database_problems names it)
        url = None
    if url is not None and url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        folders.append(("LEADFLOW_DATABASE_URL", Path(url.database).parent))
    return [
        f"{where}: cannot create or write {folder}: {why}" for where, folder in folders if (why := _unwritable(folder))
    ]


def _unwritable(folder: Path) -> str | None:
    """Why a run could not write into `folder` (made if missing), or None."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return None


def _credential_problems(where: str, spec: object, env: Mapping[str, str]) -> list[str]:
    """A vendor's token (or client id and secret) variable that is not set; Prefect blocks are left to the run."""
    if getattr(spec, "token_block", None):
        return []
    pair = [name for name in (getattr(spec, "client_id_env", None), getattr(spec, "client_secret_env", None)) if name]
    names = pair or [name for name in [getattr(spec, "token_env", None)] if name]
    if not names:
        return [f"{where}: no credentials configured (set token_env or token_block)"]
    missing = [name for name in names if not env.get(name)]
    if not missing:
        return []
    return [f"{where}: {' and '.join(missing)} not set (environment or the workspace's .env)"]


def _host(url: str) -> str:
    return urlsplit(url).hostname or "its host"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
