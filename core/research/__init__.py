"""Research exports: the log as verifiable tables (JSON Lines, CSV, Parquet, SQLite)."""
