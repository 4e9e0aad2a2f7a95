"""Matrix errors as exceptions that carry their ``errcode`` and HTTP status.

Spec: Client-Server API, "API standards" -> "Standard error response" and "Common error codes".
Every layer (rest, handlers, events, storage) raises these; the HTTP layer turns them into
``{"errcode": ..., "error": ...}`` JSON replies with the status code. Nothing else should build an error body.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class Codes:
    """The spec's ``errcode`` strings (Client-Server API, "Common error codes" and "Other error codes")."""

    FORBIDDEN = "M_FORBIDDEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    USER_LOCKED = "M_USER_LOCKED"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    THREEPID_IN_USE = "M_THREEPID_IN_USE"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    BAD_STATE = "M_BAD_STATE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    EXCLUSIVE = "M_EXCLUSIVE"
    RESOURCE_LIMIT_EXCEEDED = "M_RESOURCE_LIMIT_EXCEEDED"
    CANNOT_LEAVE_SERVER_NOTICE_ROOM = "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    URL_NOT_SET = "M_URL_NOT_SET"
    BAD_STATUS = "M_BAD_STATUS"
    CONNECTION_FAILED = "M_CONNECTION_FAILED"
    CONNECTION_TIMEOUT = "M_CONNECTION_TIMEOUT"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    UNKNOWN_POS = "M_UNKNOWN_POS"
    DUPLICATE_ANNOTATION = "M_DUPLICATE_ANNOTATION"


class MatrixError(Exception):
    """An error the client sees as ``{"errcode": errcode, "error": msg, **extra}`` with HTTP status ``code``.

    Args:
        code: HTTP status code (int), e.g. 400.
        msg: human-readable ``error`` string.
        errcode: the spec's ``errcode``; defaults to ``M_UNKNOWN``.
        extra: further top-level fields of the error body (e.g. ``retry_after_ms``, UIA ``flows``).
    """

    def __init__(self, code: int, msg: str, errcode: str = Codes.UNKNOWN, **extra: Any) -> None:
        super().__init__(f"{code}: {errcode}: {msg}")
        self.code = int(code)
        self.msg = msg
        self.errcode = errcode
        self.extra = extra

    def error_dict(self) -> dict[str, Any]:
        """The JSON body of the error reply."""
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.msg}
        body.update(self.extra)
        return body


class BadJsonError(MatrixError):
    """400 ``M_BAD_JSON``: well-formed JSON with a wrong shape or a value the spec forbids."""

    def __init__(self, msg: str, **extra: Any) -> None:
        super().__init__(HTTPStatus.BAD_REQUEST, msg, Codes.BAD_JSON, **extra)


class NotJsonError(MatrixError):
    """400 ``M_NOT_JSON``: the request body is not JSON at all."""

    def __init__(self, msg: str = "Content not JSON.") -> None:
        super().__init__(HTTPStatus.BAD_REQUEST, msg, Codes.NOT_JSON)


class InvalidParamError(MatrixError):
    """400 ``M_INVALID_PARAM``: a query or body parameter has a bad value."""

    def __init__(self, msg: str) -> None:
        super().__init__(HTTPStatus.BAD_REQUEST, msg, Codes.INVALID_PARAM)


class MissingParamError(MatrixError):
    """400 ``M_MISSING_PARAM``: a required parameter is absent."""

    def __init__(self, msg: str) -> None:
        super().__init__(HTTPStatus.BAD_REQUEST, msg, Codes.MISSING_PARAM)


class ForbiddenError(MatrixError):
    """403 ``M_FORBIDDEN`` (or another 403 errcode): the request is understood but not allowed."""

    def __init__(self, msg: str, errcode: str = Codes.FORBIDDEN, **extra: Any) -> None:
        super().__init__(HTTPStatus.FORBIDDEN, msg, errcode, **extra)


class AuthError(ForbiddenError):
    """403 raised by the event authorization rules (spec: Room versions -> "Authorization rules")."""


class NotFoundError(MatrixError):
    """404 ``M_NOT_FOUND``."""

    def __init__(self, msg: str = "Not found") -> None:
        super().__init__(HTTPStatus.NOT_FOUND, msg, Codes.NOT_FOUND)


class UnrecognizedRequestError(MatrixError):
    """404 (unknown endpoint) or 405 (known path, wrong method) with ``M_UNRECOGNIZED``."""

    def __init__(self, msg: str = "Unrecognized request", code: int = HTTPStatus.NOT_FOUND) -> None:
        super().__init__(code, msg, Codes.UNRECOGNIZED)


class TooLargeError(MatrixError):
    """413 ``M_TOO_LARGE``: a request body or an event is over its size limit."""

    def __init__(self, msg: str) -> None:
        super().__init__(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, msg, Codes.TOO_LARGE)


class LimitExceededError(MatrixError):
    """429 ``M_LIMIT_EXCEEDED`` with ``retry_after_ms`` (milliseconds, int)."""

    def __init__(self, retry_after_ms: int, msg: str = "Too many requests") -> None:
        super().__init__(
            HTTPStatus.TOO_MANY_REQUESTS, msg, Codes.LIMIT_EXCEEDED, retry_after_ms=int(retry_after_ms)
        )
        self.retry_after_ms = int(retry_after_ms)


class UnknownTokenError(MatrixError):
    """401 ``M_UNKNOWN_TOKEN``: the access token is not (or no longer) valid. ``soft_logout`` per spec."""

    def __init__(self, msg: str = "Unrecognised access token", soft_logout: bool = False) -> None:
        super().__init__(HTTPStatus.UNAUTHORIZED, msg, Codes.UNKNOWN_TOKEN, soft_logout=soft_logout)


class MissingTokenError(MatrixError):
    """401 ``M_MISSING_TOKEN``: no access token in the request."""

    def __init__(self, msg: str = "Missing access token") -> None:
        super().__init__(HTTPStatus.UNAUTHORIZED, msg, Codes.MISSING_TOKEN)
