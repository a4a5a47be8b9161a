"""``rillet bench`` measures on wire times by default; ``--no-wire`` keeps the SDK's own transport."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import clean_environment

PROBE = """
import sys
from pipeline.apps.cli import main
quick = ["--num-requests", "2", "--output-tokens", "8", "--warmup", "0", "--progress", "off"]
status = main(["bench", *quick, *sys.argv[1:]])
print(status, "pipeline.wire.transport" in sys.modules)
"""


@pytest.mark.parametrize(("flags", "wired"), [((), "True"), (("--wire",), "True"), (("--no-wire",), "False")])
def test_the_wire_transport_is_used_unless_turned_off(flags: tuple[str, ...], wired: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=clean_environment(),
    )
    assert done.stdout.split()[-2:] == ["0", wired], done.stderr[-2000:]
