"""Builds the stores and handlers of every area onto the :class:`homeserver.app.HomeServer`, in dependency order.

One function, one place: adding an area means adding its lines here (stores first, then handlers).
"""

from __future__ import annotations

from typing import Any


def build_components(hs: Any) -> None:
    """Create ``hs.<area>_store`` and ``hs.<area>_handler`` attributes. Order matters: later ones use earlier."""
    # -- core: events, rooms, profiles -----------------------------------------------------------------------
    from homeserver.handlers.events import EventCreationHandler
    from homeserver.handlers.membership import RoomMemberHandler
    from homeserver.handlers.pagination import PaginationHandler
    from homeserver.handlers.rooms import DirectoryHandler, RoomCreationHandler
    from homeserver.handlers.serialize import EventSerializer
    from homeserver.handlers.sync import SyncHandler
    from homeserver.handlers.typing import TypingHandler
    from homeserver.handlers.visibility import VisibilityHandler
    from homeserver.storage.events import EventStore
    from homeserver.storage.profiles import ProfileStore
    from homeserver.storage.rooms import RoomStore

    hs.event_store = EventStore(hs.db, hs.stream_positions)
    hs.room_store = RoomStore(hs.db, hs.event_store)
    hs.profile_store = ProfileStore(hs.db)
    hs.event_serializer = EventSerializer(hs)
    hs.visibility_handler = VisibilityHandler(hs)
    hs.event_creation_handler = EventCreationHandler(hs)
    hs.room_member_handler = RoomMemberHandler(hs)
    hs.room_creation_handler = RoomCreationHandler(hs)
    hs.directory_handler = DirectoryHandler(hs)
    hs.pagination_handler = PaginationHandler(hs)
    hs.typing_handler = TypingHandler(hs)

    # -- accounts: UIA, registration, devices, account data, filters -----------------------------------------
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

    # -- E2E keys, to-device, key backup ---------------------------------------------------------------------
    from homeserver.handlers.e2e_keys import E2EKeysHandler
    from homeserver.handlers.key_backup import KeyBackupHandler
    from homeserver.handlers.to_device import ToDeviceHandler

    hs.e2e_keys_handler = E2EKeysHandler(hs)
    hs.to_device_handler = ToDeviceHandler(hs)
    hs.key_backup_handler = KeyBackupHandler(hs)

    # -- application services (issue 5): registrations, transaction sender, queries, ping -------------------
    from homeserver.appservice.handler import AppServices

    hs.appservices = AppServices(hs)

    # -- relations, threads, search, reports (issue 8) -------------------------------------------------------
    from homeserver.handlers.relations import RelationCheckHook, RelationsHandler
    from homeserver.handlers.search import SearchHandler, SearchIndexHook
    from homeserver.storage.relations import RelationsStore
    from homeserver.storage.reports import ReportStore
    from homeserver.storage.search import SearchStore

    hs.relations_store = RelationsStore(hs.db)
    hs.search_store = SearchStore(hs.db)
    hs.report_store = ReportStore(hs.db)
    hs.relations_handler = RelationsHandler(hs)
    hs.search_handler = SearchHandler(hs)
    hs.event_creation_handler.add_persist_hook(RelationCheckHook(hs.event_store, hs.relations_store))
    hs.event_creation_handler.add_persist_hook(SearchIndexHook(hs.search_store))

    # -- media, profiles, presence, user directory (issue 8) ----------------------------------------------------
    from homeserver.handlers.media import MediaHandler
    from homeserver.handlers.presence import PresenceHandler
    from homeserver.handlers.profile import ProfileHandler
    from homeserver.handlers.user_directory import UserDirectoryHandler
    from homeserver.storage.media import MediaStore
    from homeserver.storage.presence import PresenceStore
    from homeserver.storage.user_directory import UserDirectoryStore

    hs.media_store = MediaStore(hs.db)
    hs.presence_store = PresenceStore(hs.db, hs.stream_positions)
    hs.user_directory_store = UserDirectoryStore(hs.db)
    hs.media_handler = MediaHandler(hs)
    hs.profile_handler = ProfileHandler(hs)
    hs.presence_handler = PresenceHandler(hs)
    hs.user_directory_handler = UserDirectoryHandler(hs)

    # -- receipts, push rules, unread counts, pushers (issue 3) -----------------------------------------------
    from homeserver.handlers.push import PushHandler
    from homeserver.handlers.pushers import PusherHandler
    from homeserver.handlers.receipts import ReceiptsHandler
    from homeserver.storage.push import PushStore
    from homeserver.storage.receipts import ReceiptsStore

    hs.push_store = PushStore(hs.db)
    hs.receipts_store = ReceiptsStore(hs.db, hs.stream_positions)
    hs.pusher_handler = PusherHandler(hs)
    hs.push_handler = PushHandler(hs)
    hs.receipts_handler = ReceiptsHandler(hs)

    # -- organisation: spaces hierarchy, org chart sync, quick conversations (issue 9) --------------------------
    from homeserver.handlers.hierarchy import HierarchyHandler
    from homeserver.handlers.org import OrgHandler
    from homeserver.storage.org import OrgStore

    hs.org_store = OrgStore(hs.db)
    hs.hierarchy_handler = HierarchyHandler(hs)
    hs.org_handler = OrgHandler(hs)

    # -- sync (last: it reads every area) -------------------------------------------------------------------
    hs.sync_handler = SyncHandler(hs)
    # Every stream is registered now and nothing has been written yet: the notifier sees every change from here.
    hs.notifier.set_baseline(hs.stream_positions.current_token())
