"""A tiny bridge built on mautrix-python (a third-party appservice framework), run as its own process by
``tests/integration/test_appservice_mautrix.py``.

It registers the virtual user ``@_mx_echo:<domain>``, pings itself through the homeserver
(``POST /_matrix/client/v1/appservice/{id}/ping``), joins rooms its virtual user is invited to, and answers
``!echo <text>`` with ``echo: <text>`` as that virtual user. Every event it receives in a transaction is appended
as a JSON line to the output file, so the test can see what arrived.

Usage: python mautrix_echo.py HS_URL SERVER_NAME REGISTRATION_YAML PORT OUTPUT_JSONL
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

import yaml
from mautrix.appservice import AppService
from mautrix.types import EventType, Membership, MessageType, TextMessageEventContent


async def main(hs_url: str, domain: str, registration_path: str, port: int, out_path: str) -> None:
    with open(registration_path) as f:
        reg = yaml.safe_load(f)
    out = open(out_path, "a", buffering=1)

    def record(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")

    appserv = AppService(server=hs_url, domain=domain, as_token=reg["as_token"], hs_token=reg["hs_token"],
                         bot_localpart=reg["sender_localpart"], id=reg["id"], log="mautrix_echo",
                         ephemeral_events=True)
    virtual = f"@_mx_echo:{domain}"

    @appserv.matrix_event_handler
    async def on_event(evt) -> None:  # noqa: ANN001 - mautrix Event union
        record({"type": str(evt.type), "event_id": getattr(evt, "event_id", None),
                "room_id": getattr(evt, "room_id", None), "sender": getattr(evt, "sender", None),
                "state_key": getattr(evt, "state_key", None)})
        intent = appserv.intent.user(virtual)
        if evt.type == EventType.ROOM_MEMBER and evt.state_key == virtual \
                and evt.content.membership == Membership.INVITE:
            await intent.join_room(evt.room_id)
            record({"joined": evt.room_id})
        elif evt.type == EventType.ROOM_MESSAGE and evt.sender != virtual:
            body = getattr(evt.content, "body", "") or ""
            if body.startswith("!echo "):
                event_id = await intent.send_message(
                    evt.room_id, TextMessageEventContent(msgtype=MessageType.NOTICE, body="echo: " + body[6:]))
                record({"replied": str(event_id)})

    await appserv.start(host="127.0.0.1", port=port)
    await appserv.intent.user(virtual).ensure_registered()
    await appserv.intent.user(virtual).set_displayname("Echo (mautrix)")
    duration_ms = await appserv.ping_self("mautrix-echo-1")
    appserv.ready = True
    record({"ready": True, "ping_ms": duration_ms})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await appserv.stop()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]))
