"""The Starlette app: the page, and the JSON API that starts, watches and stops streams.

``POST /api/streams`` starts a stream (201); ``GET /api/streams/{id}/events`` is the only URL
EventSource opens, and has no side effects; ``POST /api/streams/{id}/cancel`` is the only way to
stop generation; ``GET /api/streams/{id}`` is the stream's state and text so far (and, once it
ended, the report as sanitised HTML). Errors are JSON ``{"error": one line}``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.apps.serve._errors import Busy, refusal
from pipeline.apps.serve._events import EventsEndpoint, Streams
from pipeline.apps.serve._registry import StreamEntry, StreamRegistry
from pipeline.apps.serve._render import render_markdown
from pipeline.apps.serve._security import Guard
from pipeline.apps.serve._settings import ServeSettings
from pipeline.apps.shared.frame_log import parse_decimal
from pipeline.apps.simulator import SCENARIO_NAMES

STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
"""URL path → (file in ``static/``, media type): the page, its script and stylesheet; no build step."""

EVENTS_PATH = re.compile(r"/api/streams/([^/]+)/events")


class SimulatorControls(BaseModel):
    """Per-request simulator controls, sent as its ``x-rillet-*`` headers; refused with the real API."""

    model_config = ConfigDict(extra="forbid", strict=True)

    scenario: str | None = None
    ttft_ms: float | None = Field(None, ge=0, le=60_000)
    tokens_per_s: float | None = Field(None, ge=0, le=1_000_000)
    drop_after: int | None = Field(None, ge=0, le=1_000_000)

    @field_validator("scenario")
    @classmethod
    def _known(cls, value: str | None) -> str | None:
        if value is not None and value not in SCENARIO_NAMES:
            raise ValueError(f"unknown scenario {value!r}; expected one of {', '.join(SCENARIO_NAMES)}")
        return value

    def headers(self) -> dict[str, str]:
        values = {
            "scenario": self.scenario,
            "ttft-ms": self.ttft_ms,
            "tokens-per-s": self.tokens_per_s,
            "drop-after": self.drop_after,
        }
        return {f"x-rillet-{name}": str(value) for name, value in values.items() if value is not None}


class NewStream(BaseModel):
    """The body of ``POST /api/streams``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: str = Field(min_length=1)
    model: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}$")
    max_tokens: int | None = Field(None, ge=1, le=128_000)
    system: str | None = None
    simulator: SimulatorControls | None = None


