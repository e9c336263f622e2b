"""Dramatiq actors and the long-running consumers (capture server, scheduler, console control)."""
