"""Prefect flows and tasks: thin wiring over leads, connectors and nurture."""
