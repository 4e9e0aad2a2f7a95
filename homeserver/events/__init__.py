"""The Matrix event format for room versions 10 and 11: canonical JSON, hashes, event IDs, signing, redaction,
authorization rules and client serialization. Pure code: no I/O, no database, no Twisted.
"""

from homeserver.events.event import Event, prune_event
from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS, RoomVersion

__all__ = ["DEFAULT_ROOM_VERSION", "KNOWN_ROOM_VERSIONS", "Event", "RoomVersion", "prune_event"]
