"""Appservice registration files (Application Service API, "Registration").

The same YAML file is given to the homeserver (``app_service_config_files`` in Synapse) and to the
appservice process, so both agree on the tokens, the URL and the namespaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RegistrationError(ValueError):
    """A registration file is missing a key or has a value of the wrong type; the message names the key."""


@dataclass(frozen=True)
class Namespace:
    """One namespace entry: ``regex`` (full match against an ID) and whether it is ``exclusive``."""

    regex: str
    exclusive: bool = False

    def matches(self, value: str) -> bool:
        """True if ``value`` (a user ID, alias or room ID) is in this namespace."""
        return re.fullmatch(self.regex, value) is not None


@dataclass(frozen=True)
class Registration:
    """A parsed registration file.

    Attributes:
        id: the appservice's unique ID.
        url: where the homeserver sends transactions (``None`` means it sends none).
        as_token: token the appservice uses on the client-server API.
        hs_token: token the homeserver presents when it calls the appservice.
        sender_localpart: localpart of the appservice's own bot user.
        users / aliases / rooms: namespaces.
    """

    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender_localpart: str
    users: tuple[Namespace, ...] = field(default_factory=tuple)
    aliases: tuple[Namespace, ...] = field(default_factory=tuple)
    rooms: tuple[Namespace, ...] = field(default_factory=tuple)
    rate_limited: bool = False

    def bot_user_id(self, server_name: str) -> str:
        """The fully qualified user ID of the sender_localpart user, e.g. ``@alerts:example.com``."""
        return f"@{self.sender_localpart}:{server_name}"

    def is_interested_in_user(self, user_id: str) -> bool:
        """True if ``user_id`` is one of ours (used to ignore our own echoes)."""
        return any(ns.matches(user_id) for ns in self.users)

    def to_dict(self) -> dict[str, Any]:
        """The registration as the YAML mapping the spec describes."""

        def ns(items: tuple[Namespace, ...]) -> list[dict[str, Any]]:
            return [{"regex": n.regex, "exclusive": n.exclusive} for n in items]

        return {
            "id": self.id,
            "url": self.url,
            "as_token": self.as_token,
            "hs_token": self.hs_token,
            "sender_localpart": self.sender_localpart,
            "rate_limited": self.rate_limited,
            "namespaces": {"users": ns(self.users), "aliases": ns(self.aliases), "rooms": ns(self.rooms)},
        }


def _namespaces(raw: Any, key: str) -> tuple[Namespace, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise RegistrationError(f"namespaces.{key} must be a list")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or not isinstance(item.get("regex"), str):
            raise RegistrationError(f"namespaces.{key}[{i}].regex must be a string")
        try:
            re.compile(item["regex"])
        except re.error as e:
            raise RegistrationError(f"namespaces.{key}[{i}].regex is not a valid regex: {e}") from e
        out.append(Namespace(item["regex"], bool(item.get("exclusive", False))))
    return tuple(out)


def parse_registration(raw: Any) -> Registration:
    """Build a :class:`Registration` from a decoded YAML mapping.

    Raises:
        RegistrationError: a required key is missing or has the wrong type.
    """
    if not isinstance(raw, dict):
        raise RegistrationError("registration must be a mapping")
    for key in ("id", "as_token", "hs_token", "sender_localpart"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise RegistrationError(f"registration key {key!r} must be a non-empty string")
    url = raw.get("url")
    if url is not None and not isinstance(url, str):
        raise RegistrationError("registration key 'url' must be a string or null")
    namespaces = raw.get("namespaces") or {}
    if not isinstance(namespaces, dict):
        raise RegistrationError("registration key 'namespaces' must be a mapping")
    return Registration(
        id=raw["id"],
        url=url,
        as_token=raw["as_token"],
        hs_token=raw["hs_token"],
        sender_localpart=raw["sender_localpart"],
        users=_namespaces(namespaces.get("users"), "users"),
        aliases=_namespaces(namespaces.get("aliases"), "aliases"),
        rooms=_namespaces(namespaces.get("rooms"), "rooms"),
        rate_limited=bool(raw.get("rate_limited", False)),
    )


def load_registration(path: str | Path) -> Registration:
    """Read and parse a registration YAML file.

    Raises:
        OSError: the file cannot be read.
        RegistrationError: the content is invalid.
    """
    with open(path, encoding="utf-8") as f:
        return parse_registration(yaml.safe_load(f))
