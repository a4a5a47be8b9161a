"""``make_client``: the SDK's own transport unless wire times are asked for."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from pipeline.apps.simulator import open_simulator
from pipeline.arrivals import arrival, sent_ns
from pipeline.client import make_client
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
