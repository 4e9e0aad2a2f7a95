"""Matrix identifiers: one place that says what a user ID, room ID, event ID or room alias looks like.

Spec: Appendices, "Identifier Grammar". Validation here is what *existing* IDs must satisfy (historical user IDs
may use any printable ASCII in the localpart); the stricter grammar for *new* user IDs is
``homeserver.handlers.registration.check_localpart_grammar``.
"""

from __future__ import annotations

import re

from homeserver.http.errors import InvalidParamError

MAX_ID_BYTES = 255
# Server names: a DNS name, an IPv4 address or a bracketed IPv6 literal, then an optional port.
SERVER_NAME_PATTERN = r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Za-z.-]{1,255})(?::[0-9]{1,5})?"
_SERVER_NAME_RE = re.compile(SERVER_NAME_PATTERN + r"\Z")
# Historical user IDs: sigil, a non-empty localpart of printable ASCII other than ':' (%x21-39 / %x3B-7E), a
# server name. No spaces, control characters or non-ASCII: the spec allows none of them, even historically.
_USER_ID_RE = re.compile(r"^@[\x21-\x39\x3B-\x7E]+:" + SERVER_NAME_PATTERN + r"\Z")


def is_valid_server_name(value: object) -> bool:
    """True for a server name of the spec's grammar: a host name, IPv4 address or ``[IPv6]`` literal, then an
    optional ``:port``. Spec: Appendices, "Server Name"."""
    return isinstance(value, str) and _SERVER_NAME_RE.match(value) is not None


def is_valid_user_id(value: object) -> bool:
    """True for a user ID of the spec's (historical) grammar, ``@localpart:server_name``, of at most 255 bytes:
    the localpart printable ASCII without ``:``, the server name a host name, IPv4 or ``[IPv6]`` with an optional
    port. Spec: Appendices, "Identifier Grammar" ("Historical User IDs", "Server Name")."""
    return (isinstance(value, str) and len(value.encode("utf-8")) <= MAX_ID_BYTES
            and _USER_ID_RE.match(value) is not None)


def parse_user_id(value: object, what: str = "user ID") -> str:
    """``value`` if it is a user ID; raises InvalidParamError (400 ``M_INVALID_PARAM``) naming ``what``."""
    if not is_valid_user_id(value):
        raise InvalidParamError(f"{value!r} is not a valid {what}")
    return value  # type: ignore[return-value]


def server_name_of(user_id: str) -> str:
    """The server part of a user ID, room ID or alias (everything after the first ':')."""
    return user_id.split(":", 1)[1]
