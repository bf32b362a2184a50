"""What recipients reach from an email: unsubscribe (RFC 8058 one-click and a confirmation page),
tracked clicks and the open pixel.

A GET never unsubscribes (link scanners follow GETs); a POST does, at once, with no cookie, login
or redirect, and a repeated POST changes nothing. Every token is verified before anything is read
or written, and a click redirects only to the URL signed into its token.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from sqlalchemy import select
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from leadflow.leads.db.engine import session_scope
from leadflow.leads.db.models import ActivityType, Lead, SuppressionReason
from leadflow.leads.ingest.records import ActivityRecord
from leadflow.leads.ingest.store import store_batch
from leadflow.nurture.links import CLICK, OPEN, UNSUBSCRIBE, SignedLink, read_token
from leadflow.nurture.suppression import ALL, is_suppressed, suppress
from leadflow.nurture.tokens import BadToken
from leadflow.web.body import TooLarge, form_fields, read_limited
from leadflow.web.context import WebContext, context
from leadflow.web.render import PAGE_HEADERS, masked

MAX_FORM_BYTES = 4096
REDIRECT_HEADERS = {"cache-control": "no-store", "referrer-policy": "no-referrer"}
# 1×1 transparent GIF
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")

Scope = Literal["all", "sequence"]


def _verified(request: Request, purpose: str) -> tuple[WebContext, SignedLink | None]:
    """The app's context and the link the path's token was signed for (None when it was not)."""
    web = context(request)
    try:
        return web, read_token(web.secret_key, purpose, request.path_params["token"])
    except BadToken:
        return web, None


def _bad_link(web: WebContext) -> Response:
    return web.pages.problem(
        400,
        "This link does not work",
        "It may have been cut short by your email program. Please use the link in the email itself, "
        "or reply to the email and we will take care of it.",
    )


def _unknown(web: WebContext) -> Response:
    return web.pages.problem(
        404, "We could not find your subscription", "We have no email address for this link any more."
    )


async def unsubscribe_page(request: Request) -> Response:
    """GET: what the link does and a button; changes nothing."""
    web, link = _verified(request, UNSUBSCRIBE)
    if link is None:
        return _bad_link(web)
    state = await run_in_threadpool(_subscription, web, link)
    if state is None:
        return _unknown(web)
    email, all_off, sequence_off = state
    return web.pages.render(
        "unsubscribe", email=masked(email), suppressed_all=all_off, suppressed_sequence=sequence_off
    )


async def unsubscribe(request: Request) -> Response:
    """POST: one-click (`List-Unsubscribe=One-Click`, everything) or the page's form (its chosen scope)."""
    web, link = _verified(request, UNSUBSCRIBE)
    if link is None:
        return _bad_link(web)
    try:
        fields = form_fields(await read_limited(request, MAX_FORM_BYTES), request.headers.get("content-type", ""))
    except TooLarge:
        return web.pages.problem(413, "Request too large", "This form sends a few bytes; this request sent far more.")
    scope: Scope
    if fields.get("List-Unsubscribe") == "One-Click":
        scope, detail = "all", "one-click (RFC 8058)"
    elif fields.get("scope") in ("all", "sequence"):
        scope, detail = ("all" if fields["scope"] == "all" else "sequence"), "confirmation page"
    else:
        return web.pages.problem(
            400, "Nothing was changed", "Choose what to unsubscribe from on the page the link in the email opens."
        )
    email = await run_in_threadpool(_unsubscribe, web, link, scope, detail)
    if email is None:
        return _unknown(web)
    return web.pages.render("unsubscribed", email=masked(email), scope=scope)


def _subscription(web: WebContext, link: SignedLink) -> tuple[str, bool, bool] | None:
    with Session(web.engine) as session:
        email = _email(session, link.lead_id)
        if email is None:
            return None
        return (
            email,
            is_suppressed(session=session, email=email, sequence=ALL),
            is_suppressed(session=session, email=email, sequence=link.sequence),
        )


def _email(session: Session, lead_id: int) -> str | None:
    return session.scalar(select(col(Lead.email)).where(col(Lead.id) == lead_id))


def _unsubscribe(web: WebContext, link: SignedLink, scope: Scope, detail: str) -> str | None:
    with session_scope(web.engine) as session:
        email = _email(session, link.lead_id)
        if email is None:
            return None
        suppress(
            session=session,
            lead_id=link.lead_id,
            scope=ALL if scope == "all" else link.sequence,
            reason=SuppressionReason.unsubscribed,
            source="web",
            now=web.clock(),
            detail=detail,
        )
        return email


async def click(request: Request) -> Response:
    """Record the click (HEAD requests from scanners are not counted) and redirect to the signed URL."""
    web, link = _verified(request, CLICK)
    if link is None:
        return _bad_link(web)
    assert link.url is not None  # read_token guarantees a web address for clicks
    if request.method == "GET":
        await run_in_threadpool(_record, web, link, ActivityType.email_click, request.path_params["token"])
    return RedirectResponse(link.url, status_code=302, headers=REDIRECT_HEADERS)


async def opened(request: Request) -> Response:
    web, link = _verified(request, OPEN)
    if link is None:
        return Response(status_code=400, headers=PAGE_HEADERS)
    if request.method == "GET":
        await run_in_threadpool(_record, web, link, ActivityType.email_open, request.path_params["token"])
    return Response(PIXEL, media_type="image/gif", headers={"cache-control": "no-store, private"})


def _record(web: WebContext, link: SignedLink, kind: ActivityType, token: str) -> None:
    """One activity per link and minute: a double click, or a scanner and the reader at once, count once."""
    now = web.clock()
    digest = hashlib.sha256(token.encode()).hexdigest()[:24]
    with session_scope(web.engine) as session:
        email = _email(session, link.lead_id)
        if email is None:
            return
        record = ActivityRecord(
            source_id=f"{kind.value}:{digest}:{now:%Y%m%dT%H%M}",
            email=email,
            type=kind,
            occurred_at=now,
            target=(link.url or link.sequence)[:2000],
            properties={"sequence": link.sequence, "step": link.step},
        )
        store_batch(session=session, source="web", records=[record])


routes = [
    Route("/u/{token}", unsubscribe_page, methods=["GET"]),
    Route("/u/{token}", unsubscribe, methods=["POST"]),
    Route("/c/{token}", click, methods=["GET"]),
    Route("/o/{token}.gif", opened, methods=["GET"]),
]
