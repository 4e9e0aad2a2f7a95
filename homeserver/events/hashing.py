"""Content hashes, reference hashes (event IDs) and server signatures of PDUs.

Spec: Server-Server API -> "Signing events" / "Calculating the content hash for an event" / "Calculating the
reference hash for an event"; Room versions -> "Event IDs" (v4+: ``$`` + URL-safe unpadded base64 of the reference
hash); Appendices -> "Signing JSON".
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from nacl.signing import SigningKey, VerifyKey
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64, encode_base64

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.redaction import prune_event_dict
from homeserver.events.room_versions import RoomVersion
from homeserver.http.errors import AuthError


class EventSignatureError(AuthError):
    """403: a PDU lacks a valid signature from the server that must have signed it."""


def compute_content_hash(event_dict: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of the event without ``unsigned``, ``signatures`` and ``hashes``.

    Returns:
        Standard (not URL-safe) unpadded base64, the value stored in ``hashes.sha256``.
    """
    stripped = {k: v for k, v in event_dict.items() if k not in ("unsigned", "signatures", "hashes")}
    return encode_base64(hashlib.sha256(encode_canonical_json(stripped)).digest())


def check_content_hash(event_dict: dict[str, Any]) -> bool:
    """Whether ``hashes.sha256`` matches the event's content hash.

    Per the spec a mismatch means the event must be redacted (not rejected) once its signature checks out.
    """
    hashes = event_dict.get("hashes")
    if not isinstance(hashes, dict) or not isinstance(hashes.get("sha256"), str):
        return False
    try:
        expected = decode_base64(hashes["sha256"])
    except Exception:
        return False
    stripped = {k: v for k, v in event_dict.items() if k not in ("unsigned", "signatures", "hashes")}
    return hashlib.sha256(encode_canonical_json(stripped)).digest() == expected


def redacted_signing_bytes(room_version: RoomVersion, event_dict: dict[str, Any]) -> bytes:
    """Canonical JSON of the redacted event minus ``signatures``, ``unsigned`` and ``age_ts``: the bytes both the
    server signature and the reference hash are computed over (spec: "Signing events", "Calculating the
    reference hash for an event")."""
    pruned = prune_event_dict(room_version, event_dict)
    for key in ("signatures", "unsigned", "age_ts"):
        pruned.pop(key, None)
    return encode_canonical_json(pruned)


def compute_reference_hash(room_version: RoomVersion, event_dict: dict[str, Any]) -> bytes:
    """The raw 32-byte SHA-256 reference hash of the redacted event minus ``signatures``, ``unsigned``, ``age_ts``."""
    return hashlib.sha256(redacted_signing_bytes(room_version, event_dict)).digest()


def event_id_from_reference_hash(digest: bytes) -> str:
    """``"$"`` + URL-safe unpadded base64 of a reference hash (room versions 4+)."""
    return "$" + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def compute_event_id(room_version: RoomVersion, event_dict: dict[str, Any]) -> str:
    """The event ID of a PDU for room versions 4+: ``"$"`` + URL-safe unpadded base64 of the reference hash.

    An ``event_id`` key inside ``event_dict`` (there is none in v10/v11 PDUs) would be hashed like any other key.
    """
    return event_id_from_reference_hash(compute_reference_hash(room_version, event_dict))


def add_hashes_and_signatures(
    room_version: RoomVersion, event_dict: dict[str, Any], server_name: str, signing_key: SigningKey
) -> dict[str, Any]:
    """Set ``hashes.sha256`` and add this server's signature of the redacted event, in place.

    Args:
        room_version: decides which redaction algorithm defines the signed form.
        event_dict: the PDU without (or with stale) ``hashes``; modified in place and returned.
        server_name: our server name, the key of ``signatures``.
        signing_key: an ed25519 key from ``signedjson.key`` (has ``.alg`` and ``.version``); the signature's key id is
            ``ed25519:<version>``.

    Returns:
        ``event_dict`` itself, now carrying ``hashes`` and ``signatures[server_name]``.
    """
    add_hashes_and_signatures_returning_id(room_version, event_dict, server_name, signing_key)
    return event_dict


def add_hashes_and_signatures_returning_id(
    room_version: RoomVersion, event_dict: dict[str, Any], server_name: str, signing_key: SigningKey
) -> str:
    """As :func:`add_hashes_and_signatures` (``event_dict`` is modified in place), returning the event ID.

    The signature and the reference hash cover the same bytes (the redacted event without ``signatures`` and
    ``unsigned``, see :func:`redacted_signing_bytes`), so they are encoded once for both. Adding ``unsigned``
    to the event afterwards does not change its ID.
    """
    event_dict["hashes"] = {"sha256": compute_content_hash(event_dict)}
    # Sign only the redacted form so the signature survives redaction; other servers' signatures are kept.
    signed_bytes = redacted_signing_bytes(room_version, event_dict)
    signature = encode_base64(signing_key.sign(signed_bytes).signature)
    signatures = event_dict.setdefault("signatures", {})
    signatures.setdefault(server_name, {})[f"{signing_key.alg}:{signing_key.version}"] = signature
    return event_id_from_reference_hash(hashlib.sha256(signed_bytes).digest())


def verify_event_signature(
    room_version: RoomVersion, event_dict: dict[str, Any], server_name: str, verify_key: VerifyKey
) -> None:
    """Check ``server_name``'s signature (key id ``<verify_key.alg>:<verify_key.version>``) over the redacted PDU.

    Raises:
        EventSignatureError: (a 403 ``AuthError``) if the signature is missing or does not verify.
    """
    pruned = prune_event_dict(room_version, event_dict)
    try:
        verify_signed_json(pruned, server_name, verify_key)
    except SignatureVerifyException as e:
        raise EventSignatureError(f"Event signature from {server_name} does not verify: {e}") from None
