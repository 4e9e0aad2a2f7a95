"""Request bodies capped while they arrive, for the appservices' twisted.web listeners.

twisted.web reads a whole request body (into memory or a temp file) before a resource sees it, so a check in
``render`` comes too late to protect the process. :class:`BodyLimitedRequest` checks as the body arrives:

- a ``Content-Length`` over the path's cap is answered ``413`` as soon as the headers are in, and none of the
  body is stored;
- a chunked (or under-declared) body is cut off the moment it passes the cap, with the same ``413``.

After a 413 the rest of the body is read and dropped (up to :data:`DISCARD_AFTER_REJECT` bytes) before the
connection is closed, because closing a socket with unread input makes the kernel send a reset that can
destroy our answer before a client that sends its whole body first has read it.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from twisted.web import resource, server

#: Bytes of an already refused body we read and drop before giving up on the connection.
DISCARD_AFTER_REJECT = 8 * 1024 * 1024

#: ``(path, declared_length or None, limit)`` -> the JSON object to answer the 413 with.
TooLargeHook = Callable[[bytes, "int | None", int], dict[str, Any]]


class BodyLimitedRequest(server.Request):
    """A request whose body is capped while it is received; the cap comes from ``site.max_body_for(path)``.

    ``max_body_for`` returns the cap in bytes, or ``None`` for no cap. On refusal, ``site.on_too_large`` (if
    any) is called with the path, the declared length (``None`` for chunked bodies) and the cap, and returns
    the JSON body of the 413 answer.
    """

    def __init__(self, channel: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(channel, *args, **kwargs)
        self._body_received = 0
        self._body_limit: int | None = None
        self._refused = False

    def _site(self) -> Any:
        return getattr(self.channel, "site", None)

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted API
        """Twisted hook with the declared ``Content-Length`` (None when chunked): refuse with 413 if it exceeds
        the cap."""
        site = self._site()
        path = getattr(self.channel, "_path", b"") or b""
        if site is not None and hasattr(site, "max_body_for"):
            self._body_limit = site.max_body_for(path.split(b"?", 1)[0])
        if length is not None and self._body_limit is not None and length > self._body_limit:
            # No "100 Continue" for a body we will not take.
            self.requestHeaders.removeHeader(b"expect")
            self._refuse(path, length)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted API
        """Twisted hook per body chunk: count bytes, refuse with 413 once over the cap, drop the connection after
        ``DISCARD_AFTER_REJECT`` more bytes of a refused body.
        """
        self._body_received += len(data)
        if self._refused:
            if self._body_received > (self._body_limit or 0) + DISCARD_AFTER_REJECT:
                self.channel.transport.loseConnection()
            return
        if self._body_limit is not None and self._body_received > self._body_limit:
            self._refuse(getattr(self.channel, "_path", b"") or b"", None)
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802 - Twisted API
        """Twisted hook once the body is complete: a refused request is already answered, so only close the
        connection."""
        if self._refused:
            # The whole refused body has been dropped; the answer is already written.
            self.channel.transport.loseConnection()
            return
        super().requestReceived(command, path, version)

    def _refuse(self, path: bytes, declared: int | None) -> None:
        self._refused = True
        limit = self._body_limit or 0
        site = self._site()
        hook: TooLargeHook | None = getattr(site, "on_too_large", None)
        if hook is not None:
            answer = hook(path.split(b"?", 1)[0], declared, limit)
        else:
            answer = {"error": f"request body is over the limit of {limit} bytes", "reason": "too_large"}
        body = json.dumps(answer, ensure_ascii=False).encode("utf-8")
        head = [
            b"HTTP/1.1 413 Request Entity Too Large",
            b"Content-Type: application/json",
            b"Content-Length: " + str(len(body)).encode(),
            b"Connection: close",
        ]
        transport = self.channel.transport
        transport.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        if declared is not None and declared > limit + DISCARD_AFTER_REJECT:
            transport.loseConnection()


class BodyLimitedSite(server.Site):
    """A Site whose requests are :class:`BodyLimitedRequest`.

    Args:
        root: the root resource.
        max_body_for: path (bytes, without the query) -> cap in bytes, or ``None`` for no cap.
        on_too_large: optional hook building the 413 JSON body (and counting the refusal).
    """

    def __init__(
        self,
        root: resource.Resource,
        max_body_for: Callable[[bytes], "int | None"],
        on_too_large: TooLargeHook | None = None,
    ) -> None:
        super().__init__(root, requestFactory=BodyLimitedRequest)
        self.max_body_for = max_body_for
        self.on_too_large = on_too_large
        self.noisy = False
