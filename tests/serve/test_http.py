"""The HTTP API against a real uvicorn on loopback: resume, event format, validation, limits, security."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest

from pipeline.apps.serve import ServeSettings
from pipeline.errors import ConfigError
from tests.serve.harness import read_events, serving, start, status, until_idle

pytestmark = pytest.mark.anyio


class Elements(HTMLParser):
    """The elements and attributes an HTML fragment would create."""

    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()
        self.attributes: set[str] = set()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.names.add(tag)
        self.attributes.update(name for name, _ in attrs)
        self.hrefs += [value or "" for name, value in attrs if name == "href"]


FRAME = re.compile(rb"id: (\d+)\nevent: ([a-z_.]+)\ndata: ([^\r\n]+)\n\n")


async def test_every_last_event_id_resumes_with_exactly_the_rest() -> None:
    """From each id of a recorded stream, a reconnect gets exactly the frames after it; after the end, 204."""
    async with serving() as served, served.http() as http:
        stream_id = await start(http, max_tokens=300)
        full = await read_events(http, stream_id)
        assert full.ids() == list(range(1, len(full.events) + 1))
        assert full.events[-1].type == "end"
        for cursor in range(len(full.events)):
            resumed = await read_events(http, stream_id, {"last-event-id": str(cursor)})
            assert resumed.events == full.events[cursor:], cursor
        done = await read_events(http, stream_id, {"last-event-id": str(len(full.events))})
        assert done.status == 204


async def test_after_resumes_a_reloaded_page_and_the_header_wins() -> None:
    """``?after=N`` is the cursor without ``Last-Event-ID``; with both, the header is the newer one."""
    async with serving() as served, served.http() as http:
        stream_id = await start(http, max_tokens=100)
        full = await read_events(http, stream_id)
        by_query = await read_events(http, stream_id, query="?after=5")
        assert by_query.events == full.events[5:]
        both = await read_events(http, stream_id, {"last-event-id": "9"}, query="?after=5")
        assert both.events == full.events[9:]
        for bad in ("abc", "-3", "1e3", str(10**6), "9" * 5000):
            assert (await read_events(http, stream_id, {"last-event-id": bad})).events == full.events
        huge = await read_events(http, stream_id, query="?after=" + "9" * 5000)
        assert huge.status == 200
        assert huge.events == full.events


async def test_event_stream_format_and_headers() -> None:
    """``retry:`` first, then frames of exactly one id, one name and one line of JSON; no compression."""
    async with serving() as served, served.http() as http:
        stream_id = await start(http, max_tokens=200)
        async with http.stream("GET", f"/api/streams/{stream_id}/events") as response:
            body = await response.aread()
        headers = response.headers
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-store, no-transform"
        assert headers["x-accel-buffering"] == "no"
        assert "content-encoding" not in headers
        assert body.startswith(b"retry: 2000\n\n")
        rest = body.removeprefix(b"retry: 2000\n\n")
        frames = FRAME.findall(rest)
        assert b"".join(b"id: %s\nevent: %s\ndata: %s\n\n" % frame for frame in frames) == rest
        names = [name.decode() for _, name, _ in frames]
        assert "ping" not in names
        assert "error" not in names
        assert names[-1] == "end"
        assert json.loads(frames[-1][2])["outcome"] == "completed"


async def test_markup_arrives_as_text_and_renders_inert() -> None:
    """The markup scenario's CR, CRLF, U+2028, BOM, emoji and tags come through; the report is sanitised."""
    async with serving() as served, served.http() as http:
        stream_id = await start(http, max_tokens=1500, simulator={"scenario": "markup"})
        reading = await read_events(http, stream_id)
        state = await status(http, stream_id)
        text = reading.text()
        assert text == state["text"]
        for piece in (
            "\r",
            "\r\n",
            "\u2028",
            "\ufeff",
            "\U0001f680",
            '<script>alert("rillet")</script>',
            "onerror=",
        ):
            assert piece in text, piece
        tags = Elements()
        tags.feed(state["html"])
        assert {"h2", "p"} <= tags.names
        assert not tags.names & {"script", "img", "iframe", "textarea"}
        assert not [name for name in tags.attributes if name.startswith("on")]
        assert all(not href.startswith("javascript:") for href in tags.hrefs)
        assert "&lt;script&gt;" in state["html"]


async def test_a_resumed_stream_never_restarts_the_message_in_the_browser() -> None:
    """The API connection drops and the source resumes: one ``message_start``, the text whole and once."""
    async with serving() as served, served.http() as http:
        stream_id = await start(http, max_tokens=400, simulator={"drop_after": 30})
        reading = await read_events(http, stream_id)
        names = [event.type for event in reading.events]
        assert names.count("rillet.attempt") == 2
        assert names.count("message_start") == 1
        assert names.count("rillet.message_start") == 1
        assert names.count("content_block_start") == 1
        state = await status(http, stream_id)
        assert state["outcome"] == "completed"
        assert reading.text() == state["text"]


