"""Email templates shipped with leadflow; `leadflow init` copies them into a workspace."""
