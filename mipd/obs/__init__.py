"""Observability: structured events to journald (or stderr) and sd_notify."""
