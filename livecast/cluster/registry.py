"""The cluster's node registry: the edges heard from by heartbeat, their load, and which
edge a room's viewers are sent to (rendezvous hashing among edges of close load).

``NodeRegistry`` is the interface the HTTP handlers use; ``Registry`` keeps it in this
process's memory (a shared registry for several origins is a backend to add).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from livecast.core.errors import Unavailable

log = logging.getLogger(__name__)

MAX_NODES = 256

CLOSE_RATIO = 1.25
CLOSE_MARGIN = 5


# -- selection (pure) ----------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    id: str
    load: float


def rendezvous_score(slug: str, node_id: str) -> int:
    digest = hashlib.sha256(f"{slug}\x00{node_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def choose_node(slug: str, candidates: Sequence[Candidate], *, ratio: float = CLOSE_RATIO,
                margin: float = CLOSE_MARGIN) -> Candidate | None:
    """The candidate a room plays from: the highest rendezvous score among those whose
    load is at most ``max(least * ratio, least + margin)``; None when there are none."""
    if not candidates:
        return None
    least = min(c.load for c in candidates)
    limit = max(least * ratio, least + margin)
    close = [c for c in candidates if c.load <= limit]
    return max(close, key=lambda c: (rendezvous_score(slug, c.id), c.id))


# -- registry ------------------------------------------------------------------------


@dataclass
class NodeState:
    id: str
    url: str
    viewers: int
    bytes_per_second: float
    healthy: bool
    last_seen: float  # monotonic
    first_seen: float

    def fresh(self, now: float, timeout: float) -> bool:
        return now - self.last_seen <= timeout

    def to_json(self, now: float, timeout: float) -> dict[str, Any]:
        return {"id": self.id, "url": self.url, "role": "edge", "viewers": self.viewers,
                "bytes_per_second": round(self.bytes_per_second, 1), "healthy": self.healthy,
                "last_seen_seconds": round(now - self.last_seen, 3),
                "state": "live" if self.fresh(now, timeout) else "stale"}


def node_id(url: str) -> str:
    return "edge-" + hashlib.sha256(url.encode()).hexdigest()[:10]


class Registry:
    """Edges by announced URL. Stale ones are listed (state "stale") until
    ``forget_after`` seconds without a heartbeat, then dropped; at most ``max_nodes``."""

    def __init__(self, timeout: float, *, max_nodes: int = MAX_NODES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self.forget_after = max(10 * timeout, 60.0)
        self.max_nodes = max_nodes
        self._clock = clock
        self._nodes: dict[str, NodeState] = {}

    def heartbeat(self, url: str, viewers: int, bytes_per_second: float, healthy: bool) -> NodeState:
        now = self._clock()
        node = self._nodes.get(url)
        if node is None:
            self._forget(now)
            if len(self._nodes) >= self.max_nodes:
                raise Unavailable("the cluster has too many nodes", code="cluster_full")
            node = NodeState(node_id(url), url, viewers, bytes_per_second, healthy, now, now)
            self._nodes[url] = node
            log.info("edge %s joined (%s)", url, node.id)
        elif not node.fresh(now, self.timeout):
            log.info("edge %s is back after %.1f s", url, now - node.last_seen)
        node.viewers, node.bytes_per_second, node.healthy, node.last_seen = viewers, bytes_per_second, healthy, now
        return node

    def merge(self, url: str, viewers: int, bytes_per_second: float, healthy: bool, age: float) -> None:
        """An edge another origin heard from ``age`` seconds ago (a shared registry's sync);
        kept only if newer than what this origin heard itself."""
        now = self._clock()
        seen = now - max(0.0, age)
        node = self._nodes.get(url)
        if node is not None and node.last_seen >= seen:
            return
        if node is None:
            if len(self._nodes) >= self.max_nodes or now - seen > self.forget_after:
                return
            node = self._nodes[url] = NodeState(node_id(url), url, viewers, bytes_per_second, healthy, seen, seen)
        node.viewers, node.bytes_per_second, node.healthy, node.last_seen = viewers, bytes_per_second, healthy, seen

    def _forget(self, now: float) -> None:
        for url in [u for u, n in self._nodes.items() if now - n.last_seen > self.forget_after]:
            del self._nodes[url]

    def nodes(self) -> list[NodeState]:
        self._forget(self._clock())
        return sorted(self._nodes.values(), key=lambda n: n.url)

    def available(self) -> list[NodeState]:
        """Healthy edges heard from within the heartbeat timeout."""
        now = self._clock()
        return [n for n in self._nodes.values() if n.healthy and n.fresh(now, self.timeout)]

    def choose(self, slug: str) -> NodeState | None:
        edges = {n.id: n for n in self.available()}
        picked = choose_node(slug, [Candidate(n.id, n.viewers) for n in edges.values()])
        return edges[picked.id] if picked else None

    def now(self) -> float:
        return self._clock()


class NodeRegistry(Protocol):
    """What the cluster API needs of a registry."""

    timeout: float

    def heartbeat(self, url: str, viewers: int, bytes_per_second: float, healthy: bool) -> NodeState: ...

    def nodes(self) -> list[NodeState]: ...

    def available(self) -> list[NodeState]: ...

    def choose(self, slug: str) -> NodeState | None: ...

    def now(self) -> float: ...
