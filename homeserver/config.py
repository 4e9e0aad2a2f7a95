"""Typed homeserver configuration loaded from ``homeserver.yaml``.

Key names follow Synapse's configuration manual wherever the two servers share a setting (``server_name``,
``listeners``, ``database``, ``enable_registration``, ``registration_shared_secret``, ``signing_key_path``,
``rc_message``, ``max_upload_size``, ``app_service_config_files``...), so a Synapse admin feels at home.
Every bad or unknown value raises :class:`ConfigError` naming the key, and start-up stops.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from homeserver.events.room_versions import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS
from homeserver.types import is_valid_server_name


class ConfigError(Exception):
    """A configuration value is missing, of the wrong type, or unknown; the message names the key."""


_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kKmMgG]?)[bB]?\s*$")


def parse_size(value: Any, key: str) -> int:
    """Parse a size like ``50M``, ``512K`` or ``1048576`` into bytes (int). Raises ConfigError naming ``key``."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a size such as 50M, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{key}: must not be negative")
        return value
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            mult = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2).lower()]
            return int(m.group(1)) * mult
    raise ConfigError(f"{key}: expected a size such as 50M, got {value!r}")


def _expect(value: Any, types: type | tuple[type, ...], key: str) -> Any:
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ConfigError(f"{key}: expected {_type_name(types)}, got {value!r}")
    if not isinstance(value, types):
        raise ConfigError(f"{key}: expected {_type_name(types)}, got {value!r}")
    return value