async def test_status_reports_outcome_usage_cost_and_text() -> None:
    """``GET /api/streams/{id}`` has what the page's status line shows, and the text so far."""
    async with serving() as served, served.http() as http:
        stream_id = await start(http, max_tokens=120)
        reading = await read_events(http, stream_id)
        state = await status(http, stream_id)
        assert state["outcome"] == "completed"
        assert state["stop_reason"] == "max_tokens"
        assert state["usage"]["output_tokens"] == 120
        assert state["cost_usd"] > 0
        assert state["cost_estimated"] is False
        assert state["ttft_s"] >= 0
        assert state["text"] == reading.text()
        assert state["last_event_id"] == len(reading.events)


async def test_a_cursor_older_than_the_log_gets_a_reset() -> None:
    """Past ``max_log_bytes`` old frames are gone: a reader from 0 gets the message so far, then the rest."""
    async with serving(max_log_bytes=3000) as served, served.http() as http:
        stream_id = await start(http, max_tokens=1000)
        live = await read_events(http, stream_id)
        reading = await read_events(http, stream_id)
        assert live.text() == reading.text()
        assert reading.events[0].type == "reset"
        assert reading.events[-1].type == "end"
        assert reading.text() == (await status(http, stream_id))["text"]
        assert len(reading.body) < len(live.body) / 2


INVALID = {
    "json": (b"{", "the body is not valid JSON"),
    "array": (b"[]", "Input should be an object"),
    "no-prompt": (b'{"max_tokens": 5}', "prompt: Field required"),
    "empty": (b'{"prompt": ""}', "prompt: String should have at least 1 character"),
    "type": (b'{"prompt": "x", "max_tokens": "5"}', "max_tokens: Input should be a valid integer"),
    "range": (b'{"prompt": "x", "max_tokens": 0}', "max_tokens: Input should be greater than or equal to 1"),
    "model": (b'{"prompt": "x", "model": "a b"}', "model: String should match pattern"),
    "unknown": (b'{"prompt": "x", "temperature": 1}', "temperature: Extra inputs are not permitted"),
    "scenario": (
        b'{"prompt": "x", "simulator": {"scenario": "nope"}}',
        "simulator.scenario: Value error, unknown",
    ),
}


async def test_invalid_requests_get_400_with_one_line() -> None:
    """Every refusal is one line that names the field."""
    async with serving() as served, served.http() as http:
        for case, (body, reason) in INVALID.items():
            headers = {"content-type": "application/json"}
            response = await http.post("/api/streams", content=body, headers=headers)
            assert response.status_code == 400, case
            error = response.json()["error"]
            assert error.startswith(reason), (case, error)
            assert "\n" not in error, case


async def test_size_type_and_unknown_stream_refusals() -> None:
    """413 past the body limit, 415 without JSON, 404 for a stream that does not exist."""
    async with serving(max_body_bytes=1000) as served, served.http() as http:
        big = await http.post("/api/streams", json={"prompt": "x" * 2000})
        assert big.status_code == 413
        form = await http.post("/api/streams", content=b"prompt=x", headers={"content-type": "text/plain"})
        assert form.status_code == 415
        for method, path in (("GET", ""), ("GET", "/events"), ("POST", "/cancel")):
            response = await http.request(method, f"/api/streams/nope{path}")
            assert response.status_code == 404
            assert "no such stream" in response.json()["error"]


async def test_too_many_running_streams_get_429() -> None:
    """Past ``max_running_streams`` a start is refused; a cancelled stream makes room."""
    async with serving(max_running_streams=1) as served, served.http() as http:
        slow = await start(http, max_tokens=4000, simulator={"tokens_per_s": 100})
        refused = await http.post("/api/streams", json={"prompt": "x"})
        assert refused.status_code == 429
        assert "too many streams" in refused.json()["error"]
        assert (await http.post(f"/api/streams/{slow}/cancel")).status_code == 202
        await read_events(http, slow)
        await until_idle(served)
        assert (await http.post("/api/streams", json={"prompt": "x", "max_tokens": 5})).status_code == 201


