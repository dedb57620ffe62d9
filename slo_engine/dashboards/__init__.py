"""Grafana dashboards of the SLOs, built with grafana-foundation-sdk: SLO model → dashboards."""
