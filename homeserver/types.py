"""Matrix identifiers: one place that says what a user ID, room ID, event ID or room alias looks like.

Spec: Appendices, "Identifier Grammar". Validation here is what *existing* IDs must satisfy (historical user IDs
may use any printable ASCII in the localpart); the stricter grammar for *new* user IDs is
``homeserver.handlers.registration.check_localpart_grammar``.
"""

from __future__ import annotations

import re

from homeserver.http.errors import InvalidParamError

MAX_ID_BYTES = 255
# Historical user IDs: sigil, a non-empty localpart without ':', a non-empty server name.
_USER_ID_RE = re.compile(r"^@[^:\s]+:[^\s]+$")


def is_valid_user_id(value: object) -> bool:
    """True for a string shaped like ``@localpart:server`` of at most 255 bytes."""
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
