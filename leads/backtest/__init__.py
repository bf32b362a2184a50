"""Holding the rules against known outcomes: replays, metrics, the naive-Bayes baseline."""
