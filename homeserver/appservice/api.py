"""The homeserver's HTTP calls to application services (spec: Application Service API).

``PUT /_matrix/app/v1/transactions/{txnId}``, ``GET /_matrix/app/v1/users/{userId}``,
``GET /_matrix/app/v1/rooms/{roomAlias}`` and ``POST /_matrix/app/v1/ping``, each with
``Authorization: Bearer <hs_token>``. Every call has a deadline: a hung appservice never holds anything forever.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from twisted.internet import defer
from twisted.web.client import HTTPConnectionPool

from homeserver.appservice.registration import ApplicationService
from homeserver.http.client import make_agent

logger = logging.getLogger(__name__)

TRANSACTION_TIMEOUT_S = 60.0
QUERY_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 5.0
_MAX_BODY_KEPT = 4096


class AppServiceTimeout(Exception):
    """The appservice did not answer within the deadline."""


class AppServiceUnreachable(Exception):
    """The connection to the appservice failed (refused, reset, DNS...)."""


@dataclass
class AppServiceResponse:
    """``status`` (HTTP code) and the first bytes of ``body`` (text, for diagnostics)."""

    status: int
    body: str


class AppServiceApi:
    """Makes the calls. One persistent connection pool for all appservices."""

    def __init__(self, reactor: Any) -> None:
        import treq.client

        self.reactor = reactor
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 4
        pool.retryAutomatically = False  # a transaction PUT is retried by the sender, with the same txn_id
        self._client = treq.client.HTTPClient(make_agent(reactor, pool))

    async def _call(self, service: ApplicationService, method: str, path: str, body: Any,
                    timeout_s: float) -> AppServiceResponse:
        """One request. Raises AppServiceTimeout or AppServiceUnreachable; any HTTP status is returned."""
        assert service.url is not None
        url = service.url + path
        headers = {b"Authorization": [f"Bearer {service.hs_token}".encode()],
                   b"User-Agent": [b"Tocsin homeserver"]}
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            headers[b"Content-Type"] = [b"application/json"]
            kwargs["data"] = json.dumps(body, ensure_ascii=False).encode("utf-8")

        async def _do() -> AppServiceResponse:
            response = await self._client.request(method, url, **kwargs)
            raw = await response.content()
            return AppServiceResponse(response.code, raw[:_MAX_BODY_KEPT].decode("utf-8", "replace"))

        d = defer.Deferred.fromCoroutine(_do())
        timed_out = [False]

        def _on_timeout() -> None:
            timed_out[0] = True
            d.cancel()

        timer = self.reactor.callLater(timeout_s, _on_timeout)
        try:
            return await d
        except Exception as e:  # noqa: BLE001 - every transport failure becomes one of our two exceptions
            if timed_out[0]:
                raise AppServiceTimeout(f"{method} {path}: no answer within {timeout_s:g}s") from e
            raise AppServiceUnreachable(f"{method} {path}: {type(e).__name__}: {e}") from e
        finally:
            if timer.active():
                timer.cancel()

    async def push_transaction(self, service: ApplicationService, txn_id: str, body: dict[str, Any]) -> bool:
        """PUT the transaction; True only for a 200 answer. Network errors and timeouts count as False."""
        path = f"/_matrix/app/v1/transactions/{quote(txn_id, safe='')}"
        try:
            response = await self._call(service, "PUT", path, body, TRANSACTION_TIMEOUT_S)
        except (AppServiceTimeout, AppServiceUnreachable) as e:
            logger.warning("appservice %s: transaction %s failed: %s", service.id, txn_id, e)
            return False
        if response.status != 200:
            logger.warning("appservice %s: transaction %s answered %d: %s", service.id, txn_id, response.status,
                           response.body[:200])
            return False
        return True

    async def query_user(self, service: ApplicationService, user_id: str) -> bool:
        """GET /users/{userId}; True if the appservice answered 200 (it says it created the user)."""
        return await self._query(service, f"/_matrix/app/v1/users/{quote(user_id, safe='')}")

    async def query_alias(self, service: ApplicationService, alias: str) -> bool:
        """GET /rooms/{roomAlias}; True if the appservice answered 200 (it says it created the alias)."""
        return await self._query(service, f"/_matrix/app/v1/rooms/{quote(alias, safe='')}")

    async def _query(self, service: ApplicationService, path: str) -> bool:
        try:
            response = await self._call(service, "GET", path, None, QUERY_TIMEOUT_S)
        except (AppServiceTimeout, AppServiceUnreachable) as e:
            logger.info("appservice %s: query %s failed: %s", service.id, path, e)
            return False
        return response.status == 200

    async def ping(self, service: ApplicationService, transaction_id: str | None) -> AppServiceResponse:
        """POST /ping with ``{"transaction_id": ...}`` when given. Raises AppServiceTimeout/Unreachable."""
        body: dict[str, Any] = {}
        if transaction_id is not None:
            body["transaction_id"] = transaction_id
        return await self._call(service, "POST", "/_matrix/app/v1/ping", body, PING_TIMEOUT_S)
