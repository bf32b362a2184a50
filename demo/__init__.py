"""Deterministic demo data for `leadflow demo`, the benchmarks and the tests; outside the domain core."""
