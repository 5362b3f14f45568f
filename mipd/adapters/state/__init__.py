"""Durable state: the SQLite state file (store) and its format versions (schema)."""
