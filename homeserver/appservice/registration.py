"""Application service registration files: loading, validation and namespace matching.

Spec: Application Service API, "Registration" (``definitions/registration.yaml``, ``namespace_list.yaml``).
Every file listed under ``app_service_config_files`` is read at start-up; any bad value stops the server with a
:class:`~homeserver.config.ConfigError` naming the file and the key.

Namespace regexes are matched from the start of the string (Python ``re.match``), as Synapse does, so a
registration written for Synapse (``@_irc_.*`` without the server name) means the same thing here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from homeserver.config import ConfigError

_LOCALPART_RE = re.compile(r"^[a-z0-9._=/+\-]+$")
_REQUIRED_KEYS = ("id", "url", "as_token", "hs_token", "sender_localpart", "namespaces")


@dataclass(frozen=True)
class Namespace:
    """One entry of a namespace list: ``regex`` (compiled) and whether the appservice claims it ``exclusive``."""

    regex: re.Pattern[str]
    exclusive: bool

    def matches(self, value: str) -> bool:
        """True when the regex matches at the start of ``value`` (spec: namespaces are anchored regexes)."""
        return self.regex.match(value) is not None


@dataclass(frozen=True)
class ApplicationService:
    """A validated registration.

    ``url`` is None when the appservice wants no traffic (no transactions, queries or pings). ``sender`` is the
    full user ID built from ``sender_localpart``. ``source`` is the registration file's path (for messages).
    """

    id: str
    url: str | None
    as_token: str
    hs_token: str
    sender: str
    users: tuple[Namespace, ...] = ()
    aliases: tuple[Namespace, ...] = ()
    rooms: tuple[Namespace, ...] = ()
    rate_limited: bool = True
    protocols: tuple[str, ...] = ()
    receive_ephemeral: bool = False
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    # -- namespace checks ----------------------------------------------------------------------------------------

    def is_interested_in_user(self, user_id: str) -> bool:
        """True for the sender and any user ID in a users namespace (exclusive or not)."""
        return user_id == self.sender or any(ns.matches(user_id) for ns in self.users)

    def is_exclusive_user(self, user_id: str) -> bool:
        """True for the sender and any user ID in an exclusive users namespace."""
        return user_id == self.sender or any(ns.exclusive and ns.matches(user_id) for ns in self.users)

    def is_interested_in_alias(self, alias: str) -> bool:
        """True when ``alias`` is in this appservice's aliases namespace."""
        return any(ns.matches(alias) for ns in self.aliases)

    def is_exclusive_alias(self, alias: str) -> bool:
        """True when ``alias`` is in an exclusive entry of the aliases namespace (others may not create it)."""
        return any(ns.exclusive and ns.matches(alias) for ns in self.aliases)

    def is_interested_in_room_id(self, room_id: str) -> bool:
        """True when ``room_id`` is in this appservice's rooms namespace."""
        return any(ns.matches(room_id) for ns in self.rooms)


def _err(path: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"app_service_config_files: {path}: {key}: {msg}")


def _parse_namespaces(path: str, value: Any) -> dict[str, tuple[Namespace, ...]]:
    if not isinstance(value, dict):
        raise _err(path, "namespaces", f"expected a mapping with users/aliases/rooms, got {value!r}")
    unknown = set(value) - {"users", "aliases", "rooms"}
    if unknown:
        raise _err(path, "namespaces", f"unknown key(s) {sorted(unknown)}; expected users, aliases, rooms")
    out: dict[str, tuple[Namespace, ...]] = {}
    for kind in ("users", "aliases", "rooms"):
        items = value.get(kind) or []
        if not isinstance(items, list):
            raise _err(path, f"namespaces.{kind}", f"expected a list of {{regex, exclusive}}, got {items!r}")
        parsed = []
        for i, item in enumerate(items):
            key = f"namespaces.{kind}[{i}]"
            if not isinstance(item, dict):
                raise _err(path, key, f"expected a mapping with regex and exclusive, got {item!r}")
            regex = item.get("regex")
            if not isinstance(regex, str) or not regex:
                raise _err(path, f"{key}.regex", f"expected a non-empty string, got {regex!r}")
            try:
                compiled = re.compile(regex)
            except re.error as e:
                raise _err(path, f"{key}.regex", f"invalid regular expression {regex!r}: {e}") from e
            exclusive = item.get("exclusive")
            if not isinstance(exclusive, bool):
                raise _err(path, f"{key}.exclusive", f"expected true or false, got {exclusive!r}")
            parsed.append(Namespace(compiled, exclusive))
        out[kind] = tuple(parsed)
    return out


