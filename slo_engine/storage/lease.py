"""The leadership lease's rules, one copy for every store: a store reads the lease row, asks
these what it becomes, and writes that back inside the same (serialised) transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from slo_engine.errors import LeaseLost
from slo_engine.storage.interface import Lease


def acquired(current: Lease | None, holder: str, ttl: timedelta, now: datetime) -> Lease:
    """The lease after `holder` asks for it at `now`: `current` unchanged while another
    holder's is live; else `holder`'s until `now + ttl`, with the same token when it renews
    its own live lease and the next token when it takes the lease."""
    if current is not None and current.holder != holder and current.expires_at > now:
        return current
    live_renewal = current is not None and current.holder == holder \
        and current.expires_at > now
    token = current.token if current is not None and live_renewal else \
        (current.token + 1 if current is not None else 1)
    return Lease(holder, token, now + ttl)


def releasable(current: Lease | None, holder: str, now: datetime) -> bool:
    """Whether `holder` holds a live lease it may let lapse at `now`."""
    return current is not None and current.holder == holder and current.expires_at > now


def check_fence(current: Lease | None, token: int, now: datetime) -> None:
    """LeaseLost unless `current` carries `token` and is live at `now`."""
    if current is None or current.token != token or current.expires_at <= now:
        raise LeaseLost(f"this replica's lease (token {token}) is no longer the "
                        f"leader's: {_describe(current, now)}")


def _describe(lease: Lease | None, now: datetime) -> str:
    if lease is None:
        return "no replica holds the lease"
    state = "lapsed" if lease.expires_at <= now else "held"
    return f"{state} by {lease.holder} with token {lease.token}"
