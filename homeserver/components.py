"""Builds the stores and handlers of every area onto the :class:`homeserver.app.HomeServer`, in dependency order.

One function, one place: adding an area means adding its lines here (stores first, then handlers).
"""

from __future__ import annotations

from typing import Any


def build_components(hs: Any) -> None:
    """Create ``hs.<area>_store`` and ``hs.<area>_handler`` attributes. Order matters: later ones use earlier."""
    # accounts: registration, login, UIA, devices, account data, filters
    from homeserver.handlers.auth import AuthHandler
    from homeserver.handlers.devices import DeviceHandler
    from homeserver.handlers.registration import RegistrationHandler
    from homeserver.storage.account_data import AccountDataStore
    from homeserver.storage.filters import FilterStore

    hs.account_data_store = AccountDataStore(hs.db, hs.notifier, hs.stream_positions)
    hs.filter_store = FilterStore(hs.db)
    hs.auth_handler = AuthHandler(hs)
    hs.device_handler = DeviceHandler(hs)
    hs.registration_handler = RegistrationHandler(hs)
    # E2E keys, device lists, to-device messages and key backups (issue 4)
    from homeserver.handlers.e2e_keys import E2EKeysHandler
    from homeserver.handlers.key_backup import KeyBackupHandler
    from homeserver.handlers.to_device import ToDeviceHandler

    hs.e2e_keys_handler = E2EKeysHandler(hs)
    hs.to_device_handler = ToDeviceHandler(hs)
    hs.key_backup_handler = KeyBackupHandler(hs)
