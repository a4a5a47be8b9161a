"""Glue the applications share (run, replay, serve, bench): never imported by the core."""
