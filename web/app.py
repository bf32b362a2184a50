"""The app factory: settings in, a Starlette app out; no globals, one engine per app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from leadflow.leads.config.settings import Settings
from leadflow.leads.config.workspace import WorkspaceConfig, load_config
from leadflow.leads.db.engine import make_engine
from leadflow.leads.db.models import utcnow
from leadflow.web import events, recipient
from leadflow.web.context import WebContext
from leadflow.web.render import Pages


class WebConfigError(RuntimeError):
    """The settings cannot serve the endpoint (no secret key, or an unusable inbound secret)."""


def create_app(
    settings: Settings, *, config: WorkspaceConfig | None = None, clock: Callable[[], datetime] = utcnow
) -> Starlette:
    """The public endpoint for a workspace. `config` defaults to the workspace's leadflow.yaml."""
    if settings.secret_key is None:
        raise WebConfigError("LEADFLOW_SECRET_KEY is not set; `leadflow check` says how to restore it")
    inbound = None
    if settings.inbound_secret is not None and settings.inbound_secret.get_secret_value():  # empty means off
        try:
            inbound = Webhook(settings.inbound_secret.get_secret_value())
        except (ValueError, EmptyWebhookSecretError) as exc:  # not base64 (binascii.Error), or empty
            raise WebConfigError(f"LEADFLOW_INBOUND_SECRET is not a valid whsec_ secret: {exc}") from None
    config = config or load_config(settings.config_file)
    engine = make_engine(settings.resolved_database_url)
    web = WebContext(
        engine=engine,
        secret_key=settings.secret_key.get_secret_value(),
        inbound=inbound,
        sender=config.sender,
        pages=Pages(config.sender),
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.dispose()

    app = Starlette(routes=[*recipient.routes, *events.routes, Route("/healthz", healthz)], lifespan=lifespan)
    app.state.web = web
    return app


async def healthz(_: Request) -> PlainTextResponse:
    """For the reverse proxy's health check; touches nothing."""
    return PlainTextResponse("ok")