def _type_name(types: type | tuple[type, ...]) -> str:
    if isinstance(types, tuple):
        return " or ".join(t.__name__ for t in types)
    return types.__name__


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: ``per_second`` actions refill per second (float), at most ``burst_count`` at once."""

    per_second: float
    burst_count: int

    @classmethod
    def parse(cls, value: Any, key: str, default: "RateLimit") -> "RateLimit":
        """Parse ``{"per_second": number, "burst_count": number}`` at config ``key``; missing keys come from
        ``default`` and None means ``default``. Raises ``ConfigError`` naming the key for unknown keys, wrong types or
        negative values.
        """
        if value is None:
            return default
        _expect(value, dict, key)
        unknown = set(value) - {"per_second", "burst_count"}
        if unknown:
            raise ConfigError(f"{key}: unknown key(s) {sorted(unknown)}")
        per_second = value.get("per_second", default.per_second)
        burst = value.get("burst_count", default.burst_count)
        _expect(per_second, (int, float), f"{key}.per_second")
        _expect(burst, (int, float), f"{key}.burst_count")
        if per_second < 0 or burst < 0:
            raise ConfigError(f"{key}: values must not be negative")
        return cls(float(per_second), int(burst))


@dataclass(frozen=True)
class Listener:
    """One HTTP listener. ``resources`` is a set of names: ``client`` (client-server + media + keys + AS-facing
    endpoints), ``metrics`` (Prometheus ``/metrics``)."""

    port: int
    bind_addresses: tuple[str, ...]
    resources: frozenset[str]
    x_forwarded: bool = False


@dataclass(frozen=True)
class DatabaseConfig:
    """``database: {name: sqlite3|psycopg2, args: {...}}`` as in Synapse. For sqlite3 ``args.database`` is the file
    path; for psycopg2 ``args`` are passed to ``psycopg2.connect`` (``dbname``/``database``, ``user``, ``host``...)
    plus ``cp_min``/``cp_max`` for the connection pool size."""

    name: str
    args: dict[str, Any]

    @property
    def is_postgres(self) -> bool:
        return self.name == "psycopg2"


_KNOWN_KEYS: set[str] = {
    "server_name", "public_baseurl", "listeners", "database", "signing_key_path", "enable_registration",
    "enable_registration_without_verification", "registration_shared_secret", "rc_message", "rc_login",
    "rc_registration", "rc_joins", "max_upload_size", "max_request_body_size", "media_store_path",
    "app_service_config_files", "default_room_version", "log_level", "access_log", "pid_file",
    "user_directory", "presence", "bcrypt_rounds", "profile_fields",
}
# Synapse keys that a copied Synapse config may carry and that change nothing here; anything else unknown is an
# error, so that no setting is silently ignored.
_IGNORED_SYNAPSE_KEYS: set[str] = {"report_stats", "suppress_key_server_warning", "trusted_key_servers"}
MIN_SHARED_SECRET_LENGTH = 16


@dataclass
class HomeserverConfig:
    """The whole parsed configuration. Durations are in milliseconds, sizes in bytes."""

    server_name: str
    config_dir: str
    listeners: list[Listener]
    database: DatabaseConfig
    signing_key_path: str
    public_baseurl: str | None = None
    enable_registration: bool = False
    enable_registration_without_verification: bool = False
    registration_shared_secret: str | None = None
    rc_message: RateLimit = RateLimit(0.2, 10)
    rc_login: dict[str, RateLimit] = field(default_factory=dict)
    rc_registration: RateLimit = RateLimit(0.17, 3)
    rc_joins: dict[str, RateLimit] = field(default_factory=dict)
    max_upload_size: int = 50 * 1024 * 1024
    max_request_body_size: int = 1024 * 1024
    media_store_path: str = "media_store"
    app_service_config_files: list[str] = field(default_factory=list)
    default_room_version: str = DEFAULT_ROOM_VERSION
    log_level: str = "INFO"
    access_log: bool = True
    pid_file: str | None = None
    user_directory_search_all_users: bool = False
    presence_enabled: bool = True
    bcrypt_rounds: int = 12
    # Extended profile fields (issue 9): {"max_value_bytes"?: int, "visibility"?: {key: "public" | "local_users"
    # | "shared_rooms" | "self"}, "admin_only"?: [key]}; defaults live in homeserver/handlers/profile.py.
    profile_fields: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def client_base_url(self) -> str:
        """Base URL clients use, for ``/.well-known/matrix/client``."""
        if self.public_baseurl:
            return self.public_baseurl.rstrip("/") + "/"
        for listener in self.listeners:
            if "client" in listener.resources:
                host = listener.bind_addresses[0] if listener.bind_addresses else "127.0.0.1"
                if host in ("0.0.0.0", "::"):
                    host = "127.0.0.1"
                if ":" in host:
                    host = f"[{host}]"
                return f"http://{host}:{listener.port}/"
        return f"https://{self.server_name}/"


def _parse_nested_ratelimit(
    raw: dict[str, Any], key: str, subkeys: tuple[str, ...], default: RateLimit
) -> dict[str, RateLimit]:
    """Synapse's nested limits, e.g. ``rc_login: {address: {...}, account: {...}, failed_attempts: {...}}``."""
    value = raw.get(key) or {}
    _expect(value, dict, key)
    unknown = set(value) - set(subkeys)
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {sorted(unknown)}; expected {', '.join(subkeys)}")
    return {sub: RateLimit.parse(value.get(sub), f"{key}.{sub}", default) for sub in subkeys}


def _bcrypt_rounds(value: Any) -> int:
    _expect(value, int, "bcrypt_rounds")
    if not 4 <= value <= 31:
        raise ConfigError(f"bcrypt_rounds: must be between 4 and 31, got {value}")
    return value