def one_line(error: ValidationError) -> str:
    """The first problem of a validation error, as ``field: what is wrong``."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    message = str(first["msg"])
    if first["type"] == "json_invalid":
        return f"the body is not valid JSON: {first.get('ctx', {}).get('error', message)}"
    return f"{where}: {message}" if where else message


def _static(path: str, file: str, media_type: str) -> Route:
    """Read once; ``no-cache`` so that a new version is picked up at the next load."""
    body = (resources.files("pipeline.apps.serve") / "static" / file).read_bytes()

    async def endpoint(request: Request) -> Response:
        return Response(body, media_type=media_type, headers={"cache-control": "no-cache"})

    return Route(path, endpoint, methods=["GET"])


async def _no_icon(request: Request) -> Response:
    """Browsers ask for it; a 404 would show as an error in the console."""
    return Response(status_code=204, headers={"cache-control": "max-age=86400"})


class JsonApi(ABC):
    """The JSON endpoints; what starting, watching and stopping a stream mean is the subclass's."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings

    @abstractmethod
    async def launch(self, request: dict[str, Any]) -> str:
        """Starts a stream for the API request; its id. Raises :class:`Busy` when it cannot."""

    @abstractmethod
    async def status(self, request: Request) -> Response:
        """``GET /api/streams/{id}``: the stream's state and text so far."""

    @abstractmethod
    async def cancel(self, request: Request) -> Response:
        """``POST /api/streams/{id}/cancel``."""

    async def create(self, request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            return refusal(415, "send the stream's parameters as application/json")
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        try:
            new = NewStream.model_validate_json(body)
        except ValidationError as exc:
            return refusal(400, one_line(exc))
        if new.simulator is not None and not self.settings.simulated:
            return refusal(400, "simulator: only accepted when serving the built-in simulator")
        try:
            stream_id = await self.launch(self._request(new))
        except Busy as exc:
            return refusal(429, str(exc))
        status_url = f"/api/streams/{stream_id}"
        created = {"id": stream_id, "events_url": f"{status_url}/events", "status_url": status_url}
        return JSONResponse(created, status_code=201, headers={"location": status_url})

    async def _body(self, request: Request) -> bytes | Response:
        limit = self.settings.max_body_bytes
        declared = request.headers.get("content-length", "")
        size = parse_decimal(declared)  # None also for a number too long to be a size
        if declared.strip().isdecimal() and (size is None or size > limit):
            return refusal(413, f"the body is larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return refusal(413, f"the body is larger than {limit} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            return refusal(400, "the client went away")
        return b"".join(chunks)

    def _request(self, new: NewStream) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": new.model or self.settings.model,
            "max_tokens": new.max_tokens or self.settings.max_tokens,
            "messages": [{"role": "user", "content": new.prompt}],
        }
        if new.system:
            request["system"] = new.system
        if new.simulator is not None:
            request["extra_headers"] = new.simulator.headers()
        return request


class Api(JsonApi):
    """The JSON endpoints over the streams this server runs."""

    def __init__(self, registry: StreamRegistry, settings: ServeSettings) -> None:
        super().__init__(settings)
        self.registry = registry

    async def launch(self, request: dict[str, Any]) -> str:
        return self.registry.start(request).stream_id

    async def status(self, request: Request) -> Response:
        entry = self._entry(request)
        if entry is None:
            return refusal(404, "no such stream (it may have expired)")
        return JSONResponse(self._state(entry))

    async def cancel(self, request: Request) -> Response:
        entry = self._entry(request)
        if entry is None:
            return refusal(404, "no such stream (it may have expired)")
        entry.cancel()
        state = "running" if entry.running else "ended"
        return JSONResponse({"id": entry.stream_id, "state": state}, status_code=202)

    def _entry(self, request: Request) -> StreamEntry | None:
        return self.registry.get(request.path_params["stream_id"])

    def _state(self, entry: StreamEntry) -> dict[str, Any]:
        log = entry.log
        ended = log.ended
        state: dict[str, Any] = {
            "id": entry.stream_id,
            "state": "running" if entry.running else "ended",
            "outcome": ended.outcome if ended else None,
            "stop_reason": ended.stop_reason if ended else None,
            "error": ended.error if ended else None,
            "error_type": ended.error_type if ended else None,
            **log.summary(),
            "last_event_id": log.last_id,
            "connections": entry.connections,
            "text": log.text(),
        }
        if ended is not None:
            if entry.rendered is None:
                entry.rendered = render_markdown(state["text"])
            state["html"] = entry.rendered
        return state


class _Dispatch:
    """Sends ``GET .../events`` straight to its endpoint, everything else to Starlette."""

    def __init__(self, app: ASGIApp, events: EventsEndpoint) -> None:
        self.app = app
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = EVENTS_PATH.fullmatch(scope["path"])
            if match is not None:
                scope["path_params"] = {"stream_id": match.group(1)}
                await self.events(scope, receive, send)
                return
        await self.app(scope, receive, send)


def create_app(registry: StreamRegistry, settings: ServeSettings) -> ASGIApp:
    """The app over the streams this server runs, behind the :class:`~pipeline.apps.serve._security.Guard`."""
    return build_app(Api(registry, settings), registry, settings)


def build_app(api: JsonApi, streams: Streams, settings: ServeSettings) -> ASGIApp:
    """The page, ``api``'s endpoints and the events endpoint over ``streams``, behind the guard."""
    routes = [_static(path, file, media_type) for path, (file, media_type) in STATIC.items()]
    routes += [
        Route("/favicon.ico", _no_icon, methods=["GET"]),
        Route("/api/streams", api.create, methods=["POST"]),
        Route("/api/streams/{stream_id}", api.status, methods=["GET"]),
        Route("/api/streams/{stream_id}/cancel", api.cancel, methods=["POST"]),
    ]
    app: ASGIApp = _Dispatch(Starlette(routes=routes), EventsEndpoint(streams, settings))
    if settings.cors_origins:
        app = CORSMiddleware(
            app,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "authorization", "last-event-id"],
        )
    return Guard(app, settings)
