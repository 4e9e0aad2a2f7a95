"""Client-server API servlets, one module per spec module. Each module has ``register_servlets(hs, router)``."""

from __future__ import annotations

import importlib
from typing import Any

# Order matters only where two patterns could match the same path: the first registered wins.
SERVLET_MODULES: tuple[str, ...] = (
    "versions",
    "rooms",
    "directory",
    "sync",
    "voip",
    "thirdparty",
    "keys",
    "to_device",
    "room_keys",
    "register", "login", "account", "devices", "account_data", "filter", "admin",
    "receipts", "read_markers", "push_rules", "pushers", "notifications",
    "media", "profile", "presence", "user_directory",
    "appservice",
    "relations", "search", "report",
    "hierarchy", "org",
)


def register_all_servlets(hs: Any, router: Any) -> None:
    """Call ``register_servlets(hs, router)`` of every module in ``SERVLET_MODULES``, in that order (the first
    matching pattern wins).
    """
    for name in SERVLET_MODULES:
        importlib.import_module(f"homeserver.rest.{name}").register_servlets(hs, router)
