"""Transport-level behaviour: drops, validation, authentication, truth, timing, disconnects, CLI."""

from __future__ import annotations

import argparse
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import anthropic
import anyio
import httpx2
import pytest
from anthropic import AsyncAnthropic, omit
from sim_helpers import body

from pipeline.apps.simulator import SimulatorSettings, open_simulator
from pipeline.apps.simulator._server import Simulator
from pipeline.apps.simulator.cli import register

pytestmark = pytest.mark.anyio


def _raw_request(base_url: str, payload: dict[str, Any], headers: dict[str, str]) -> bytes:
    """Send one HTTP/1.1 request on a plain socket and read until the server closes it."""
    url = urlsplit(base_url)
    data = json.dumps(payload).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"POST /v1/messages HTTP/1.1\r\nhost: {url.netloc}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(data)}\r\n{head}\r\n"
    ).encode() + data
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def _dechunk(raw_body: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body; also say whether it ended with the terminating zero-length chunk."""
    out, pos = [], 0
    while pos < len(raw_body):
        line_end = raw_body.index(b"\r\n", pos)
        size = int(raw_body[pos:line_end], 16)
        if size == 0:
            return b"".join(out), True
        out.append(raw_body[line_end + 2 : line_end + 2 + size])
        pos = line_end + 2 + size + 2
    return b"".join(out), False


@pytest.mark.parametrize("drop_after", [0, 3, 7, 30])
async def test_drop_cuts_mid_event_on_the_wire(sim: Simulator, drop_after: int) -> None:
    headers = {"x-api-key": "k", "x-rillet-scenario": "drop", "x-rillet-drop-after": str(drop_after)}
    raw = await anyio.to_thread.run_sync(_raw_request, sim.base_url, {**body(200), "stream": True}, headers)
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b"transfer-encoding: chunked" in head.lower()
    sse, terminated = _dechunk(rest)
    assert not terminated  # no zero-length chunk: the body is incomplete
    events = sse.split(b"\n\n")
    assert len(events) == drop_after + 1  # complete events, then a fragment
    assert events[-1]
    assert not sse.endswith(b"\n\n")
    truth = sim.truth(sim.requests[-1])
    assert truth["dropped"]
    assert len(truth["events"]) == drop_after + 1


async def test_drop_inside_tool_input_and_thinking(sim: Simulator) -> None:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        for scenario, after in (("tool_use", 20), ("thinking", 8)):
            headers = {"x-rillet-scenario": scenario, "x-rillet-drop-after": str(after)}
            with pytest.raises(httpx2.TransportError):
                async with c.messages.stream(**body(300), extra_headers=headers) as s:
                    await s.get_final_message()


async def test_continuations_are_not_dropped_unless_asked() -> None:
    async with open_simulator(SimulatorSettings(scenario="drop", drop_after=5)) as s:
        async with AsyncAnthropic(base_url=s.base_url, api_key="k", max_retries=0) as c:
            prefill = {
                **body(50, model="claude-haiku-4-5"),
                "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "# A"}],
            }
            message = await c.messages.create(**prefill)
            assert message.usage.output_tokens == 50
            with pytest.raises(httpx2.TransportError):
                async with c.messages.stream(
                    **prefill, extra_headers={"x-rillet-drop-continuations": "1"}
                ) as st:
                    await st.get_final_message()


async def test_non_streaming_drop_is_a_transport_error(sim: Simulator) -> None:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        with pytest.raises(anthropic.APIConnectionError) as info:
            await c.messages.create(**body(100), extra_headers={"x-rillet-scenario": "drop"})
    assert isinstance(info.value.__cause__, httpx2.TransportError)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, "model: Field required"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 10}, "messages: Field required"),
        ({"model": "m", "max_tokens": 10, "messages": []}, "messages: at least one message is required"),
        (
            {"model": "m", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}]},
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        (
            {"model": "m", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]},
            "max_tokens: Input",
        ),
    ],
)
async def test_validation_errors(sim: Simulator, payload: dict[str, Any], message: str) -> None:
    async with httpx2.AsyncClient(base_url=sim.base_url, headers={"x-api-key": "k"}) as c:
        response = await c.post("/v1/messages", json=payload)
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(message)
    assert error["request_id"] == response.headers["request-id"]


async def test_sdk_raises_bad_request(sim: Simulator) -> None:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        with pytest.raises(anthropic.BadRequestError):
            await c.messages.create(model="claude-opus-4-7", max_tokens=10, messages=[])


async def test_authentication(sim: Simulator) -> None:
    async with AsyncAnthropic(
        base_url=sim.base_url, api_key="unused", max_retries=0, default_headers={"Authorization": omit}
    ) as c:
        with pytest.raises(anthropic.AuthenticationError) as info:
            await c.messages.create(**body(10))
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    async with httpx2.AsyncClient(base_url=sim.base_url) as c:
        for headers in ({"x-api-key": "k"}, {"authorization": "Bearer k"}):
            assert (await c.post("/v1/messages", json=body(5), headers=headers)).status_code == 200
        assert (await c.post("/v1/messages", json=body(5))).status_code == 401


async def test_truth_over_http_and_unknown_routes(sim: Simulator) -> None:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        response = await c.messages.with_raw_response.create(**body(30))
    request_id = response.headers["request-id"]
    async with httpx2.AsyncClient(base_url=sim.base_url) as c:
        truth = (await c.get(f"/_sim/requests/{request_id}")).json()
        assert truth == json.loads(json.dumps(sim.truth(request_id)))
        assert truth["events"]
        assert truth["status"] == 200
        assert request_id in (await c.get("/_sim/requests")).json()["request_ids"]
        missing = await c.get("/_sim/requests/req_nope")
        assert missing.status_code == 404
        assert missing.json()["error"]["type"] == "not_found_error"
        assert (await c.get("/v1/nothing")).json()["error"]["type"] == "not_found_error"


async def test_truth_store_is_bounded() -> None:
    async with open_simulator(SimulatorSettings(truth_limit=3)) as s:
        async with httpx2.AsyncClient(base_url=s.base_url, headers={"x-api-key": "k"}) as c:
            for _ in range(5):
                await c.post("/v1/messages", json=body(2))
        assert len(s.requests) == 3


async def test_timing_and_ground_truth(sim: Simulator) -> None:
    headers = {"x-rillet-ttft-ms": "120", "x-rillet-tokens-per-s": "400"}
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        async with c.messages.stream(**body(80), extra_headers=headers) as s:
            await s.get_final_message()
            request_id = s.response.headers["request-id"]
    truth = sim.truth(request_id)
    events = truth["events"]
    start = next(e["sent_ns"] for e in events if e["type"] == "message_start")
    first = next(e["sent_ns"] for e in events if e["type"] == "content_block_delta")
    last = [e["sent_ns"] for e in events if e["type"] == "content_block_delta"][-1]
    received = truth["received_ns"]
    assert (first - received) / 1e6 >= 119  # TTFT: receipt to first content delta
    assert (start - received) / 1e6 >= 94  # message_start goes out 25 ms before it
    assert start < first
    assert truth["headers_ns"] <= start
    # The token clock: the first delta carries at most 3 of the 80 tokens, the rest follow at 400/s.
    assert (last - first) / 1e9 >= (80 - 3) / 400 * 0.95
    assert [e["sent_ns"] for e in events] == sorted(e["sent_ns"] for e in events)


async def test_client_disconnect_is_recorded(sim: Simulator) -> None:
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as c:
        async with c.messages.stream(**body(2000), extra_headers={"x-rillet-tokens-per-s": "200"}) as s:
            async for event in s:
                if event.type == "text":
                    break
    request_id = sim.requests[-1]
    with anyio.fail_after(5):
        while not sim.truth(request_id)["disconnected"]:  # noqa: ASYNC110 - polling server state, no event to await
            await anyio.sleep(0.02)
    assert not sim.truth(request_id)["completed"]


async def test_exiting_cuts_streams_in_flight() -> None:
    errors: list[BaseException] = []
    async with open_simulator(SimulatorSettings(tokens_per_s=100)) as s:
        c = AsyncAnthropic(base_url=s.base_url, api_key="k", max_retries=0)
        stream = await c.messages.create(**body(5000), stream=True)
        await stream.__anext__()
    try:
        async for _ in stream:
            pass
    except httpx2.TransportError as exc:
        errors.append(exc)
    finally:
        await stream.close()
        await c.close()
    assert errors


def test_settings_validate() -> None:
    with pytest.raises(ValueError, match="scenario"):
        SimulatorSettings(scenario="nope")
    with pytest.raises(ValueError, match="jitter"):
        SimulatorSettings(jitter=1.5)


def test_cli_registers_simulate() -> None:
    parser = argparse.ArgumentParser(prog="rillet")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "simulate",
            "--port",
            "0",
            "--scenario",
            "drop",
            "--drop-after",
            "4",
            "--ttft-ms",
            "50",
            "--drop-continuations",
        ]
    )
    assert args.command == "simulate"
    assert callable(args.func)
    assert (args.host, args.port, args.scenario, args.drop_after, args.drop_continuations) == (
        "127.0.0.1",
        0,
        "drop",
        4,
        True,
    )


def test_standalone_entry_point() -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "pipeline.apps.simulator", "--port", "0"]
    with subprocess.Popen(cmd, cwd=repo, env=env, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline()
            assert "listening on http://127.0.0.1:" in line
            url = line.split("listening on ", 1)[1].split()[0]
            response = httpx2.post(f"{url}/v1/messages", json=body(5), headers={"x-api-key": "k"})
            assert response.json()["usage"]["output_tokens"] == 5
        finally:
            proc.terminate()
            assert proc.wait(timeout=10) == 0
            assert proc.stderr is not None
            proc.stderr.close()


async def test_count_tokens_is_what_messages_bills(sim: Simulator) -> None:
    """``POST /v1/messages/count_tokens`` counts with the simulator's one tokenizer, as billed."""
    request = body(50, system="Be brief.")
    async with AsyncAnthropic(base_url=sim.base_url, api_key="k", max_retries=0) as client:
        counted = await client.messages.count_tokens(
            model=request["model"], messages=request["messages"], system=request["system"]
        )
        message = await client.messages.create(**request)
        with pytest.raises(anthropic.BadRequestError, match="messages: Field required"):
            await client.messages.count_tokens(model="claude-opus-4-7", messages=omit)
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.count_tokens(
                model=request["model"],
                messages=request["messages"],
                extra_headers={"x-rillet-count-fail": "1"},
            )
    assert counted.input_tokens == message.usage.input_tokens > 0
