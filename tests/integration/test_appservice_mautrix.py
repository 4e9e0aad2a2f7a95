"""A third-party appservice framework (mautrix-python) against our homeserver: it receives transactions, pings
itself through the homeserver, registers a virtual user and acts as it (join on invite, reply to ``!echo``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import mautrix  # noqa: F401 - a test dependency: fail loudly if it is missing
import yaml

from tests.appservice.receiver import Registration
from tests.support.client import Api, q, register
from tests.support.server import ROOT, HomeserverProcess, free_port

SERVER = "test.local"
SCRIPT = os.path.join(ROOT, "tests", "appservice", "mautrix_echo.py")


def _read_lines(path: str) -> list[dict[str, Any]]:
    try:
        with open(path) as f:
            return [json.loads(ln) for ln in f if ln.strip()]
    except OSError:
        return []


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_mautrix_bridge_receives_transactions_and_acts_as_virtual_user(fresh_homeserver: HomeserverProcess,
                                                                        tmp_path: Any) -> None:
    port = free_port()
    token = uuid.uuid4().hex
    reg = Registration(id="mautrix_echo", as_token="as_" + token, hs_token="hs_" + token,
                       sender_localpart="echobot", users=[{"regex": rf"@_mx_.*:{SERVER}", "exclusive": True}],
                       url=f"http://127.0.0.1:{port}", receive_ephemeral=True)
    reg_path = tmp_path / "mautrix.yaml"
    reg_path.write_text(yaml.safe_dump(reg.as_yaml_dict()))
    hs = fresh_homeserver
    hs.extra_config = {"app_service_config_files": [str(reg_path)]}
    hs.start()
    out = str(tmp_path / "bridge.jsonl")
    log = open(tmp_path / "bridge.log", "wb")
    bridge = subprocess.Popen([sys.executable, SCRIPT, hs.base_url, SERVER, str(reg_path), str(port), out],
                              stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        ready = _wait(lambda: next((ln for ln in _read_lines(out) if ln.get("ready")), None), 30,
                      "the mautrix bridge to start:\n" + (tmp_path / "bridge.log").read_text()[-3000:])
        assert isinstance(ready["ping_ms"], int) and ready["ping_ms"] >= 0

        api = Api(hs.base_url)
        alice = register(api)
        room_id = alice.create_room(preset="private_chat")
        virtual = f"@_mx_echo:{SERVER}"
        alice.invite(room_id, virtual)
        _wait(lambda: any(ln.get("joined") == room_id for ln in _read_lines(out)), 30, "the virtual user to join")
        members = alice.ok("GET", f"rooms/{q(room_id)}/joined_members")["joined"]
        assert virtual in members and members[virtual]["display_name"] == "Echo (mautrix)"

        sent = alice.send(room_id, "!echo pager duty")

        def reply() -> Any:
            chunk = alice.ok("GET", f"rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 10})["chunk"]
            return next((e for e in chunk if e["sender"] == virtual and e["type"] == "m.room.message"), None)

        event = _wait(reply, 30, "the echo reply")
        assert event["content"] == {"msgtype": "m.notice", "body": "echo: pager duty"}
        received = _read_lines(out)
        assert any(ln.get("event_id") == sent and ln.get("sender") == alice.user_id for ln in received)
        assert any(ln.get("type") == "m.room.member" and ln.get("state_key") == virtual for ln in received)
        assert any(ln.get("replied") == event["event_id"] for ln in received)
    finally:
        bridge.terminate()
        try:
            bridge.wait(10)
        except subprocess.TimeoutExpired:
            bridge.kill()
        log.close()
