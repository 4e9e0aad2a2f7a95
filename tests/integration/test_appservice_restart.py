"""Application services across crashes and at start-up: a SIGKILLed homeserver resumes its backlog with nothing
lost or duplicated; bad registration files stop start-up with an error naming the file and the key."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import yaml

from tests.appservice.receiver import AppServiceReceiver, Registration, as_request
from tests.support.client import Api, q, register
from tests.support.server import ROOT, HomeserverProcess

SERVER = "test.local"


def _registration(url: str | None = None, **overrides: Any) -> Registration:
    token = uuid.uuid4().hex
    reg = Registration(id="crashy", as_token="as_" + token, hs_token="hs_" + token, sender_localpart="crashbot",
                       users=[{"regex": r"@_crash_.*", "exclusive": True}], url=url)
    for k, v in overrides.items():
        setattr(reg, k, v)
    return reg


def test_sigkill_during_backlog_resumes_without_loss_or_duplicates(fresh_homeserver: HomeserverProcess,
                                                                   tmp_path: Any) -> None:
    receiver = AppServiceReceiver("")
    receiver.start()
    reg = _registration(url=receiver.url)
    receiver.hs_token = reg.hs_token
    path = tmp_path / "crashy.yaml"
    path.write_text(yaml.safe_dump(reg.as_yaml_dict()))
    hs = fresh_homeserver
    hs.extra_config = {"app_service_config_files": [str(path)]}
    try:
        hs.start()
        api = Api(hs.base_url)
        alice = register(api)
        room_id = alice.create_room(preset="public_chat")
        bot = f"@crashbot:{SERVER}"
        alice.invite(room_id, bot)
        assert as_request(api, reg.as_token, "POST", f"join/{q(room_id)}", {}).status == 200
        assert receiver.wait_for(lambda r: any(e.get("state_key") == bot and e["content"].get("membership") == "join"
                                               for e in r.events))

        receiver.status_override = 503  # the appservice is down while alerts pile up
        sent = [alice.send(room_id, f"backlog {i}") for i in range(250)]
        assert receiver.wait_for(lambda r: any(n > 0 for _t, n in r.attempts[-1:]), timeout=20)

        # Back up, but slow: each transaction is processed at once and acknowledged 5 s later, so the homeserver
        # dies with a transaction in flight that the appservice has already processed (the kill follows the
        # processing at once; 5 s leaves a loaded machine room to get there before the answer goes out).
        processed_before = len(receiver.processed_txns)
        receiver.delay_s = 5.0
        receiver.status_override = None
        assert receiver.wait_for(lambda r: len(r.processed_txns) > processed_before and len(r.events) > 0,
                                 timeout=30)
        in_flight_txn = receiver.processed_txns[-1]
        in_flight_count = receiver.attempts[-1][1]
        hs.kill()
        got_before_restart = len(set(receiver.event_ids()) & set(sent))
        assert got_before_restart < len(sent), "the backlog drained before the kill; nothing was tested"

        attempts_before_restart = len(receiver.attempts)
        receiver.delay_s = 0
        hs.start()
        assert receiver.wait_for_events(sent, timeout=60), hs.log_tail()
        ids = receiver.event_ids()
        assert [i for i in ids if i in set(sent)] == sent  # order kept across the crash
        for event_id in sent:
            assert ids.count(event_id) == 1
        # The unacknowledged transaction was resent first, with the same txnId and the same events.
        first_after = receiver.attempts[attempts_before_restart]
        assert first_after == (in_flight_txn, in_flight_count)
        # Fresh txnIds after the restart never reuse an acknowledged one.
        later_ids = [t for t, _n in receiver.attempts[attempts_before_restart + 1:]]
        assert not set(later_ids) & set(receiver.processed_txns[:receiver.processed_txns.index(in_flight_txn) + 1])
        # And the queue is empty: a new event arrives promptly, once.
        last = alice.send(room_id, "after restart")
        assert receiver.wait_for_events([last])
        assert receiver.event_ids().count(last) == 1
    finally:
        receiver.stop()


# -- start-up validation ----------------------------------------------------------------------------------------


def _start_with(tmp_path: Any, registrations: list[dict[str, Any]]) -> subprocess.CompletedProcess:
    files = []
    for i, raw in enumerate(registrations):
        p = tmp_path / f"reg{i}.yaml"
        p.write_text(yaml.safe_dump(raw))
        files.append(str(p))
    hs = HomeserverProcess(data_dir=str(tmp_path / "hs"), database="sqlite",
                           extra_config={"app_service_config_files": files})
    hs.write_config()
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "homeserver", "run", "-c", hs.config_path], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def _good() -> dict[str, Any]:
    return _registration(url="http://127.0.0.1:9").as_yaml_dict()


def _with(**changes: Any) -> dict[str, Any]:
    raw = _good()
    raw.update(changes)
    return raw


@pytest.mark.parametrize("case, registrations, key", [
    ("bad regex", lambda: [_with(namespaces={"users": [{"regex": "@_x_(", "exclusive": True}]})],
     "namespaces.users[0].regex"),
    ("exclusive not a bool", lambda: [_with(namespaces={"aliases": [{"regex": "#x", "exclusive": "yes"}]})],
     "namespaces.aliases[0].exclusive"),
    ("missing url", lambda: [{k: v for k, v in _good().items() if k != "url"}], "url"),
    ("missing as_token", lambda: [{k: v for k, v in _good().items() if k != "as_token"}], "as_token"),
    ("same as and hs token", lambda: [_with(as_token="same", hs_token="same")], "hs_token"),
    ("bad sender_localpart", lambda: [_with(sender_localpart="Bad Bot")], "sender_localpart"),
    ("duplicate id", lambda: [_good(), _with(id="crashy", sender_localpart="other")], "id"),
    ("token equal to another's", lambda: [_with(hs_token="shared"), _with(id="b", as_token="shared",
                                                                          sender_localpart="b")], "as_token"),
    ("not a mapping", lambda: [["id", "x"]], "registration must be a YAML mapping"),
])
def test_bad_registration_stops_start_up(tmp_path: Any, case: str, registrations: Any, key: str) -> None:
    regs = registrations()
    result = _start_with(tmp_path, regs)
    assert result.returncode == 2, (case, result.stderr[-2000:])
    bad_file = str(tmp_path / f"reg{len(regs) - 1}.yaml")
    line = [ln for ln in result.stderr.splitlines() if "configuration error" in ln]
    assert line, result.stderr[-2000:]
    assert bad_file in line[0] and key in line[0], line[0]
