"""Judging green: metric providers (Prometheus, HTTP probes), Flagger-compatible webhooks, smoke Jobs."""
