"""Measure how fast the homeserver drains an appservice backlog (a figure to report, not a test).

The appservice answers 503 while N events pile up in rooms it is interested in; then it recovers and we time
how long the homeserver takes to deliver the whole backlog (transactions of up to 100 events, one in flight).

Usage: .venv/bin/python -m tests.appservice.bench_backlog [--events 10000] [--database sqlite|postgres]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import yaml

from tests.appservice.receiver import AppServiceReceiver, Registration, as_request
from tests.support.client import Api, q, register
from tests.support.server import HomeserverProcess


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--database", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--rooms", type=int, default=4)
    args = parser.parse_args()

    token = uuid.uuid4().hex
    reg = Registration(id="bench", as_token="as_" + token, hs_token="hs_" + token, sender_localpart="benchbot",
                       users=[{"regex": "@_bench_.*", "exclusive": True}])
    receiver = AppServiceReceiver(reg.hs_token).start()
    reg.url = receiver.url
    with tempfile.TemporaryDirectory(prefix="tocsin-as-bench-") as d:
        path = f"{d}/reg.yaml"
        with open(path, "w") as f:
            yaml.safe_dump(reg.as_yaml_dict(), f)
        hs = HomeserverProcess(data_dir=f"{d}/hs", database=args.database,
                               extra_config={"app_service_config_files": [path], "log_level": "WARNING"})
        try:
            hs.start()
            api = Api(hs.base_url)
            alice = register(api)
            rooms = []
            for _ in range(args.rooms):
                room_id = alice.create_room(preset="public_chat")
                alice.invite(room_id, "@benchbot:test.local")
                assert as_request(api, reg.as_token, "POST", f"join/{q(room_id)}", {}).status == 200
                rooms.append(room_id)
            receiver.wait_for(lambda r: len(r.events) >= 4 * args.rooms, timeout=30)
            before = len(receiver.events)
            receiver.status_override = 503
            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: alice.send(rooms[i % len(rooms)], f"alert {i}"), range(args.events)))
            send_s = time.monotonic() - started
            processed = len(receiver.processed_txns)
            receiver.status_override = None
            recovered = time.monotonic()
            # The sender may be in its retry backoff when the appservice recovers; time the drain itself from
            # the first acknowledged transaction.
            receiver.wait_for(lambda r: len(r.processed_txns) > processed, timeout=120)
            started = time.monotonic()
            backoff_s = started - recovered
            ok = receiver.wait_for(lambda r: len(r.events) - before >= args.events, timeout=600)
            drain_s = time.monotonic() - started
            delivered = len(receiver.events) - before
            print(f"database={args.database} events={args.events} rooms={args.rooms}")
            print(f"backlog built in {send_s:.1f}s ({args.events / send_s:.0f} events/s through the client API)")
            print(f"drained {delivered} events in {drain_s:.2f}s ({delivered / drain_s:.0f} events/s), "
                  f"{len(receiver.processed_txns) - processed} transactions, complete={ok}; "
                  f"first retry came {backoff_s:.1f}s after the appservice recovered (backoff)")
        finally:
            hs.cleanup()
            receiver.stop()


if __name__ == "__main__":
    main()
