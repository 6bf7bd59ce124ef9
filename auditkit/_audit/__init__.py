"""Audit checks: integrity, consumer groups, durability, read models, one findings table."""
