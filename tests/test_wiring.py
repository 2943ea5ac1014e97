"""The composition roots (livecast.app.origin / .edge): what each role wires, and that
the package rules hold where they matter at run time (observe/ loads no component)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from conftest import make_settings

from livecast.app import create_app
from livecast.chat.bus.memory import InProcessBus
from livecast.chat.ws import CHAT
from livecast.ingest.component import HUB

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(m for m in sys.modules if m.startswith('livecast')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT, timeout=60)
    return set(out.stdout.split())


def test_observe_loads_no_component() -> None:
    loaded = _loaded_after("import livecast.observe")
    allowed = {"livecast", "livecast.config", "livecast.logs"}  # settings and logging: no components
    outside = {m for m in loaded if not m.startswith(("livecast.observe", "livecast.core")) and m not in allowed}
    assert "livecast.observe.metrics" in loaded
    assert outside == set()


def test_the_chat_bus_interface_loads_no_implementation() -> None:
    loaded = _loaded_after("import livecast.chat.bus.base")
    assert "livecast.chat.bus.redis" not in loaded
    assert "livecast.chat.bus.memory" not in loaded


def test_origin_sets_the_keyframe_limit_with_metrics_or_not(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, hls={"segment_duration": 3.0})
    app = create_app(settings)
    assert app[HUB].keyframe_limit == 3.0  # stream-health warnings do not depend on metrics
    assert isinstance(app[CHAT].bus, InProcessBus)  # no chat.bus: the in-process one


async def test_each_role_exposes_its_own_metrics(node_factory: Any) -> None:
    origin = await node_factory()
    async with origin.http.get(origin.url("/metrics")) as resp:
        text = await resp.text()
    assert resp.status == 200
    for family in ("livecast_publishers", "livecast_chat_connections", "livecast_hls_segments",
                   "livecast_event_loop_lag_seconds"):
        assert family in text
    assert "livecast_edge_cache_bytes" not in text
    edge = await node_factory(tmp_path_data(origin), server={"role": "edge", "origin": origin.base},
                              cluster={"secret": "s" * 32})
    async with edge.http.get(edge.url("/metrics")) as resp:
        text = await resp.text()
    assert resp.status == 200
    assert "livecast_edge_cache_bytes" in text and "livecast_edge_origin_up" in text
    assert "livecast_publishers" not in text and "livecast_chat_connections" not in text


def tmp_path_data(origin: Any) -> Path:
    return Path(origin.settings.data_path).parent / "edge-data"
