"""What the CRM sinks share: the ledger of created records, create-at-most-once, owners, texts, errors.

A CRM has no idempotency key, so each sink makes its writes idempotent itself:

- records it created for a handoff are kept in a ledger (the database, through `handoff/`), keyed
  by the handoff's idempotency key and the step ("contact", "task", …), so a retry skips them;
- before creating, it looks the record up at the vendor (by email, or by the handoff reference
  `lf…` that every task/lead title carries), which covers a create that reached the vendor but
  whose answer was lost (a timeout, a crash before the ledger was written);
- updates (lifecycle stage, status, owner) are plain field writes: repeating them is harmless.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, Self

import httpx

from leadflow.connectors.backoff import RetryPolicy
from leadflow.connectors.errors import (
    APIError,
    AuthenticationError,
    CredentialsRefused,
    FatalAPIError,
    FatalHandoffError,
    QuotaExhausted,
    RetriableAPIError,
    RetriableHandoffError,
)
from leadflow.connectors.handoff_payload import HandoffPayload
from leadflow.connectors.http import ApiClient, Classifier


class DeliveryLedger(Protocol):
    """Where a sink keeps the CRM ids it created, and the lead's id in that CRM (`lead.crm_ids`)."""

    def recall(self, key: str, step: str) -> str | None: ...

    def remember(self, key: str, step: str, crm_id: str) -> None: ...

    def lead_crm_id(self, email: str, destination: str) -> str | None: ...

    def save_lead_crm_id(self, email: str, destination: str, crm_id: str) -> None: ...


class MemoryLedger:
    """A ledger in a dict: for tests and for a sink used without a database."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str], str] = {}
        self.leads: dict[tuple[str, str], str] = {}

    def recall(self, key: str, step: str) -> str | None:
        return self.steps.get((key, step))

    def remember(self, key: str, step: str, crm_id: str) -> None:
        self.steps.setdefault((key, step), crm_id)

    def lead_crm_id(self, email: str, destination: str) -> str | None:
        return self.leads.get((email, destination))

    def save_lead_crm_id(self, email: str, destination: str, crm_id: str) -> None:
        self.leads[(email, destination)] = crm_id


class CrmSink:
    """What every CRM sink holds: its destination's name and spec, the ledger, the retry policy and
    one HTTP client for the vendor (closed with the sink). Subclasses add the vendor's `deliver`."""

    vendor: str

    def __init__(
        self,
        spec: Any,
        *,
        ledger: DeliveryLedger,
        auth: httpx.Auth,
        classify: Callable[[str], Classifier],
        base_url: str | None = None,
        acquire: Callable[[], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self.ledger = ledger
        self.retry = retry or RetryPolicy()
        self.client = ApiClient(
            source=spec.name,
            base_url=base_url or spec.base_url,
            auth=auth,
            classify=classify(spec.name),
            retry=self.retry,
            acquire=acquire,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()


@contextmanager
def delivery_errors(destination: str) -> Iterator[None]:
    """Vendor errors as handoff errors: retriable stays retriable, refused credentials stop the destination."""
    try:
        yield
    except AuthenticationError as exc:
        raise CredentialsRefused(destination, exc.detail) from exc
    except FatalAPIError as exc:
        if exc.code == "DAILY" or exc.code == "REQUEST_LIMIT_EXCEEDED":  # not retriable within the run
            raise QuotaExhausted(destination, f"{exc.detail}{_status(exc)}; the next run tries again") from exc
        raise FatalHandoffError(f"destination {destination!r}: {exc.detail}{_status(exc)}", status=exc.status) from exc
    except RetriableAPIError as exc:
        raise RetriableHandoffError(
            f"destination {destination!r}: {exc.detail}{_status(exc)}", retry_after=exc.retry_after, status=exc.status
        ) from exc


def _status(exc: APIError) -> str:
    return f" ({exc.status}{' ' + exc.code if exc.code else ''})" if exc.status else ""


def create_once(
    *,
    find: Callable[[], str | None],
    create: Callable[[], str],
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    settle: float = 0.0,
) -> str:
    """Create a record at most once: look for it first, and after an attempt that failed in a way
    that may have reached the vendor (timeout, 5xx, 429) look again before the next attempt.

    `settle`: when `find` reads a search index that lags writes (HubSpot's, Pipedrive's), the look
    again waits at least this long, or a record the lost attempt made would be missed and made twice.
    """
    attempt = 0
    while True:
        attempt += 1
        found = find()
        if found:
            return found
        try:
            return create()
        except RetriableAPIError as error:
            wait = retry.delay(attempt, error.retry_after)
            if wait is None:
                raise
            sleep(max(wait, settle))


def reference(idempotency_key: str) -> str:
    """A short, searchable tag for one handoff (`lf` + 12 hex): in task subjects and lead titles."""
    return "lf" + hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:12]


def subject(payload: HandoffPayload, idempotency_key: str, *, limit: int = 255) -> str:
    """`New SQL: Anna Jansen (Acme Logistics) [lf…]`: what the rep sees in their task list."""
    lead = payload.lead
    company = f" ({lead.company})" if lead.company else ""
    tag = f" [{reference(idempotency_key)}]"
    return f"New SQL: {lead.display_name}{company}"[: limit - len(tag)] + tag


def explanation_text(payload: HandoffPayload) -> str:
    """Why the lead qualified, as plain text: the reason, the scores, the explanation and the stage history."""
    score = payload.score
    lines = [
        f"Qualified as SQL at {payload.qualified_at}: {payload.reason}",
        f"Score {score.total} (fit {score.fit}, engagement {score.engagement}), rules {payload.ruleset_version}",
    ]
    if payload.summary:
        lines += ["", payload.summary]
    if payload.stage_history:
        lines += ["", "Stage history:"]
        lines += [f"- {h.at}: {h.from_stage} → {h.to} ({h.reason})" for h in payload.stage_history]
    return "\n".join(lines)


def explanation_html(payload: HandoffPayload, idempotency_key: str) -> str:
    """The same text for CRMs that render HTML bodies (HubSpot notes and tasks, Pipedrive notes)."""
    text = explanation_text(payload) + f"\n\nleadflow handoff {reference(idempotency_key)}"
    return "<p>" + html.escape(text).replace("\n", "<br>") + "</p>"
