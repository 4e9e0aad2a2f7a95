"""A login or registration answers only after the new device's device-list change is committed.

It used to be written in the background: the answer could come first, a crash could lose the change, and while it
was in flight it held back the device_lists stream's readable position, so the new device's key upload (a later
position) stayed hidden from other members' /sync (seen as a flaky integration test under load).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from homeserver.handlers.devices import DeviceHandler


class _Store:
    def __init__(self) -> None:
        self.devices: list[tuple[str, str]] = []

    async def store_device(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        if (user_id, device_id) in self.devices:
            return False
        self.devices.append((user_id, device_id))
        return True


class _E2E:
    def __init__(self) -> None:
        self.gate: defer.Deferred[None] = defer.Deferred()
        self.announced: list[tuple[str, str]] = []

    async def on_device_created(self, user_id: str, device_id: str) -> None:
        await self.gate
        self.announced.append((user_id, device_id))


class _HS:
    def __init__(self) -> None:
        self.account_store = _Store()
        self.e2e_keys_handler = _E2E()
        self.clock: Any = None


def test_new_device_waits_for_its_device_list_change() -> None:
    hs = _HS()
    handler = DeviceHandler(hs)
    d = defer.ensureDeferred(handler.check_device_registered("@a:hs", "PHONE", "phone"))
    assert not d.called  # the change is not committed yet: no answer
    hs.e2e_keys_handler.gate.callback(None)
    assert d.called and d.result == "PHONE"
    assert hs.e2e_keys_handler.announced == [("@a:hs", "PHONE")]


def test_generated_device_id_waits_too_and_failures_reach_the_caller() -> None:
    hs = _HS()
    handler = DeviceHandler(hs)
    d = defer.ensureDeferred(handler.check_device_registered("@a:hs", None))
    assert not d.called
    hs.e2e_keys_handler.gate.callback(None)
    device_id = d.result
    assert hs.e2e_keys_handler.announced == [("@a:hs", device_id)]
    assert hs.account_store.devices == [("@a:hs", device_id)]

    # A known device is no new device: nothing to announce, answered at once.
    hs.e2e_keys_handler.gate = defer.Deferred()
    again = defer.ensureDeferred(handler.check_device_registered("@a:hs", device_id))
    assert again.called and again.result == device_id
    assert len(hs.e2e_keys_handler.announced) == 1

    # A failed announcement fails the login instead of being logged and forgotten.
    failing = defer.ensureDeferred(handler.check_device_registered("@a:hs", "TABLET"))
    hs.e2e_keys_handler.gate.errback(RuntimeError("database unreachable"))
    failures: list[Any] = []
    failing.addErrback(failures.append)
    assert failures and failures[0].check(RuntimeError)
