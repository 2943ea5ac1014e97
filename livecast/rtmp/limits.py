"""The admission policy of the RTMP listener: caps on connections that are not
publishing yet, refusal accounting, and handing freed memory back to the OS.

``PendingConnections`` groups pending connections by peer address, oldest first, so the
listener can cap them per address and globally, and pick whom to evict when the global
cap is full: the oldest connection of the address holding the most. ``Refusals`` counts
every refused, evicted or limit-closed connection by reason (for ``/metrics``) and logs
each once without flooding the log: the first per reason and address in a summary
interval, then one summary line for the rest. ``IngestGate`` applies the settings with
both, and calls glibc's ``malloc_trim`` after connections that held large buffers close.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable
from typing import Any, Generic, Protocol, TypeVar

from livecast.config import IngestSettings
from livecast.hls.store import release_free_memory

log = logging.getLogger(__name__)

# Reasons a connection is refused or closed by an ingest limit (the metric's labels).
REASONS = (
    "pending_per_address",  # too many pending connections from the peer's address
    "pending_evicted",  # the global pending cap was full; the oldest of the busiest address went
    "handshake_timeout",
    "auth_timeout",  # no publish accepted within ingest.auth_timeout
    "preauth_bytes",  # over ingest.preauth_max_bytes before a publish was accepted
    "message_size",
    "partial_streams",
    "partial_bytes",
    "chunk_streams",
    "protocol_error",  # bytes that break the protocol
    "bad_key",  # publish with an unknown stream key (or outside the live app)
    "publish_rejected",  # the on_publish webhook said no
    "server_full",  # ingest.max_publishers rooms are live
)
SUMMARY_INTERVAL = 60.0  # seconds between summaries of refusals not logged one by one
MAX_LOGGED_KEYS = 1000  # (reason, address) pairs remembered per interval
# Closed connections that held this many bytes of partial messages (together) make the
# gate hand free heap memory back to the OS, at most once per TRIM_INTERVAL seconds.
TRIM_AFTER_BYTES = 1024 * 1024
TRIM_INTERVAL = 5.0

C = TypeVar("C", bound=Hashable)


class PendingConnections(Generic[C]):
    """Pending connections by address, each address's in arrival order."""

    def __init__(self) -> None:
        self._by_host: dict[str, dict[C, None]] = {}
        self._hosts: dict[C, str] = {}

    def __len__(self) -> int:
        return len(self._hosts)

    def __contains__(self, conn: object) -> bool:
        return conn in self._hosts

    def count(self, host: str) -> int:
        return len(self._by_host.get(host, ()))

    def add(self, conn: C, host: str) -> None:
        if conn not in self._hosts:
            self._hosts[conn] = host
            self._by_host.setdefault(host, {})[conn] = None

    def discard(self, conn: C) -> None:
        host = self._hosts.pop(conn, None)
        if host is None:
            return
        conns = self._by_host[host]
        del conns[conn]
        if not conns:
            del self._by_host[host]

    def victim(self) -> C | None:
        """The oldest pending connection of the address that holds the most."""
        if not self._by_host:
            return None
        busiest = max(self._by_host.values(), key=len)
        return next(iter(busiest))


class Refusals:
    """Counts refusals by reason; logs the first per (reason, address), then summaries."""

    def __init__(self, interval: float = SUMMARY_INTERVAL) -> None:
        self.totals: Counter[str] = Counter({reason: 0 for reason in REASONS})
        self._interval = interval
        self._logged: set[tuple[str, str]] = set()
        self._quiet: Counter[str] = Counter()
        self._since = 0.0

    def note(self, reason: str, host: str, message: str) -> None:
        """Count one refusal; log ``message`` unless this reason and address were logged
        in the current interval."""
        self.totals[reason] += 1
        key = (reason, host)
        if key in self._logged or len(self._logged) >= MAX_LOGGED_KEYS:
            self._quiet[reason] += 1
            return
        self._logged.add(key)
        log.warning("rtmp %s (further ones from %s are summarised)", message, host)

    def summarise(self, now: float) -> None:
        """Log what was not logged one by one, once per interval; called by the sweeper."""
        if not self._since:
            self._since = now
        if now - self._since < self._interval:
            return
        self._since = now
        if self._quiet:
            detail = ", ".join(f"{reason} {count}" for reason, count in sorted(self._quiet.items()))
            log.warning("rtmp: %d more connections refused or closed by ingest limits in the last %.0f s (%s)",
                        sum(self._quiet.values()), self._interval, detail)
        self._quiet.clear()
        self._logged.clear()


class Gated(Protocol):
    """What the gate needs of a connection."""

    host: str
    peer: str

    def __hash__(self) -> int: ...

    def refuse(self, reason: str, message: str) -> None: ...


class IngestGate:
    """Admits new connections as pending within ``max_pending_per_address`` and
    ``max_pending`` (evicting rather than refusing when only the global cap is full)."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.pending: PendingConnections[Any] = PendingConnections()
        self.refusals = Refusals()
        self._freed = 0  # bytes of partial messages held by connections closed since the last trim
        self._last_trim = 0.0

    def admit(self, conn: Gated) -> bool:
        """Take a new connection in as pending; False: refused (counted and logged)."""
        limits = self.settings
        if self.pending.count(conn.host) >= limits.max_pending_per_address:
            self.refusals.note("pending_per_address", conn.host,
                               f"{conn.peer} refused: {limits.max_pending_per_address} connections from this "
                               "address are not publishing yet (ingest.max_pending_per_address)")
            return False
        if len(self.pending) >= limits.max_pending:
            victim: Gated | None = self.pending.victim()
            if victim is not None:
                victim.refuse("pending_evicted", f"evicted: {limits.max_pending} connections are not publishing "
                                                 "yet (ingest.max_pending), the oldest of the busiest address goes")
                self.pending.discard(victim)
        self.pending.add(conn, conn.host)
        return True

    def closed(self, conn: Gated, held: int) -> None:
        """``conn`` is gone; it held at most ``held`` bytes in partial messages."""
        self.pending.discard(conn)
        self._freed += held

    def tick(self, now: float) -> None:
        """Periodic duties (the listener's sweeper): the refusal summary, memory hand-back."""
        self.refusals.summarise(now)
        if self._freed >= TRIM_AFTER_BYTES and now - self._last_trim >= TRIM_INTERVAL:
            self._freed, self._last_trim = 0, now
            release_free_memory()
