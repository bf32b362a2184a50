"""The domain core, by job. Imports nothing of ours outside `leads`, and never Prefect.

db/ tables, engines, migrations · config/ settings and `leadflow.yaml` · ingest/ records in, leads and
activity stored · scoring/ rules, arrays, stages · requalify/ runs, rounds, helper processes, explain ·
backtest/ outcomes, replays, metrics, the predictive baseline · work/ claims, leases, progress.
"""
