"""Pushers: ``POST /pushers/set``, ``GET /pushers`` and the HTTP pusher that calls push gateways.

Spec: Client-Server API, "Push Notifications" -> "Pushers" and the Push Gateway API
(``POST /_matrix/push/v1/notify``). Pushes are rows in ``pending_pushes`` written in the event's transaction
(see :mod:`homeserver.handlers.push`); each pusher has one sender that posts its pushes one at a time in stream
order, deletes a row once the gateway answered 200, retries failures with capped exponential backoff and removes
the pusher when the gateway rejects its pushkey. A restart resends exactly what is left in the table.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from typing import Any

from prometheus_client import Counter

from homeserver.http.errors import InvalidParamError, MissingParamError
from homeserver.push import actions_to_tweaks
from homeserver.storage.push import PendingPush, Pusher, PushStore

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
PusherKey = tuple[str, str, str]

NOTIFY_PATH = "/_matrix/push/v1/notify"
#: First retry after this many seconds; doubled after each failure up to :data:`MAX_BACKOFF_S`.
INITIAL_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
#: A push older than this is dropped instead of sent (a phone buzzing for a day-old message helps nobody).
MAX_PUSH_AGE_MS = 24 * 3600 * 1000
REQUEST_TIMEOUT_S = 15.0
_BATCH = 20
_MAX_PUSHKEY_BYTES = 512
_MAX_APP_ID_CHARS = 64

pushes_sent = Counter("tocsin_pushes_total", "Push gateway notify requests", ["outcome"])


class _PusherSender:
    """Sends the pending pushes of one pusher, one at a time, with backoff."""

    def __init__(self, handler: "PusherHandler", key: PusherKey) -> None:
        self.handler = handler
        self.key = key
        self.running = False
        self.again = False
        self.backoff = 0.0
        self.timer: Any = None

    def kick(self) -> None:
        """Start sending this pusher's pending pushes unless a send is already running (it then takes one more round)
        or a backoff timer is waiting (its retry takes the new pushes too).
        """
        if self.timer is not None:
            return  # waiting out a backoff: the retry takes the new pushes too
        if self.running:
            self.again = True
            return
        from twisted.internet import defer

        defer.ensureDeferred(self._run()).addErrback(
            lambda f: logger.error("pusher %s failed: %s", self.key, f.getTraceback()))

    def _retry_later(self) -> None:
        self.backoff = min(MAX_BACKOFF_S, self.backoff * 2) if self.backoff else INITIAL_BACKOFF_S
        self.timer = self.handler.clock.callLater(self.backoff, self._on_timer)

    def _on_timer(self) -> None:
        self.timer = None
        self.kick()

    def stop(self) -> None:
        """Cancel a pending backoff retry, if any."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None

    async def _run(self) -> None:
        self.running = True
        try:
            for _ in range(1_000_000):  # bounded: each round deletes a row or stops
                self.again = False
                pusher = self.handler.get_pusher(self.key)
                if pusher is None:
                    return
                batch = await self.handler.store.get_pending_pushes(self.key, _BATCH)
                if not batch:
                    if self.again:
                        continue
                    self.backoff = 0.0
                    return
                batch_pusher = pusher
                for push in batch:
                    pusher = self.handler.get_pusher(self.key)
                    if pusher is None:
                        return
                    if pusher is not batch_pusher:
                        # Removed and added again while this batch was read: the removal deleted these rows, so
                        # read what is pending for the new pusher instead.
                        self.again = True
                        break
                    outcome = await self.handler.deliver(pusher, push)
                    if outcome == "retry":
                        self._retry_later()
                        return
                    await self.handler.store.delete_pending_push(self.key, push.event_id)
                    self.backoff = 0.0
                    if outcome == "rejected":
                        await self.handler.remove_pusher(self.key)
                        return
        finally:
            self.running = False
            self.handler._sender_finished(self)