async def test_ended_streams_expire_and_make_room() -> None:
    """An ended stream is forgotten after ``stream_ttl_s``, or sooner when ``max_streams`` needs its place."""
    async with serving(stream_ttl_s=3600, max_streams=2) as served, served.http() as http:
        first, second = [await start(http, max_tokens=5) for _ in range(2)]
        for stream_id in (first, second):
            await read_events(http, stream_id)
        await until_idle(served)
        third = await start(http, max_tokens=5)
        assert (await http.get(f"/api/streams/{first}")).status_code == 404
        assert (await http.get(f"/api/streams/{second}")).status_code == 200
        assert set(served.server.sink.logs) == {second, third}
    async with serving(stream_ttl_s=0) as served, served.http() as http:
        stream_id = await start(http, max_tokens=5)
        await read_events(http, stream_id)
        await until_idle(served)
        assert (await http.get(f"/api/streams/{stream_id}")).status_code == 404
        assert stream_id not in served.server.sink.logs


async def test_foreign_host_and_origin_are_refused() -> None:
    """DNS rebinding sends our address under a foreign name: 403. A foreign page's Origin: 403."""
    async with serving() as served, served.http() as http:
        port = served.url.rsplit(":", 1)[1]
        assert (await http.get("/", headers={"host": "evil.example"})).status_code == 403
        assert (await http.get("/", headers={"host": f"evil.example:{port}"})).status_code == 403
        assert (await http.get("/", headers={"host": f"localhost:{port}"})).status_code == 200
        for origin in ("https://evil.example", "null", f"http://evil.example:{port}"):
            posted = await http.post("/api/streams", json={"prompt": "x"}, headers={"origin": origin})
            assert posted.status_code == 403, origin
            assert (await http.get("/api/streams/x/events", headers={"origin": origin})).status_code == 403
        same = await http.post(
            "/api/streams", json={"prompt": "x", "max_tokens": 5}, headers={"origin": served.url}
        )
        assert same.status_code == 201
        assert "access-control-allow-origin" not in same.headers


async def test_page_is_served_with_a_strict_policy() -> None:
    """The page, its script and stylesheet: same origin only, no inline script, nothing framed."""
    async with serving() as served, served.http() as http:
        page = await http.get("/")
        policy = page.headers["content-security-policy"]
        assert "default-src 'self'" in policy
        assert "script-src 'self';" in policy
        assert "unsafe-inline" not in policy
        assert "frame-ancestors 'none'" in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        assert "<script>" not in page.text
        assert 'src="/app.js"' in page.text
        assert (await http.get("/app.js")).headers["content-type"].startswith("text/javascript")
        assert (await http.get("/style.css")).headers["content-type"].startswith("text/css")
        script = (await http.get("/app.js")).text
        assert script.count(".innerHTML =") == 1
        assert "policy.createHTML(state.html)" in script


async def test_token_is_exchanged_for_a_cookie_then_required_everywhere() -> None:
    """With a token: 401 without it; ``/?token=`` sets an HttpOnly, SameSite=Strict cookie; Bearer works."""
    token = "t0ken-" + "x" * 20
    async with serving(token=token) as served, served.http() as http:
        assert (await http.get("/")).status_code == 401
        assert (await http.get("/app.js")).status_code == 401
        assert (await http.get(f"/?token={token}x")).status_code == 401
        exchanged = await http.get(f"/?token={token}&stream=abc")
        assert exchanged.status_code == 303
        assert exchanged.headers["location"] == "/?stream=abc"
        cookie = exchanged.headers["set-cookie"]
        assert cookie.startswith(f"rillet_token={token};")
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        with_cookie = await http.get("/", headers={"cookie": f"rillet_token={token}"})
        assert with_cookie.status_code == 200
        bearer = {"authorization": f"Bearer {token}"}
        created = await http.post("/api/streams", json={"prompt": "x", "max_tokens": 5}, headers=bearer)
        assert created.status_code == 201
        assert (await read_events(http, created.json()["id"], bearer)).events[-1].type == "end"
        http.cookies.clear()
        assert (await read_events(http, created.json()["id"])).status == 401


def test_another_address_requires_a_token() -> None:
    """Binding beyond loopback without a token is refused before anything listens."""
    with pytest.raises(ConfigError, match="access token"):
        ServeSettings(host="0.0.0.0")
    with pytest.raises(ConfigError, match="at least 16"):
        ServeSettings(host="0.0.0.0", token="short")
    assert ServeSettings(host="0.0.0.0", token="x" * 16).wildcard
    assert not ServeSettings(host="::1").wildcard


async def test_simulator_options_are_refused_with_the_real_api() -> None:
    """Per-request simulator controls only exist when the endpoint is the simulator."""
    async with serving(simulated=False) as served, served.http() as http:
        response = await http.post("/api/streams", json={"prompt": "x", "simulator": {"scenario": "markup"}})
        assert response.status_code == 400
        assert response.json()["error"].startswith("simulator:")
