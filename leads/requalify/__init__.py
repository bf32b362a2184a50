"""Requalify runs: rescoring due leads, moving stages, rounds of shards and their helper processes."""
