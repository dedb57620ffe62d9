"""Prometheus rules from the model: rule groups, rule files, promtool tests, backfill."""
