"""Room versions this server speaks and the per-version feature flags the event code switches on.

Spec: "Room Versions" (https://spec.matrix.org/latest/rooms/), pages "Room Version 10" and "Room Version 11".
Only versions 10 and 11 are supported: both use reference-hash event IDs (event format of v4+), strict canonical
JSON (v6+), integer-only power levels (v10+), and the knock/restricted/knock_restricted join rules (v7/v8/v10).
Version 11 differs by its updated redaction algorithm and by taking the room creator from the create event's
``sender`` instead of ``content.creator``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoomVersion:
    """The rules of one room version.

    Attributes:
        identifier: the version string as it appears in ``m.room.create`` ``content.room_version`` (e.g. ``"10"``).
        stable: whether the spec marks the version stable (unstable ones are never the default).
        updated_redaction_rules: v11 redaction algorithm (keeps all of ``m.room.create`` content, power-levels
            ``invite``, redaction ``content.redacts``, member ``third_party_invite.signed``; drops the
            ``origin``, ``membership`` and ``prev_state`` top-level keys).
        implicit_room_creator: v11: the creator is the ``sender`` of ``m.room.create`` and ``content.creator``
            is neither required nor used.
        redacts_in_content: v11: ``m.room.redaction`` carries ``redacts`` inside ``content``, not at top level.
        strict_canonicaljson: events must not contain floats or integers outside +-(2**53 - 1).
        knock_join_rule: the ``knock`` join rule and ``knock`` membership exist.
        restricted_join_rule: the ``restricted`` join rule and ``join_authorised_via_users_server`` exist.
        knock_restricted_join_rule: the ``knock_restricted`` join rule exists.
        integer_power_levels: power-level values must be JSON integers (no numeric strings).
    """

    identifier: str
    stable: bool = True
    updated_redaction_rules: bool = False
    implicit_room_creator: bool = False
    redacts_in_content: bool = False
    strict_canonicaljson: bool = True
    knock_join_rule: bool = True
    restricted_join_rule: bool = True
    knock_restricted_join_rule: bool = True
    integer_power_levels: bool = True


ROOM_VERSION_10 = RoomVersion(identifier="10")
ROOM_VERSION_11 = RoomVersion(
    identifier="11",
    updated_redaction_rules=True,
    implicit_room_creator=True,
    redacts_in_content=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {v.identifier: v for v in (ROOM_VERSION_10, ROOM_VERSION_11)}

# The spec recommends servers default to version 10 (Client-Server API, "Room versions" -> default version).
DEFAULT_ROOM_VERSION = "10"
