"""``hs.appservices``: everything the rest of the homeserver asks about application services.

Spec: Application Service API ("Registration", "Pushing events", "Querying", "Ping") and the Client-Server
behaviour for appservices ("Identity assertion", "Server admin style permissions", ``m.login.application_service``
registration and login, exclusive namespaces).

Who calls what:
- ``homeserver/http/auth.py``: :meth:`AppServices.get_requester` for every authenticated request.
- ``rest/register.py``: :meth:`check_registration`, :meth:`is_exclusive_user`; ``rest/login.py``: :meth:`check_login`.
- ``handlers/rooms.py``: :meth:`is_exclusive_alias`, :meth:`query_alias`; ``handlers/membership.py``: :meth:`query_user`.
- ``rest/appservice.py``: :meth:`ping`.
- The event path: this object is a persist hook (``prepare``/``persist_txn``/``after_persist``) that queues
  every event an appservice is interested in, in the event's own database transaction.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.appservice.api import AppServiceApi, AppServiceTimeout, AppServiceUnreachable
from homeserver.appservice.registration import ApplicationService, load_registrations
from homeserver.appservice.sender import AppServiceSender
from homeserver.events import Event
from homeserver.http.auth import Requester, get_access_token
from homeserver.http.errors import (
    Codes,
    ForbiddenError,
    MatrixError,
    MissingTokenError,
    UnknownTokenError,
)
from homeserver.storage.appservice import AppServiceStore

logger = logging.getLogger(__name__)


class _RoomFacts:
    """Per-event memo of the room's joined members and aliases (fetched at most once for all appservices)."""

    def __init__(self) -> None:
        self.members: frozenset[str] | None = None
        self.aliases: list[str] | None = None


