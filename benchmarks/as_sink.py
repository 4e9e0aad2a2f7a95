"""A minimal application service that accepts and counts what a homeserver pushes to it (benchmarks only).

    as_sink.py REGISTRATION.yaml PORT COUNTS.json

Listens on 127.0.0.1:PORT and answers, for requests carrying ``Authorization: Bearer <hs_token>`` (the
``hs_token`` of REGISTRATION.yaml; anything else gets 403 ``M_FORBIDDEN``):

* ``PUT /_matrix/app/v1/transactions/{txnId}`` and the legacy ``PUT /transactions/{txnId}``: 200 ``{}``, counting
  transactions, events (``events``) and ephemeral events, and transaction ids seen more than once (retries);
* ``GET /_matrix/app/v1/users/{userId}`` and ``/rooms/{alias}``: 404 ``M_NOT_FOUND`` (the sink owns nothing);
* ``POST /_matrix/app/v1/ping``: 200 ``{}``.

The counts are written as JSON to COUNTS.json once the port is bound (so the file's existence means "ready"),
then every second and when the process ends (SIGTERM, SIGINT), so `benchmarks/run_compare.sh` can show that the
pushes really happened. It does no work per event beyond counting, so it stays cheap next to the servers measured.
"""

from __future__ import annotations

import json
import os
import sys
import time

import yaml
from twisted.internet import reactor, task
from twisted.web import resource, server

APP = b"/_matrix/app/v1"


class Sink(resource.Resource):
    """The whole appservice API of the sink: one leaf resource dispatching on method and path."""

    isLeaf = True

    def __init__(self, hs_token: str, counts_path: str) -> None:
        super().__init__()
        self.expected_auth = f"Bearer {hs_token}".encode()
        self.counts_path = counts_path
        self.txn_ids: set[bytes] = set()
        self.counts = {"transactions": 0, "events": 0, "ephemeral": 0, "duplicate_transactions": 0,
                       "forbidden": 0, "first_transaction_at": None, "last_transaction_at": None}

    def render(self, request: server.Request) -> bytes:
        if request.getHeader(b"authorization") != self.expected_auth:
            self.counts["forbidden"] += 1
            return self._reply(request, 403, {"errcode": "M_FORBIDDEN", "error": "bad or missing hs_token"})
        path, method = request.path, request.method
        txn = self._txn_id(path)
        if method == b"PUT" and txn is not None:
            return self._transaction(request, txn)
        if method == b"GET" and (path.startswith(APP + b"/users/") or path.startswith(APP + b"/rooms/")):
            return self._reply(request, 404, {"errcode": "M_NOT_FOUND", "error": "the sink owns nothing"})
        if method == b"POST" and path == APP + b"/ping":
            return self._reply(request, 200, {})
        return self._reply(request, 404, {"errcode": "M_UNRECOGNIZED", "error": "unknown endpoint"})

    @staticmethod
    def _txn_id(path: bytes) -> bytes | None:
        for prefix in (APP + b"/transactions/", b"/transactions/"):
            if path.startswith(prefix) and len(path) > len(prefix) and b"/" not in path[len(prefix):]:
                return path[len(prefix):]
        return None

    def _transaction(self, request: server.Request, txn: bytes) -> bytes:
        try:
            body = json.loads(request.content.read() or b"{}")
        except ValueError:
            return self._reply(request, 400, {"errcode": "M_NOT_JSON", "error": "body is not JSON"})
        c = self.counts
        if txn in self.txn_ids:
            c["duplicate_transactions"] += 1
        self.txn_ids.add(txn)
        c["transactions"] += 1
        c["events"] += len(body.get("events") or [])
        c["ephemeral"] += len(body.get("ephemeral") or body.get("de.sorunome.msc2409.ephemeral") or [])
        c["last_transaction_at"] = time.time()
        c["first_transaction_at"] = c["first_transaction_at"] or c["last_transaction_at"]
        return self._reply(request, 200, {})

    @staticmethod
    def _reply(request: server.Request, code: int, body: dict) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps(body).encode()

    def write_counts(self) -> None:
        """Write the counts to the counts file atomically (a reader never sees half a file)."""
        tmp = self.counts_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.counts, f)
        os.replace(tmp, self.counts_path)


def main() -> None:
    """Parse the command line, listen, and write the counts every second and at shutdown."""
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    registration, port, counts_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(registration) as f:
        sink = Sink(yaml.safe_load(f)["hs_token"], counts_path)
    site = server.Site(sink)
    site.log = lambda request: None  # no access log: one line per transaction would cost more than the counting
    reactor.listenTCP(port, site, interface="127.0.0.1")
    task.LoopingCall(sink.write_counts).start(1.0)  # first write now, after the port is bound: "ready"
    reactor.addSystemEventTrigger("before", "shutdown", sink.write_counts)
    reactor.run()  # Twisted's own SIGTERM/SIGINT handlers stop the reactor, which runs the trigger above


if __name__ == "__main__":
    main()
