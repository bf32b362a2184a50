"""Handing SQLs to sales: the handoff outbox and its payload. No Prefect here."""
