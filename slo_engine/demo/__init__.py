"""The demo's month of events and changes, and the same story on a real Prometheus."""
