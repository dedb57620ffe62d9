"""The state database behind one interface: changes, incidents, outbox, notices, firing state.

`interface` says what a store does in domain words; `sqlite` is the embedded implementation
and `postgres` the shared one (each the only place that writes SQL for its database);
`opening.open_store` opens the one the engine config names.
"""

from slo_engine.storage.interface import (
    Incident,
    NewIncident,
    NoticeThreshold,
    Outage,
    OutboxItem,
    OutboxKind,
    OutboxState,
    StateReader,
    StateStore,
    StateWriter,
)

__all__ = ["Incident", "NewIncident", "NoticeThreshold", "Outage", "OutboxItem", "OutboxKind",
           "OutboxState", "StateReader", "StateStore", "StateWriter"]
