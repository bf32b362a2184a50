"""The domain core: tables, settings, workspace config, scoring and stages. Imports nothing of ours."""
