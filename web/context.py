"""What every request handler needs, built once per app by create_app and kept on app.state."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from standardwebhooks.webhooks import Webhook
from starlette.requests import Request

from leadflow.leads.config.workspace import Sender
from leadflow.web.render import Pages


@dataclass(frozen=True)
class WebContext:
    engine: Engine
    secret_key: str
    inbound: Webhook | None  # None: inbound events are switched off
    sender: Sender
    pages: Pages
    clock: Callable[[], datetime]  # naive UTC, like every timestamp in the database


def context(request: Request) -> WebContext:
    web: WebContext = request.app.state.web
    return web
