"""The redaction algorithm: what of an event survives redaction (and so is covered by signatures and event IDs).

Spec: Client-Server API -> "Redactions"; Room versions -> "Redactions" for v10 (same as v6-v10) and v11
("updated redaction rules", MSC2176/MSC3821/MSC3989).
"""

from __future__ import annotations

from typing import Any

from homeserver.events.canonical import copy_json
from homeserver.events.room_versions import RoomVersion

# Top-level keys every version keeps.
_KEPT_TOP_LEVEL_V11 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
# Versions before 11 also kept these; v11 dropped them as unused by the protocol.
_KEPT_TOP_LEVEL_V10 = _KEPT_TOP_LEVEL_V11 | {"origin", "membership", "prev_state"}

_POWER_LEVELS_KEPT_V10 = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)
_POWER_LEVELS_KEPT_V11 = _POWER_LEVELS_KEPT_V10 + ("invite",)


def _pick(content: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {key: copy_json(content[key]) for key in keys if key in content}


def _redacted_content(room_version: RoomVersion, event_type: Any, content: dict[str, Any]) -> dict[str, Any]:
    v11 = room_version.updated_redaction_rules
    if event_type == "m.room.member":
        kept = _pick(content, ("membership", "join_authorised_via_users_server"))
        if v11:
            # v11 keeps the signed third-party-invite block so the invite stays verifiable after redaction.
            third_party_invite = content.get("third_party_invite")
            if isinstance(third_party_invite, dict) and "signed" in third_party_invite:
                kept["third_party_invite"] = {"signed": copy_json(third_party_invite["signed"])}
        return kept
    if event_type == "m.room.create":
        return copy_json(content) if v11 else _pick(content, ("creator",))
    if event_type == "m.room.join_rules":
        return _pick(content, ("join_rule", "allow"))
    if event_type == "m.room.power_levels":
        return _pick(content, _POWER_LEVELS_KEPT_V11 if v11 else _POWER_LEVELS_KEPT_V10)
    if event_type == "m.room.history_visibility":
        return _pick(content, ("history_visibility",))
    if event_type == "m.room.redaction" and v11:
        return _pick(content, ("redacts",))
    return {}


def prune_event_dict(room_version: RoomVersion, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Return the redacted form of a PDU dict (a new dict; the input is not modified).

    Keeps only the top-level keys and ``content`` keys the room version's redaction algorithm lists. ``unsigned``
    is always dropped: callers that serve redacted events to clients add their own ``unsigned`` (for example
    ``redacted_because``). Pruning is idempotent: ``prune(prune(e)) == prune(e)``.

    Args:
        room_version: decides v10 vs v11 rules.
        event_dict: a PDU (or client-format event) as a JSON dict.

    Returns:
        The pruned dict; ``content`` is always present (possibly empty) when the input had one.
    """
    kept_keys = _KEPT_TOP_LEVEL_V11 if room_version.updated_redaction_rules else _KEPT_TOP_LEVEL_V10
    pruned: dict[str, Any] = {
        key: copy_json(value) for key, value in event_dict.items() if key in kept_keys and key != "content"
    }
    content = event_dict.get("content")
    pruned["content"] = (
        _redacted_content(room_version, event_dict.get("type"), content) if isinstance(content, dict) else {}
    )
    return pruned