def _bool(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    return bool(_expect(value, bool, key))


def _opt_str(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    return _expect(value, str, key)


def _resolve(path: str, base: str) -> str:
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _parse_listeners(value: Any) -> list[Listener]:
    _expect(value, list, "listeners")
    if not value:
        raise ConfigError("listeners: at least one listener is required")
    out = []
    for i, item in enumerate(value):
        key = f"listeners[{i}]"
        _expect(item, dict, key)
        unknown = set(item) - {"port", "bind_addresses", "type", "tls", "x_forwarded", "resources"}
        if unknown:
            raise ConfigError(f"{key}: unknown key(s) {sorted(unknown)}")
        port = _expect(item.get("port"), int, f"{key}.port")
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}.port: {port} is not a TCP port")
        ltype = item.get("type", "http")
        if ltype not in ("http", "metrics"):
            raise ConfigError(f"{key}.type: must be 'http' or 'metrics', got {ltype!r}")
        if item.get("tls"):
            raise ConfigError(f"{key}.tls: TLS is not supported; put a reverse proxy in front")
        binds = item.get("bind_addresses", ["127.0.0.1"])
        _expect(binds, list, f"{key}.bind_addresses")
        for b in binds:
            _expect(b, str, f"{key}.bind_addresses")
        names: set[str] = set()
        if ltype == "metrics":
            names.add("metrics")
        for j, res in enumerate(item.get("resources", [])):
            _expect(res, dict, f"{key}.resources[{j}]")
            for name in _expect(res.get("names", []), list, f"{key}.resources[{j}].names"):
                if name not in ("client", "federation", "metrics", "media", "keys"):
                    raise ConfigError(f"{key}.resources[{j}].names: unknown resource {name!r}")
                names.add("client" if name in ("media", "keys", "federation") else name)
        if not names:
            raise ConfigError(f"{key}.resources: names no resource to serve")
        out.append(Listener(port, tuple(binds), frozenset(names), bool(item.get("x_forwarded", False))))
    return out


def _parse_database(value: Any, config_dir: str) -> DatabaseConfig:
    _expect(value, dict, "database")
    unknown = set(value) - {"name", "args", "allow_unsafe_locale", "txn_limit"}
    if unknown:
        raise ConfigError(f"database: unknown key(s) {sorted(unknown)}")
    name = value.get("name")
    if name not in ("sqlite3", "psycopg2"):
        raise ConfigError(f"database.name: must be 'sqlite3' or 'psycopg2', got {name!r}")
    args = dict(_expect(value.get("args", {}), dict, "database.args"))
    if name == "sqlite3":
        db = args.get("database")
        _expect(db, str, "database.args.database")
        if db != ":memory:":
            args["database"] = _resolve(db, config_dir)
    return DatabaseConfig(name, args)


def _parse_profile_fields(value: Any) -> dict[str, Any]:
    _expect(value, dict, "profile_fields")
    unknown = set(value) - {"max_value_bytes", "visibility", "admin_only"}
    if unknown:
        raise ConfigError(f"profile_fields: unknown key(s) {sorted(unknown)}")
    if "max_value_bytes" in value:
        size = _expect(value["max_value_bytes"], int, "profile_fields.max_value_bytes")
        if not 1 <= size <= 65536:
            raise ConfigError(f"profile_fields.max_value_bytes: must be between 1 and 65536, got {size}")
    for key, who in _expect(value.get("visibility", {}), dict, "profile_fields.visibility").items():
        if who not in ("public", "local_users", "shared_rooms", "self"):
            raise ConfigError(f"profile_fields.visibility.{key}: must be public, local_users, shared_rooms or self,"
                              f" got {who!r}")
    for key in _expect(value.get("admin_only", []), list, "profile_fields.admin_only"):
        _expect(key, str, "profile_fields.admin_only")
    return dict(value)


def parse_config(raw: Any, config_dir: str) -> HomeserverConfig:
    """Build a :class:`HomeserverConfig` from the YAML document ``raw``; relative paths resolve against
    ``config_dir``. Raises ConfigError naming the first bad key."""
    if not isinstance(raw, dict):
        raise ConfigError("the configuration file must be a YAML mapping")
    unknown = set(raw) - _KNOWN_KEYS - _IGNORED_SYNAPSE_KEYS
    if unknown:
        raise ConfigError(f"unknown configuration key(s): {', '.join(sorted(unknown))}")
    server_name = raw.get("server_name")
    if not is_valid_server_name(server_name):
        raise ConfigError(f"server_name: must be a host name with an optional port, got {server_name!r}")
    signing_key_path = raw.get("signing_key_path")
    _expect(signing_key_path, str, "signing_key_path")
    room_version = raw.get("default_room_version", DEFAULT_ROOM_VERSION)
    if not isinstance(room_version, str) or room_version not in KNOWN_ROOM_VERSIONS:
        raise ConfigError(
            f"default_room_version: {room_version!r} is not one of {sorted(KNOWN_ROOM_VERSIONS)}"
        )
    as_files = raw.get("app_service_config_files") or []
    _expect(as_files, list, "app_service_config_files")
    for f in as_files:
        _expect(f, str, "app_service_config_files")
    user_dir = raw.get("user_directory") or {}
    _expect(user_dir, dict, "user_directory")
    unknown_ud = set(user_dir) - {"enabled", "search_all_users", "prefer_local_users"}
    if unknown_ud:
        raise ConfigError(f"user_directory: unknown key(s) {sorted(unknown_ud)}")
    presence = raw.get("presence") or {}
    _expect(presence, dict, "presence")
    log_level = raw.get("log_level", "INFO")
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log_level: must be DEBUG, INFO, WARNING or ERROR, got {log_level!r}")
    secret = _opt_str(raw, "registration_shared_secret")
    if secret is not None and (len(secret) < MIN_SHARED_SECRET_LENGTH or secret.strip().lower() == "change me"):
        raise ConfigError(
            f"registration_shared_secret: must be a random string of at least {MIN_SHARED_SECRET_LENGTH} characters "
            "(anyone who knows it can create admin accounts); remove the key to disable shared-secret registration")
    cfg = HomeserverConfig(
        server_name=server_name,
        config_dir=config_dir,
        listeners=_parse_listeners(raw.get("listeners")),
        database=_parse_database(raw.get("database", {"name": "sqlite3", "args": {"database": "homeserver.db"}}),
                                 config_dir),
        signing_key_path=_resolve(signing_key_path, config_dir),
        public_baseurl=_opt_str(raw, "public_baseurl"),
        enable_registration=_bool(raw, "enable_registration", False),
        enable_registration_without_verification=_bool(raw, "enable_registration_without_verification", False),
        registration_shared_secret=secret,
        rc_message=RateLimit.parse(raw.get("rc_message"), "rc_message", RateLimit(0.2, 10)),
        rc_login=_parse_nested_ratelimit(raw, "rc_login", ("address", "account", "failed_attempts"),
                                         RateLimit(0.17, 3)),
        rc_registration=RateLimit.parse(raw.get("rc_registration"), "rc_registration", RateLimit(0.17, 3)),
        rc_joins=_parse_nested_ratelimit(raw, "rc_joins", ("local", "remote"), RateLimit(0.1, 10)),
        max_upload_size=parse_size(raw.get("max_upload_size", "50M"), "max_upload_size"),
        max_request_body_size=parse_size(raw.get("max_request_body_size", "1M"), "max_request_body_size"),
        media_store_path=_resolve(_expect(raw.get("media_store_path", "media_store"), str, "media_store_path"),
                                  config_dir),
        app_service_config_files=[_resolve(f, config_dir) for f in as_files],
        default_room_version=room_version,
        log_level=log_level,
        access_log=_bool(raw, "access_log", True),
        pid_file=_opt_str(raw, "pid_file"),
        user_directory_search_all_users=bool(_expect(user_dir.get("search_all_users", False), bool,
                                                     "user_directory.search_all_users")),
        presence_enabled=bool(_expect(presence.get("enabled", True), bool, "presence.enabled")),
        bcrypt_rounds=_bcrypt_rounds(raw.get("bcrypt_rounds", 12)),
        profile_fields=_parse_profile_fields(raw.get("profile_fields") or {}),
        raw=raw,
    )
    if cfg.enable_registration and not cfg.enable_registration_without_verification:
        raise ConfigError(
            "enable_registration: open registration needs enable_registration_without_verification: true "
            "(this server has no email or captcha verification)"
        )
    return cfg


def load_config(path: str) -> HomeserverConfig:
    """Read and parse the YAML file at ``path``. Raises ConfigError (also for unreadable or invalid YAML)."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {e}") from e
    return parse_config(raw, os.path.dirname(os.path.abspath(path)))


def generate_config_yaml(
    server_name: str,
    data_dir: str,
    port: int = 8008,
    database_url: str | None = None,
    open_registration: bool = False,
    metrics_port: int | None = None,
) -> str:
    """The text of a new ``homeserver.yaml`` for ``server_name`` whose files live in ``data_dir``.

    ``database_url`` is ``postgresql://user@host:port/dbname`` for PostgreSQL; otherwise SQLite in ``data_dir``.
    Raises ConfigError for a malformed server name or database URL.
    """
    if not is_valid_server_name(server_name):
        raise ConfigError(f"--server-name: {server_name!r} is not a valid server name")
    if database_url:
        database: dict[str, Any] = {"name": "psycopg2", "args": parse_database_url(database_url)}
    else:
        database = {"name": "sqlite3", "args": {"database": "homeserver.db"}}
    listeners: list[dict[str, Any]] = [
        {"port": port, "bind_addresses": ["127.0.0.1"], "type": "http",
         "resources": [{"names": ["client"]}]},
    ]
    if metrics_port:
        listeners.append({"port": metrics_port, "bind_addresses": ["127.0.0.1"], "type": "metrics"})
    doc: dict[str, Any] = {
        "server_name": server_name,
        "listeners": listeners,
        "database": database,
        "signing_key_path": f"{server_name.replace(':', '_')}.signing.key",
        "media_store_path": "media_store",
        "enable_registration": open_registration,
        "enable_registration_without_verification": open_registration,
        "registration_shared_secret": secrets.token_urlsafe(32),
        "max_upload_size": "50M",
        "default_room_version": DEFAULT_ROOM_VERSION,
        "app_service_config_files": [],
        # Rate limits sized for a team server where bots and alert bridges post bursts; lower them for an
        # internet-facing server (Synapse's defaults are per_second 0.2, burst_count 10 for messages).
        "rc_message": {"per_second": 50, "burst_count": 500},
        "rc_registration": {"per_second": 20, "burst_count": 300},
        "rc_login": {
            "address": {"per_second": 20, "burst_count": 300},
            "account": {"per_second": 20, "burst_count": 300},
            "failed_attempts": {"per_second": 1, "burst_count": 20},
        },
        "rc_joins": {"local": {"per_second": 20, "burst_count": 300}},
        "log_level": "INFO",
    }
    header = (
        "# Tocsin homeserver configuration. Key names follow Synapse's where the two share a setting.\n"
        "# Relative paths are relative to this file's directory. See config/homeserver.sample.yaml for every key.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False)


def parse_database_url(url: str) -> dict[str, Any]:
    """``postgresql://user:password@host:port/dbname`` -> psycopg2 connect args. Raises ConfigError."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(url)
    if parsed.scheme not in ("postgresql", "postgres") or not parsed.path.strip("/"):
        raise ConfigError(f"--database-url: expected postgresql://user@host:port/dbname, got {url!r}")
    args: dict[str, Any] = {"dbname": unquote(parsed.path.lstrip("/"))}
    if parsed.username:
        args["user"] = unquote(parsed.username)
    if parsed.password:
        args["password"] = unquote(parsed.password)
    if parsed.hostname:
        args["host"] = parsed.hostname
    if parsed.port:
        args["port"] = parsed.port
    return args


RATE_LIMIT_KEYS: tuple[str, ...] = ("rc_message", "rc_login", "rc_registration", "rc_joins")
ConfigValidator = Callable[[Any, str], Any]
