"""Fixtures for the alert bridge's tests.

End-to-end: ``homeserver_under_test`` is parametrised by homeserver kind (``synapse`` today; the lead adds
``tocsin``) and started once per session with the bridge's registration; ``alert_bridge`` runs the bridge
against it. Humans are matrix-nio clients (see :mod:`tests.alerts.humans`).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .harness import BridgeProcess, BridgeRegistration, HomeserverUnderTest, SynapseHomeserver

#: homeserver kind -> factory(data_dir) ; the lead adds our own homeserver here.
HOMESERVERS: dict[str, Callable[[Path], HomeserverUnderTest]] = {
    "synapse": lambda d: SynapseHomeserver(d),
}


@pytest.fixture(scope="session")
def alerts_session_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="tocsin-alerts-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def bridge_registration(alerts_session_dir: Path) -> BridgeRegistration:
    """The bridge's registration file (written before the homeserver starts, which must load it)."""
    return BridgeRegistration(alerts_session_dir)


@pytest.fixture(scope="session", params=sorted(HOMESERVERS))
def homeserver_under_test(
    request: pytest.FixtureRequest, alerts_session_dir: Path, bridge_registration: BridgeRegistration
) -> Iterator[HomeserverUnderTest]:
    """A running homeserver with the bridge's registration loaded; has ``base_url`` and ``server_name``."""
    data_dir = alerts_session_dir / request.param
    data_dir.mkdir()
    hs = HOMESERVERS[request.param](data_dir)
    try:
        hs.start([bridge_registration.path])
        yield hs
    finally:
        hs.stop()
        print(f"\n--- {request.param} log tail ---\n{hs.log_tail(40)}")


@pytest.fixture(scope="session")
def alert_bridge(
    homeserver_under_test: HomeserverUnderTest, bridge_registration: BridgeRegistration, alerts_session_dir: Path
) -> Iterator[BridgeProcess]:
    """The bridge process attached to the homeserver under test.

    Routes: team=storage -> ``#alerts-storage``; zabbix -> ``#alerts-dba``; the rest -> ``#alerts-main``.
    Each route invites ``@alice`` (power level 50) and pages her. Alice must exist before the first alert,
    so tests register her first through :func:`tests.alerts.humans.ensure_users`.
    """
    sn = homeserver_under_test.server_name
    alice = f"@alice:{sn}"
    d = alerts_session_dir / f"bridge-{homeserver_under_test.name}"
    d.mkdir()
    team = {"invite": [alice], "mentions": [alice], "team_power_level": 50}
    bridge = BridgeProcess(
        d, bridge_registration, homeserver_under_test,
        routes=[
            {"name": "storage", "match": ['team="storage"'], "room": f"#alerts-storage:{sn}",
             "escalation_policy": "storage-primary", **team},
            {"name": "dba", "match": [], "sources": ["zabbix"], "room": f"#alerts-dba:{sn}", **team},
        ],
        default_route={"name": "main", "room": f"#alerts-main:{sn}", "escalation_policy": "primary", **team},
    )
    from .humans import ensure_users

    ensure_users(homeserver_under_test, ["alice", "bob"])
    bridge.start()
    try:
        yield bridge
    finally:
        bridge.stop()
        print(f"\n--- bridge log tail ---\n{bridge.log_tail(60)}")
