"""A redaction racing with reads of the room's history: once the redaction is acknowledged, nobody may get the
redacted event's original content back (the event cache must not be refilled with the unredacted copy by a read
that started before the redaction)."""

from __future__ import annotations

import threading
import uuid

from tests.integration.roomlib import users
from tests.support.client import Api, q

ROUNDS = 8
READERS = 3
READS_MAX = 40


def test_redaction_concurrent_with_messages_reads_stays_redacted(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    for i in range(ROUNDS):
        secret = f"password hunter3 #{i}"
        target = alice.send(room, secret)
        # Read once so the full copy is in the event cache, as it would be after clients fetched it.
        assert alice.ok("GET", f"rooms/{q(room)}/event/{q(target)}")["content"]["body"] == secret
        results: dict[str, object] = {}
        start = threading.Barrier(READERS + 1)

        redacted = threading.Event()

        def redact() -> None:
            start.wait(timeout=30)
            try:
                results["redact"] = alice.req("PUT", f"rooms/{q(room)}/redact/{q(target)}/{uuid.uuid4().hex}", {})
            finally:
                redacted.set()

        def read(n: int) -> None:
            # Keep reading the room's history until the redaction is answered, so that reads overlap its
            # transaction and the moment after it (bounded: a few dozen requests at most).
            start.wait(timeout=30)
            for _ in range(READS_MAX):
                r = bob.req("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 5})
                results[f"read{n}"] = r
                if r.status != 200 or redacted.is_set():
                    break

        threads = [threading.Thread(target=redact)] + [threading.Thread(target=read, args=(n,))
                                                       for n in range(READERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert results["redact"].status == 200, results["redact"].json
        for n in range(READERS):
            assert results[f"read{n}"].status == 200
        redaction_id = results["redact"].json["event_id"]
        # After the redaction was acknowledged every read path shows the pruned event.
        seen = bob.ok("GET", f"rooms/{q(room)}/event/{q(target)}")
        assert seen["content"] == {}, f"round {i}: {seen}"
        assert seen["unsigned"]["redacted_because"]["event_id"] == redaction_id
        chunk = bob.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 5})["chunk"]
        assert next(e for e in chunk if e["event_id"] == target)["content"] == {}
        context = bob.ok("GET", f"rooms/{q(room)}/context/{q(target)}", params={"limit": 0})
        assert context["event"]["content"] == {}
