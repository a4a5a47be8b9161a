"""A custom sink: every event of every stream as one row of an SQLite table.

A sink is an async context manager with a ``name`` and ``async write(batch)``: ``__aenter__`` opens
the destination, ``write`` gets whatever items were waiting as one batch (one transaction here),
and ``__aexit__`` closes it, even when the run failed. SQLite blocks, so its calls run in a worker
thread and the event loop keeps streaming. ``Pipeline(...)`` checks the protocol when it is built.

Run: ``python examples/sqlite_sink.py [events.db]`` (no API key needed: it starts the built-in simulator).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio
import anyio.to_thread

from pipeline import AccumulateStage, Item, Pipeline, SinkSpec, make_client
from pipeline.apps.simulator import open_simulator
from pipeline.events import event_type, report_text

SCHEMA = "CREATE TABLE IF NOT EXISTS events (stream_id TEXT, seq INTEGER, type TEXT, text TEXT)"


class SQLiteSink:
    def __init__(self, path: Path, name: str = "sqlite") -> None:
        self.path = path
        self.name = name
        self.db: sqlite3.Connection | None = None

    async def __aenter__(self) -> Self:
        self.db = await anyio.to_thread.run_sync(self._open)
        return self

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False)  # used from the worker threads in turn
        db.execute(SCHEMA)
        return db

    async def write(self, batch: Sequence[Item]) -> None:
        rows = [(item.stream_id, item.seq, event_type(item), report_text(item)) for item in batch]
        await anyio.to_thread.run_sync(self._insert, rows)

    def _insert(self, rows: list[tuple[str, int, str, str]]) -> None:
        assert self.db is not None
        with self.db:  # one transaction a batch
            self.db.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", rows)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.db is not None:
            await anyio.to_thread.run_sync(self.db.close)


async def main(path: Path) -> None:
    request = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "A short history of canals."}],
    }
    async with open_simulator() as sim, make_client(api_key="any", base_url=sim.base_url) as client:
        sinks = [SinkSpec(SQLiteSink(path))]
        async with Pipeline(client, stages=[AccumulateStage], sinks=sinks) as pipeline:
            await pipeline.run(request)
    with sqlite3.connect(path) as db:
        for kind, count in db.execute("SELECT type, count(*) FROM events GROUP BY type ORDER BY 2 DESC"):
            print(f"{count:5}  {kind}")
        (text,) = db.execute(
            "SELECT group_concat(text, '') FROM (SELECT text FROM events ORDER BY seq)"
        ).fetchone()
    print(f"{len(text)} characters of text stored in {path}")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1] if len(sys.argv) > 1 else "events.db"))
