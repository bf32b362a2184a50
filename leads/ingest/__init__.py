"""Records in: one raw record to a validated activity or a quarantine reason; pages stored once."""
