"""The started store runs transactions on its database thread, in order; the engine works unchanged on it."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from twisted.internet import defer, reactor
from twisted.internet.task import deferLater
from twisted.trial import unittest

from appservices.escalation.engine import EscalationEngine
from appservices.escalation.policy import load_policy_set
from appservices.escalation.store import EscalationStore
from escalation_testlib import RecordingChannel


class ThreadedStoreTests(unittest.TestCase):
    def _store(self) -> EscalationStore:
        # A directory of its own under the system's temp dir (trial's mktemp() writes below the working
        # directory, i.e. into the repository), removed after the store is closed.
        tmp = Path(tempfile.mkdtemp(prefix="tocsin-escalation-"))
        self.addCleanup(shutil.rmtree, tmp, True)
        store = EscalationStore.sqlite(str(tmp / "escalation.db"))
        store.start(reactor)
        # Stop the thread with the test, not only at reactor shutdown (trial keeps one reactor for the run).
        self.addCleanup(lambda: store._pool.stop() if store._pool else None)  # type: ignore[union-attr]
        self.addCleanup(store.close)
        return store

    @defer.inlineCallbacks
    def test_transactions_run_off_the_reactor_thread_in_order(self) -> Any:
        store = self._store()
        store.transaction(lambda t: t.execute("CREATE TABLE seen (n INTEGER, thread INTEGER)"))
        main = threading.get_ident()
        ds = [store.run(lambda t, n=n: t.execute("INSERT INTO seen VALUES (?, ?)", (n, threading.get_ident())))
              for n in range(50)]
        yield defer.gatherResults(ds)
        rows = yield store.run(lambda t: t.fetchall("SELECT n, thread FROM seen ORDER BY rowid"))
        self.assertEqual([r[0] for r in rows], list(range(50)))
        self.assertEqual(len({r[1] for r in rows}), 1)
        self.assertNotEqual(rows[0][1], main)

    @defer.inlineCallbacks
    def test_failed_transaction_rolls_back_and_errbacks(self) -> Any:
        store = self._store()
        store.transaction(lambda t: t.execute("CREATE TABLE x (n INTEGER PRIMARY KEY)"))

        def bad(t: Any) -> None:
            t.execute("INSERT INTO x VALUES (1)")
            t.execute("INSERT INTO x VALUES (1)")

        yield self.assertFailure(store.run(bad), Exception)
        rows = yield store.run(lambda t: t.fetchall("SELECT n FROM x"))
        self.assertEqual(rows, [])

    @defer.inlineCallbacks
    def test_engine_on_the_threaded_store_walks_channels_and_stops_on_ack(self) -> Any:
        store = self._store()
        # Real time on a real database thread: the read timeout leaves the acknowledgement (sent as soon as the SMS
        # is seen) a second to beat the email, whatever the machine's load.
        read_timeout = 1.0
        policies = load_policy_set({"policies": {"default": {"tiers": [
            {"targets": [{"user": "@alice:x"}], "channels": ["matrix", "sms", "email"], "read_timeout": read_timeout,
             "timeout": 5}]}},
            "people": {"@alice:x": {"phone": "+15550001", "email": "alice@example.org"}}})
        channels = {n: RecordingChannel(n, reactor) for n in ("matrix", "sms", "email")}
        engine = EscalationEngine(reactor, store, policies, {}, channels)
        self.addCleanup(engine.stop)
        yield engine.start()
        opened = reactor.seconds()
        yield engine.incident_opened("inc1", priority="high", summary="s", room_id="!r:x", alert_event_id="$a")
        self.assertEqual([len(c.sent) for c in channels.values()], [1, 0, 0])
        # The read timeout passes unread: the SMS follows (waited for, bounded, rather than a fixed pause that a
        # slow transaction on the database thread can outlast).
        deadline = reactor.seconds() + 15
        while not channels["sms"].sent and reactor.seconds() < deadline:
            yield deferLater(reactor, 0.01, lambda: None)
        self.assertEqual([len(c.sent) for c in channels.values()], [1, 1, 0])
        self.assertGreaterEqual(channels["sms"].sent[0][2] - opened, read_timeout - 0.05)
        yield engine.incident_acknowledged("inc1", "@alice:x")
        # Past the moment the email would have been due: nothing more went out.
        yield deferLater(reactor, read_timeout + 0.5, lambda: None)
        self.assertEqual([len(c.sent) for c in channels.values()], [1, 1, 0])
        status = yield engine.status("inc1")
        self.assertEqual(status.state, "acknowledged")
        self.assertEqual([n.channel for n in status.people[0].notifications], ["matrix", "sms"])
