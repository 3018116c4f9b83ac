"""Executors: they run work units (lists of jobs) and hand results back to the caller."""
