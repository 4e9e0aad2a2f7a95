"""Shared fixtures. ``TOCSIN_TEST_DATABASES`` (default ``sqlite,postgres``) says which databases integration tests
run on; every test that takes the ``homeserver`` fixture runs once per database."""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import pytest

from tests.support.client import Api
from tests.support.server import HomeserverProcess

DATABASES = [d.strip() for d in os.environ.get("TOCSIN_TEST_DATABASES", "sqlite,postgres").split(",") if d.strip()]


@pytest.fixture(scope="session", params=DATABASES)
def database(request: pytest.FixtureRequest) -> str:
    """The database kind under test: "sqlite" or "postgres"."""
    return request.param


@pytest.fixture(scope="session")
def homeserver(database: str) -> Iterator[HomeserverProcess]:
    """One homeserver per database for the whole session (tests use fresh users and rooms)."""
    with tempfile.TemporaryDirectory(prefix=f"tocsin-{database}-") as d:
        hs = HomeserverProcess(data_dir=d, database=database)
        try:
            hs.start()
            yield hs
        finally:
            log = hs.log_tail(200)
            hs.cleanup()
            if "Traceback" in log:
                print(f"\n--- homeserver ({database}) log tail ---\n{log}")


@pytest.fixture
def api(homeserver: HomeserverProcess) -> Api:
    return Api(homeserver.base_url)


@pytest.fixture
def fresh_homeserver(database: str, tmp_path: "os.PathLike[str]") -> Iterator[HomeserverProcess]:
    """A homeserver of its own for tests that restart or kill it."""
    hs = HomeserverProcess(data_dir=str(tmp_path / "hs"), database=database)
    try:
        yield hs
    finally:
        hs.cleanup()
