"""The vocabularies stored in the tables: funnel stages, activity types, outbox and work statuses.

Enum columns are stored as plain strings (sa_type=String): adding a stage or status later is a
config change, not a PostgreSQL ENUM migration.
"""

from __future__ import annotations

from enum import StrEnum


class Stage(StrEnum):
    """Funnel stages in order; `disqualified` and `recycled` sit beside the funnel."""

    suspect = "suspect"
    prospect = "prospect"
    hot_prospect = "hot_prospect"
    mql = "mql"
    sql = "sql"
    customer = "customer"
    disqualified = "disqualified"
    recycled = "recycled"


FUNNEL: tuple[Stage, ...] = (
    Stage.suspect,
    Stage.prospect,
    Stage.hot_prospect,
    Stage.mql,
    Stage.sql,
    Stage.customer,
)


_RANKS = {stage: rank for rank, stage in enumerate(FUNNEL)}


def funnel_rank(stage: Stage) -> int:
    """Position in the funnel; stages beside it (recycled, disqualified) rank as suspect."""
    return _RANKS.get(stage, 0)


class ActivityType(StrEnum):
    """The activity vocabulary. Sources map their own event names onto these."""

    page_view = "page_view"
    email_open = "email_open"
    email_click = "email_click"
    email_reply = "email_reply"
    email_bounce = "email_bounce"
    unsubscribe = "unsubscribe"
    download = "download"
    webinar = "webinar"
    form_submit = "form_submit"
    newsletter_signup = "newsletter_signup"
    cart_add = "cart_add"
    wishlist_add = "wishlist_add"
    ad_click = "ad_click"
    demo_request = "demo_request"
    quote_request = "quote_request"
    contact_sales = "contact_sales"
    # Outcomes reported by sales or the CRM; they move stages directly (see leads/scoring/stages.py).
    sales_accepted = "sales_accepted"
    sales_rejected = "sales_rejected"
    sales_disqualified = "sales_disqualified"
    deal_won = "deal_won"
    deal_lost = "deal_lost"


class OutboxStatus(StrEnum):
    pending = "pending"
    sending = "sending"  # claimed under a lease; nothing handed to the mail server yet
    in_flight = "in_flight"  # the message is being handed over (SMTP DATA); never sent again
    sent = "sent"
    unconfirmed = "unconfirmed"  # was in flight when its sender died: counted as sent, not confirmed
    skipped = "skipped"
    failed = "failed"
    dead = "dead"


class EnrollmentStatus(StrEnum):
    active = "active"
    completed = "completed"
    exited = "exited"


class SuppressionReason(StrEnum):
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complained = "complained"
    manual = "manual"


EVERY_EMAIL = "all"  # the scope of a suppression from all marketing email (else: one sequence's name)


class AssignmentStatus(StrEnum):
    active = "active"  # the owner has the lead; its SLA (if any) is running
    met = "met"  # the SLA was met (or the lead left SQL): nothing more to watch
    reassigned = "reassigned"  # the SLA was breached and the lead went to the next owner
    escalated = "escalated"  # the SLA was breached and a manager was told


class ShardStatus(StrEnum):
    pending = "pending"
    claimed = "claimed"
    done = "done"
