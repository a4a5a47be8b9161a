"""The tests' Pushgateway starts clean: nothing a stopped gateway held comes back in the next one.

Debian's build persists groups to ``/var/lib/prometheus/pushgateway.data`` by default, so without
``--persistence.file=`` a test would find the groups an earlier test (or another checkout) pushed.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Callable

from tests.integration.conftest import Server, stop


def push(gateway: Server, job: str) -> None:
    request = urllib.request.Request(
        f"{gateway.url}/metrics/job/{job}", data=b"leftover_metric 1\n", method="PUT"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def groups(gateway: Server) -> str:
    with urllib.request.urlopen(f"{gateway.url}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_a_restarted_gateway_has_no_group_of_the_last_one(start_pushgateway: Callable[[], Server]) -> None:
    first = start_pushgateway()
    push(first, "leftover")
    assert 'leftover_metric{instance="",job="leftover"} 1' in groups(first)
    stop(first.process)  # a gateway with persistence writes its groups out when it stops
    second = start_pushgateway()
    assert "leftover_metric" not in groups(second)
