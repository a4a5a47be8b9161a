"""The Starlette app: ``POST /v1/messages`` as the real API answers it, plus the truth endpoints.

Per-request headers (all optional; a bad value is a 400):

- ``x-rillet-scenario: NAME`` picks the scenario for this request.
- ``x-rillet-drop-after: N`` sets the fault offset (complete events sent before the fault) of the
  ``drop`` and ``overloaded`` scenarios; on a content scenario (report, tool_use, thinking, loop,
  markup) it also turns the drop on, so a test can cut inside tool input or thinking.
- ``x-rillet-drop-continuations: 1`` lets faults hit continuation requests too.
- ``x-rillet-fail-first: N`` makes a fault scenario fault only the first N requests whose body is
  byte-identical (counted by SHA-256 of the body, as SDK retries resend it); later ones are served
  as ``report``. So ``rate_limited`` with N=2 and ``max_retries>=2`` succeeds on the third try.
- ``x-rillet-overlap-words: N`` forces the continue-mode overlap (0 to 12 words).
- ``x-rillet-ttft-ms: F`` and ``x-rillet-tokens-per-s: F`` override the timing settings.

``POST /v1/messages/count_tokens`` answers ``{"input_tokens": N}``, the ``input_tokens`` a
``/v1/messages`` request with the same body would be billed (the same tokenizer, see ``_text``);
``x-rillet-count-fail: 1`` makes it answer 529 ``overloaded_error`` instead, so a client's fallback
can be tested.

A drop sends the first half of the next event's bytes as a body chunk and returns without
finishing the response; uvicorn then closes the connection, so the client reads an unterminated
chunked body ("incomplete chunked read"): a transport error, never a clean end of stream.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import _wire as wire
from ._events import iter_events
from ._plan import ResponsePlan, build_plan, detect_mode
from ._scenarios import DEFAULT_FAULT_AFTER, SCENARIOS, Fault
from ._settings import SimulatorSettings
from ._truth import ServedRequest, TruthStore
from ._validation import ApiError, ParsedRequest, invalid, parse_request

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_QUIET_ABORT: ContextVar[bool] = ContextVar("rillet_sim_quiet_abort", default=False)


class _QuietAbortFilter(logging.Filter):
    """Hides uvicorn's complaint about an unfinished response when the simulator cut it on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            _QUIET_ABORT.get() and str(record.msg).startswith("ASGI callable returned without completing")
        )


_uvicorn_logger = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _QuietAbortFilter) for f in _uvicorn_logger.filters):
    _uvicorn_logger.addFilter(_QuietAbortFilter())

_BATCH_BYTES = 16_384
_BATCH_EVENTS = 64
_EARLY_S = 0.0002
_ATTEMPTS_LIMIT = 10_000


def new_id(prefix: str) -> str:
    return prefix + "01" + secrets.token_hex(11)


@dataclass(frozen=True, slots=True)
class Options:
    """Settings after this request's ``x-rillet-*`` headers."""

    scenario: str
    fault_after: int
    drop_header: bool
    drop_continuations: bool
    fail_first: int | None
    overlap_words: int | None
    ttft_s: float
    tokens_per_s: float


