"""The web app on a real database (SQLite and PostgreSQL), driven through httpx's ASGI transport."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from leadflow.leads.config.settings import Settings
from leadflow.leads.config.workspace import WorkspaceConfig, load_config
from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import Stage
from leadflow.nurture.enrollment import enroll
from leadflow.nurture.links import LinkSigner
from leadflow.web.app import create_app
from tests import factories as make

EXAMPLE = Path(__file__).resolve().parents[2] / "leads" / "config" / "examples" / "leadflow.yaml"
KEY = "web-test-secret-key"
INBOUND_SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
BASE = "https://mail.acme.example"
START = datetime(2026, 10, 1, 9, 0)


@dataclass
class Clock:
    """The app's notion of now; tests move it."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Site:
    client: httpx.AsyncClient
    engine: Engine
    config: WorkspaceConfig
    links: LinkSigner
    clock: Clock

    def add_lead(self, email: str, *, enrolled: bool = True) -> int:
        """A prospect, enrolled in the example's warm-up sequence unless told otherwise."""
        (lead_id,) = make.add(self.engine, make.lead(email, first_name="Anna", company="Acme", stage=Stage.prospect))
        if enrolled:
            with session_scope(self.engine) as session:
                enroll(session=session, config=self.config, now=self.clock())
        return lead_id

    def path(self, url: str) -> str:
        """The path of a public URL the app made, as the app sees it behind its proxy."""
        assert url.startswith(BASE)
        return url.removeprefix(BASE)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def web_settings(folder: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "workspace": folder,
        "database_url": database_url,
        "secret_key": KEY,
        "public_base_url": BASE,
        "inbound_secret": INBOUND_SECRET,
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
async def site(engine: Engine, db_url: str, tmp_path: Path) -> AsyncIterator[Site]:
    """The app on the migrated test database, with the example workspace config and a fixed clock."""
    config = load_config(EXAMPLE)
    clock = Clock()
    app = create_app(web_settings(tmp_path, db_url), config=config, clock=clock)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            yield Site(client, engine, config, LinkSigner(secret_key=KEY, public_base_url=BASE), clock)
    finally:
        app.state.web.engine.dispose()
