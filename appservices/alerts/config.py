"""Typed configuration of the alert bridge, loaded from YAML (see config/alerts.yaml for every key).

Every bad value raises :class:`ConfigError` naming the key, so a typo fails at start-up, not at 3 a.m.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from appservices.common.registration import Registration, RegistrationError, load_registration

from .auth import SourceAuth
from .routing import Matcher, Route, Router, RoutingError

SOURCES = ("alertmanager", "grafana", "zabbix")


class ConfigError(ValueError):
    """The config is invalid; the message names the key."""


@dataclass
class SourceConfig:
    """One ingest source: its authentication plus source-specific options.

    Attributes:
        auth: bearer token and/or HMAC settings.
        url: Alertmanager API base URL used by ``!silence`` (``None``: mute in the bridge instead).
        template: field mapping for a generic source (see :func:`appservices.alerts.ingest.parse_generic`).
    """

    auth: SourceAuth
    url: str | None = None
    template: dict[str, Any] = field(default_factory=dict)


@dataclass
class AlertsConfig:
    """The whole bridge config. Sizes in bytes, durations in seconds."""

    homeserver_url: str
    server_name: str
    registration: Registration
    registration_path: str
    listen_host: str
    listen_port: int
    database_engine: str
    database_args: dict[str, Any]
    max_body_bytes: int
    command_power_level: int
    api_token: str | None
    sources: dict[str, SourceConfig]
    router: Router
    retry_interval_s: float = 5.0


def _get(d: dict[str, Any], key: str, typ: type | tuple[type, ...], where: str, default: Any = ...) -> Any:
    if key not in d or d[key] is None:
        if default is ...:
            raise ConfigError(f"missing config key {where}{key}")
        return default
    if not isinstance(d[key], typ) or (typ is int and isinstance(d[key], bool)):
        raise ConfigError(f"config key {where}{key} has the wrong type")
    return d[key]


def _source(raw: Any, where: str) -> SourceConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {where} must be a mapping")
    token = _get(raw, "token", str, where + ".", None)
    secret = _get(raw, "hmac_secret", str, where + ".", None)
    if token is None and secret is None:
        raise ConfigError(f"config key {where} needs a token or an hmac_secret")
    return SourceConfig(
        auth=SourceAuth(
            token=token,
            hmac_secret=secret,
            hmac_header=_get(raw, "hmac_header", str, where + ".", "X-Tocsin-Signature"),
            hmac_timestamp_header=_get(raw, "hmac_timestamp_header", str, where + ".", None),
        ),
        url=_get(raw, "url", str, where + ".", None),
        template=_get(raw, "template", dict, where + ".", {}),
    )


def _route(raw: Any, where: str) -> Route:
    if not isinstance(raw, dict):
        raise ConfigError(f"config key {where} must be a mapping")
    matchers = _get(raw, "match", list, where + ".", [])
    try:
        parsed = tuple(Matcher.parse(str(m)) for m in matchers)
    except RoutingError as e:
        raise ConfigError(f"config key {where}.match: {e}") from e
    return Route(
        name=_get(raw, "name", str, where + "."),
        room=_get(raw, "room", str, where + "."),
        matchers=parsed,
        escalation_policy=_get(raw, "escalation_policy", str, where + ".", None),
        invite=tuple(_get(raw, "invite", list, where + ".", [])),
        mentions=tuple(_get(raw, "mentions", list, where + ".", [])),
        team_power_level=_get(raw, "team_power_level", int, where + ".", 50),
        sources=tuple(_get(raw, "sources", list, where + ".", [])),
    )


def parse_config(raw: Any, base_dir: str = ".") -> AlertsConfig:
    """Build an :class:`AlertsConfig` from decoded YAML; relative paths are resolved against ``base_dir``.

    Raises:
        ConfigError: a key is missing or invalid (the message names it).
    """
    if not isinstance(raw, dict):
        raise ConfigError("config must be a mapping")
    hs = _get(raw, "homeserver", dict, "")
    reg_path = _get(raw, "registration", str, "")
    if not os.path.isabs(reg_path):
        reg_path = os.path.join(base_dir, reg_path)
    try:
        registration = load_registration(reg_path)
    except (OSError, RegistrationError) as e:
        raise ConfigError(f"config key registration: {e}") from e
    listen = _get(raw, "listen", dict, "", {})
    db = _get(raw, "database", dict, "", {})
    engine = _get(db, "engine", str, "database.", "sqlite")
    if engine not in ("sqlite", "postgres"):
        raise ConfigError("config key database.engine must be 'sqlite' or 'postgres'")
    db_args = dict(_get(db, "args", dict, "database.", {"database": "alerts.db"}))
    if engine == "sqlite" and db_args.get("database") not in (None, ":memory:"):
        if not os.path.isabs(db_args["database"]):
            db_args["database"] = os.path.join(base_dir, db_args["database"])
    sources_raw = _get(raw, "sources", dict, "")
    sources: dict[str, SourceConfig] = {}
    for name in SOURCES:
        if name in sources_raw:
            sources[name] = _source(sources_raw[name], f"sources.{name}")
    for name, sraw in (_get(sources_raw, "generic", dict, "sources.", {}) or {}).items():
        sc = _source(sraw, f"sources.generic.{name}")
        if "dedup_key" not in sc.template:
            raise ConfigError(f"config key sources.generic.{name}.template.dedup_key is missing")
        sources[f"generic:{name}"] = sc
    unknown = set(sources_raw) - set(SOURCES) - {"generic"}
    if unknown:
        raise ConfigError(f"unknown config key(s) under sources: {', '.join(sorted(unknown))}")
    routes = [_route(r, f"routes[{i}]") for i, r in enumerate(_get(raw, "routes", list, "", []))]
    default = _route(_get(raw, "default_route", dict, ""), "default_route")
    if default.matchers:
        raise ConfigError("config key default_route.match is not allowed: the default route catches the rest")
    return AlertsConfig(
        homeserver_url=_get(hs, "url", str, "homeserver."),
        server_name=_get(hs, "server_name", str, "homeserver."),
        registration=registration,
        registration_path=reg_path,
        listen_host=_get(listen, "host", str, "listen.", "127.0.0.1"),
        listen_port=_get(listen, "port", int, "listen.", 9000),
        database_engine=engine,
        database_args=db_args,
        max_body_bytes=_get(raw, "max_body_bytes", int, "", 1024 * 1024),
        command_power_level=_get(raw, "command_power_level", int, "", 50),
        api_token=_get(raw, "api_token", str, "", None),
        sources=sources,
        router=Router(routes, default),
        retry_interval_s=float(_get(raw, "retry_interval_s", (int, float), "", 5.0)),
    )


def load_config(path: str) -> AlertsConfig:
    """Read and parse the YAML config at ``path``.

    Raises:
        OSError: unreadable file. ConfigError: invalid content.
    """
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    return parse_config(raw, os.path.dirname(os.path.abspath(path)))
