"""Logging (JSON lines) and health checks."""
