"""Storage: SQLModel tables, engines and sessions, migrations, the SQLite bulk-load mode."""
