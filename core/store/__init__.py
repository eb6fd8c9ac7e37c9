"""The local event log: SQLite (WAL) through aiosqlite."""
