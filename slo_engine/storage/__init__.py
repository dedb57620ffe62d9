"""The state database: changes, incidents, outbox, notices and firing state."""
