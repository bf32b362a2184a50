"""Scores from rules (single leads and whole arrays) and the stage each score puts a lead in."""