def parse_registration(raw: Any, path: str, server_name: str) -> ApplicationService:
    """Validate one registration document ``raw`` read from ``path``. Raises ConfigError naming file and key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"app_service_config_files: {path}: the registration must be a YAML mapping")
    for key in _REQUIRED_KEYS:
        if key not in raw:
            hint = " (use null for an appservice that receives no traffic)" if key == "url" else ""
            raise _err(path, key, f"required{hint}")
    as_id = raw["id"]
    if not isinstance(as_id, str) or not as_id:
        raise _err(path, "id", f"expected a non-empty string, got {as_id!r}")
    url = raw["url"]
    if url is not None:
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url):
            raise _err(path, "url", f"expected an http(s) URL or null, got {url!r}")
        url = url.rstrip("/")
    tokens = {}
    for key in ("as_token", "hs_token"):
        token = raw[key]
        if not isinstance(token, str) or not token:
            raise _err(path, key, "expected a non-empty string")
        tokens[key] = token
    if tokens["as_token"] == tokens["hs_token"]:
        raise _err(path, "hs_token", "must differ from as_token")
    localpart = raw["sender_localpart"]
    if not isinstance(localpart, str) or not _LOCALPART_RE.match(localpart):
        raise _err(path, "sender_localpart", f"expected a user ID localpart (a-z 0-9 ._=-/+), got {localpart!r}")
    namespaces = _parse_namespaces(path, raw["namespaces"])
    rate_limited = raw.get("rate_limited", True)
    if not isinstance(rate_limited, bool):
        raise _err(path, "rate_limited", f"expected true or false, got {rate_limited!r}")
    # MSC2409's unstable key is still written by older bridges.
    ephemeral_key = "receive_ephemeral" if "receive_ephemeral" in raw else "de.sorunome.msc2409.push_ephemeral"
    receive_ephemeral = raw.get(ephemeral_key, False)
    if not isinstance(receive_ephemeral, bool):
        raise _err(path, ephemeral_key, f"expected true or false, got {receive_ephemeral!r}")
    protocols = raw.get("protocols") or []
    if not isinstance(protocols, list) or not all(isinstance(p, str) and p for p in protocols):
        raise _err(path, "protocols", f"expected a list of protocol names, got {protocols!r}")
    known = set(_REQUIRED_KEYS) | {"rate_limited", "protocols", "receive_ephemeral",
                                   "de.sorunome.msc2409.push_ephemeral"}
    return ApplicationService(
        id=as_id,
        url=url,
        as_token=tokens["as_token"],
        hs_token=tokens["hs_token"],
        sender=f"@{localpart}:{server_name}",
        users=namespaces["users"],
        aliases=namespaces["aliases"],
        rooms=namespaces["rooms"],
        rate_limited=rate_limited,
        protocols=tuple(protocols),
        receive_ephemeral=receive_ephemeral,
        source=path,
        extra={k: v for k, v in raw.items() if k not in known},
    )


def load_registrations(paths: list[str], server_name: str) -> list[ApplicationService]:
    """Read and validate every registration file; also checks that ids, tokens and senders are unique across
    files (an ``as_token`` equal to another appservice's ``hs_token`` would let one impersonate the other).

    Raises ConfigError naming the file and the key.
    """
    services: list[ApplicationService] = []
    seen_ids: dict[str, str] = {}
    seen_tokens: dict[str, tuple[str, str]] = {}
    seen_senders: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                raw = yaml.safe_load(f)
        except OSError as e:
            raise ConfigError(f"app_service_config_files: cannot read {path}: {e.strerror}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"app_service_config_files: {path} is not valid YAML: {e}") from e
        service = parse_registration(raw, path, server_name)
        if service.id in seen_ids:
            raise _err(path, "id", f"duplicate id {service.id!r} (also in {seen_ids[service.id]})")
        seen_ids[service.id] = path
        for key in ("as_token", "hs_token"):
            token = getattr(service, key)
            if token in seen_tokens:
                other_path, other_key = seen_tokens[token]
                raise _err(path, key, f"the same token is the {other_key} of {other_path}; tokens must be unique")
            seen_tokens[token] = (path, key)
        if service.sender in seen_senders:
            raise _err(path, "sender_localpart",
                       f"{service.sender} is also the sender of {seen_senders[service.sender]}")
        seen_senders[service.sender] = path
        services.append(service)
    return services

