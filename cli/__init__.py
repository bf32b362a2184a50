"""The `leadflow` command line."""
