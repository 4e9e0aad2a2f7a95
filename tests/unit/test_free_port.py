"""The test suite's port picker: ports below the kernel's ephemeral range, one block per xdist worker."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.support.server import ROOT, _ephemeral_low, free_port

_PICK = "from tests.support.server import free_port; print(' '.join(str(free_port()) for _ in range(50)))"


def _ports_of_worker(worker: str, count: str) -> set[int]:
    out = subprocess.run([sys.executable, "-c", _PICK], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": count,
                              "PATH": "/usr/bin:/bin"}, check=True)
    return {int(p) for p in out.stdout.split()}


def test_ports_are_free_distinct_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    assert all(20000 <= p < _ephemeral_low() for p in ports)
    for port in ports[:3]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free indeed


def test_each_worker_has_its_own_block() -> None:
    gw0, gw1 = _ports_of_worker("gw0", "2"), _ports_of_worker("gw1", "2")
    assert len(gw0) == 50 and len(gw1) == 50
    assert max(gw0) < min(gw1)


def test_a_port_in_use_is_passed_over() -> None:
    port = free_port()
    with socket.socket() as busy:  # the port the picker would hand out next
        busy.bind(("127.0.0.1", port + 1))
        busy.listen()
        following = free_port()
    assert following != port + 1 and 20000 <= following < _ephemeral_low()
