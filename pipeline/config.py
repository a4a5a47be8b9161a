"""One TOML file describes a run: the request, the API, the stages and the sinks.

Validated once at the edge with pydantic and passed down explicitly; every error is one line that
names the file, the key path and what was expected.
"""

from __future__ import annotations

import functools
import itertools
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pipeline.errors import ConfigError
from pipeline.sink import Buffer, OnError, OnFull
from pipeline.source.resume import ResumeSettings
from pipeline.stages import StageFactory
from pipeline.stages.accumulate import AccumulateStage
from pipeline.stages.cost import CostSettings, CostStage
from pipeline.stages.filter import FilterStage
from pipeline.stages.latency import LatencyStage
from pipeline.stages.repetition import RepetitionSettings, RepetitionStage

DEFAULT_MODEL = "claude-sonnet-4-6"
"""A current model: the SDK warns about deprecated ones (``claude-sonnet-4-5`` ends on 2026-11-30)."""


def _not_blank(value: str) -> str:
    """An empty model or prompt would otherwise reach the API (or fall back to a default) unnoticed."""
    if not value.strip():
        raise ValueError("must not be empty or only whitespace")
    return value


def _names_a_file(path: Path) -> Path:
    """``""`` becomes ``Path(".")``: a file sink needs a file name to write its ``.part`` beside."""
    if path.name in ("", ".", ".."):
        raise ValueError("must name a file, not a folder")
    return path


NonBlank = Annotated[str, AfterValidator(_not_blank)]
FilePath = Annotated[Path, AfterValidator(_names_a_file)]