def _int_header(headers: dict[str, str], name: str, lo: int, hi: int) -> int | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise invalid(f"{name}: expected an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise invalid(f"{name}: expected {lo} to {hi}, got {value}")
    return value


def _float_header(headers: dict[str, str], name: str, default: float) -> float:
    raw = headers.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise invalid(f"{name}: expected a number, got {raw!r}") from None
    if not value >= 0:
        raise invalid(f"{name}: expected a number >= 0, got {raw!r}")
    return value


def parse_options(headers: dict[str, str], s: SimulatorSettings) -> Options:
    scenario = headers.get("x-rillet-scenario", s.scenario)
    if scenario not in SCENARIOS:
        raise invalid(
            f"x-rillet-scenario: unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}"
        )
    drop_after = _int_header(headers, "x-rillet-drop-after", 0, 10**9)
    fail_first = _int_header(headers, "x-rillet-fail-first", 0, 10**9)
    overlap = _int_header(headers, "x-rillet-overlap-words", 0, 10**6)
    fault_after = drop_after if drop_after is not None else s.drop_after
    return Options(
        scenario=scenario,
        fault_after=DEFAULT_FAULT_AFTER if fault_after is None else fault_after,
        drop_header=drop_after is not None,
        drop_continuations=s.drop_continuations
        or headers.get("x-rillet-drop-continuations", "").lower() in ("1", "true", "yes"),
        fail_first=fail_first if fail_first is not None else s.fail_first,
        overlap_words=overlap,
        ttft_s=_float_header(headers, "x-rillet-ttft-ms", s.ttft_ms) / 1000,
        tokens_per_s=_float_header(headers, "x-rillet-tokens-per-s", s.tokens_per_s),
    )


class SimState:
    """Everything the app shares across requests: settings, truth, retry counters, live streams."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.store = TruthStore(settings.truth_limit)
        self._attempts: OrderedDict[bytes, int] = OrderedDict()
        self.active: set[anyio.CancelScope] = set()

    def attempt(self, body: bytes) -> int:
        """Count one more request with this exact body; return the count (1 for the first)."""
        key = hashlib.sha256(body).digest()
        n = self._attempts.pop(key, 0) + 1
        self._attempts[key] = n
        while len(self._attempts) > _ATTEMPTS_LIMIT:
            self._attempts.popitem(last=False)
        return n

    def cancel_active(self) -> None:
        for scope in list(self.active):
            scope.cancel()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _check_auth(headers: dict[str, str], settings: SimulatorSettings) -> None:
    key = headers.get("x-api-key")
    if not key:
        auth = headers.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not key:
        raise ApiError(401, "authentication_error", "x-api-key header is required")
    if settings.api_key is not None and key != settings.api_key:
        raise ApiError(401, "authentication_error", "invalid x-api-key")


def _fault_error(fault: Fault, settings: SimulatorSettings) -> ApiError:
    if fault == "rate_limited":
        wait = settings.retry_after_s
        headers = {"retry-after": str(max(0, int(-(-wait // 1)))), "retry-after-ms": str(int(wait * 1000))}
        return ApiError(
            429, "rate_limit_error", "Number of request tokens has exceeded your rate limit.", headers
        )
    return ApiError(529, "overloaded_error", "Overloaded")


RECEIVED_NS = "rillet.received_ns"
"""ASGI scope extension ``{"ns": int}``: when the request's first bytes arrived (see ``_server``)."""


def received_at(scope: Scope) -> int:
    """When the request arrived: its first bytes if the server stamped them, else now."""
    stamp = scope.get("extensions", {}).get(RECEIVED_NS)
    return int(stamp["ns"]) if stamp else time.perf_counter_ns()


class MessagesEndpoint:
    """``POST /v1/messages``: a raw ASGI app, since it must control every byte and the disconnect."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        received_ns = received_at(scope)
        t0 = anyio.current_time()
        state = self.state
        settings = state.settings
        request_id = new_id("req_")
        rec = ServedRequest(request_id, received_ns, scenario=settings.scenario)
        state.store.add(rec)
        body = await _read_body(receive)
        headers = _headers(scope)
        try:
            _check_auth(headers, settings)
            req = parse_request(body)
            opts = parse_options(headers, settings)
            scenario = SCENARIOS[opts.scenario]
            rec.scenario, rec.model, rec.stream = opts.scenario, req.model, req.stream
            mode = detect_mode(req)[0]
            rec.mode = mode
            fault = scenario.fault
            if fault is None and opts.drop_header:
                fault = "drop"
            if fault is not None and mode != "fresh" and not opts.drop_continuations:
                fault = None
            if fault is not None and opts.fail_first is not None and state.attempt(body) > opts.fail_first:
                fault = None
            rec.fault = fault
            if fault in ("rate_limited", "unavailable") or (fault == "overloaded" and not req.stream):
                assert fault is not None
                raise _fault_error(fault, settings)
            plan = build_plan(req, scenario, settings, overlap_words=opts.overlap_words)
        except ApiError as exc:
            await self._send_error(send, exc, rec)
            return
        rec.prefix_matched, rec.overlap_text = plan.prefix_matched, plan.overlap_text
        rec.stop_reason, rec.input_tokens, rec.output_tokens = (
            plan.stop_reason,
            plan.input_tokens,
            plan.output_tokens,
        )
        rec.status = 200
        with anyio.CancelScope() as scope_cancel:
            state.active.add(scope_cancel)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_watch_disconnect, receive, rec, tg.cancel_scope)
                    writer = _Writer(send, rec, request_id)
                    if req.stream:
                        await self._stream(writer, plan, req, opts, fault, t0)
                    else:
                        await self._whole(writer, plan, req, opts, fault, t0)
                    tg.cancel_scope.cancel()
            finally:
                state.active.discard(scope_cancel)
        rec.finished_ns = time.perf_counter_ns()
        if not rec.completed:
            _QUIET_ABORT.set(True)

    async def _send_error(self, send: Send, exc: ApiError, rec: ServedRequest) -> None:
        rec.status, rec.error_type = exc.status, exc.error_type
        body = wire.error_body(exc.error_type, exc.message, rec.request_id)
        headers = [
            (b"content-type", b"application/json"),
            (b"request-id", rec.request_id.encode()),
            (b"content-length", str(len(body)).encode()),
            *((k.encode(), v.encode()) for k, v in exc.headers.items()),
        ]
        if exc.status in (429, 529):
            headers.append((b"x-should-retry", b"true"))
        rec.headers_ns = time.perf_counter_ns()
        await send({"type": "http.response.start", "status": exc.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        rec.completed = True
        rec.finished_ns = time.perf_counter_ns()

    async def _stream(
        self,
        w: _Writer,
        plan: ResponsePlan,
        req: ParsedRequest,
        opts: Options,
        fault: Fault | None,
        t0: float,
    ) -> None:
        settings = self.state.settings
        rng_jitter = _Jitter(settings.jitter, f"{settings.seed}:{plan.seed}")
        ttft = opts.ttft_s * rng_jitter.factor()
        rate = opts.tokens_per_s
        due = t0 + max(0.0, ttft - min(ttft / 2, 0.025))
        first_due = t0 + ttft
        seen_first = False
        events = iter_events(plan, new_id("msg_"), req.model)
        nxt = next(events, None)
        index = 0
        while nxt is not None:
            etype, data, tokens, timed = nxt
            nxt = next(events, None)
            if timed:
                if not seen_first:
                    due, seen_first = first_due, True
                elif rate > 0:
                    due += tokens / rate * rng_jitter.factor()
            now = anyio.current_time()
            if due > now + _EARLY_S:
                await w.flush()
                await anyio.sleep(due - now)
                w.slept = True
            if fault is not None and (index >= opts.fault_after or nxt is None):
                await w.flush()
                if fault == "drop":
                    await w.write_partial(etype, data)
                else:
                    w.add("error", wire.error_event("overloaded_error", "Overloaded"))
                    w.rec.completed = True
                    await w.flush(final=True)
                return
            w.add(etype, data)
            if len(w.pending) >= _BATCH_BYTES or len(w.pending_types) >= _BATCH_EVENTS:
                await w.flush()
            index += 1
        w.rec.completed = True
        await w.flush(final=True)

    async def _whole(
        self,
        w: _Writer,
        plan: ResponsePlan,
        req: ParsedRequest,
        opts: Options,
        fault: Fault | None,
        t0: float,
    ) -> None:
        rate = opts.tokens_per_s
        due = t0 + opts.ttft_s + (plan.output_tokens / rate if rate > 0 else 0.0)
        now = anyio.current_time()
        if due > now:
            await anyio.sleep(due - now)
        body = wire.message_body(plan, new_id("msg_"), req.model)
        w.content_type = b"application/json"
        w.content_length = len(body)
        if fault == "drop":
            await w.write_partial("message", body)
            return
        w.add("message", body)
        w.rec.completed = True
        await w.flush(final=True)


class _Jitter:
    """Seeded factors in ``[1 - j, 1 + j]`` for the TTFT and each gap."""

    def __init__(self, jitter: float, seed: str) -> None:
        self.jitter = jitter
        self.rng = random.Random(f"jitter:{seed}") if jitter else None

    def factor(self) -> float:
        if self.rng is None:
            return 1.0
        return 1.0 + self.jitter * (2 * self.rng.random() - 1)


class _Writer:
    """Batches events due at the same instant into one write, stamping each just before it."""

    def __init__(self, send: Send, rec: ServedRequest, request_id: str) -> None:
        self.send = send
        self.rec = rec
        self.request_id = request_id
        self.pending = bytearray()
        self.pending_types: list[str] = []
        self.started = False
        self.slept = False
        self.content_type = b"text/event-stream; charset=utf-8"
        self.content_length: int | None = None

    def add(self, etype: str, data: bytes) -> None:
        self.pending += data
        self.pending_types.append(etype)

    async def _start(self) -> None:
        headers = [
            (b"content-type", self.content_type),
            (b"request-id", self.request_id.encode()),
            (b"cache-control", b"no-cache"),
        ]
        if self.content_length is not None:
            headers.append((b"content-length", str(self.content_length).encode()))
        self.rec.headers_ns = time.perf_counter_ns()
        await self.send({"type": "http.response.start", "status": 200, "headers": headers})
        self.started = True

    async def flush(self, final: bool = False) -> None:
        if not self.pending and not final:
            return
        if not self.started:
            await self._start()
        ns = time.perf_counter_ns()
        for etype in self.pending_types:
            self.rec.sent(etype, ns)
        body = bytes(self.pending)
        self.pending.clear()
        self.pending_types.clear()
        await self.send({"type": "http.response.body", "body": body, "more_body": not final})
        if not self.slept and not final:
            await anyio.lowlevel.checkpoint()
        self.slept = False

    async def write_partial(self, etype: str, data: bytes) -> None:
        """Send half of ``data`` and leave the response unfinished: the connection gets cut."""
        if not self.started:
            await self._start()
        self.rec.sent(etype, time.perf_counter_ns())
        self.rec.partial_event = etype
        self.rec.dropped = True
        await self.send({"type": "http.response.body", "body": data[: len(data) // 2], "more_body": True})


async def _watch_disconnect(receive: Receive, rec: ServedRequest, scope: anyio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if not rec.completed and not rec.dropped:
                rec.disconnected = True
            scope.cancel()
            return


class CountTokensEndpoint:
    """``POST /v1/messages/count_tokens``: free, and counted as ``/v1/messages`` bills input."""

    def __init__(self, state: SimState) -> None:
        self.state = state

    async def answer(self, request: Request) -> Response:
        headers = dict(request.headers)
        try:
            _check_auth(headers, self.state.settings)
            if headers.get("x-rillet-count-fail", "").lower() in ("1", "true", "yes"):
                raise _fault_error("unavailable", self.state.settings)
            body = await request.body()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = body  # parse_request answers the API's own message for it
            if isinstance(parsed, dict):
                parsed.setdefault("max_tokens", 1)  # not a field of this endpoint
            counted = parse_request(parsed if isinstance(parsed, dict) else body)
        except ApiError as exc:
            response = _error_response(exc.status, exc.error_type, exc.message)
            response.headers.update(exc.headers)
            return response
        return JSONResponse({"input_tokens": counted.input_tokens})


def _error_response(status: int, error_type: str, message: str) -> Response:
    request_id = new_id("req_")
    return Response(
        wire.error_body(error_type, message, request_id),
        status_code=status,
        media_type="application/json",
        headers={"request-id": request_id},
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_response(404, "not_found_error", "Not found")
    if exc.status_code == 405:
        return _error_response(405, "invalid_request_error", f"Method {request.method} not allowed")
    return _error_response(exc.status_code, "api_error", str(exc.detail))


def create_app(settings: SimulatorSettings | None = None) -> Starlette:
    """The simulator as an ASGI app; ``app.state.sim`` is its :class:`SimState`."""
    state = SimState(settings or SimulatorSettings())

    async def truth(request: Request) -> Response:
        try:
            record = state.store.get(request.path_params["request_id"])
        except KeyError:
            return _error_response(404, "not_found_error", "Unknown request id")
        return Response(json.dumps(record.to_json()), media_type="application/json")

    async def requests(request: Request) -> Response:
        return JSONResponse({"request_ids": state.store.ids()})

    app = Starlette(
        routes=[
            Route("/v1/messages", MessagesEndpoint(state), methods=["POST"]),
            Route("/v1/messages/count_tokens", CountTokensEndpoint(state).answer, methods=["POST"]),
            Route("/_sim/requests", requests, methods=["GET"]),
            Route("/_sim/requests/{request_id}", truth, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_exception},
    )
    app.state.sim = state
    return app
