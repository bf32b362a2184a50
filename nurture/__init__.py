"""Nurture sequences: enrollment, rendering, compliance and the email outbox. No Prefect here."""