class PusherHandler:
    """Pushers of every user (all in memory: few per user) and their senders. Uses ``hs.push_store``,
    ``hs.event_store``, ``hs.push_handler`` (badge counts), ``hs.clock``."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.clock = hs.clock
        self.store: PushStore = hs.push_store
        self._pushers: dict[str, dict[tuple[str, str], Pusher]] = {}
        for pusher in self.store.get_all_pushers_sync():
            self._pushers.setdefault(pusher.user_id, {})[(pusher.app_id, pusher.pushkey)] = pusher
        self._senders: dict[PusherKey, _PusherSender] = {}
        self._http_client: Any = None
        pending = self.store.get_pusher_keys_with_pending_sync()
        if pending:
            # After a restart: resend what the gateway never accepted, once the reactor runs.
            hs.reactor.callWhenRunning(self.on_new_pushes, set(pending))

    # -- pushers -------------------------------------------------------------------------------------------------

    def pusher_keys_for(self, user_id: str) -> list[tuple[str, str]]:
        """``[(app_id, pushkey)]`` of the user's HTTP pushers (cheap: the push evaluator calls it per member)."""
        pushers = self._pushers.get(user_id)
        return list(pushers) if pushers else []

    def get_pusher(self, key: PusherKey) -> Pusher | None:
        """The HTTP pusher with key ``(user_id, app_id, pushkey)``, or None."""
        return self._pushers.get(key[0], {}).get((key[1], key[2]))

    def get_pushers(self, user_id: str) -> list[JsonDict]:
        """``GET /pushers``: the user's pushers as the spec lists them."""
        return [p.to_client_json() for p in self._pushers.get(user_id, {}).values()]

    async def set_pusher(self, user_id: str, body: JsonDict) -> None:
        """``POST /pushers/set``: create/replace (``kind`` "http") or delete (``kind`` null) a pusher.

        Raises:
            MissingParamError: 400 ``M_MISSING_PARAM`` for a missing required field.
            InvalidParamError: 400 ``M_INVALID_PARAM`` for a wrong type, an unsupported ``kind``, ``data.url``
                missing or not an http(s) URL with path ``/_matrix/push/v1/notify``, an unknown ``data.format``.
        Nothing is stored when it raises.
        """
        missing = [k for k in ("kind", "app_id", "pushkey") if k not in body]
        if missing:
            raise MissingParamError("Missing parameters: " + ", ".join(missing))
        app_id, pushkey, kind = body["app_id"], body["pushkey"], body["kind"]
        if not isinstance(app_id, str) or not app_id or len(app_id) > _MAX_APP_ID_CHARS:
            raise InvalidParamError("app_id must be a non-empty string of at most 64 characters")
        if not isinstance(pushkey, str) or not pushkey or len(pushkey.encode("utf-8")) > _MAX_PUSHKEY_BYTES:
            raise InvalidParamError("pushkey must be a non-empty string of at most 512 bytes")
        key = (user_id, app_id, pushkey)
        if kind is None:
            await self.remove_pusher(key)
            return
        if kind != "http":
            raise InvalidParamError(f"Unsupported pusher kind {kind!r}: only 'http' is supported")
        missing = [k for k in ("app_display_name", "device_display_name", "lang", "data") if k not in body]
        if missing:
            raise MissingParamError("Missing parameters: " + ", ".join(missing))
        for name in ("app_display_name", "device_display_name", "lang"):
            if not isinstance(body[name], str):
                raise InvalidParamError(f"{name} must be a string")
        profile_tag = body.get("profile_tag")
        if profile_tag is not None and not isinstance(profile_tag, str):
            raise InvalidParamError("profile_tag must be a string")
        append = body.get("append", False)
        if not isinstance(append, bool):
            raise InvalidParamError("append must be a boolean")
        data = body["data"]
        if not isinstance(data, dict):
            raise InvalidParamError("data must be an object")
        check_push_gateway_url(data.get("url"))
        if "format" in data and data["format"] != "event_id_only":
            raise InvalidParamError("data.format must be 'event_id_only' or absent")
        pusher = Pusher(user_id, app_id, pushkey, kind, body["app_display_name"], body["device_display_name"],
                        profile_tag, body["lang"], dict(data), int(self.clock.seconds()))
        removed = await self.store.add_pusher(pusher, append)
        for other in removed:
            self._forget(other)
        self._pushers.setdefault(user_id, {})[(app_id, pushkey)] = pusher

    async def remove_pusher(self, key: PusherKey) -> None:
        """Delete a pusher and its pending pushes (no error if there is none)."""
        await self.store.delete_pusher(key)
        self._forget(key)

    def _forget(self, key: PusherKey) -> None:
        pushers = self._pushers.get(key[0])
        if pushers is not None:
            pushers.pop((key[1], key[2]), None)
            if not pushers:
                del self._pushers[key[0]]
        sender = self._senders.get(key)
        if sender is not None:
            sender.stop()
            # A sender in the middle of a delivery stays registered until its loop ends: a pusher added again
            # with this key reuses it, so two loops never send the same pending rows.
            if not sender.running:
                del self._senders[key]

    def _sender_finished(self, sender: _PusherSender) -> None:
        if self.get_pusher(sender.key) is None and self._senders.get(sender.key) is sender \
                and sender.timer is None:
            del self._senders[sender.key]

    # -- sending -------------------------------------------------------------------------------------------------

    def on_new_pushes(self, keys: set[PusherKey]) -> None:
        """Pushes for ``keys`` were committed: let their senders run."""
        for key in keys:
            if self.get_pusher(key) is None:
                continue
            sender = self._senders.get(key)
            if sender is None:
                sender = self._senders[key] = _PusherSender(self, key)
            sender.kick()

    async def build_notification(self, pusher: Pusher, push: PendingPush) -> JsonDict:
        """The ``notification`` object of a notify request for one push to one pusher."""
        tweaks = actions_to_tweaks(push.actions)
        push_handler = getattr(self.hs, "push_handler", None)
        unread = await push_handler.get_badge_count(pusher.user_id) if push_handler is not None else 0
        device_data = {k: v for k, v in pusher.data.items() if k != "url"}
        notification: JsonDict = {
            "event_id": push.event_id,
            "room_id": push.room_id,
            "counts": {"unread": unread},
            "prio": "high" if tweaks.get("highlight") is True or "sound" in tweaks else "low",
            "devices": [{
                "app_id": pusher.app_id,
                "pushkey": pusher.pushkey,
                "pushkey_ts": pusher.pushkey_ts,
                "data": device_data,
                "tweaks": tweaks,
            }],
        }
        if pusher.data.get("format") != "event_id_only":
            event = await self.hs.event_store.get_event(push.event_id)
            if event is not None:
                notification["type"] = event.type
                notification["sender"] = event.sender
                notification["content"] = event.content
                if event.type == "m.room.member":
                    notification["user_is_target"] = event.state_key == pusher.user_id
                member = await self.hs.room_store.get_current_state_event(push.room_id, "m.room.member",
                                                                          event.sender)
                name = member.content.get("displayname") if member is not None else None
                if isinstance(name, str):
                    notification["sender_display_name"] = name
                room_name = await self.hs.room_store.get_current_state_event(push.room_id, "m.room.name", "")
                if room_name is not None and isinstance(room_name.content.get("name"), str):
                    notification["room_name"] = room_name.content["name"]
        return notification

    async def deliver(self, pusher: Pusher, push: PendingPush) -> str:
        """Post one push. Returns ``"sent"``, ``"rejected"`` (gateway rejected the pushkey), ``"dropped"``
        (too old, or a 4xx answer that a retry cannot fix) or ``"retry"`` (network error, 5xx, 429)."""
        if self._http_client is None:
            import treq.client
            from twisted.web.client import HTTPConnectionPool

            from homeserver.http.client import make_agent

            # One persistent pool for every push gateway (a handful per server, usually one).
            self._http_client = treq.client.HTTPClient(
                make_agent(self.hs.reactor, HTTPConnectionPool(self.hs.reactor, persistent=True)))
        now_ms = int(self.clock.seconds() * 1000)
        if now_ms - push.created_ts > MAX_PUSH_AGE_MS:
            pushes_sent.labels("expired").inc()
            return "dropped"
        body = {"notification": await self.build_notification(pusher, push)}
        try:
            response = await self._http_client.post(
                pusher.data["url"], data=json.dumps(body).encode("utf-8"),
                headers={b"Content-Type": [b"application/json"]}, timeout=REQUEST_TIMEOUT_S)
            code = response.code
            raw = await response.content()
        except Exception as e:  # noqa: BLE001 - any network failure is retried
            logger.info("push to %s failed: %s; will retry", pusher.data.get("url"), e)
            pushes_sent.labels("error").inc()
            return "retry"
        if code == 429 or code >= 500:
            logger.info("push gateway %s answered %d; will retry", pusher.data.get("url"), code)
            pushes_sent.labels("error").inc()
            return "retry"
        if code != 200:
            logger.warning("push gateway %s answered %d; dropping push %s", pusher.data.get("url"), code,
                           push.event_id)
            pushes_sent.labels("dropped").inc()
            return "dropped"
        pushes_sent.labels("sent").inc()
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {}
        rejected = answer.get("rejected") if isinstance(answer, dict) else None
        if isinstance(rejected, list) and pusher.pushkey in rejected:
            logger.info("push gateway rejected pushkey of %s/%s; removing the pusher", pusher.user_id,
                        pusher.app_id)
            return "rejected"
        return "sent"


def check_push_gateway_url(url: Any) -> str:
    """``url`` if it is an absolute http(s) URL with path ``/_matrix/push/v1/notify``; else InvalidParamError
    (400 ``M_INVALID_PARAM``). Spec: ``PusherData.url``."""
    if not isinstance(url, str) or not url:
        raise InvalidParamError("data.url is required for an http pusher")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise InvalidParamError("data.url must be an http or https URL")
    if parsed.path != NOTIFY_PATH:
        raise InvalidParamError(f"data.url must have the path {NOTIFY_PATH}")
    return url