class Strict(BaseModel):
    """Unknown keys are mistakes: a typo must not silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RequestConfig(Strict):
    """The Messages API request, and where its prompt comes from."""

    model: NonBlank = DEFAULT_MODEL
    max_tokens: int = Field(8000, ge=1)
    prompt: NonBlank | None = None
    prompt_file: Path | None = None
    system: str | None = None
    temperature: float | None = Field(None, ge=0, le=1)
    metadata: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> RequestConfig:
        if self.prompt is not None and self.prompt_file is not None:
            raise ValueError("give either prompt or prompt_file, not both")
        return self


class ApiConfig(Strict):
    """Where the API is. The key itself is never in a file: only the environment holds it."""

    base_url: str | None = None
    timeout: float = Field(600.0, gt=0)
    max_connections: int = Field(100, ge=1)


class OtelConfig(Strict):
    """OpenTelemetry traces and GenAI metrics (the ``otel`` extra); the standard ``OTEL_*`` variables
    configure the exporters, and these keys, when set, win over them."""

    enabled: bool = False
    service_name: str | None = None
    """``service.name`` of the resource; None: ``OTEL_SERVICE_NAME``, else ``rillet``."""
    endpoint: str | None = None
    """The OTLP/HTTP base URL (``/v1/traces`` and ``/v1/metrics`` are appended); None:
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` and its per-signal variants, else ``http://localhost:4318``."""


class SinkPolicy(Strict):
    """The fan-out's policies, common to every sink."""

    buffer: int = Field(1024, ge=1, le=10_000_000)
    on_full: OnFull = OnFull.BLOCK
    on_error: OnError = OnError.FAIL

    def buffer_spec(self) -> Buffer:
        return Buffer(self.buffer, self.on_full)


class FileSinkConfig(SinkPolicy):
    """The report as markdown (``text``), or every event as JSON lines (``jsonl``)."""

    type: Literal["file"]
    name: str = ""
    path: FilePath = Path("report.md")
    mode: Literal["text", "jsonl"] = "text"


class StdoutSinkConfig(SinkPolicy):
    """The text as it arrives; metadata on stderr with ``verbose``.

    A reader that leaves (``rillet run | head``) disables it rather than failing the run: the text
    is in the file sinks all the same.
    """

    type: Literal["stdout"]
    name: str = ""
    verbose: bool = False
    on_error: OnError = OnError.DISABLE


class PrometheusSinkConfig(SinkPolicy):
    """Metrics: ``/metrics`` served for the run, and/or pushed to a Pushgateway when it ends."""

    type: Literal["prometheus"]
    name: str = ""
    address: str | None = "127.0.0.1:9464"
    pushgateway: str | None = None
    job: str = "rillet"
    grouping: dict[str, str] = {}
    push_interval: float | None = Field(None, gt=0)
    delete_on_success: bool = False
    linger: float = Field(10.0, ge=0)
    """Seconds the end of a run waits for one more scrape (without a pushgateway); 0: none."""
    ttft_buckets: tuple[float, ...] | None = None
    """Upper bounds (s) of the time-to-first histograms; None: the sink's own."""
    duration_buckets: tuple[float, ...] | None = None
    """Upper bounds (s) of the request duration histogram; None: the sink's own."""

    @field_validator("ttft_buckets", "duration_buckets")
    @classmethod
    def _increasing(cls, bounds: tuple[float, ...] | None) -> tuple[float, ...] | None:
        if bounds is not None and (
            not bounds or bounds[0] <= 0 or any(b <= a for a, b in itertools.pairwise(bounds))
        ):
            raise ValueError("buckets must be positive seconds in increasing order")
        return bounds


SinkConfig = Annotated[FileSinkConfig | StdoutSinkConfig | PrometheusSinkConfig, Field(discriminator="type")]


class FilterStageConfig(Strict):
    """Drops items by event type and delta type (fnmatch globs; exclude wins)."""

    type: Literal["filter"]
    include: list[str] = []
    exclude: list[str] = []

    def factory(self) -> StageFactory:
        return FilterStage.factory(self.include, self.exclude)


class AccumulateStageConfig(Strict):
    """Builds the final message; tool input parsed when its block stops."""

    type: Literal["accumulate"]

    def factory(self) -> StageFactory:
        return AccumulateStage


class RepetitionStageConfig(Strict):
    """Stops paying for a model stuck in a loop (``abort``), or says so (``warn``)."""

    type: Literal["repetition"]
    action: Literal["warn", "abort"] = "warn"
    channels: list[Literal["text", "thinking"]] = ["text", "thinking"]
    window: int = Field(RepetitionSettings().window, ge=256)
    check_every: int = Field(RepetitionSettings().check_every, ge=1)

    def factory(self) -> StageFactory:
        settings = RepetitionSettings(
            action=self.action,
            channels=frozenset(self.channels),
            window=self.window,
            max_period=self.window // 3,
            check_every=self.check_every,
        )
        return functools.partial(RepetitionStage, settings=settings)


class CostStageConfig(Strict):
    """Prices usage with genai-prices, with a running estimate while the text streams."""

    type: Literal["cost"]
    chars_per_token: float = Field(CostSettings().chars_per_token, gt=0)
    every_tokens: int = Field(CostSettings().every_tokens, ge=1)

    def factory(self) -> StageFactory:
        settings = CostSettings(chars_per_token=self.chars_per_token, every_tokens=self.every_tokens)
        return functools.partial(CostStage, settings=settings)


class LatencyStageConfig(Strict):
    """Times to first token, gaps between deltas, time per output token, end to end."""

    type: Literal["latency"]

    def factory(self) -> StageFactory:
        return LatencyStage


StageConfig = Annotated[
    FilterStageConfig | AccumulateStageConfig | RepetitionStageConfig | CostStageConfig | LatencyStageConfig,
    Field(discriminator="type"),
]

DEFAULT_STAGES: tuple[StageConfig, ...] = (
    AccumulateStageConfig(type="accumulate"),
    RepetitionStageConfig(type="repetition"),
    CostStageConfig(type="cost"),
    LatencyStageConfig(type="latency"),
)
DEFAULT_SINKS: tuple[SinkConfig, ...] = (StdoutSinkConfig(type="stdout"), FileSinkConfig(type="file"))


class RunConfig(Strict):
    """A whole run, as a TOML file describes it."""

    request: RequestConfig = RequestConfig()
    api: ApiConfig = ApiConfig()
    resume: ResumeSettings = ResumeSettings()
    stages: list[StageConfig] = list(DEFAULT_STAGES)
    sinks: list[SinkConfig] = list(DEFAULT_SINKS)
    otel: OtelConfig = OtelConfig()
    bench: dict[str, Any] | None = None
    """``rillet bench``'s table: validated by that application, which the core never imports."""
    serve: dict[str, Any] | None = None
    """``rillet serve``'s table, likewise."""
    redis: dict[str, Any] | None = None
    """The scale-out commands' table, likewise."""

    @model_validator(mode="after")
    def _name_sinks(self) -> RunConfig:
        """Unnamed sinks take their type as name, numbered from the second of a type on."""
        seen: dict[str, int] = {}
        for index, sink in enumerate(self.sinks):
            if not sink.name:
                count = sum(1 for other in self.sinks[:index] if other.type == sink.type)
                sink = sink.model_copy(
                    update={"name": sink.type if count == 0 else f"{sink.type}-{count + 1}"}
                )
                self.sinks[index] = sink
            if sink.name in seen:
                raise ValueError(
                    f"sinks[{index}] is named {sink.name!r} like sinks[{seen[sink.name]}]: names must differ"
                )
            seen[sink.name] = index
        return self

    def with_request(self, **changes: object) -> RunConfig:
        """The same run with request keys changed by command-line flags, validated as a file's are.

        ``model_copy(update=...)`` would skip validation: ``--max-tokens 0`` would reach the API.
        An error names the flag (``--max-tokens: ...``), since that is where the value came from.
        """
        try:
            request = RequestConfig.model_validate(self.request.model_dump() | changes)
        except ValidationError as exc:
            raise ConfigError(describe_validation_error("", exc, flag=True)) from None
        return self.model_copy(update={"request": request})

    def with_report_path(self, path: Path) -> RunConfig:
        """The same run with its text file sinks writing to ``path`` (``--out``), validated."""
        try:
            path = _names_a_file(path)
        except ValueError as exc:
            raise ConfigError(f"--out: {exc} (got {str(path)!r})") from None
        sinks = [
            sink.model_copy(update={"path": path})
            if isinstance(sink, FileSinkConfig) and sink.mode == "text"
            else sink
            for sink in self.sinks
        ]
        if not any(isinstance(sink, FileSinkConfig) for sink in sinks):
            sinks.append(FileSinkConfig(type="file", path=path))
        return self.model_copy(update={"sinks": sinks})


def load_config(path: Path | None) -> RunConfig:
    """Reads and validates a config file; ``None`` gives the built-in defaults."""
    if path is None:
        return RunConfig()
    return parse_config(read_toml(path), path)


def read_toml(path: Path) -> dict[str, Any]:
    """A config file's tables, or one line naming the file and what is wrong with it."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc


def parse_config(data: dict[str, Any], path: Path) -> RunConfig:
    """Validates parsed TOML; relative paths in it are taken from the config file's folder."""
    try:
        config = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(path, exc)) from None
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    prompt_file = config.request.prompt_file
    if prompt_file is not None and not prompt_file.is_absolute():
        request = config.request.model_copy(update={"prompt_file": path.parent / prompt_file})
        config = config.model_copy(update={"request": request})
    return config


def describe_validation_error(path: Path | str, exc: ValidationError, *, flag: bool = False) -> str:
    """The first problem, in one line: file, key path, what was expected, what was found.

    With ``flag``, the key is a command-line option (``max_tokens`` is ``--max-tokens``) and no file
    is named.
    """
    error = exc.errors()[0]
    key = _key_path(error["loc"])
    if flag and key:
        key = "--" + key.replace("_", "-")
    found = f" (got {error['input']!r})" if error["type"] != "missing" else ""
    more = f"; and {exc.error_count() - 1} more problem(s)" if exc.error_count() > 1 else ""
    where = f"{key}: " if key else ""
    return f"{path}: {where}{error['msg']}{found}{more}" if path else f"{where}{error['msg']}{found}{more}"


def _key_path(location: tuple[int | str, ...]) -> str:
    """``sinks[0].mode``: as a user would write it, without the union tag pydantic inserts."""
    path = ""
    for position, part in enumerate(location):
        if isinstance(part, int):
            path += f"[{part}]"
        elif position > 0 and isinstance(location[position - 1], int) and location[0] in UNION_LISTS:
            continue
        else:
            path += f".{part}" if path else part
    return path


UNION_LISTS = frozenset({"stages", "sinks"})
"""Lists of tagged unions: pydantic puts the tag (``file``, ``cost``) after the index in a location."""
