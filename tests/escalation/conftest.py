"""Fixtures for the escalation end-to-end tests: the homeserver under test (any of ``tests.alerts``' HOMESERVERS)
started with an ephemeral-receiving registration, a Twilio-compatible HTTP server, a real SMTP server (aiosmtpd)
and a bridge process with escalation enabled (see :mod:`escalation_e2e_lib`)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from escalation_e2e_lib import EphemeralRegistration, FakeTwilio, SmtpSink
from tests.alerts.conftest import HOMESERVERS
from tests.alerts.harness import HomeserverUnderTest


@pytest.fixture(scope="session")
def escalation_session_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="tocsin-escalation-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def escalation_registration(escalation_session_dir: Path) -> EphemeralRegistration:
    """A bridge registration with ``receive_ephemeral: true``: receipts are pushed in transactions."""
    return EphemeralRegistration(escalation_session_dir, "esc", ephemeral=True)


@pytest.fixture(scope="session")
def sync_registration(escalation_session_dir: Path) -> EphemeralRegistration:
    """A bridge registration without ephemeral data: the bridge reads receipts through /sync instead."""
    return EphemeralRegistration(escalation_session_dir, "escsync", ephemeral=False)


@pytest.fixture(scope="session", params=sorted(HOMESERVERS))
def escalation_homeserver(
    request: pytest.FixtureRequest, escalation_session_dir: Path, escalation_registration: EphemeralRegistration,
    sync_registration: EphemeralRegistration,
) -> Iterator[HomeserverUnderTest]:
    """A running homeserver (each kind of ``tests.alerts.conftest.HOMESERVERS``) knowing both registrations."""
    data_dir = escalation_session_dir / request.param
    data_dir.mkdir()
    hs = HOMESERVERS[request.param](data_dir)
    try:
        hs.start([escalation_registration.path, sync_registration.path])
        from tests.alerts.humans import ensure_users

        ensure_users(hs, ["alice", "bob", "receipts"])
        yield hs
    finally:
        hs.stop()
        print(f"\n--- {request.param} log tail ---\n{hs.log_tail(40)}")


@pytest.fixture()
def twilio() -> Iterator[FakeTwilio]:
    server = FakeTwilio()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    try:
        yield sink
    finally:
        sink.stop()
