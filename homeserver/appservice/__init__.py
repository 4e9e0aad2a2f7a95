"""Application services (issue 5): registrations, namespaces, the transaction sender, queries and ping.

``hs.appservices`` is an :class:`~homeserver.appservice.handler.AppServices`.
"""

from homeserver.appservice.handler import AppServices
from homeserver.appservice.registration import ApplicationService, Namespace, load_registrations

__all__ = ["AppServices", "ApplicationService", "Namespace", "load_registrations"]
