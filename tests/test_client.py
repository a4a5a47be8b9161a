"""``make_client``: the SDK's own transport unless wire times are asked for."""

from __future__ import annotations

import functools
import subprocess
import sys
from typing import Any

import anyio
import pytest

from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.arrivals import arrival, sent_ns
from pipeline.client import MAX_IDLE_CONNECTIONS, make_client
from pipeline.wire.transport import WireStream

pytestmark = pytest.mark.anyio

REQUEST: dict[str, Any] = {
    "model": "claude-sonnet-4-6",
    "max_tokens": 8,
    "messages": [{"role": "user", "content": "Say something."}],
}


@pytest.mark.parametrize("wire", [False, True])
async def test_the_sdks_transport_by_default_wire_times_on_request(wire: bool) -> None:
    async with open_simulator() as sim, make_client(api_key="k", base_url=sim.base_url, wire=wire) as client:
        raw = await client.messages.with_raw_response.create(**REQUEST)
        message = await raw.parse()
    response = raw.http_response
    assert isinstance(response.extensions["network_stream"], WireStream) == wire
    assert message.stop_reason == "max_tokens"
    stamp = arrival(response)
    sent = sent_ns(response)
    assert stamp is not None
    assert sent is not None
    assert sent < stamp.ns


def test_the_wire_transport_is_imported_only_when_asked_for() -> None:
    code = (
        "import sys; from pipeline.client import make_client; "
        "make_client(api_key='k', base_url='http://127.0.0.1:9'); "
        "print(sorted(m for m in sys.modules if m.startswith('pipeline.wire.stamps')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(("wire", "kept"), [(False, MAX_IDLE_CONNECTIONS), (True, 40)])
async def test_idle_connections_kept_are_capped_except_on_wire_times(wire: bool, kept: int) -> None:
    """40 requests at once leave 40 connections; the default client keeps 32 of them (a pool that
    probes each idle one on every request), a benchmark's all 40 (a new one would time a handshake)."""
    settings = SimulatorSettings(ttft_ms=300)  # the 40 overlap: each needs a connection of its own
    async with (
        open_simulator(settings) as sim,
        make_client(api_key="k", base_url=sim.base_url, wire=wire) as client,
    ):
        async with anyio.create_task_group() as group:
            for _ in range(40):
                group.start_soon(functools.partial(client.messages.create, **REQUEST))
        pool = client._client._transport._pool  # type: ignore[attr-defined]
        assert len(pool.connections) == kept
