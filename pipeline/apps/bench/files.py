"""Result files in vLLM's layout, written by a run and read back by ``report``, ``compare`` and ``plot``.

vLLM's ``bench serve --save-result`` writes one JSON object per run, named
``{label}-{rate}qps[-concurrency{C}]-{model}-{date}.json``, and its sweep tools read a directory's
``summary.json`` (a list of those objects). A rillet sweep writes the same: one object per load
point, named so, and ``summary.json`` listing the points (without the per-request lists, each
naming its file in ``result_file``). Reading accepts those directories, vLLM's own, and single
files (an object, or the array ``--result-json`` writes for a sweep).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.apps.bench.results import BACKEND, PER_REQUEST
from pipeline.apps.bench.settings import BenchConfig
from pipeline.errors import ConfigError, InputError

SUMMARY = "summary.json"


def finite(data: Any) -> Any:
    """Strict JSON: an infinite rate is ``"inf"`` (as vLLM writes it), an unknown cost is null."""
    if isinstance(data, float) and not math.isfinite(data):
        return "inf" if data == math.inf else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def write_text(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {str(path)!r}: {exc.strerror}") from exc


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(finite(data), indent=2, allow_nan=False) + "\n")


def load_point(result: dict[str, Any]) -> str:
    """The load point as vLLM spells it in a file name: ``infqps-concurrency8``, ``5.0qps``."""
    rate = f"{float(result['request_rate'])}qps"
    cap = result.get("max_concurrency")
    return rate if cap is None else f"{rate}-concurrency{cap}"


def point_filename(settings: BenchConfig, result: dict[str, Any]) -> str:
    """vLLM's name for a point's file; ``--result-filename`` for one point, with the point for a sweep."""
    if settings.result_filename:
        if len(settings.points) == 1:
            return settings.result_filename
        name = Path(settings.result_filename)
        return f"{name.stem}-{load_point(result)}{name.suffix or '.json'}"
    model = settings.model.rsplit("/", 1)[-1]
    return f"{settings.label or BACKEND}-{load_point(result)}-{model}-{result['date']}.json"


def write_result_dir(settings: BenchConfig, results: Sequence[dict[str, Any]]) -> Path:
    """One file per point and ``summary.json``; returns the directory."""
    directory = settings.result_dir or Path()
    summary = []
    for result in results:
        name = point_filename(settings, result)
        write_json(directory / name, result)
        summary.append({k: v for k, v in result.items() if k not in PER_REQUEST} | {"result_file": name})
    write_json(directory / SUMMARY, summary)
    return directory


@dataclass(frozen=True, slots=True)
class SavedRun:
    """One run read back: its name (label, else the path) and its points by load."""

    name: str
    points: list[dict[str, Any]]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not JSON ({exc.msg})") from None


def _is_result(data: Any) -> bool:
    return isinstance(data, dict) and "completed" in data and "request_rate" in data


def _points_of(path: Path) -> list[dict[str, Any]]:
    if not path.is_dir():
        data = _read(path)
        points = data if isinstance(data, list) else [data]
        return [p for p in points if _is_result(p)]
    summary = path / SUMMARY
    if summary.is_file():
        entries = _read(summary)
        if not isinstance(entries, list):
            raise InputError(f"{summary}: expected a list of results")
        return [_read(path / e["result_file"]) if "result_file" in e else e for e in entries if _is_result(e)]
    found = (_read(file) for file in sorted(path.glob("*.json")))
    return [data for data in found if _is_result(data)]


def load_order(point: dict[str, Any]) -> tuple[float, float]:
    return float(point["request_rate"]), float(point.get("max_concurrency") or 0)


def load_run(path: Path) -> SavedRun:
    """Every result in a directory or file, ordered by load; one clear line when there is none."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    points = sorted(_points_of(path), key=load_order)
    if not points:
        raise InputError(f"{path}: no benchmark results (vLLM-shaped JSON objects) found")
    return SavedRun(points[0].get("label") or str(path), points)