class AppServices:
    """The registered appservices of this homeserver and their rules.

    ``hs`` provides config (``app_service_config_files``), hostname, db, reactor/clock, account_store,
    room_store, event_store, event_serializer, event_creation_handler, notifier and (optionally)
    typing_handler. Raises :class:`homeserver.config.ConfigError` at construction for a bad registration.
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.clock = hs.clock
        self.services: list[ApplicationService] = load_registrations(list(hs.config.app_service_config_files),
                                                                     hs.hostname)
        self.store = AppServiceStore(hs.db)
        self.api = AppServiceApi(hs.reactor)
        self._by_token = {s.as_token: s for s in self.services}
        self._by_id = {s.id: s for s in self.services}
        for service in self.services:
            self.store.ensure_sender_user_sync(service.sender, service.id)
        counts = self.store.count_queued_sync() if self.services else {}
        self.senders: dict[str, AppServiceSender] = {
            s.id: AppServiceSender(hs, s, self.store, self.api, counts.get(s.id, 0)) for s in self.services
        }
        self._typing_position = 0
        self._receipts_position = 0
        if self.services:
            hs.event_creation_handler.add_persist_hook(self)
            hs.notifier.add_stream_listener(self._on_stream)
            # Resume a backlog (or an unacknowledged transaction) left by the previous run.
            hs.reactor.callWhenRunning(self._kick_all)
            logger.info("application services: %s", ", ".join(f"{s.id} ({s.url or 'no url'})"
                                                              for s in self.services))

    def _kick_all(self) -> None:
        # Receipts stored before this start are old news: only changes from now on go to appservices.
        self._receipts_position = self.hs.stream_positions.current_token().receipts
        for sender in self.senders.values():
            sender.kick()

    def get(self, appservice_id: str) -> ApplicationService | None:
        """The registered appservice with ``id`` ``appservice_id``, or None."""
        return self._by_id.get(appservice_id)

    # -- authentication ------------------------------------------------------------------------------------------

    async def get_requester(self, request: Any, token: str) -> Requester | None:
        """The :class:`Requester` for an ``as_token``, or None if ``token`` is not one.

        Acts as the appservice's sender, or as the ``user_id`` query parameter (identity assertion) if that user
        is in the appservice's users namespace and registered. Raises 403 ``M_FORBIDDEN`` otherwise.
        """
        service = self._by_token.get(token)
        if service is None:
            return None
        values = (request.args or {}).get(b"user_id")
        user_id = service.sender
        if values:
            try:
                asserted = values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise ForbiddenError("user_id is not valid UTF-8") from None
            if asserted != service.sender:
                if not service.is_interested_in_user(asserted):
                    raise ForbiddenError("Application service cannot masquerade as this user "
                                         f"({asserted} is not in its namespace)")
                if await self.hs.account_store.get_user(asserted) is None:
                    raise ForbiddenError(f"Application service has not registered this user ({asserted})")
                user_id = asserted
        return Requester(user_id, None, None, app_service=service)

    def _service_for_request(self, request: Any) -> ApplicationService:
        token = get_access_token(request)
        if token is None:
            raise MissingTokenError()
        service = self._by_token.get(token)
        if service is None:
            raise UnknownTokenError("Unrecognised application service token")
        return service

    async def check_registration(self, request: Any, localpart: str) -> str:
        """``POST /register`` with ``type: m.login.application_service``: authenticate the ``as_token`` and
        check ``@localpart:server`` is in its users namespace and no other appservice's exclusive one.

        Returns the appservice ID. Raises 401 ``M_MISSING_TOKEN``/``M_UNKNOWN_TOKEN``, 400 ``M_EXCLUSIVE``.
        """
        service = self._service_for_request(request)
        user_id = f"@{localpart}:{self.hs.hostname}"
        if not service.is_interested_in_user(user_id):
            raise MatrixError(400, f"{user_id} is not in the application service's namespace", Codes.EXCLUSIVE)
        for other in self.services:
            if other is not service and other.is_exclusive_user(user_id):
                raise MatrixError(400, f"{user_id} is reserved by another application service", Codes.EXCLUSIVE)
        return service.id

    async def check_login(self, request: Any, body: dict[str, Any]) -> str:
        """``POST /login`` with ``type: m.login.application_service``: the user (``identifier`` of type
        ``m.id.user``, or legacy ``user``) must be in the appservice's namespace and registered.

        Returns the full user ID. Raises 401 for a missing/unknown token, 403 ``M_FORBIDDEN`` otherwise.
        """
        service = self._service_for_request(request)
        identifier = body.get("identifier")
        user: Any = None
        if isinstance(identifier, dict):
            if identifier.get("type") != "m.id.user":
                raise MatrixError(400, "Only m.id.user identifiers are supported", Codes.INVALID_PARAM)
            user = identifier.get("user")
        elif "user" in body:
            user = body.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "Missing params: identifier.user", Codes.MISSING_PARAM)
        user_id = user if user.startswith("@") else f"@{user.lower()}:{self.hs.hostname}"
        if not service.is_interested_in_user(user_id):
            raise ForbiddenError(f"{user_id} is not in the application service's namespace")
        if await self.hs.account_store.get_user(user_id) is None:
            raise ForbiddenError(f"{user_id} is not registered")
        return user_id

    # -- exclusive namespaces ------------------------------------------------------------------------------------

    def is_exclusive_user(self, user_id: str) -> bool:
        """True if an appservice claims ``user_id`` exclusively (ordinary registration gets 400 M_EXCLUSIVE)."""
        return any(s.is_exclusive_user(user_id) for s in self.services)

    def is_exclusive_alias(self, alias: str, requester: Requester | None) -> bool:
        """True if an appservice other than the requester's claims ``alias`` exclusively."""
        own = getattr(requester, "app_service", None)
        return any(s is not own and s.is_exclusive_alias(alias) for s in self.services)

    # -- queries -------------------------------------------------------------------------------------------------

    def _ordered_for(self, predicate: Any) -> list[ApplicationService]:
        """Appservices with a URL whose namespace ``predicate`` holds, exclusive claimants first."""
        found = [s for s in self.services if s.url is not None and predicate(s)[0]]
        return sorted(found, key=lambda s: not predicate(s)[1])

    async def query_user(self, user_id: str) -> bool:
        """Ask the appservices whose users namespace holds ``user_id`` (``GET /_matrix/app/v1/users/{userId}``).
        True once one answered 200 and the user now exists here."""
        if not user_id.endswith(":" + self.hs.hostname):
            return False
        for service in self._ordered_for(lambda s: (s.is_interested_in_user(user_id), s.is_exclusive_user(user_id))):
            if await self.api.query_user(service, user_id) and await self.hs.account_store.get_user(user_id):
                return True
        return False

    async def query_alias(self, alias: str) -> bool:
        """Ask the appservices whose aliases namespace holds ``alias`` (``GET /_matrix/app/v1/rooms/{alias}``).
        True once one answered 200 and the alias now exists here."""
        for service in self._ordered_for(lambda s: (s.is_interested_in_alias(alias), s.is_exclusive_alias(alias))):
            if await self.api.query_alias(service, alias) and await self.hs.room_store.get_alias(alias):
                return True
        return False

    # -- ping ----------------------------------------------------------------------------------------------------

    async def ping(self, requester: Requester, appservice_id: str, transaction_id: str | None) -> int:
        """``POST /_matrix/client/v1/appservice/{appserviceId}/ping``: call the appservice's ``/ping`` and return
        the round trip in milliseconds.

        Raises 403 ``M_FORBIDDEN`` (not that appservice's as_token), 400 ``M_URL_NOT_SET``,
        502 ``M_CONNECTION_FAILED``, 504 ``M_CONNECTION_TIMEOUT``, 502 ``M_BAD_STATUS`` (with ``status``, ``body``).
        """
        service = requester.app_service
        if service is None or service.id != appservice_id:
            raise ForbiddenError("Provided access token is not the appservice's as_token")
        if service.url is None:
            raise MatrixError(400, "Application service doesn't have a URL configured", Codes.URL_NOT_SET)
        start = self.clock.seconds()
        try:
            response = await self.api.ping(service, transaction_id)
        except AppServiceTimeout:
            raise MatrixError(504, "Connection to application service timed out", Codes.CONNECTION_TIMEOUT) from None
        except AppServiceUnreachable as e:
            raise MatrixError(502, f"Connection to application service failed: {e}",
                              Codes.CONNECTION_FAILED) from None
        if response.status != 200:
            raise MatrixError(502, f"Ping returned status {response.status}", Codes.BAD_STATUS,
                              status=response.status, body=response.body)
        sender = self.senders.get(service.id)
        if sender is not None:
            sender.retry_now()
        return int((self.clock.seconds() - start) * 1000)

    # -- interest ------------------------------------------------------------------------------------------------

    async def _interested_in_room(self, service: ApplicationService, room_id: str, facts: _RoomFacts,
                                  extra_aliases: list[str] = ()) -> bool:  # type: ignore[assignment]
        if service.is_interested_in_room_id(room_id):
            return True
        if facts.members is None:
            facts.members = await self.hs.room_store.get_users_in_room(room_id)
        if any(service.is_interested_in_user(m) for m in facts.members):
            return True
        if service.aliases:
            if facts.aliases is None:
                facts.aliases = await self._room_aliases(room_id)
            if any(service.is_interested_in_alias(a) for a in [*facts.aliases, *extra_aliases]):
                return True
        return False

    async def _room_aliases(self, room_id: str) -> list[str]:
        """Local aliases pointing at the room plus its canonical alias and alt_aliases."""
        aliases = list(await self.hs.room_store.get_aliases_for_room(room_id))
        canonical = await self.hs.room_store.get_current_state_event(room_id, "m.room.canonical_alias", "")
        if canonical is not None:
            aliases.extend(_canonical_aliases(canonical.content))
        return aliases

    async def interested_services(self, event: Event) -> list[str]:
        """IDs of the appservices that get ``event``: its sender or (member event) target is in their users
        namespace, its room ID is in their rooms namespace, a joined member of the room is in their users
        namespace, or an alias of the room is in their aliases namespace."""
        facts = _RoomFacts()
        extra_aliases = _canonical_aliases(event.content) if event.type == "m.room.canonical_alias" else []
        out = []
        for service in self.services:
            if service.url is None:
                continue
            if service.is_interested_in_user(event.sender) or (
                    event.type == "m.room.member" and event.state_key
                    and service.is_interested_in_user(event.state_key)) \
                    or await self._interested_in_room(service, event.room_id, facts, extra_aliases):
                out.append(service.id)
        return out

    # -- persist hook (see homeserver.handlers.events.PersistHook) -----------------------------------------------

    async def prepare(self, event: Event, state_ids: dict[tuple[str, str], str]) -> list[str]:
        """Persist hook, before the transaction: the IDs of the appservices interested in ``event``."""
        return await self.interested_services(event)

    def persist_txn(self, txn: Any, event: Event, stream_ordering: int, prepared: list[str]) -> None:
        """Persist hook, inside the event's transaction: queue ``event`` (at ``stream_ordering``) for each appservice in
        ``prepared``, so it commits or fails with the event.
        """
        if prepared:
            AppServiceStore.enqueue_event_txn(txn, prepared, stream_ordering, event.event_id)

    def after_persist(self, event: Event, stream_ordering: int, prepared: list[str]) -> None:
        """Persist hook, after commit: wake the transaction sender of each appservice in ``prepared``."""
        for as_id in prepared:
            self.senders[as_id].on_event_queued(stream_ordering)

    # -- ephemeral data (typing, receipts) -----------------------------------------------------------------------

    def _on_stream(self, stream: str, position: int) -> None:
        if stream == "events":
            # A sender may have left queued events above a then-incomplete position (out-of-order commits).
            for sender in self.senders.values():
                sender.on_events_position(position)
            return
        if stream not in ("typing", "receipts") or not any(s.receive_ephemeral and s.url for s in self.services):
            return
        if stream == "typing":
            typing = getattr(self.hs, "typing_handler", None)
            if typing is None:
                return
            since, self._typing_position = self._typing_position, max(self._typing_position, position)
            for room_id in typing.rooms_changed_since(since):
                edu = {"type": "m.typing", "room_id": room_id,
                       "content": {"user_ids": typing.typing_users(room_id)}}
                self.clock.callLater(0, self._route_ephemeral, room_id, edu)
            return
        receipts = getattr(self.hs, "receipts_handler", None)
        store = getattr(receipts, "store", None)
        if store is None or not hasattr(store, "get_room_receipts"):
            return
        since, self._receipts_position = self._receipts_position, max(self._receipts_position, position)
        for room_id in _rooms_changed_since(store, "_room_last", since):
            self.clock.callLater(0, self._route_receipts, store, room_id, since, position)

    def _route_receipts(self, store: Any, room_id: str, since: int, position: int) -> None:
        async def _build() -> None:
            content: dict[str, Any] = {}
            for r in await store.get_room_receipts(room_id, since, position):
                if r.receipt_type == "m.read.private":
                    continue  # private receipts are for their owner only
                data: dict[str, Any] = {"ts": r.ts}
                if r.thread_id is not None:
                    data["thread_id"] = r.thread_id
                content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = data
            if content:
                self._route_ephemeral(room_id, {"type": "m.receipt", "room_id": room_id, "content": content})

        from twisted.internet import defer

        defer.ensureDeferred(_build()).addErrback(lambda f: logger.error("receipt routing failed: %s",
                                                                         f.getTraceback()))

    def _route_ephemeral(self, room_id: str, edu: dict[str, Any]) -> None:
        async def _route() -> None:
            facts = _RoomFacts()
            for service in self.services:
                if service.receive_ephemeral and service.url and \
                        await self._interested_in_room(service, room_id, facts):
                    self.senders[service.id].add_ephemeral(edu)

        from twisted.internet import defer

        defer.ensureDeferred(_route()).addErrback(lambda f: logger.error("ephemeral routing failed: %s",
                                                                         f.getTraceback()))

    def add_ephemeral_for_room(self, room_id: str, edu: dict[str, Any]) -> None:
        """Hand an ephemeral event of ``room_id`` (e.g. an ``m.receipt`` with ``room_id`` set) to the interested
        appservices with ``receive_ephemeral``. For the receipts handler to call after it stored a receipt."""
        self._route_ephemeral(room_id, edu)


def _rooms_changed_since(source: Any, fallback_attr: str, since: int) -> list[str]:
    """Rooms whose typing/receipts changed after stream position ``since``: the source's public
    ``rooms_changed_since(position)`` if it has one, else its per-room position map."""
    method = getattr(source, "rooms_changed_since", None)
    if method is not None:
        return list(method(since))
    return [room_id for room_id, pos in dict(getattr(source, fallback_attr, {})).items() if pos > since]


def _canonical_aliases(content: dict[str, Any]) -> list[str]:
    out = []
    alias = content.get("alias")
    if isinstance(alias, str):
        out.append(alias)
    alt = content.get("alt_aliases")
    if isinstance(alt, list):
        out.extend(a for a in alt if isinstance(a, str))
    return out
