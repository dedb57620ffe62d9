"""The Prometheus edge: queries, the ledger fetch and its cache, deploys from build info."""
