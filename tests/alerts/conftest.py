"""Fixtures for the alert bridge's tests.

End-to-end: ``homeserver_under_test`` is parametrised by homeserver kind (``synapse``, ``tocsin``) and started
once per session with the registrations of its two bridges; ``alert_bridge`` is parametrised by the bridge's database
(``sqlite``, or ``postgres``: a fresh database on 127.0.0.1:5432, created and dropped here; an unreachable
PostgreSQL fails the run, never skips it) and runs the bridge against the homeserver. So every end-to-end
test runs four times. Humans are matrix-nio clients (see :mod:`tests.alerts.humans`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.server import create_pg_database, drop_pg_database

from .fake_alertmanager import FakeAlertmanager
from .harness import BridgeProcess, BridgeRegistration, HomeserverUnderTest, SynapseHomeserver, TocsinHomeserver
from .humans import ensure_users

#: homeserver kind -> factory(data_dir)
HOMESERVERS: dict[str, Callable[[Path], HomeserverUnderTest]] = {
    "synapse": lambda d: SynapseHomeserver(d),
    "tocsin": lambda d: TocsinHomeserver(d),
}

#: bridge database engine -> the bridge's bot localpart (and room alias prefix): one registration each.
BRIDGE_DATABASES = {"sqlite": "alerts", "postgres": "pgalerts"}


@pytest.fixture(scope="session")
def alerts_session_dir() -> Iterator[Path]:
    """Scratch directory of the session: data, configs and logs. ``TOCSIN_ALERTS_KEEP=1`` keeps it for reading."""
    d = Path(tempfile.mkdtemp(prefix="tocsin-alerts-e2e-"))
    yield d
    if os.environ.get("TOCSIN_ALERTS_KEEP") == "1":
        print(f"\nkept {d}")
    else:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def fake_alertmanager() -> Iterator[FakeAlertmanager]:
    """Alertmanager's silences API on loopback (see :mod:`tests.alerts.fake_alertmanager`)."""
    am = FakeAlertmanager().start()
    yield am
    am.stop()


class _Pool:
    """Processes started on first use and stopped at the end of the session.

    pytest may interleave the parameters of two session-scoped fixtures (synapse, tocsin, synapse again), and
    would then restart a homeserver; the pool keeps every homeserver and bridge up once started, so each
    starts once. Each (homeserver, database) pair has its own registration, hence its own bridge port.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.homeservers: dict[str, HomeserverUnderTest] = {}
        self.registrations: dict[tuple[str, str], BridgeRegistration] = {}
        self.bridges: dict[tuple[str, str], BridgeProcess] = {}
        self.pg_databases: list[str] = []

    def homeserver(self, kind: str) -> HomeserverUnderTest:
        if kind not in self.homeservers:
            data_dir = self.dir / kind
            data_dir.mkdir()
            for engine, localpart in BRIDGE_DATABASES.items():
                reg_dir = self.dir / f"registrations-{kind}"
                reg_dir.mkdir(exist_ok=True)
                self.registrations[(kind, engine)] = BridgeRegistration(reg_dir, localpart=localpart)
            hs = HOMESERVERS[kind](data_dir)
            self.homeservers[kind] = hs
            hs.start([self.registrations[(kind, e)].path for e in BRIDGE_DATABASES])
        return self.homeservers[kind]

    def bridge(self, kind: str, engine: str, alertmanager_url: str) -> BridgeProcess:
        key = (kind, engine)
        if key in self.bridges:
            return self.bridges[key]
        hs = self.homeserver(kind)
        registration = self.registrations[key]
        sn, p = hs.server_name, registration.localpart
        alice = f"@alice:{sn}"
        d = self.dir / f"bridge-{kind}-{engine}"
        d.mkdir()
        database = None
        if engine == "postgres":
            pg_args = create_pg_database("tocsin_alerts_test")
            self.pg_databases.append(pg_args["dbname"])
            database = {"engine": "postgres", "args": pg_args}
        team = {"invite": [alice], "mentions": [alice], "team_power_level": 50}
        bridge = BridgeProcess(
            d, registration, hs,
            routes=[
                {"name": "storage", "match": ['team="storage"'], "room": f"#{p}-storage:{sn}",
                 "escalation_policy": "storage-primary", **team},
                {"name": "dba", "match": [], "sources": ["zabbix"], "room": f"#{p}-dba:{sn}", **team},
            ],
            default_route={"name": "main", "room": f"#{p}-main:{sn}", "escalation_policy": "primary", **team},
            database=database,
            alertmanager_url=alertmanager_url if engine == "sqlite" else None,
        )
        self.bridges[key] = bridge
        ensure_users(hs, ["alice", "bob"])
        bridge.start()
        return bridge

    def close(self) -> None:
        for (kind, engine), bridge in self.bridges.items():
            bridge.stop()
            print(f"\n--- bridge ({kind}, {engine}) log tail ---\n{bridge.log_tail(60)}")
        for kind, hs in self.homeservers.items():
            hs.stop()
            print(f"\n--- {kind} log tail ---\n{hs.log_tail(40)}")
        for name in self.pg_databases:
            drop_pg_database(name)


@pytest.fixture(scope="session")
def _alerts_pool(alerts_session_dir: Path) -> Iterator[_Pool]:
    pool = _Pool(alerts_session_dir)
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture(scope="session", params=sorted(HOMESERVERS))
def homeserver_under_test(request: pytest.FixtureRequest, _alerts_pool: _Pool) -> HomeserverUnderTest:
    """A running homeserver with its bridges' registrations loaded; has ``base_url`` and ``server_name``."""
    return _alerts_pool.homeserver(request.param)


@pytest.fixture(scope="session", params=sorted(BRIDGE_DATABASES))
def alert_bridge(
    request: pytest.FixtureRequest,
    homeserver_under_test: HomeserverUnderTest,
    _alerts_pool: _Pool,
    fake_alertmanager: FakeAlertmanager,
) -> BridgeProcess:
    """The bridge process attached to the homeserver under test, on the parametrised database.

    Routes (``P`` is the registration's localpart, ``alerts`` or ``pgalerts``): team=storage -> ``#P-storage``;
    zabbix -> ``#P-dba``; the rest -> ``#P-main``. Each route invites ``@alice`` (power level 50) and pages
    her; alice and bob are registered before the bridge starts. The SQLite bridge has
    ``sources.alertmanager.url`` pointing at the fake Alertmanager (``!silence`` creates a silence there); the
    PostgreSQL bridge has none (``!silence`` mutes in the bridge).
    """
    return _alerts_pool.bridge(homeserver_under_test.name, request.param, fake_alertmanager.url)
