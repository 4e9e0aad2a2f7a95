"""E2EKeyStore's per-device key-count cache: a claim drops only the claimed devices' entries, by user then device,
without walking the rest of the cache."""

from __future__ import annotations

from typing import Any

from homeserver.storage.e2e_keys import E2EKeyStore
from tests.unit.accounts_testlib import run, sqlite_db


class NoScanDict(dict):
    """A cache dict that fails the test if anything walks all of its keys."""

    def __iter__(self) -> Any:
        raise AssertionError("the whole key-count cache was scanned")

    def keys(self) -> Any:
        raise AssertionError("the whole key-count cache was scanned")

    def items(self) -> Any:
        raise AssertionError("the whole key-count cache was scanned")


def _otks(prefix: str, n: int) -> dict[str, Any]:
    return {f"signed_curve25519:{prefix}{i}": {"key": f"k{prefix}{i}", "signatures": {}} for i in range(n)}


def test_claim_drops_only_the_claimed_devices_counts() -> None:
    store = E2EKeyStore(sqlite_db())
    run(store.upload_keys("@alice:test", "PHONE", None, _otks("p", 3), {}, lambda txn: None))
    run(store.upload_keys("@alice:test", "LAPTOP", None, _otks("l", 2), {}, lambda txn: None))
    run(store.upload_keys("@bob:test", "PAGER", None, _otks("b", 1), {}, lambda txn: None))
    store._counts = NoScanDict(store._counts)
    store._count_entries = sum(len(v) for v in dict.values(store._counts))
    for user, device in (("@alice:test", "PHONE"), ("@alice:test", "LAPTOP"), ("@bob:test", "PAGER")):
        run(store.get_key_counts(user, device))
    assert store._count_entries == 3

    claimed = run(store.claim_keys([("@alice:test", "PHONE", "signed_curve25519")]))
    assert list(claimed) == [("@alice:test", "PHONE")]
    assert dict.get(store._counts, "@alice:test") is not None and "PHONE" not in store._counts["@alice:test"]
    assert "LAPTOP" in store._counts["@alice:test"] and "PAGER" in store._counts["@bob:test"]
    assert store._count_entries == 2
    assert run(store.get_key_counts("@alice:test", "PHONE"))[0] == {"signed_curve25519": 2}
    assert run(store.get_key_counts("@alice:test", "LAPTOP"))[0] == {"signed_curve25519": 2}

    store.invalidate_key_counts("@alice:test")  # every device of one user (device deletion)
    assert "@alice:test" not in store._counts and store._count_entries == 1
    assert run(store.get_key_counts("@bob:test", "PAGER"))[0] == {"signed_curve25519": 1}
